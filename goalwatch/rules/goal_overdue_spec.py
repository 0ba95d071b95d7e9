"""The rule language of the goal forms of ``kind: overdue``: a goal that is late.

```yaml
id: key-result-past-due
name: A key result is past its due date
kind: overdue
goals:                              # optional: which goals (all when absent)
  type: key_result                  # one or a list: objective, key_result, kpi
  org_unit: [radiology-reading]     # one or a list of org unit ids
  period: "2026"                    # one or a list of periods (2026, 2026-H1, 2026-Q3, 2026-11)
condition: {past_due: true}         # or {no_check_in: {grace: 2d}} or {behind_plan: {points: 10}}
severity: warning
notify: [owner, manager]
message: "{goal_title} was due {due:%Y-%m-%d} and is {status}, {progress:.0f}% done"
```

Exactly one form per rule: ``past_due`` (due date passed, the goal neither done nor
cancelled), ``no_check_in`` (no check-in for longer than the goal's cadence plus ``grace``),
``behind_plan`` (at a check-in or a cadence boundary, progress more than ``points`` below the
straight line from the goal's start to its due date). A rule is of this shape when it has
``goals:`` or its condition names one of the forms; otherwise an overdue rule watches a
metric (:mod:`goalwatch.rules.spec`, ``absent_for``). Every check raises an error that says
what to write; the loader adds the file and line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from goalwatch.contracts import RuleKind, Severity
from goalwatch.contracts.base import Contract
from goalwatch.contracts.goals import Period
from goalwatch.contracts.overdue import OverdueForm
from goalwatch.durations import duration_text
from goalwatch.rules.fields import Duration, rule_error
from goalwatch.rules.impact_spec import TypeName, _as_list
from goalwatch.rules.spec import (
    Recipient,
    check_owner_recipients,
    check_rule_id,
    check_severity,
)
from goalwatch.rules.template import TemplateError, check_template_fields

FORMS: Final[tuple[str, ...]] = tuple(form.value for form in OverdueForm)
MAX_GRACE: Final = timedelta(days=366)

_MOMENT = datetime(2026, 7, 15, 9, 30, tzinfo=UTC)
# Field name -> a sample of the type it has when the evaluator renders the message.
SAMPLES: Final[dict[str, Any]] = {
    "owner": "chen-jie",
    "owner_name": "Chen Jie",
    "goal_id": "kr-rework-weekly-review",
    "goal_title": "Review every reworked report weekly",
    "goal_type": "key_result",
    "org_unit": "radiology-reading",
    "period": "2026",
    "status": "on_track",
    "due": _MOMENT,
    "progress": 20.0,
    "expected": 45.0,
    "behind_by": 25.0,
    "points": 10.0,
    "last_check_in": _MOMENT,
    "deadline": _MOMENT,
    "cadence": "weekly",
    "grace": "2d",
    "rule_id": "key-result-past-due",
    "rule_name": "A key result is past its due date",
    "severity": "warning",
}


class NoCheckIn(Contract):
    """``no_check_in``: the owner has not checked in for longer than the cadence plus grace."""

    grace: Duration = Field(
        timedelta(0),
        description="How long after the check-in the cadence asked for the alert waits, "
        "e.g. 2d (default 0s: at once).",
    )

    @field_validator("grace")
    @classmethod
    def _bounds(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= MAX_GRACE:
            raise rule_error("duration", f"{duration_text(value)} is out of range: 0s to 366d")
        return value

    @field_serializer("grace")
    def _as_written(self, value: timedelta) -> str:
        return duration_text(value)


class BehindPlan(Contract):
    """``behind_plan``: progress more than ``points`` below the straight line to the due date."""

    points: float = Field(
        gt=0,
        le=100,
        description="How many percentage points behind the expected line the goal may fall "
        "before the alert fires, e.g. 10.",
    )


class GoalCondition(Contract):
    """Which goal form the rule is: exactly one of the three fields."""

    past_due: Literal[True] | None = Field(
        default=None, description="true: fires when the due date passes and the goal is open."
    )
    no_check_in: NoCheckIn | None = Field(
        default=None, description="{grace: 2d}: fires when a check-in is overdue by the grace."
    )
    behind_plan: BehindPlan | None = Field(
        default=None, description="{points: 10}: fires when progress is behind the line."
    )

    @model_validator(mode="after")
    def _one_form(self) -> GoalCondition:
        given = [form for form in FORMS if getattr(self, form) is not None]
        if len(given) != 1:
            raise rule_error(
                "condition",
                ("names " + " and ".join(given) if given else "names no form")
                + ": write exactly one of {past_due: true}, {no_check_in: {grace: 2d}} or "
                "{behind_plan: {points: 10}}",
            )
        return self

    @property
    def form(self) -> OverdueForm:
        """The form written."""
        return next(OverdueForm(form) for form in FORMS if getattr(self, form) is not None)


class GoalFilter(Contract):
    """Which goals the rule watches; every filter given must match (all goals when empty)."""

    type: Annotated[list[TypeName], BeforeValidator(_as_list)] = Field(
        default_factory=list, description="Goal types: objective, key_result, kpi."
    )
    org_unit: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default_factory=list, description="Org unit ids."
    )
    period: Annotated[list[Period], BeforeValidator(_as_list)] = Field(
        default_factory=list,
        description="Periods: YYYY, YYYY-H1/H2, YYYY-Q1..Q4 or YYYY-MM (quote them in YAML).",
    )

    @field_validator("period", mode="before")
    @classmethod
    def _periods_are_text(cls, value: Any) -> Any:
        # period: 2026 is a number in YAML; the goal's period is the text "2026".
        if isinstance(value, int):
            return [str(value)]
        if isinstance(value, list):
            return [str(item) if isinstance(item, int) else item for item in value]
        return value


class GoalOverdueRuleSpec(Contract):
    """A goal-based ``kind: overdue`` rule, as written in ``rules/<name>.yaml``."""

    id: str = Field(description="Unique id: lower-case letters, digits and hyphens.")
    name: str = Field(min_length=1, max_length=200, description="Human-readable name.")
    description: str | None = Field(default=None, description="What the rule is for.")
    kind: Literal[RuleKind.OVERDUE] = Field(description="overdue.")
    goals: GoalFilter = Field(
        default_factory=GoalFilter, description="Which goals: by type, org unit and period."
    )
    condition: GoalCondition = Field(
        description="{past_due: true}, {no_check_in: {grace: 2d}} or {behind_plan: {points: 10}}."
    )
    severity: Annotated[Severity, BeforeValidator(check_severity)] = Field(
        description="info, warning (yellow) or critical (red)."
    )
    notify: list[Recipient] = Field(
        min_length=1,
        description="Who to notify: owner (of the goal), manager (the owner's manager), named "
        "groups (group: NAME) or explicit person ids.",
    )
    message: str = Field(
        min_length=1, description="Alert text, a str.format template with the goal fields."
    )
    resolved_message: str | None = Field(
        default=None,
        min_length=1,
        description="Text when the alert resolves (same fields); a standard sentence when absent.",
    )

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        return check_rule_id(value)

    @field_validator("notify")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return check_owner_recipients(
            value,
            instead_of_subject=(
                "a goal's overdue alert goes to the goal's owner: write owner, not subject"
            ),
        )

    @field_validator("message", "resolved_message")
    @classmethod
    def _template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        try:
            check_template_fields(value, SAMPLES)
        except TemplateError as exc:
            raise rule_error(str(info.field_name), str(exc)) from None
        return value

    def watches(self, *, type: str, org_unit: str | None, period: str | None) -> bool:
        """Whether the rule watches a goal of ``type`` in ``org_unit`` and ``period``."""
        goals = self.goals
        return (
            (not goals.type or type in goals.type)
            and (not goals.org_unit or org_unit in goals.org_unit)
            and (not goals.period or period in goals.period)
        )


def is_goal_rule(data: Any) -> bool:
    """Whether a rule file's mapping is a goal-based overdue rule (by ``goals:`` or its
    condition's form), rather than the metric absence form."""
    if not isinstance(data, dict) or data.get("kind") != RuleKind.OVERDUE.value:
        return False
    condition = data.get("condition")
    return "goals" in data or (
        isinstance(condition, dict) and any(form in condition for form in FORMS)
    )
