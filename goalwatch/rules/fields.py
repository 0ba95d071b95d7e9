"""Field types shared by the rule kinds' models: errors the loader locates, durations HR
writes (``2d``, ``36h``, ``1d12h``) and time zones."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError


def rule_error(kind: str, message: str) -> PydanticCustomError:
    """A rule validation error the loader reports as ``file:line: field: message``."""
    return PydanticCustomError(f"rule_{kind}", message)


_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_UNITS: Final = (("d", timedelta(days=1)), ("h", timedelta(hours=1)), ("m", timedelta(minutes=1)))
MIN_ABSENCE: Final = timedelta(seconds=1)
MAX_ABSENCE: Final = timedelta(days=366)


def parse_duration(value: Any) -> timedelta:
    """``2d``, ``36h``, ``1d12h``, ``90m``, ``30s``: a duration HR can write."""
    if isinstance(value, timedelta):
        return value
    text = str(value).strip() if isinstance(value, str | int | float) else None
    match = _DURATION.match(text) if text else None
    if text is None or match is None or not any(match.groupdict().values()):
        hint = " (a bare number has no unit)" if isinstance(value, int | float) else ""
        raise rule_error(
            "duration",
            f"{value!r} is not a duration{hint}: write a number with its unit, d (days), "
            "h (hours), m (minutes) or s (seconds), e.g. 2d, 36h or 1d12h",
        )
    parts = {unit: int(amount) for unit, amount in match.groupdict().items() if amount}
    return timedelta(
        days=parts.get("d", 0),
        hours=parts.get("h", 0),
        minutes=parts.get("m", 0),
        seconds=parts.get("s", 0),
    )


def duration_text(duration: timedelta) -> str:
    """``duration`` as HR writes it: 2d, 1d12h, 90m becomes 1h30m."""
    left, text = duration, ""
    for unit, size in _UNITS:
        if left >= size:
            text += f"{left // size}{unit}"
            left -= (left // size) * size
    if left or not text:
        text += f"{int(left.total_seconds())}s"
    return text


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
