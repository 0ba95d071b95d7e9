"""Trying a rule over HTTP before it goes live: ``POST /v1/rules/{rule_id}/test`` and
``POST /v1/rules/{rule_id}/backtest``.

- **test** runs one rule test file (the format of ``rules/tests/*.yaml``, sent as text)
  against the rule, exactly as ``goalwatch rules test`` does (:mod:`goalwatch.rules.testing`):
  names, org units and goals come from the test file, nothing from the live system.
- **backtest** runs the rule over the metric events stored in NATS since a time ago, as
  ``goalwatch rules backtest`` does (:mod:`goalwatch.rules.backtest`), but with what the
  evaluator knows of the subjects met: their names, org units and time zones from its view
  of the directory, so a rule scoped by org unit fires as it would live and alerts carry
  people's names. Nothing is published.

Both take the rule as it is live (``rule_of``), or a draft: ``source``, the YAML text of a
rule file, validated as the loader validates rule files (errors ``source:line:col``) and
written nowhere. Both run the rule in a worker thread (each run builds a rule engine of its
own, which shares nothing with the live one: :class:`goalwatch.rules.engine.RuleEngine`), so
the event loop goes on consuming events meanwhile.

The router is mounted by the evaluator's app next to the rules API
(:func:`services.evaluator.api.rules_router`); it only reads what it is given.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from typing import Final, Literal, Protocol

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from goalwatch.auth.policies import RULES_CHECK
from goalwatch.connections import NatsTarget
from goalwatch.contracts import AlertFired, AlertResolved, RuleKind
from goalwatch.durations import duration_of
from goalwatch.file_errors import FileError, locate_at
from goalwatch.problems import MAX_LISTED, RETRY_AFTER_SECONDS, clip, problem, problem_responses
from goalwatch.rules import GoalOverdueRuleSpec, ImpactRuleSpec, LoadedRule, RuleSpec
from goalwatch.rules.backtest import HistoryUnavailable, Subjects, backtest_async
from goalwatch.rules.loader import RuleError, RuleLoadError, parse_rule_text
from goalwatch.rules.testing import TestFileError, read_test_text, run_parsed_test
from services.evaluator.directory_store import PersonView

logger = logging.getLogger(__name__)

MAX_LISTED_ALERTS: Final = 1000
"""A backtest answers with at most this many alerts, the first sent; ``truncated`` says when
there were more (the counts and ``fired_per_day`` count them all)."""
MAX_TEST_CHARACTERS: Final = 1_000_000
MAX_SOURCE_CHARACTERS: Final = 100_000
# A backtest's longest look back: the rule language's longest duration. The metrics stream
# keeps 30 days; a longer look back reads what it holds.
MAX_SINCE: Final = timedelta(days=366)
# Subjects looked up in the directory per Redis call: one call walks each subject's org
# chart in a script, and Redis serves nobody else while a script runs.
_LOOKUP_CHUNK: Final = 500
# Names asked of the goals service at once, for subjects the directory view does not know.
_NAME_LOOKUPS: Final = 8
# An error quotes what was written, up to this many characters in all.
_MAX_ERROR: Final = 500
_SOURCE: Final = "source"
_TESTS: Final = "tests"
_ID_LINE: Final = re.compile(r"^id\s*:", re.MULTILINE)


class SubjectNames(Protocol):
    """Display names (the evaluator's ``DirectoryNames``, or the goals client it falls back on)."""

    async def name_of(self, *, subject: str) -> str:
        """The subject's display name, or ``subject`` when unknown; raises if unsure."""
        ...


class PeopleView(Protocol):
    """The evaluator's view of the directory (``Directory``): people read in bulk."""

    async def people(self, subjects: Collection[str]) -> Mapping[str, PersonView | None]:
        """Each of ``subjects`` as the view knows them, None when it does not."""
        ...


class RuleTestCreate(BaseModel):
    """A rule test to run against a rule."""

    model_config = ConfigDict(extra="forbid")

    tests: str = Field(
        max_length=MAX_TEST_CHARACTERS,
        description="The YAML text of one rule test file, as in rules/tests/*.yaml: name, "
        "events, expect, and optionally rules, people, org_units, goals, until. Without "
        "rules:, the test runs the rule of the path alone; with rules:, it must name that "
        "rule, and the other rules it names are taken as they are live.",
    )
    source: str | None = Field(
        default=None,
        max_length=MAX_SOURCE_CHARACTERS,
        description="The YAML text of a draft of the rule (a rule file, its id the one of "
        "the path), tested instead of the live rule; the rule need not exist yet.",
    )


class RuleTestRead(BaseModel):
    """What a rule test showed."""

    passed: bool = Field(description="Whether the alerts were the ones expected.")
    name: str = Field(description="The test's name.")
    rules: list[str] = Field(description="The ids of the rules the test ran.")
    draft: bool = Field(description="Whether the rule of the path was the draft sent.")
    failures: list[str] = Field(
        description="When it failed, the lines goalwatch rules test prints: 'expected:', "
        "the alerts expected, 'got:', the alerts sent."
    )


class BacktestCreate(BaseModel):
    """A backtest to run: how far back to read."""

    model_config = ConfigDict(extra="forbid")

    since: str = Field(
        default="30d",
        max_length=32,
        description="How far back to read the stored metric events: a duration such as 30d, "
        "12h or 1d12h (1s to 366d; the metrics stream keeps 30 days).",
    )
    source: str | None = Field(
        default=None,
        max_length=MAX_SOURCE_CHARACTERS,
        description="The YAML text of a draft of the rule (its id the one of the path), "
        "run instead of the live rule; the rule need not exist yet.",
    )


class BacktestAlert(BaseModel):
    """One alert the rule would have sent, as ``goalwatch rules run --json`` prints it."""

    state: Literal["firing", "resolved"] = Field(
        description="firing (an alert fired, or rose in severity: escalated_from) or resolved."
    )
    alert: AlertFired | AlertResolved = Field(description="The alert, as it would be published.")


class BacktestRead(BaseModel):
    """What the rule would have sent over the stored history; nothing was sent."""

    since: AwareDatetime = Field(description="The start of the history read.")
    draft: bool = Field(description="Whether the rule run was the draft sent.")
    events: int = Field(description="Metric events of the rule's metric read.")
    skipped: int = Field(
        description="Stored messages that are not metric events of the current contract."
    )
    fired: int = Field(description="Alerts fired, escalations included.")
    resolved: int = Field(description="Alerts resolved.")
    fired_per_day: dict[str, int] = Field(
        description="Firings per UTC day (YYYY-MM-DD) of their event time, oldest first."
    )
    alerts: list[BacktestAlert] = Field(
        description=f"The alerts in the order they would be sent; the first "
        f"{MAX_LISTED_ALERTS} when there were more."
    )
    truncated: bool = Field(
        description=f"Whether there were more than {MAX_LISTED_ALERTS} alerts, so that "
        "alerts lists the first of them."
    )


class _Refused(Exception):
    """A request the route answers with a problem."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


CHECKS_PER_PROCESS = 20
"""Checks (tests, backtests) run by one worker process before a fresh one replaces it."""


def _leave_with_parent(parent: int) -> None:
    """In a check process: exit once the evaluator that started it is gone.

    A graceful stop shuts the pool down, but a killed evaluator (``kill -9``, the OOM killer)
    cannot: its check process would wait for work for good.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="leave-with-parent", daemon=True).start()


