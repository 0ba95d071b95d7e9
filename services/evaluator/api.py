"""The rules over HTTP: read them, check a draft, change them, see and restore their versions.

Every change answers once the evaluator that took it runs it; the other replicas follow within
milliseconds (``services/evaluator/live_rules.py``). Who made a change is the signed-in
caller: a person's id, or ``system:<client>`` (``goalwatch.auth``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field

from goalwatch.auth.policies import RULES_CHECK, RULES_READ, RULES_WRITE
from goalwatch.auth.policy import Caller
from goalwatch.contracts import RuleKind, Severity
from goalwatch.contracts.rules import RuleAction, RuleVersion
from goalwatch.file_errors import FileError
from goalwatch.problems import problem, problem_responses
from goalwatch.rules import GoalOverdueRuleSpec, ImpactRuleSpec
from goalwatch.rules.spec import RULE_ID_PATTERN
from services.evaluator.live_rules import Entry, LiveRules
from services.evaluator.rule_changes import Conflict, NoSuchRule, Refused, RuleChanges, diff

MAX_SOURCE_CHARS = 64 * 1024
"""A rule's text is a page or two; anything longer is not a rule."""


def _text(value: str) -> str:
    """``value`` if it can be stored and answered as UTF-8 (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"holds a character that is not text (at position {exc.start}); send UTF-8 text"
        ) from exc
    return value


Text = Annotated[str, AfterValidator(_text)]
RuleId = Annotated[
    str,
    Path(
        pattern=RULE_ID_PATTERN,
        max_length=200,
        description="The rule's id: lower-case letters, digits and hyphens.",
    ),
]
T = TypeVar("T")


class RuleRead(BaseModel):
    """A loaded rule, as served by ``GET /v1/rules``."""

    id: str = Field(description="Rule id.")
    name: str = Field(description="Human-readable name.")
    description: str | None = Field(description="What the rule is for.")
    kind: RuleKind = Field(description="Rule kind.")
    metric: str | None = Field(description="Metric the rule watches; null for dependency_impact.")
    where: dict[str, str | list[str] | dict[str, list[str]]] = Field(
        description="Label filters (threshold and absence rules): a value, a list of values, "
        "or {not_in: [...]}."
    )
    condition: dict[str, Any] = Field(
        description="threshold: op, value, consecutive and, when set, resolve_at and for; "
        "dependency_impact: when (status, "
        "type, org_unit) and min_weight."
    )
    severity: Severity = Field(description="Severity of the alerts it fires.")
    by: list[str] = Field(
        default_factory=list,
        description="Threshold and fraud rules: labels whose values keep alerts apart.",
    )
    escalate: list[dict[str, str]] = Field(
        default_factory=list,
        description="Threshold rules: the severities a firing alert rises to, [{after, severity}].",
    )
    notify: list[str] = Field(description="Who is notified.")
    message: str = Field(description="Message template.")
    resolved_message: str | None = Field(description="Resolved message template, if any.")
    file: str = Field(
        description="The rule file it was imported from, or <id>.yaml for a rule made over "
        "the API (what `goalwatch rules export` names it)."
    )
    enabled: bool = Field(description="Whether the rule is judged.")
    version: int | None = Field(
        description="Its version in the rules stream; null until the evaluator has read it."
    )
    changed_at: datetime | None = Field(description="When that version was stored.")
    changed_by: str | None = Field(description="Who stored it.")
    comment: str | None = Field(description="Why.")
    source: str | None = Field(description="The rule's text (YAML), as its author wrote it.")

    @classmethod
    def of(cls, entry: Entry) -> RuleRead:
        """The API view of a rule held."""
        rule, stored = entry.rule, entry.version
        spec = rule.spec
        where: dict[str, str | list[str] | dict[str, list[str]]] = {}
        condition: dict[str, object]
        escalate: list[dict[str, str]] = []
        if isinstance(spec, ImpactRuleSpec):
            metric = None
            condition = {"when": spec.when.model_dump(mode="json"), "min_weight": spec.min_weight}
        elif isinstance(spec, GoalOverdueRuleSpec):
            metric = None
            condition = {
                "goals": spec.goals.model_dump(mode="json"),
                **spec.condition.model_dump(mode="json", exclude_none=True),
            }
        else:
            metric = spec.metric
            condition = spec.condition.model_dump(mode="json", by_alias=True, exclude_none=True)
            where = spec.model_dump(mode="json", include={"where"})["where"]
            escalate = [step.model_dump(mode="json") for step in spec.escalate]
        return cls(
            id=spec.id,
            name=spec.name,
            description=spec.description,
            kind=spec.kind,
            metric=metric,
            where=where,
            condition=condition,
            severity=spec.severity,
            by=list(getattr(spec, "by", [])),
            escalate=escalate,
            notify=list(spec.notify),
            message=spec.message,
            resolved_message=spec.resolved_message,
            file=rule.path.name,
            enabled=entry.enabled,
            version=None if stored is None else stored.version,
            changed_at=None if stored is None else stored.at,
            changed_by=None if stored is None else stored.author,
            comment=None if stored is None else stored.comment,
            source=_source(entry),
        )


def _source(entry: Entry) -> str | None:
    if entry.version is not None:
        return entry.version.source
    try:
        return entry.rule.source()
    except OSError:
        return None


class RuleDraft(BaseModel):
    """A rule's text sent to be checked or stored."""

    source: Text = Field(
        max_length=MAX_SOURCE_CHARS, description="The rule, as a rule file holds it (YAML)."
    )
    comment: Text = Field("", max_length=1000, description="Why the change is made.")
    file: Text | None = Field(
        None,
        max_length=200,
        description="The file name problems are reported against (default: <id>.yaml, or "
        "draft.yaml for a new rule), so they read as `goalwatch rules lint` prints them.",
    )


