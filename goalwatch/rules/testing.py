"""Rule tests, in the spirit of ``promtool test rules``: given these events, expect these alerts.

A test file (``rules/tests/*.yaml``) lists events in arrival order, optionally the time the
clock runs on to after the last one (``until``, so that timers can fall due with no event),
and the alerts expected, in the order they would be sent::

    name: no report for two days fires at last report + 2d
    events:
      - {id: a, metric: report_rework_rate, value: 0.05, time: "2026-11-01T18:00:00+08:00",
         subject: zhou-min, source: his, labels: {feed: daily}}
    until: "2026-11-05T00:00:00+08:00"
    expect:
      - {state: firing, rule: report-rework-rate-missing, subject: zhou-min,
         at: "2026-11-03T18:00:00+08:00"}

``at`` is when the alert is sent (fired or resolved) on the events' clock.

Rules driven by goal events (the goal forms of ``overdue``, ``dependency_impact``) need a goal
graph: ``goals:`` lists the goals as they stand before the events (stored together at
``goals_at``, by default the first event's time), ``people:`` who owns and manages them, and
``events:`` may hold goal changes (``{goal: kr-1, status: invalid, time: ...}``: the fields
given replace the stored ones) and check-ins (``{check_in: kr-1, value: 40, time: ...}``)
among the metric events. They become the goal events the goals service would publish for
them (:func:`goalwatch.goal_graph.events_of`), and a failing goal's impact is walked over the
graph as it stands then (:func:`goalwatch.goal_graph.goal_impact`). An expected impact alert
may list the affected goal ids (``goals: [obj-1, kr-2]``, in any order) to check the analysis.

Rules scoped by org unit (``org_unit: radiology``) need the org chart: ``org_units:`` lists the
units as written to the goals service (``{id: radiology, name: Radiology, kind: department,
parent_id: hospital}``) and each person of ``people:`` belongs to one by ``org_unit_id``. A
subject not listed under ``people:`` is in no unit, as one the directory does not know.

Every rule runs unless the file names the ones it tests (``rules: [goal-failing-impact]``): a
goal graph wakes every goal rule, and a test about one rule need not list the others' alerts.

A test runs from its file (:func:`run_test`, ``goalwatch rules test``) or from its text
(:func:`run_test_text`; :func:`read_test_text` then :func:`run_parsed_test` to choose the
rules after reading which ones it names, as the evaluator's ``POST /v1/rules/{id}/test``
does). A test file that is wrong gives one failure, ``file:line: field: message``, and its
:class:`~goalwatch.file_errors.FileError` (with the column) in :attr:`Outcome.error`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, ScalarNode

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded, PersonUpsert, Severity
from goalwatch.contracts.base import Contract
from goalwatch.contracts.goal_events import GoalEvent
from goalwatch.contracts.goals import OrgUnitUpsert
from goalwatch.file_errors import FileError, duplicate_keys, locate_at, unprintable
from goalwatch.rules.given_goals import CheckIn, GivenGoal, GoalChange, MemoryGoals, Refused
from goalwatch.rules.goal_overdue_spec import GoalOverdueRuleSpec
from goalwatch.rules.impact_spec import ImpactRuleSpec
from goalwatch.rules.runner import evaluate
from goalwatch.rules.scope import ancestry
from goalwatch.rules.spec import RuleSpec

Rule = RuleSpec | GoalOverdueRuleSpec | ImpactRuleSpec


class ExpectedAlert(Contract):
    """One alert a rule test expects."""

    state: Literal["firing", "escalated", "resolved"] = Field(
        description="firing, escalated (a firing alert rose in severity) or resolved."
    )
    rule: str = Field(description="The rule id.")
    subject: str = Field(
        description="The subject id: the person a metric is about, a goal's owner, or for a "
        "dependency_impact alert the owner of the affected goals."
    )
    at: AwareDatetime = Field(description="When it is sent, on the events' clock.")
    goals: list[str] | None = Field(
        default=None,
        description="dependency_impact only, optional: the ids of this owner's affected goals, "
        "in any order.",
    )
    severity: Severity | None = Field(
        default=None,
        description="Optional: the alert's severity then (for escalated, the one it rose to).",
    )


_FORMS: Final = {"metric": "metric", "goal": "goal", "check_in": "check_in"}
_WHICH_EVENT: Final = (
    "write a metric event (metric: ..., value: ..., time: ..., subject: ..., id: ..., "
    "source: ...), a goal change (goal: <goal id>, time: ..., and the fields that change) "
    "or a check-in (check_in: <goal id>, time: ..., value: ...)"
)


def _event_form(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {MetricRecorded: "metric", GoalChange: "goal", CheckIn: "check_in"}.get(type(value))
    if isinstance(value, dict):
        forms = [form for key, form in _FORMS.items() if key in value]
        return forms[0] if len(forms) == 1 else None
    return None


TestEvent = Annotated[
    Annotated[MetricRecorded, Tag("metric")]
    | Annotated[GoalChange, Tag("goal")]
    | Annotated[CheckIn, Tag("check_in")],
    Discriminator(
        _event_form,
        custom_error_type="event_form",
        custom_error_message=_WHICH_EVENT,
    ),
]


class RuleTest(Contract):
    """A rule test file."""

    name: str = Field(description="What the test shows.")
    rules: list[str] | None = Field(
        default=None,
        min_length=1,
        description="The ids of the rules the test runs; all the rules when absent.",
    )
    people: list[PersonUpsert] = Field(
        default_factory=list,
        description="People: names and managers of the subjects and goals' owners, and the "
        "org unit each belongs to (org_unit_id).",
    )
    org_units: list[OrgUnitUpsert] = Field(
        default_factory=list,
        description="The org chart, for rules scoped by org_unit: each unit with its parent.",
    )
    goals: list[GivenGoal] = Field(
        default_factory=list, description="The goal graph before the events."
    )
    goals_at: AwareDatetime | None = Field(
        default=None,
        description="When the goals were stored (their creation); default: the first event's time.",
    )
    events: list[TestEvent] = Field(description="Events in arrival order.")
    until: AwareDatetime | None = Field(
        default=None, description="The clock runs on to this time after the last event."
    )
    expect: list[ExpectedAlert] = Field(description="The alerts expected, in order.")

    @field_validator("goals")
    @classmethod
    def _once(cls, goals: list[GivenGoal]) -> list[GivenGoal]:
        ids = [goal.id for goal in goals]
        twice = sorted({goal_id for goal_id in ids if ids.count(goal_id) > 1})
        if twice:
            raise ValueError(f"lists {', '.join(twice)} twice; write each goal once")
        return goals

    @field_validator("org_units")
    @classmethod
    def _units_once(cls, units: list[OrgUnitUpsert]) -> list[OrgUnitUpsert]:
        ids = [unit.id for unit in units]
        twice = sorted({unit_id for unit_id in ids if ids.count(unit_id) > 1})
        if twice:
            raise ValueError(f"lists {', '.join(twice)} twice; write each org unit once")
        return units

    def org_units_of_people(self) -> dict[str, list[str]]:
        """Each person's org unit and its ancestors, nearest first, by the units given."""
        parents = {unit.id: unit.parent_id for unit in self.org_units}
        return {
            person.id: ancestry(person.org_unit_id, parents)
            for person in self.people
            if person.org_unit_id is not None
        }

    def time_zones_of_people(self) -> dict[str, str]:
        """Each person's time zone, where given."""
        return {person.id: person.time_zone for person in self.people if person.time_zone}


