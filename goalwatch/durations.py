"""The durations people write in goalwatch's files: ``2d``, ``36h``, ``1d12h``, ``90m``,
``30s``. Shared by the rule language and the metric catalogue, and importing nothing of
either, so that ingestion reads the catalogue without loading the rules engine."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Final

from pydantic_core import PydanticCustomError

_DURATION: Final = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_UNITS: Final = (("d", timedelta(days=1)), ("h", timedelta(hours=1)), ("m", timedelta(minutes=1)))


def duration_of(text: str) -> timedelta | None:
    """The duration ``text`` writes (days, hours, minutes, seconds, in that order, each
    optional but one), or None when it is not written so."""
    match = _DURATION.match(text)
    if match is None or not any(match.groupdict().values()):
        return None
    parts = {unit: int(amount) for unit, amount in match.groupdict().items() if amount}
    return timedelta(
        days=parts.get("d", 0),
        hours=parts.get("h", 0),
        minutes=parts.get("m", 0),
        seconds=parts.get("s", 0),
    )


def duration_text(duration: timedelta) -> str:
    """``duration`` as people write it: 2d, 1d12h, 90m becomes 1h30m."""
    left, text = duration, ""
    for unit, size in _UNITS:
        if left >= size:
            text += f"{left // size}{unit}"
            left -= (left // size) * size
    if left or not text:
        text += f"{int(left.total_seconds())}s"
    return text


def parse_duration(value: Any) -> timedelta:
    """``2d``, ``36h``, ``1d12h``, ``90m``, ``30s``: a duration HR can write, as a pydantic
    validator (a ``rule_duration`` error saying how to write one otherwise)."""
    if isinstance(value, timedelta):
        return value
    text = str(value).strip() if isinstance(value, str | int | float) else None
    duration = duration_of(text) if text else None
    if duration is None:
        hint = " (a bare number has no unit)" if isinstance(value, int | float) else ""
        raise PydanticCustomError(
            "rule_duration",
            f"{value!r} is not a duration{hint}: write a number with its unit, d (days), "
            "h (hours), m (minutes) or s (seconds), e.g. 2d, 36h or 1d12h",
        )
    return duration