class RuleUpdate(RuleDraft):
    """A rule's new text."""

    version: int | None = Field(
        None,
        ge=1,
        description="The version the change was made to; if the rule has changed since, "
        "the change is refused (409) instead of overwriting the other one.",
    )


class RuleNote(BaseModel):
    """Why a rule is switched on or off."""

    comment: Text = Field("", max_length=1000, description="Why the change is made.")


class RuleRollback(BaseModel):
    """The version a rule goes back to."""

    version: int = Field(ge=1, description="The version whose text and on/off state return.")
    comment: Text = Field("", max_length=1000, description="Why the change is made.")


class LintProblem(BaseModel):
    """One problem in a rule's text, as `goalwatch rules lint` reports it."""

    file: str = Field(description="The file name the text was checked as.")
    line: int | None = Field(description="Line, from 1.")
    column: int | None = Field(description="Column, from 1.")
    field: str | None = Field(description="The field, dotted (condition.value).")
    message: str = Field(description="What is wrong, and what would be valid.")
    text: str = Field(description="The whole problem on one line: file:line:col: field: message.")

    @classmethod
    def of(cls, error: FileError) -> LintProblem:
        """The API view of a problem found."""
        return cls(
            file=error.file,
            line=error.line,
            column=error.column,
            field=error.field,
            message=error.message,
            text=error.lint_line(),
        )


class Validation(BaseModel):
    """What checking a draft found."""

    valid: bool = Field(description="Whether the draft could be stored as it is.")
    problems: list[LintProblem] = Field(description="Every problem found, in line order.")


class RuleVersionRead(BaseModel):
    """One version of a rule, with what it changed."""

    rule_id: str
    version: int
    action: RuleAction
    enabled: bool
    author: str
    at: datetime
    comment: str
    file: str | None
    source: str | None = Field(description="The rule's text at this version; null: deleted.")
    diff: str = Field(description="What this version changed in the text, as a unified diff.")

    @classmethod
    def of(cls, version: RuleVersion, before: RuleVersion | None) -> RuleVersionRead:
        """The API view of ``version``, which followed ``before``."""
        return cls(
            rule_id=version.rule_id,
            version=version.version,
            action=version.action,
            enabled=version.enabled,
            author=version.author,
            at=version.at,
            comment=version.comment,
            file=version.file,
            source=version.source,
            diff=diff(before, version),
        )


async def _author(caller: Annotated[Caller, Depends(RULES_WRITE)]) -> str:
    """Who makes a change, as the rule's history records it: a person's id, or the system."""
    return caller.person_id or caller.who


Author = Annotated[str, Depends(_author)]
"""The signed-in author of a change (the route's policy is :data:`RULES_WRITE`)."""

_CHANGE_ERRORS = problem_responses(
    {
        404: "No rule with that id.",
        409: "The rule changed since the version the change was made to, or (create) exists.",
        422: "The draft has problems (listed as `goalwatch rules lint` prints them).",
    }
)