@dataclass(frozen=True)
class Outcome:
    """The result of one test file: failures empty when it passed."""

    path: Path
    name: str
    failures: list[str]
    error: FileError | None = None
    """Set when the test file itself is wrong (``failures`` then holds its one line), as
    opposed to a test whose alerts differ from those expected."""


class TestFileError(Exception):
    """Something in a test file is wrong: where (``loc`` in the file, its ``line`` and
    ``column`` once known) and what to do."""

    def __init__(
        self,
        loc: Sequence[int | str],
        message: str,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.loc = list(loc)
        self.message = message
        self.line = line
        self.column = column

    def located(self, node: MappingNode) -> TestFileError:
        """The same error with the line and column of its place in ``node``."""
        line, column, _ = locate_at(node, self.loc)
        return TestFileError(self.loc, self.message, line, column)

    def file_error(self, file: str | Path) -> FileError:
        """The error as one of ``file``'s problems: ``lint_line()`` reads
        ``file:line:col: field: message``."""
        return FileError(str(file), self.line, _dotted(self.loc) or None, self.message, self.column)

    def text(self, path: str | Path) -> str:
        """``file:line: field: message``."""
        return str(self.file_error(path))


def _dotted(loc: Sequence[int | str]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _time_of(event: MetricRecorded | GoalChange | CheckIn) -> datetime:
    return event.time


def _inputs(test: RuleTest, graph: MemoryGoals) -> Iterator[MetricRecorded | GoalEvent]:
    """The events the evaluator would receive for ``test``, applying each goal change to
    ``graph`` just before its events are handed over."""
    start = test.goals_at or (_time_of(test.events[0]) if test.events else test.until)
    if test.goals:
        if start is None:
            raise TestFileError(["goals_at"], "the goals need a time: add goals_at: <time>")
        try:
            stored = graph.store(test.goals, at=start)
        except Refused as exc:
            raise TestFileError(["goals", *exc.loc], exc.message) from None
        yield from stored
    last = start
    for index, event in enumerate(test.events):
        if isinstance(event, MetricRecorded):
            yield event
            continue
        if last is not None and event.time < last:
            raise TestFileError(
                ["events", index, "time"],
                f"{event.time.isoformat()} is before the goal change listed before it "
                f"({last.isoformat()}); the goals service stamps changes as it stores them, so "
                "list goal changes and check-ins in time order (a check-in's at: may be earlier)",
            )
        last = event.time
        try:
            changed = (
                graph.change(event) if isinstance(event, GoalChange) else graph.check_in(event)
            )
        except Refused as exc:
            raise TestFileError(["events", index, *exc.loc], exc.message) from None
        yield from changed


def _seen(alert: AlertFired | AlertResolved, goals: bool) -> ExpectedAlert:
    affected = (
        sorted(goal.goal_id for goal in alert.impact.affected)
        if goals and alert.impact is not None
        else None
    )
    if isinstance(alert, AlertFired):
        return ExpectedAlert(
            state="firing" if alert.escalated_from is None else "escalated",
            rule=alert.rule_id,
            subject=alert.subject,
            at=alert.fired_at,
            goals=affected,
            severity=alert.severity,
        )
    return ExpectedAlert(
        state="resolved",
        rule=alert.rule_id,
        subject=alert.subject,
        at=alert.resolved_at,
        goals=affected,
        severity=alert.severity,
    )


def _line(alert: ExpectedAlert, *, severity: bool = True) -> str:
    text = f"{alert.state} {alert.rule} {alert.subject} at {alert.at.isoformat()}"
    if alert.goals is not None:
        text += f" goals {', '.join(alert.goals)}"
    if severity and alert.severity is not None:
        text += f" severity {alert.severity.value}"
    return text


def _matches(expected: ExpectedAlert, got: ExpectedAlert) -> bool:
    ignored: dict[str, Any] = {}
    if expected.goals is None:
        ignored["goals"] = None
    if expected.severity is None:
        ignored["severity"] = None
    if expected.goals is not None:
        expected = expected.model_copy(update={"goals": sorted(expected.goals)})
    return expected == got.model_copy(update=ignored)


@dataclass(frozen=True)
class ParsedTest:
    """A rule test read from its text, with the YAML node it came from (for line numbers)."""

    file: str
    node: MappingNode
    test: RuleTest


def run_test(path: Path, rules: Sequence[Rule]) -> Outcome:
    """Run the test in ``path`` against ``rules``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        error = TestFileError([], f"cannot read the file: {exc}")
        return Outcome(path, path.name, [error.text(path)], error.file_error(path))
    return run_test_text(text, rules, file=str(path))


def run_test_text(text: str, rules: Sequence[Rule], *, file: str = "<test>") -> Outcome:
    """Run the test written in ``text`` against ``rules``; ``file`` names it in errors."""
    try:
        parsed = read_test_text(text, file=file)
    except TestFileError as exc:
        return Outcome(Path(file), Path(file).name, [exc.text(file)], exc.file_error(file))
    return run_parsed_test(parsed, rules)


def run_parsed_test(parsed: ParsedTest, rules: Sequence[Rule]) -> Outcome:
    """Run a test read by :func:`read_test_text` against ``rules``: the rules it names
    (``rules:``) among them, or all of them when it names none."""
    node, test, file = parsed.node, parsed.test, parsed.file
    path = Path(file)

    def wrong(exc: TestFileError) -> Outcome:
        located = exc.located(node)
        return Outcome(path, test.name, [located.text(file)], located.file_error(file))

    if test.rules is not None:
        known = {rule.id: rule for rule in rules}
        for index, rule_id in enumerate(test.rules):
            if rule_id not in known:
                close = difflib.get_close_matches(rule_id, list(known), n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                return wrong(
                    TestFileError(
                        ["rules", index],
                        f"no rule has the id {rule_id!r}; {hint}write the id: of a rule file",
                    )
                )
        rules = [known[rule_id] for rule_id in dict.fromkeys(test.rules)]
    graph = MemoryGoals(test.people)
    try:
        alerts = evaluate(
            rules,
            _inputs(test, graph),
            names=graph.names,
            until=test.until,
            impacts=graph.impact,
            org_units=test.org_units_of_people(),
            time_zones=test.time_zones_of_people(),
        )
    except TestFileError as exc:
        return wrong(exc)
    wants_goals = any(alert.goals is not None for alert in test.expect)
    got = [_seen(alert, wants_goals) for alert in alerts]
    if len(got) == len(test.expect) and all(map(_matches, test.expect, got)):
        return Outcome(path, test.name, [])
    failures = ["expected:", *(f"  {_line(a)}" for a in test.expect)]
    # Severities are shown for what came only when the test asks for some.
    shown = any(alert.severity is not None for alert in test.expect)
    failures += ["got:", *(f"  {_line(a, severity=shown)}" for a in got)]
    return Outcome(path, test.name, failures)


def read_test_text(text: str, *, file: str) -> ParsedTest:
    """The test written in ``text``, with its YAML node (for line numbers); raises
    :class:`TestFileError` for the first thing wrong. ``file`` names it in errors."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        found = unprintable(file, text, exc)
        raise TestFileError([], found.message, found.line, found.column) from None
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else int(mark.line) + 1
        column = None if mark is None else int(mark.column) + 1
        raise TestFileError(
            [], f"not valid YAML: {exc.problem or exc.context}", line, column
        ) from None
    finally:
        loader.dispose()
    if not isinstance(node, MappingNode) or not isinstance(data, dict):
        raise TestFileError([], "expected a rule test: a mapping with name:, events: and expect:")
    for duplicate in duplicate_keys(file, node):
        raise TestFileError(
            [duplicate.field or ""], duplicate.message, duplicate.line, duplicate.column
        )
    try:
        return ParsedTest(file, node, RuleTest.model_validate(data))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = _file_loc(error["loc"])
        line, column, at = locate_at(node, loc)
        written = at.value if isinstance(at, ScalarNode) else None
        raise TestFileError(loc, _describe(error, loc, written), line, column) from None


def _file_loc(loc: Sequence[int | str]) -> list[int | str]:
    """Pydantic's location without the tag it adds for the kind of event."""
    parts = list(loc)
    if len(parts) >= 3 and parts[0] == "events" and parts[2] in ("metric", "goal", "check_in"):
        del parts[2]
    return [p for p in parts if p != "[key]"]


_EVENT_MODELS: Final[dict[str, type[BaseModel]]] = {
    "metric": MetricRecorded,
    "goal": GoalChange,
    "check_in": CheckIn,
}
_SECTION_MODELS: Final[dict[str, type[BaseModel]]] = {
    "people": PersonUpsert,
    "org_units": OrgUnitUpsert,
    "goals": GivenGoal,
    "expect": ExpectedAlert,
}
_EXAMPLES: Final[dict[str, str]] = {
    "name": "name: a key result marked invalid alerts the owners above it",
    "events": "events: [{goal: kr-1, status: invalid, time: '2026-03-02T09:00:00+08:00'}]",
    "expect": "expect: [{state: firing, rule: goal-failing-impact, subject: wang-fang, "
    "at: '2026-03-02T09:00:00+08:00'}]",
    "time": "time: '2026-03-02T09:00:00+08:00'",
    "at": "at: '2026-03-02T09:00:00+08:00'",
}


def _describe(error: ErrorDetails, loc: Sequence[int | str], written: str | None) -> str:
    kind = error["type"]
    last = str(loc[-1]) if loc else ""
    if kind == "missing":
        example = _EXAMPLES.get(last)
        return (
            f"required field is missing; add it, e.g. {example}"
            if example
            else (f"required field {last} is missing; add it")
        )
    if kind == "extra_forbidden":
        model = _model_at(error)
        if model is None:
            return f"unknown field '{last}'"
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(last, allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown field '{last}'; {hint}allowed: {', '.join(allowed)}"
    if kind == "enum":
        expected = (error.get("ctx") or {}).get("expected", "")
        return f"{written or error.get('input')!r} is not one of {expected}"
    if kind.startswith("datetime") or kind == "timezone_aware":
        return (
            f"{written or error.get('input')!r} is not a time with its UTC offset; write e.g. "
            "'2026-03-02T09:00:00+08:00' (quoted)"
        )
    return str(error["msg"])


def _model_at(error: ErrorDetails) -> type[BaseModel] | None:
    """The model of the mapping holding the unknown field of ``error`` (pydantic's location,
    with the kind of event in it)."""
    loc = error["loc"][:-1]
    if not loc:
        return RuleTest
    if loc[0] == "events" and len(loc) == 3:
        return _EVENT_MODELS.get(str(loc[2]))
    if len(loc) == 2 and isinstance(loc[1], int):
        return _SECTION_MODELS.get(str(loc[0]))
    return None
