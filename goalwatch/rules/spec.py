"""The rule language HR writes: one rule per YAML file, validated by these models.

Every check raises an error whose text says what is wrong and what to write instead; the loader
adds the file and line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from goalwatch.contracts import RuleKind, Severity
from goalwatch.contracts.base import Contract
from goalwatch.contracts.metrics import PERSON_ID_MAX_LENGTH, PERSON_ID_PATTERN, MetricName
from goalwatch.durations import duration_text
from goalwatch.rules.fields import BoundedDuration, TimeZone, rule_error
from goalwatch.rules.fraud_spec import (
    FRAUD_EXAMPLES,
    FRAUD_MODELS,
    PATTERNS,
    BurstCondition,
    DuplicateCondition,
    FraudCondition,
    JumpCondition,
    OffHoursCondition,
    OutlierCondition,
)
from goalwatch.rules.template import TemplateError, check_template
from goalwatch.rules.transitions import fingerprint

Op = Literal[">", ">=", "<", "<=", "==", "!=", "between", "outside"]
OPS: Final[tuple[str, ...]] = get_args(Op)
RANGE_OPS: Final[tuple[str, ...]] = ("between", "outside")
"""Operators that compare with two thresholds, ``value: [low, high]`` (both included in
``between``; ``outside`` is the rest)."""
SUPPORTED_KINDS: Final[tuple[RuleKind, ...]] = (
    RuleKind.THRESHOLD,
    RuleKind.OVERDUE,
    RuleKind.FRAUD,
    RuleKind.DEPENDENCY_IMPACT,
)
# Kinds with a shape of their own, read by another model (the loader picks it by kind).
OWN_SHAPE_KINDS: Final[tuple[RuleKind, ...]] = (RuleKind.DEPENDENCY_IMPACT,)
PLANNED_KINDS: Final[tuple[RuleKind, ...]] = tuple(k for k in RuleKind if k not in SUPPORTED_KINDS)
MAX_CONSECUTIVE: Final = 1000

RULE_ID_PATTERN: Final = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
"""A rule id: lower-case letters, digits and hyphens (also a NATS subject token)."""
_RULE_ID = re.compile(RULE_ID_PATTERN)
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METRIC_NAME: TypeAdapter[str] = TypeAdapter(MetricName)
# durable_rules' JSON reader rejects exponents without a fraction ("1e-05", error 204), which
# is how Python writes numbers this small or large; thresholds stay inside the plain range.
_SMALLEST, _LARGEST = 1e-4, 1e16


def check_owner_recipients(value: list[str], *, instead_of_subject: str) -> list[str]:
    """``notify`` of a rule about goals: each recipient once, ``owner`` rather than
    ``subject`` (``instead_of_subject`` says why, in the rule kind's words)."""
    if len(set(value)) != len(value):
        raise rule_error("notify", "lists someone twice; name each recipient once")
    if "subject" in value:
        raise rule_error("notify", instead_of_subject)
    return value


def _check_kind(value: Any) -> Any:
    if value in OWN_SHAPE_KINDS:
        raise rule_error(
            "kind", f"a {value} rule has no metric or condition: read it with its own model"
        )
    if value in SUPPORTED_KINDS:
        return RuleKind(value)
    supported = ", ".join(SUPPORTED_KINDS)
    if value in PLANNED_KINDS:
        raise rule_error("kind", f"kind '{value}' is not supported yet; supported: {supported}")
    raise rule_error("kind", f"'{value}' is not a rule kind; supported: {supported}")


def check_rule_id(value: str) -> str:
    """A rule id: lower-case letters, digits and hyphens."""
    if not _RULE_ID.match(value):
        raise rule_error(
            "id",
            f"'{value}' is not a valid id: use lower-case letters, digits and hyphens, "
            "e.g. report-rework-rate-high",
        )
    return value


def _check_op(value: Any) -> Any:
    if value in OPS:
        return value
    if value == "":
        raise rule_error(
            "op",
            'is empty: a bare > starts a block of text in YAML; quote the operator, e.g. op: ">"',
        )
    raise rule_error("op", f"'{value}' is not one of {', '.join(OPS)} — write e.g. op: \">\"")


def _check_severity(value: Any) -> Any:
    allowed = [s.value for s in Severity]
    if value in allowed:
        return value
    raise rule_error(
        "severity",
        f"'{value}' is not one of {', '.join(allowed)} (warning is yellow, critical is red)",
    )


# Shared with the rule kinds that have a model of their own.
check_severity = _check_severity


def _check_label_name(name: str) -> str:
    if not _LABEL_NAME.match(name):
        raise rule_error(
            "label", f"'{name}' is not a label name: use letters, digits and _, e.g. department"
        )
    return name


MAX_MANAGER_LEVEL: Final = 10
RECIPIENT_WORDS: Final = (
    "subject, manager, manager: N (2 for the manager's manager), unit_head, hrbp, "
    "group: NAME, or a person id"
)
GROUP_PREFIX: Final = "group:"
"""How a named group is written once read: ``group:quality-leads``."""
GROUP_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""A group name: lower-case letters, digits, ``-`` and ``_``, at most 63 characters, as the
routing file names its groups (``goalwatch.routing.spec.Name``)."""
_GROUP_NAME = re.compile(GROUP_NAME_PATTERN)
# The recipient words written as one-key mappings in a YAML list (``manager: 2``).
_KEYED_RECIPIENTS: Final = ("manager", "group")


def _recipient_form(value: Any) -> Any:
    """``{manager: 2}`` and ``{group: quality-leads}`` (written ``manager: 2`` and
    ``group: quality-leads`` in a YAML list) as their strings, ``manager:2`` and
    ``group:quality-leads``."""
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in _KEYED_RECIPIENTS:
            raise rule_error("notify", f"{value!r} is not a recipient: use {RECIPIENT_WORDS}")
        [(word, argument)] = value.items()
        value = f"{word}:{'' if argument is None else argument}"
    return value


def group_name(recipient: str) -> str | None:
    """The group a ``notify`` entry names (``group:quality-leads`` → ``quality-leads``);
    None for any other recipient."""
    if recipient.startswith(GROUP_PREFIX):
        return recipient.removeprefix(GROUP_PREFIX)
    return None


def _check_recipient(recipient: str) -> str:
    recipient = recipient.strip()
    if not recipient:
        raise rule_error("notify", f"empty recipient: use {RECIPIENT_WORDS}")
    if recipient.startswith(GROUP_PREFIX):
        name = recipient.removeprefix(GROUP_PREFIX).strip()
        if not _GROUP_NAME.match(name):
            raise rule_error(
                "notify",
                f"'{recipient}': a group name is 1-63 lower-case letters, digits, - and _ "
                "(starting with a letter or digit), e.g. group: quality-leads",
            )
        return f"{GROUP_PREFIX}{name}"
    if recipient.startswith("manager:"):
        level = recipient.removeprefix("manager:").strip()
        if not level.isdigit() or not 1 <= int(level) <= MAX_MANAGER_LEVEL:
            raise rule_error(
                "notify",
                f"'{recipient}': the manager's level is a number from 1 (the manager) to "
                f"{MAX_MANAGER_LEVEL}, e.g. manager: 2 for the manager's manager",
            )
        return "manager" if int(level) == 1 else f"manager:{int(level)}"
    return recipient


LabelName = Annotated[str, AfterValidator(_check_label_name)]
Recipient = Annotated[str, BeforeValidator(_recipient_form), AfterValidator(_check_recipient)]


class NotIn(Contract):
    """A label filter that leaves values out: ``site: {not_in: [training, demo]}``."""

    not_in: list[str] = Field(
        min_length=1, description="Values the label must not have (a missing label passes)."
    )


LabelMatch = str | list[str] | NotIn
"""What ``where`` asks of one label: a value, one of a list of values, or none of them."""

_LABEL_MATCH_FORMS: Final = (
    "write one value (department: radiology), a list of values the label may have "
    "(ward: [icu, er]) or the values it must not have (site: {not_in: [training]})"
)


def _check_label_match(value: Any) -> Any:
    if isinstance(value, str | NotIn):
        return value
    if isinstance(value, list):
        if not value:
            raise rule_error("where", f"an empty list matches no event: {_LABEL_MATCH_FORMS}")
        if not all(isinstance(item, str) for item in value):
            raise rule_error("where", f"quote each value of the list: {_LABEL_MATCH_FORMS}")
        if len(set(value)) != len(value):
            raise rule_error("where", "lists a value twice; name each value once")
        return value
    if isinstance(value, dict) and set(value) == {"not_in"}:
        values = value["not_in"]
        if not isinstance(values, list) or not values:
            raise rule_error("where", f"not_in takes a list of values: {_LABEL_MATCH_FORMS}")
        _check_label_match(values)
        return value
    if isinstance(value, int | float | bool):
        # As for any text field: the loader says "expected text", with the value as written.
        raise PydanticCustomError("string_type", "Input should be a valid string")
    raise rule_error("where", f"{value!r} is not a label filter: {_LABEL_MATCH_FORMS}")


LabelFilter = Annotated[LabelMatch, BeforeValidator(_check_label_match)]


def label_matches(match: LabelMatch, value: str) -> bool:
    """Whether a label's ``value`` passes ``match``."""
    if isinstance(match, NotIn):
        return value not in match.not_in
    if isinstance(match, list):
        return value in match
    return value == match


def labels_match(where: dict[str, LabelMatch], labels: dict[str, str]) -> bool:
    """Whether ``labels`` pass every filter of ``where``; a missing label counts as empty, as
    the rules engine sees it (:func:`goalwatch.rules.compiler.event_message`)."""
    return all(label_matches(match, labels.get(name, "")) for name, match in where.items())


_ORG_UNIT_ID = re.compile(PERSON_ID_PATTERN)
_ORG_UNIT_FORMS: Final = (
    "write the id the goals service knows the unit by (GET /v1/org-units), e.g. "
    "org_unit: radiology, or a list of ids, e.g. org_unit: [radiology, icu]"
)


def _check_org_unit_id(value: Any) -> str:
    if isinstance(value, int | float | bool):
        # As for any text field: the loader says "expected text", with the value as written.
        raise PydanticCustomError("string_type", "Input should be a valid string")
    if not isinstance(value, str):
        raise rule_error("org_unit", f"{value!r} is not an org unit id: {_ORG_UNIT_FORMS}")
    if not (_ORG_UNIT_ID.match(value) and len(value) <= PERSON_ID_MAX_LENGTH):
        raise rule_error(
            "org_unit",
            f"'{value}' is not an org unit id (1-128 of letters, digits and . _ @ -, not "
            f"starting with a dot; not the unit's display name): {_ORG_UNIT_FORMS}",
        )
    return value


def _check_org_unit(value: Any) -> Any:
    """``org_unit``: one unit id, or a non-empty list of distinct ones."""
    if value is None:
        raise rule_error(
            "org_unit", f"is empty: {_ORG_UNIT_FORMS}; leave the field out for every unit"
        )
    if isinstance(value, list):
        if not value:
            raise rule_error(
                "org_unit", f"an empty list scopes the rule to nobody: {_ORG_UNIT_FORMS}"
            )
        for item in value:
            if not isinstance(item, str):
                raise rule_error(
                    "org_unit",
                    f"{item!r} in the list is not text: quote unit ids that look like numbers, "
                    f'e.g. org_unit: [radiology, "{item}"]',
                )
        units = [_check_org_unit_id(item) for item in value]
        if len(set(units)) != len(units):
            raise rule_error("org_unit", "lists a unit twice; name each unit once")
        return units
    return _check_org_unit_id(value)


def _check_value(value: Any, info: ValidationInfo) -> Any:
    """One number, or for ``between`` / ``outside`` a list of two, low first."""
    op = info.data.get("op")
    if op in RANGE_OPS:
        example = f"value: [0.05, 0.08] (op: {op})"
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise rule_error(
                "value", f"{op} compares with two numbers, the low and the high end: {example}"
            )
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise rule_error("value", f"both ends must be numbers: {example}")
        if not value[0] < value[1]:
            raise rule_error(
                "value", f"the low end comes first and is below the high end: {example}"
            )
        return tuple(_in_engine_range(float(v)) for v in value)
    if isinstance(value, list | tuple):
        raise rule_error(
            "value",
            'a list of two numbers is for op: between or op: outside; with op: "'
            f'{op}" write one number, e.g. value: 0.08',
        )
    # One error for one number, as for any number field (not one per form of the union).
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise PydanticCustomError("float_parsing", "Input should be a valid number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("float_type", "Input should be a valid number")
    return value


RESOLVE_OPS: Final[dict[str, str]] = {
    ">": "<",
    ">=": "<",
    "<": ">",
    "<=": ">",
    "between": "outside",
    "outside": "between",
}
"""Per operator, how a value must compare with ``resolve_at`` to resolve a firing alert."""


def _pair(value: float | tuple[float, float]) -> tuple[float, float]:
    return value if isinstance(value, tuple) else (value, value)


def _check_resolve(value: Any, info: ValidationInfo) -> Any:
    """``resolve_at``: written like ``value`` (two numbers for between and outside)."""
    if value is None:
        return value
    op = info.data.get("op")
    if op in ("==", "!="):
        raise rule_error(
            "resolve_at",
            f'op: "{op}" has no values between firing and resolving: resolve_at is for '
            ">, >=, <, <=, between and outside",
        )
    checked = _check_value(value, info)
    return checked if isinstance(checked, tuple) else _in_engine_range(float(checked))


def _check_resolve_side(
    op: str, threshold: tuple[float, float], resolve: tuple[float, float]
) -> None:
    """``resolve_at`` lies beyond the threshold on the side where values stop breaching."""
    (low, high), (r_low, r_high) = threshold, resolve
    if op in (">", ">="):
        if not r_low < low:
            raise rule_error(
                "resolve_at",
                f"must be below the threshold {low:g}, e.g. value: 0.08 with resolve_at: 0.07 "
                "(fire above 8%, resolve only below 7%)",
            )
    elif op in ("<", "<="):
        if not r_low > low:
            raise rule_error(
                "resolve_at",
                f"must be above the threshold {low:g}, e.g. value: 0.5 with resolve_at: 0.6 "
                "(fire below 50%, resolve only above 60%)",
            )
    elif op == "between":
        if not (r_low <= low and r_high >= high and (r_low, r_high) != (low, high)):
            raise rule_error(
                "resolve_at",
                f"must contain [{low:g}, {high:g}] and be wider, e.g. value: [0.05, 0.08] with "
                "resolve_at: [0.04, 0.09] (resolve only once outside 4%-9%)",
            )
    elif not (low <= r_low and r_high <= high and (r_low, r_high) != (low, high)):
        raise rule_error(
            "resolve_at",
            f"must lie within [{low:g}, {high:g}] and be narrower, e.g. value: [0.05, 0.08] "
            "with resolve_at: [0.055, 0.075] (resolve only once back within 5.5%-7.5%)",
        )


def _in_engine_range(value: float) -> float:
    if not math.isfinite(value):
        raise rule_error("value", "the threshold must be a finite number")
    if value != 0 and not _SMALLEST <= abs(value) < _LARGEST:
        raise rule_error(
            "value",
            f"{value} is outside what the rules engine compares reliably: use 0 or a number "
            "between 0.0001 and 1e16 in size (scale the metric, e.g. per thousand)",
        )
    return value


Period = Literal["day", "week", "month"]
Aggregate = Literal["last", "avg", "sum", "min", "max", "count", "rate"]


def _check_aggregation(condition: ThresholdCondition) -> None:
    """The period and window options fit together."""
    if condition.per is not None and condition.window is not None:
        raise rule_error(
            "condition",
            "per and window do not go together: count periods in a row (per: week) or "
            "compare a sliding window (window: 7d)",
        )
    if condition.aggregate is not None and not condition.aggregated:
        raise rule_error(
            "aggregate",
            f"aggregate: {condition.aggregate} needs per: (day, week, month) or window: (e.g. "
            "7d) to say what it aggregates over",
        )
    if condition.aggregate == "rate" and condition.window is None:
        raise rule_error("aggregate", "rate is the sum per day of a window: write window: 7d")
    if condition.compare is not None and condition.window is None:
        raise rule_error("compare", "compare: previous compares windows: write window: 7d too")
    for name in ("missing", "time_zone"):
        if getattr(condition, name) is not None and condition.per is None:
            raise rule_error(name, f"{name} is for periods: write per: day, week or month too")


class ThresholdCondition(Contract):
    """``value <op> threshold`` on ``consecutive`` observations in a row, by event time;
    ``between`` / ``outside`` compare with two thresholds, ``value: [low, high]``."""

    op: Annotated[Op, BeforeValidator(_check_op)] = Field(
        description="Comparison of the observed value with the threshold."
    )
    value: Annotated[float | tuple[float, float], BeforeValidator(_check_value)] = Field(
        description="The threshold; for between and outside, [low, high]."
    )
    consecutive: int = Field(
        1,
        ge=1,
        le=MAX_CONSECUTIVE,
        description="How many observations in a row (by event time) must breach before firing.",
    )
    resolve_at: Annotated[float | tuple[float, float] | None, BeforeValidator(_check_resolve)] = (
        Field(
            None,
            description="Hysteresis: a firing alert resolves only once a value is past this "
            "(below it for > and >=, above it for < and <=; for between, outside "
            "[low, high]; for outside, within [low, high]). Values between it and the "
            "threshold keep a firing alert firing but do not start one.",
        )
    )
    for_: BoundedDuration | None = Field(
        None,
        alias="for",
        description="The condition must hold this long (by event time, from the observation "
        "that made it hold) before the alert fires, e.g. 2h; it fires when that time comes, "
        "from a timer, unless an observation ended the condition first.",
    )

    per: Period | None = Field(
        None,
        description="Count consecutive calendar periods instead of observations: day, week "
        "(Monday to Sunday) or month, in time_zone, one value per period (aggregate).",
    )
    window: BoundedDuration | None = Field(
        None,
        description="Compare an aggregate of the observations of this long before each one "
        "(by event time, e.g. 7d) instead of the observation itself.",
    )
    aggregate: Aggregate | None = Field(
        None,
        description="The value of a period or window: last (default), avg, sum, min, max, "
        "count; rate (windows only): the sum per day.",
    )
    compare: Literal["previous"] | None = Field(
        None,
        description="Windows only: compare the change from the window before, as a fraction "
        "(-0.3 is down 30%), instead of the window's value.",
    )
    missing: Literal["breaks", "skipped"] | None = Field(
        None,
        description="Periods only: a period with no observation breaks the run (breaks, the "
        "default) or does not count (skipped).",
    )
    time_zone: TimeZone | None = Field(
        None,
        description="Periods only: the IANA time zone their days begin in, e.g. "
        "Asia/Shanghai (default UTC).",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _period_or_window(self) -> ThresholdCondition:
        _check_aggregation(self)
        return self

    @property
    def aggregated(self) -> bool:
        """Whether the rule compares a period's or a window's value, not each observation's."""
        return self.per is not None or self.window is not None

    @field_validator("value")
    @classmethod
    def _engine_range(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        return value if isinstance(value, tuple) else _in_engine_range(value)

    @field_validator("resolve_at")
    @classmethod
    def _resolve_beyond_threshold(
        cls, value: float | tuple[float, float] | None, info: ValidationInfo
    ) -> float | tuple[float, float] | None:
        op, threshold = info.data.get("op"), info.data.get("value")
        if value is None or op is None or threshold is None:
            return value  # the op's or the threshold's own error says what is wrong
        _check_resolve_side(op, _pair(threshold), _pair(value))
        return value

    @property
    def resolve_bounds(self) -> tuple[float, float]:
        """(low, high) of ``resolve_at``; the threshold's bounds when there is none."""
        if self.resolve_at is None:
            return self.bounds
        if isinstance(self.resolve_at, tuple):
            return self.resolve_at
        return self.resolve_at, self.resolve_at

    @property
    def resolve_op(self) -> str | None:
        """The comparison a value must pass to resolve a firing alert, with
        :attr:`resolve_bounds`; None without hysteresis (any non-breaching value resolves)."""
        return None if self.resolve_at is None else RESOLVE_OPS[self.op]

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high); both the threshold for a single-value operator."""
        if isinstance(self.value, tuple):
            return self.value
        return self.value, self.value

    @property
    def ranged(self) -> bool:
        """Whether ``op`` compares with two thresholds."""
        return self.op in RANGE_OPS

    def fields(self) -> dict[str, Any]:
        """The condition's fields in message templates."""
        low, high = self.bounds
        if self.ranged:
            return {"low": low, "high": high, "op": self.op, "consecutive": self.consecutive}
        return {"threshold": low, "op": self.op, "consecutive": self.consecutive}

    def text(self) -> str:
        """The condition in words: ``> 0.08``, ``between 0.05 and 0.08``."""
        low, high = self.bounds
        return f"{self.op} {low:g} and {high:g}" if self.ranged else f"{self.op} {low:g}"


class OverdueCondition(Contract):
    """An overdue rule's condition: what must happen in time.

    The metric form, absence: a subject that reported ``metric`` once is expected to report
    it again within ``absent_for``. The goal forms (``past_due``, ``no_check_in``,
    ``behind_plan``) are rules of their own shape, :mod:`goalwatch.rules.goal_overdue_spec`.
    """

    absent_for: BoundedDuration = Field(
        description="Fires when a subject has not reported the metric for this long after "
        "its last report (by event time), e.g. 2d, 36h, 1d12h."
    )


SEVERITY_ORDER: Final[tuple[Severity, ...]] = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)
"""Severities from the quietest to the loudest."""


class EscalationStep(Contract):
    """One step of a threshold alert's escalation: ``{after: 5d, severity: critical}``."""

    after: BoundedDuration = Field(
        description="How long after the breach began (its first breaching observation, by "
        "event time) the firing alert rises to this severity, e.g. 5d."
    )
    severity: Annotated[Severity, BeforeValidator(_check_severity)] = Field(
        description="The severity it rises to: warning or critical, above the rule's own."
    )


def _condition_form(value: Any) -> str:
    """Which condition model a ``condition`` mapping is written for: by its fields."""
    if isinstance(value, OverdueCondition) or (isinstance(value, dict) and "absent_for" in value):
        return RuleKind.OVERDUE.value
    pattern = getattr(value, "pattern", None) or (
        value.get("pattern") if isinstance(value, dict) else None
    )
    if isinstance(pattern, str):
        return pattern
    return RuleKind.THRESHOLD.value


def _check_pattern(value: Any) -> Any:
    if isinstance(value, dict) and "pattern" in value and value["pattern"] not in PATTERNS:
        raise rule_error(
            "pattern",
            f"{value['pattern']!r} is not a fraud pattern: write one of {', '.join(PATTERNS)}",
        )
    return value


Condition = Annotated[
    Annotated[ThresholdCondition, Tag(RuleKind.THRESHOLD.value)]
    | Annotated[OverdueCondition, Tag(RuleKind.OVERDUE.value)]
    | Annotated[BurstCondition, Tag("burst")]
    | Annotated[DuplicateCondition, Tag("duplicate")]
    | Annotated[JumpCondition, Tag("jump")]
    | Annotated[OffHoursCondition, Tag("off_hours")]
    | Annotated[OutlierCondition, Tag("outlier")],
    Discriminator(_condition_form),
    BeforeValidator(_check_pattern),
]
CONDITION_MODELS: Final[dict[str, type[Contract]]] = {
    RuleKind.THRESHOLD.value: ThresholdCondition,
    RuleKind.OVERDUE.value: OverdueCondition,
    **FRAUD_MODELS,
}
"""The condition model of each form, by the tag pydantic puts in an error's location."""
_KIND_MODELS: Final[dict[RuleKind, tuple[type[Contract], ...]]] = {
    RuleKind.THRESHOLD: (ThresholdCondition,),
    RuleKind.OVERDUE: (OverdueCondition,),
    RuleKind.FRAUD: tuple(FRAUD_MODELS.values()),
}
_CONDITION_EXAMPLES: Final[dict[RuleKind, str]] = {
    RuleKind.THRESHOLD: 'condition: {op: ">", value: 0.08, consecutive: 3}',
    RuleKind.OVERDUE: "condition: {absent_for: 2d}",
    RuleKind.FRAUD: FRAUD_EXAMPLES,
}


class RuleSpec(Contract):
    """One alert rule, as written in ``rules/<name>.yaml``."""

    id: str = Field(description="Unique id: lower-case letters, digits and hyphens.")
    name: str = Field(min_length=1, max_length=200, description="Human-readable name.")
    description: str | None = Field(default=None, description="What the rule is for.")
    kind: Annotated[RuleKind, BeforeValidator(_check_kind)] = Field(
        description="Rule kind: threshold, overdue or fraud (dependency_impact rules have a "
        "model of their own)."
    )
    metric: str = Field(description="Metric the rule watches, e.g. report_rework_rate.")
    where: dict[LabelName, LabelFilter] = Field(
        default_factory=dict,
        description="Label filters: the rule only sees events whose labels pass all of them: "
        "a value, a list of values (in) or {not_in: [...]}.",
    )
    # Not validated when absent (None); written empty (org_unit:), it is an error.
    org_unit: Annotated[str | list[str] | None, BeforeValidator(_check_org_unit)] = Field(
        default=None,
        description="Org unit scope: the rule only applies to subjects in this org unit or "
        "any unit under it (a list: in any of them), by the org unit ids of the goals "
        "service; a subject the people directory does not know is in no unit.",
    )
    condition: Condition = Field(
        description="When the rule fires: {op, value, consecutive} for threshold, "
        "{absent_for} for overdue."
    )
    severity: Annotated[Severity, BeforeValidator(_check_severity)] = Field(
        description="info, warning (yellow) or critical (red)."
    )
    by: list[LabelName] = Field(
        default_factory=list,
        description="Threshold and fraud rules: labels whose values keep alerts apart, one "
        "per subject and value, e.g. [goal_id]: each key result on its own.",
    )
    escalate: list[EscalationStep] = Field(
        default_factory=list,
        description="Threshold rules: severities the firing alert rises to while its breach "
        "lasts, e.g. [{after: 5d, severity: critical}]; announced as a change of the one alert.",
    )
    notify: list[Recipient] = Field(
        min_length=1,
        description="Who to notify: subject, manager, manager: N, unit_head, hrbp, named groups (group: NAME) or explicit person ids.",
    )
    message: str = Field(
        min_length=1,
        description="Alert text, a str.format template, e.g. '{subject}: {value:.0%}'.",
    )
    resolved_message: str | None = Field(
        default=None,
        min_length=1,
        description="Text when the alert resolves, same fields ({value} is the clearing "
        "observation); a standard sentence when absent.",
    )

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _RULE_ID.match(value):
            raise rule_error(
                "id",
                f"'{value}' is not a valid id: use lower-case letters, digits and hyphens, "
                "e.g. report-rework-rate-high",
            )
        return value

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        try:
            return _METRIC_NAME.validate_python(value)
        except ValidationError:
            raise rule_error(
                "metric",
                f"'{value}' is not a metric name: use lower snake_case (dots allowed), "
                "e.g. report_rework_rate",
            ) from None

    @field_validator("condition")
    @classmethod
    def _condition_of_kind(
        cls, value: ThresholdCondition | OverdueCondition | FraudCondition, info: ValidationInfo
    ) -> ThresholdCondition | OverdueCondition | FraudCondition:
        kind = info.data.get("kind")
        if kind is None:
            return value  # the kind's own error says what is wrong
        wanted = _KIND_MODELS[RuleKind(kind)]
        if not isinstance(value, wanted):
            raise rule_error(
                "condition",
                f"{'an' if kind is RuleKind.OVERDUE else 'a'} {kind} rule's condition is "
                f"written like {_CONDITION_EXAMPLES[kind]}",
            )
        return value

    @property
    def threshold(self) -> ThresholdCondition:
        """The condition of a threshold rule (a TypeError for any other kind)."""
        if not isinstance(self.condition, ThresholdCondition):
            raise TypeError(f"rule {self.id!r} is a {self.kind} rule, not a threshold rule")
        return self.condition

    @property
    def scope(self) -> tuple[str, ...]:
        """The org units the rule is scoped to; empty when it applies to every subject."""
        if self.org_unit is None:
            return ()
        return (self.org_unit,) if isinstance(self.org_unit, str) else tuple(self.org_unit)

    @property
    def fraud(self) -> FraudCondition:
        """The condition of a fraud rule (a TypeError for any other kind)."""
        if isinstance(self.condition, ThresholdCondition | OverdueCondition):
            raise TypeError(f"rule {self.id!r} is a {self.kind} rule, not a fraud rule")
        return self.condition

    @property
    def overdue(self) -> OverdueCondition:
        """The condition of an overdue rule (a TypeError for any other kind)."""
        if not isinstance(self.condition, OverdueCondition):
            raise TypeError(f"rule {self.id!r} is a {self.kind} rule, not an overdue rule")
        return self.condition

    @field_validator("by")
    @classmethod
    def _apart(cls, value: list[str], info: ValidationInfo) -> list[str]:
        kind = info.data.get("kind")
        if value and kind is RuleKind.OVERDUE:
            raise rule_error("by", "by is for threshold and fraud rules, not overdue rules")
        if len(set(value)) != len(value):
            raise rule_error("by", "lists a label twice; name each label once")
        return value

    def fingerprint_of(self, subject: str, labels: Mapping[str, str]) -> str:
        """The fingerprint of this rule's alert about ``subject``, for an event with
        ``labels``: rule, subject and metric, and the values of the ``by`` labels."""
        metric = self.metric
        if self.by:
            metric += "|" + "|".join(f"{name}={labels.get(name, '')}" for name in self.by)
        return fingerprint(self.id, subject, metric)

    @field_validator("escalate")
    @classmethod
    def _rising(cls, value: list[EscalationStep], info: ValidationInfo) -> list[EscalationStep]:
        kind, severity = info.data.get("kind"), info.data.get("severity")
        if not value or kind is None or severity is None:
            return value
        if kind is not RuleKind.THRESHOLD:
            raise rule_error("escalate", f"escalate is for threshold rules, not {kind} rules")
        level, after = SEVERITY_ORDER.index(severity), timedelta(0)
        for step in value:
            if SEVERITY_ORDER.index(step.severity) <= level:
                raise rule_error(
                    "escalate",
                    f"each step must raise the severity: {step.severity} does not rise above "
                    f"{SEVERITY_ORDER[level]} (e.g. severity: warning, escalate: "
                    "[{after: 5d, severity: critical}])",
                )
            if step.after <= after:
                raise rule_error(
                    "escalate",
                    f"steps come in order of time, each later than the one before: "
                    f"{duration_text(step.after)} is not after {duration_text(after)}",
                )
            level, after = SEVERITY_ORDER.index(step.severity), step.after
        return value

    @field_validator("notify")
    @classmethod
    def _recipients_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise rule_error("notify", "lists someone twice; name each recipient once")
        return value

    @field_validator("message", "resolved_message")
    @classmethod
    def _template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        kind = info.data.get("kind", RuleKind.THRESHOLD)
        condition = info.data.get("condition")
        ranged = isinstance(condition, ThresholdCondition) and condition.ranged
        try:
            check_template(value, kind=RuleKind(kind), ranged=ranged)
        except TemplateError as exc:
            raise rule_error(str(info.field_name), str(exc)) from None
        return value
