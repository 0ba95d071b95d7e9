"""The rule language of ``kind: dependency_impact``: when a goal enters a failing status,
tell the owners of every goal that rests on it.

```yaml
id: key-result-failing-impact
name: A key result others build on is invalid or off track
kind: dependency_impact
when:
  status: [invalid, off_track]     # the goal enters one of these, from one not listed
  type: key_result                 # optional: only goals of these types (one or a list)
  org_unit: [supply-chain]         # optional: only goals of these org units
min_weight: 0.1                    # optional: leave out affected goals carrying less
severity: warning
notify: [owner, manager]           # owner of the affected goals, their manager, person ids
message: "{goal_title} is {status}. Your goals resting on it: {affected_goals}"
```

Like :mod:`goalwatch.rules.spec`, every check raises an error that says what to write; the
loader adds the file and line.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from goalwatch.contracts import RuleKind, Severity
from goalwatch.contracts.base import Contract
from goalwatch.contracts.goals import GoalStatus, GoalType
from goalwatch.rules.fields import rule_error
from goalwatch.rules.spec import (
    Recipient,
    check_owner_recipients,
    check_rule_id,
    check_severity,
)
from goalwatch.rules.template import TemplateError, check_template_fields

OWNER: Final = "owner"
MANAGER: Final = "manager"

# Field name -> a sample of the type it has when the evaluator renders the message.
SAMPLES: Final[dict[str, Any]] = {
    "owner": "wang-fang",
    "owner_name": "Wang Fang",
    "goal_id": "kr-store-expansion",
    "goal_title": "Store expansion 20%",
    "goal_type": "key_result",
    "goal_owner": "zhou-min",
    "status": "invalid",
    "previous_status": "on_track",
    "affected_count": 2,
    "affected_goals": "Revenue +15%, Open 40 stores",
    "max_weight": 0.5,
    "affected_total": 5,
    "owners_total": 3,
    "rule_id": "key-result-failing-impact",
    "rule_name": "A key result others build on fails",
    "severity": "warning",
}


def _as_list(value: Any) -> Any:
    """HR may write one value or a list of them: ``type: key_result`` or ``[kpi, key_result]``."""
    return [value] if isinstance(value, str) else value


def _choice(allowed: type[GoalStatus] | type[GoalType], what: str) -> Any:
    names = [member.value for member in allowed]

    def check(value: Any) -> Any:
        if value in names:
            return value
        close = difflib.get_close_matches(str(value), names, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise rule_error(
            what, f"'{value}' is not a goal {what}; {hint}use one of {', '.join(names)}"
        )

    return check


StatusName = Annotated[GoalStatus, BeforeValidator(_choice(GoalStatus, "status"))]
TypeName = Annotated[GoalType, BeforeValidator(_choice(GoalType, "type"))]


class ImpactWhen(Contract):
    """Which status changes start an alert: of which goals, into which statuses."""

    status: Annotated[list[StatusName], BeforeValidator(_as_list)] = Field(
        min_length=1,
        description="Statuses that count as failing, e.g. [invalid, off_track]. A goal that "
        "enters one of them from one not listed starts an alert; moving between two listed "
        "ones (invalid to off_track) does not start another; leaving them resolves it.",
    )
    type: Annotated[list[TypeName], BeforeValidator(_as_list)] = Field(
        default_factory=list,
        description="Only goals of these types (objective, key_result, kpi); all when absent.",
    )
    org_unit: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        default_factory=list,
        description="Only goals of these org units (by id); all when absent.",
    )

    @field_validator("status", "type", "org_unit")
    @classmethod
    def _once(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        if len(set(value)) != len(value):
            raise rule_error(str(info.field_name), "lists a value twice; name each once")
        return value

    @field_validator("status")
    @classmethod
    def _not_every_status(cls, value: list[GoalStatus]) -> list[GoalStatus]:
        if set(value) == set(GoalStatus):
            raise rule_error(
                "status",
                "lists every status, so no goal could ever leave them; list the failing "
                "ones, e.g. [invalid, off_track]",
            )
        return value


def check_impact_template(template: str) -> None:
    """Raise :class:`TemplateError` unless ``template`` renders with the impact fields."""
    check_template_fields(template, SAMPLES)


class ImpactRuleSpec(Contract):
    """A ``kind: dependency_impact`` rule, as written in ``rules/<name>.yaml``."""

    id: str = Field(description="Unique id: lower-case letters, digits and hyphens.")
    name: str = Field(min_length=1, max_length=200, description="Human-readable name.")
    description: str | None = Field(default=None, description="What the rule is for.")
    kind: Literal[RuleKind.DEPENDENCY_IMPACT] = Field(description="dependency_impact.")
    when: ImpactWhen = Field(description="Which goals, entering which statuses, start an alert.")
    min_weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Leave out affected goals that carry less than this of the failing goal "
        "(the product of the shares along the path, 0-1); an owner left with none is not "
        "alerted. 0 (the default) keeps every affected goal.",
    )
    severity: Annotated[Severity, BeforeValidator(check_severity)] = Field(
        description="info, warning (yellow) or critical (red)."
    )
    notify: list[Recipient] = Field(
        min_length=1,
        description="Who to notify: owner (of the affected goals; one alert per owner), "
        "manager (the owner's manager), named groups (group: NAME) or explicit person ids.",
    )
    message: str = Field(
        min_length=1,
        description="Alert text, a str.format template with the impact fields, e.g. "
        "'{goal_title} is {status}. Your goals resting on it: {affected_goals}'.",
    )
    resolved_message: str | None = Field(
        default=None,
        min_length=1,
        description="Text when the failing goal leaves the listed statuses ({status} is its "
        "status then); a standard sentence when absent.",
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
                "a dependency_impact alert goes to the owner of the affected goals: write "
                "owner instead of subject"
            ),
        )

    @field_validator("message", "resolved_message")
    @classmethod
    def _template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        try:
            check_impact_template(value)
        except TemplateError as exc:
            raise rule_error(str(info.field_name), str(exc)) from None
        return value

    def watches(self, *, type: GoalType, org_unit: str | None) -> bool:
        """Whether the rule watches goals of ``type`` in ``org_unit`` (its filters)."""
        return (not self.when.type or type in self.when.type) and (
            not self.when.org_unit or org_unit in self.when.org_unit
        )

    def failing(self, status: GoalStatus | None) -> bool:
        """Whether ``status`` is one the rule lists (None, no status yet, never is)."""
        return status is not None and status in self.when.status
