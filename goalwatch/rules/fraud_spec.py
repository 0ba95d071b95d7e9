"""The conditions of fraud rules (``kind: fraud``): one model per pattern, picked by
``pattern``.

A fraud rule watches the records of one metric (its events) per subject and finds what no
honest source produces: a burst of records, the same content under new ids, a value that
jumps, bulk work at night, a value far from the peers'. Each finding keeps the subject's
alert firing; it resolves once ``quiet`` passes without one (:mod:`goalwatch.rules.fraud`).
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from goalwatch.contracts.base import Contract
from goalwatch.rules.fields import (
    BoundedDuration,
    TimeZone,
    rule_error,
)

PATTERNS: Final = ("burst", "duplicate", "jump", "off_hours", "outlier")
MAX_RECORDS: Final = 1000
"""Records a fraud rule may need per subject at most (``count``): the state it keeps."""
DEFAULT_QUIET: Final = timedelta(days=1)
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_FIELD = re.compile(r"^(value|labels\.[A-Za-z_][A-Za-z0-9_]*)$")


class _Fraud(Contract):
    """What every pattern has: how long without a finding before the alert resolves."""

    quiet: BoundedDuration | None = Field(
        None,
        description="The alert resolves once this long (by event time) passes without a new "
        "finding; default: the pattern's window (within), or 1d.",
    )

    @property
    def window(self) -> timedelta | None:
        """The span of event time the pattern looks back over, if it has one."""
        within = getattr(self, "within", None)
        return within if isinstance(within, timedelta) else None

    @property
    def quiet_for(self) -> timedelta:
        """How long without a finding resolves the alert."""
        return self.quiet or self.window or DEFAULT_QUIET


class _Windowed(_Fraud):
    within: BoundedDuration = Field(description="The span of event time looked back over, e.g. 2m.")


class BurstCondition(_Windowed):
    """``count`` or more records from one subject within ``within``: "30 customer visits
    logged within 2 minutes"."""

    pattern: Literal["burst"] = Field(description="burst")
    count: int = Field(
        ge=2, le=MAX_RECORDS, description="Records within the window that make a burst."
    )


class DuplicateCondition(_Windowed):
    """A record whose content (``fields``) equals an earlier one's under another event id,
    within ``within``."""

    pattern: Literal["duplicate"] = Field(description="duplicate")
    fields: list[str] = Field(
        default_factory=lambda: ["value"],
        min_length=1,
        description="What makes two records the same: value and labels.NAME, e.g. "
        "[value, labels.customer].",
    )

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _FIELD.match(name):
                raise rule_error(
                    "fields",
                    f"'{name}' is not a field of a record: write value or labels.NAME, e.g. "
                    "fields: [value, labels.customer]",
                )
        if len(set(value)) != len(value):
            raise rule_error("fields", "lists a field twice; name each field once")
        return value


class JumpCondition(_Fraud):
    """A value that moves more than ``max_step`` from the subject's previous one (by event
    time), or lies outside the physically possible ``range``."""

    pattern: Literal["jump"] = Field(description="jump")
    max_step: float | None = Field(
        None, gt=0, description="The largest believable change from one record to the next."
    )
    range: tuple[float, float] | None = Field(
        None, description="[low, high]: values outside cannot be real, e.g. [0, 1] for a rate."
    )

    @model_validator(mode="after")
    def _something_to_check(self) -> JumpCondition:
        if self.max_step is None and self.range is None:
            raise rule_error(
                "condition",
                "a jump rule needs max_step (the largest believable change, e.g. max_step: 0.5) "
                "or range (the values that can be real, e.g. range: [0, 1]), or both",
            )
        if self.range is not None and not self.range[0] < self.range[1]:
            raise rule_error("range", "the low end comes first and is below the high end")
        return self


def _check_hours(value: Any) -> Any:
    match = _HOURS.match(value) if isinstance(value, str) else None
    if match is None:
        raise rule_error(
            "hours", f"{value!r} is not working hours: write HH:MM-HH:MM, e.g. 08:00-20:00"
        )
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or end_h > 24 or start_m > 59 or end_m > 59 or (end_h == 24 and end_m):
        raise rule_error("hours", f"{value!r} is not a time of day: hours 00-24, minutes 00-59")
    if (start_h, start_m) == (end_h, end_m):
        raise rule_error("hours", f"{value!r}: working hours end after they begin")
    return value


def _check_days(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise rule_error("days", f"write the working days as a list, e.g. [{', '.join(DAYS[:5])}]")
    for day in value:
        if day not in DAYS:
            raise rule_error("days", f"{day!r} is not a day: write {', '.join(DAYS)}")
    return value


class OffHoursCondition(_Windowed):
    """``count`` or more records outside working hours within ``within``, by the subject's
    clock."""

    pattern: Literal["off_hours"] = Field(description="off_hours")
    count: int = Field(
        ge=1, le=MAX_RECORDS, description="Records outside working hours that make it bulk."
    )
    hours: Annotated[str, BeforeValidator(_check_hours)] = Field(
        "08:00-20:00", description="Working hours, local time: HH:MM-HH:MM."
    )
    days: Annotated[list[str], BeforeValidator(_check_days)] = Field(
        default_factory=lambda: list(DAYS[:5]), description="Working days, e.g. [mon, tue, ...]."
    )
    time_zone: TimeZone | None = Field(
        None,
        description="The time zone working hours are in, e.g. Asia/Shanghai; default: each "
        "subject's own (from the people directory), else UTC.",
    )

    def at_work(self, local: datetime) -> bool:
        """Whether ``local`` (the subject's clock) is within working days and hours; hours
        that end before they begin run past midnight (a night shift, ``20:00-08:00``), the
        day being the one they begin on."""
        start_text, end_text = self.hours.split("-")
        start = time.fromisoformat(start_text)
        end = time.max if end_text == "24:00" else time.fromisoformat(end_text)
        now = local.time()
        if start < end:
            return DAYS[local.weekday()] in self.days and start <= now < end
        if now >= start:
            return DAYS[local.weekday()] in self.days
        return now < end and DAYS[(local.weekday() - 1) % 7] in self.days


class OutlierCondition(_Windowed):
    """A value more than ``z`` standard deviations from the mean of the subject's peers'
    values (each peer's latest within ``within``), with at least ``min_group`` peers."""

    pattern: Literal["outlier"] = Field(description="outlier")
    peers: Literal["org_unit"] | dict[Literal["label"], str] = Field(
        description="Who the peers are: org_unit (the same org unit) or {label: NAME} (the "
        "same value of that label)."
    )
    z: float = Field(3.0, gt=0, le=100, description="How many standard deviations is far.")
    min_group: int = Field(
        5, ge=2, le=10_000, description="Peers needed (others with a value) to judge at all."
    )

    @property
    def peer_label(self) -> str | None:
        """The label that groups peers; None when they are grouped by org unit."""
        return None if self.peers == "org_unit" else self.peers["label"]


FraudCondition = (
    BurstCondition | DuplicateCondition | JumpCondition | OffHoursCondition | OutlierCondition
)
FRAUD_MODELS: Final[dict[str, type[Contract]]] = {
    "burst": BurstCondition,
    "duplicate": DuplicateCondition,
    "jump": JumpCondition,
    "off_hours": OffHoursCondition,
    "outlier": OutlierCondition,
}
FRAUD_EXAMPLES: Final = (
    "condition: {pattern: burst, count: 30, within: 2m}; other patterns: duplicate, jump, "
    "off_hours, outlier"
)