def rule_checks_router(
    rule_of: Callable[[str], LoadedRule | None],
    *,
    rule_ids: Callable[[], Collection[str]],
    nats: NatsTarget,
    names: SubjectNames,
    directory: PeopleView,
) -> APIRouter:
    """The test and backtest routes over the live rules.

    ``rule_of`` gives a live rule by id (None: no such rule) and ``rule_ids`` the ids of
    all of them, for the closest ones when an id is unknown and for the other rules a test
    names; both are asked at each request, so rules changed since are seen. ``nats`` is
    where the stored metric events are read. A backtest takes the names, org units and time
    zones of the subjects it meets from ``directory``, and asks ``names`` only for a subject
    the directory does not know and that alerted.
    """
    router = APIRouter(prefix="/v1", tags=["rules"])
    # Rules are run for a check in a process of their own: durable_rules keeps every ruleset
    # made in its C engine for good (freeing them corrupts the engine), and the process is
    # replaced after a few checks, taking that memory with it; the evaluator's own engine is
    # never shared with a check, and a long backtest takes none of its CPU time slice.
    runs = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        max_tasks_per_child=CHECKS_PER_PROCESS,
        initializer=_leave_with_parent,
        initargs=(os.getpid(),),
    )

    async def rule_for(rule_id: str, source: str | None) -> tuple[LoadedRule, bool]:
        """The rule to check, and whether it is the draft."""
        if source is not None:
            # Parsing YAML is pure Python: a long text would hold the event loop.
            return await asyncio.to_thread(_draft, rule_id, source), True
        live = rule_of(rule_id)
        if live is None:
            raise _Refused(_unknown(rule_id, rule_ids()))
        return live, False

    @router.post(
        "/rules/{rule_id}/test",
        summary="Run a rule test against the rule, or a draft of it",
        response_model=RuleTestRead,
        dependencies=[Depends(RULES_CHECK)],
        responses=problem_responses(
            {
                404: "No rule has that id, and no draft was sent; the closest ids are listed.",
                422: "The test file or the draft is wrong (each error as name:line:col), or "
                "the test names rules without this one.",
            }
        ),
    )
    async def test_rule(rule_id: str, body: RuleTestCreate) -> RuleTestRead | JSONResponse:
        """As ``goalwatch rules test``: 200 whether the test passed or failed (``passed``)."""
        try:
            rule, draft = await rule_for(rule_id, body.source)
        except _Refused as refused:
            return refused.response
        try:
            parsed = await asyncio.to_thread(read_test_text, body.tests, file=_TESTS)
        except TestFileError as exc:
            return _wrong_test(exc.file_error(_TESTS))
        named = parsed.test.rules
        if named is not None and rule_id not in named:
            line, column, _ = locate_at(parsed.node, ["rules"])
            return _wrong_test(
                FileError(
                    _TESTS,
                    line,
                    "rules",
                    f"the test runs {', '.join(named)}, not {rule_id}: add {rule_id} to its "
                    "rules:, or leave rules: out to run this rule alone",
                    column,
                )
            )
        specs = [rule.spec]
        if named is not None:
            # The test picks what it names among these; one unknown is an error of the file.
            live = (rule_of(other) for other in rule_ids() if other != rule_id)
            specs += [other.spec for other in live if other is not None]
        outcome = await asyncio.get_running_loop().run_in_executor(
            runs, run_parsed_test, parsed, specs
        )
        if outcome.error is not None:
            return _wrong_test(outcome.error)
        return RuleTestRead(
            passed=not outcome.failures,
            name=outcome.name,
            rules=list(dict.fromkeys(named)) if named is not None else [rule_id],
            draft=draft,
            failures=outcome.failures,
        )

    async def subjects_of(subjects: Collection[str]) -> Subjects:
        found: dict[str, PersonView | None] = {}
        listed = list(subjects)
        for start in range(0, len(listed), _LOOKUP_CHUNK):
            found.update(await directory.people(listed[start : start + _LOOKUP_CHUNK]))
        people = [person for person in found.values() if person is not None]
        return Subjects(
            names={person.id: person.name for person in people},
            org_units={person.id: person.org_units for person in people},
            time_zones={person.id: person.time_zone for person in people if person.time_zone},
        )

    async def names_of(subjects: Collection[str]) -> dict[str, str]:
        # In order of their first alert: only those of the listed alerts are worth a call.
        asked = list(subjects)[:MAX_LISTED_ALERTS]
        calls = asyncio.Semaphore(_NAME_LOOKUPS)

        async def one(subject: str) -> tuple[str, str]:
            async with calls:
                try:
                    return subject, await names.name_of(subject=subject)
                except Exception as exc:
                    # A what-if run does not fail for a name: the alert shows the id.
                    logger.warning("backtest: no name for %s: %r", subject, exc)
                    return subject, subject

        return dict(await asyncio.gather(*(one(subject) for subject in asked)))

    @router.post(
        "/rules/{rule_id}/backtest",
        summary="What the rule, or a draft of it, would have fired over the stored events",
        response_model=BacktestRead,
        dependencies=[Depends(RULES_CHECK)],
        responses=problem_responses(
            {
                404: "No rule has that id, and no draft was sent; the closest ids are listed.",
                422: "since is not a duration, the draft is wrong (each error as "
                "source:line:col), or the rule is judged on goal events (dependency_impact, "
                "overdue on goals), which a backtest of metric events cannot run.",
                503: "NATS, or the directory view in Redis, did not answer.",
            }
        ),
    )
    async def backtest_rule(rule_id: str, body: BacktestCreate) -> BacktestRead | JSONResponse:
        """Reads the metric events stored since ``since`` ago and runs the rule over them in
        memory, with the subjects as the evaluator's directory view knows them."""
        try:
            since = duration_of(body.since.strip())
        except OverflowError:  # more days than a timedelta holds
            since = None
        if since is None or not timedelta(seconds=1) <= since <= MAX_SINCE:
            return _invalid(
                "since",
                f"{clip(body.since)!r} is not a duration from 1s to 366d: write a number with its "
                "unit, d (days), h (hours), m (minutes) or s (seconds), e.g. 30d, 12h or 1d12h",
            )
        try:
            rule, draft = await rule_for(rule_id, body.source)
        except _Refused as refused:
            return refused.response
        spec = rule.spec
        if not isinstance(spec, RuleSpec):
            return _on_goal_events(spec, draft)
        started = time.perf_counter()
        try:
            result = await backtest_async(
                spec,
                nats,
                since=since,
                subjects_of=subjects_of,
                names_of=names_of,
                executor=runs,
            )
        except HistoryUnavailable as exc:
            logger.warning("backtest of %s: the stored events cannot be read: %s", rule_id, exc)
            return problem(
                503,
                f"cannot read the stored metric events: {exc}; retry once NATS is back",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        logger.info(
            "backtest of %s%s over %s: %d events, %d fired, %d resolved in %.1f s",
            rule_id,
            " (draft)" if draft else "",
            body.since,
            result.events,
            result.fired,
            result.resolved,
            time.perf_counter() - started,
        )
        return BacktestRead(
            since=result.since,
            draft=draft,
            events=result.events,
            skipped=result.skipped,
            fired=result.fired,
            resolved=result.resolved,
            fired_per_day=result.fired_per_day(),
            alerts=[_listed(alert) for alert in result.alerts[:MAX_LISTED_ALERTS]],
            truncated=len(result.alerts) > MAX_LISTED_ALERTS,
        )

    return router


def _listed(alert: AlertFired | AlertResolved) -> BacktestAlert:
    return BacktestAlert(
        state="firing" if isinstance(alert, AlertFired) else "resolved", alert=alert
    )


def _unknown(rule_id: str, known: Collection[str]) -> JSONResponse:
    close = difflib.get_close_matches(rule_id, list(known), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return problem(
        404,
        f"no rule has the id {clip(rule_id)!r}; {hint}send the rule's text as source to check a "
        "rule not created yet",
        close_ids=close,
    )


def _invalid(field: str, message: str) -> JSONResponse:
    return problem(
        422,
        f"body.{field}: {message}",
        errors=[{"loc": f"body.{field}", "msg": message}],
    )


def _wrong_test(error: FileError) -> JSONResponse:
    # Errors quote what was written: cut to a length an answer may carry.
    line = clip(error.lint_line(), _MAX_ERROR)
    return problem(
        422,
        f"the rule test is wrong: {line}",
        errors=[{"loc": f"body.{_TESTS}", "msg": line}],
    )


def _wrong_draft(errors: list[RuleError]) -> JSONResponse:
    count = len(errors)
    lines = [clip(error.lint_line(), _MAX_ERROR) for error in errors[:MAX_LISTED]]
    return problem(
        422,
        f"{count} error{'s' if count != 1 else ''} in the draft rule; first: {lines[0]}",
        errors=[{"loc": f"body.{_SOURCE}", "msg": line} for line in lines],
    )


def _on_goal_events(spec: GoalOverdueRuleSpec | ImpactRuleSpec, draft: bool) -> JSONResponse:
    impact = spec.kind is RuleKind.DEPENDENCY_IMPACT
    what = "a dependency_impact rule" if impact else "an overdue rule on goals"
    message = (
        f"{spec.id} is {what}, judged on goal events, not metric events: backtest takes "
        "threshold, overdue (absent_for) and fraud rules; try it with a rule test instead"
    )
    field = f"body.{_SOURCE}" if draft else "path.rule_id"
    return problem(422, message, errors=[{"loc": field, "msg": message}])


def _draft(rule_id: str, source: str) -> LoadedRule:
    """The draft in ``source``, checked as a rule file and against ``rule_id``."""
    try:
        rule = parse_rule_text(source, file=_SOURCE)
    except RuleLoadError as exc:
        raise _Refused(_wrong_draft(exc.errors)) from None
    if rule.spec.id != rule_id:
        match = _ID_LINE.search(source)
        line = None if match is None else source.count("\n", 0, match.start()) + 1
        raise _Refused(
            _wrong_draft(
                [
                    RuleError(
                        _SOURCE,
                        line,
                        "id",
                        f"the draft's id is {rule.spec.id!r}, the path's {clip(rule_id)!r}: a draft "
                        f"is checked as the rule of its id, so send it to "
                        f"/v1/rules/{rule.spec.id}/…",
                        None if line is None else 1,
                    )
                ]
            )
        )
    return rule