def rules_router(live: LiveRules, changes: RuleChanges) -> APIRouter:
    """The rules API over the rules ``live`` holds, changed through ``changes``."""
    router = APIRouter(prefix="/v1", tags=["rules"])

    def held(rule_id: str) -> Entry:
        entry = live.entry(rule_id)
        if entry is None:
            known = ", ".join(e.rule.spec.id for e in live.entries()) or "none"
            raise HTTPException(
                status_code=404,
                detail=f"no rule with id '{rule_id}' (rules: {known}); "
                "create it with POST /v1/rules",
            )
        return entry

    async def answer(rule_id: str) -> RuleRead:
        return RuleRead.of(held(rule_id))

    async def switch(rule_id: str, on: bool, note: RuleNote | None, author: str) -> RuleRead:
        comment = "" if note is None else note.comment
        await _changed(changes.set_enabled(rule_id, on, author=author, comment=comment))
        return await answer(rule_id)

    @router.get(
        "/rules",
        summary="Every rule, enabled or not, ordered by file name",
        dependencies=[Depends(RULES_READ)],
    )
    async def list_rules() -> list[RuleRead]:
        return [RuleRead.of(entry) for entry in live.entries()]

    @router.get(
        "/rules/{rule_id}",
        summary="One rule",
        responses=problem_responses({404: "No rule with that id."}),
        dependencies=[Depends(RULES_READ)],
    )
    async def get_rule(rule_id: RuleId) -> RuleRead:
        return RuleRead.of(held(rule_id))

    @router.post(
        "/rules/validate",
        summary="Check a draft as `goalwatch rules lint` does, without storing it",
        dependencies=[Depends(RULES_CHECK)],
    )
    async def validate(draft: RuleDraft) -> Validation:
        try:
            changes.check(draft.source, file=draft.file or "draft.yaml")
        except Refused as exc:
            return Validation(valid=False, problems=[LintProblem.of(e) for e in exc.problems])
        return Validation(valid=True, problems=[])

    @router.post(
        "/rules",
        status_code=201,
        summary="Create a rule from its text; it runs on every evaluator within a second",
        responses=_CHANGE_ERRORS,
    )
    async def create(draft: RuleDraft, author: Author) -> RuleRead:
        version = await _changed(
            changes.create(draft.source, author=author, comment=draft.comment, file=draft.file)
        )
        return await answer(version.rule_id)

    @router.put(
        "/rules/{rule_id}",
        summary="Change a rule's text (a new version; text equal to the rule's stores nothing)",
        responses=_CHANGE_ERRORS,
    )
    async def update(rule_id: RuleId, draft: RuleUpdate, author: Author) -> RuleRead:
        await _changed(
            changes.update(
                rule_id,
                draft.source,
                author=author,
                comment=draft.comment,
                based_on=draft.version,
                file=draft.file,
            )
        )
        return await answer(rule_id)

    @router.post(
        "/rules/{rule_id}/enable",
        summary="Switch a rule on",
        responses=_CHANGE_ERRORS,
    )
    async def enable(
        rule_id: RuleId, author: Author, note: Annotated[RuleNote | None, Body()] = None
    ) -> RuleRead:
        return await switch(rule_id, True, note, author)

    @router.post(
        "/rules/{rule_id}/disable",
        summary="Switch a rule off: it is kept, with its history, and judges nothing",
        responses=_CHANGE_ERRORS,
    )
    async def disable(
        rule_id: RuleId, author: Author, note: Annotated[RuleNote | None, Body()] = None
    ) -> RuleRead:
        return await switch(rule_id, False, note, author)

    @router.delete(
        "/rules/{rule_id}",
        summary="Delete a rule (its history stays; a rollback brings it back)",
        responses=_CHANGE_ERRORS,
    )
    async def delete(
        rule_id: RuleId,
        author: Author,
        comment: Annotated[Text, Query(max_length=1000, description="Why.")] = "",
    ) -> RuleVersionRead:
        version = await _changed(changes.delete(rule_id, author=author, comment=comment))
        return RuleVersionRead.of(version, None)

    @router.get(
        "/rules/{rule_id}/versions",
        summary="Every version of a rule, newest first, each with who, when, why and its diff",
        responses=problem_responses({404: "No rule with that id ever existed."}),
        dependencies=[Depends(RULES_READ)],
    )
    async def versions(rule_id: RuleId) -> list[RuleVersionRead]:
        history = await _changed(changes.history(rule_id))
        reads = [
            RuleVersionRead.of(version, history[index - 1] if index else None)
            for index, version in enumerate(history)
        ]
        return reads[::-1]

    @router.post(
        "/rules/{rule_id}/rollback",
        summary="Make a rule what it was at an earlier version, as a new version",
        responses=_CHANGE_ERRORS,
    )
    async def rollback(rule_id: RuleId, body: RuleRollback, author: Author) -> RuleRead:
        await _changed(changes.rollback(rule_id, body.version, author=author, comment=body.comment))
        return await answer(rule_id)

    return router


async def _changed(change: Awaitable[T]) -> T:
    """``change``'s result, its refusals turned into HTTP answers."""
    try:
        return await change
    except NoSuchRule as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    except Refused as exc:
        raise RuleRefused(exc.problems) from exc


class RuleRefused(Exception):
    """A change refused for the problems of its draft: answered 422 with every problem."""

    def __init__(self, problems: list[FileError]) -> None:
        self.problems = problems
        super().__init__(problems)

    @staticmethod
    async def answer(_: Request, exc: Exception) -> JSONResponse:
        """The app's handler of this exception."""
        assert isinstance(exc, RuleRefused)
        return exc.response()

    def response(self) -> JSONResponse:
        """The problem+json answer: the count, the first problem, and all of them."""
        count = len(self.problems)
        first = self.problems[0].lint_line() if self.problems else ""
        return problem(
            422,
            f"the rule has {count} problem{'s' if count != 1 else ''}; first: {first}",
            problems=[LintProblem.of(error).model_dump() for error in self.problems],
        )
