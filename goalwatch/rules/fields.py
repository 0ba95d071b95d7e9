"""Field types shared by the rule kinds' models: errors the loader locates, durations HR
writes (``2d``, ``36h``, ``1d12h``) and time zones."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError

from goalwatch.durations import duration_text, parse_duration


def rule_error(kind: str, message: str) -> PydanticCustomError:
    """A rule validation error the loader reports as ``file:line: field: message``."""
    return PydanticCustomError(f"rule_{kind}", message)


MIN_ABSENCE: Final = timedelta(seconds=1)
MAX_ABSENCE: Final = timedelta(days=366)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _check_time_zone(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise rule_error(
            "time_zone",
            f"'{value}' is not a time zone: write an IANA name such as Asia/Shanghai, "
            "Europe/Berlin or UTC",
        ) from None
    return value


TimeZone = Annotated[str, BeforeValidator(_check_time_zone)]


def check_duration_range(value: timedelta) -> timedelta:
    """A duration a rule may use: 1 s to 366 days."""
    if not MIN_ABSENCE <= value <= MAX_ABSENCE:
        raise rule_error(
            "duration",
            f"{duration_text(value)} is out of range: write at least 1s and at most 366d",
        )
    return value


BoundedDuration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(check_duration_range),
    PlainSerializer(duration_text, return_type=str),
]
"""A duration HR writes (``2d``, ``36h``), 1 s to 366 days, written back the same way."""
