"""Values of periods and windows of observations, for threshold rules with ``per`` or
``window``: pure arithmetic on the observations a key keeps.

- A **period** is a calendar day, week (Monday to Sunday) or month in a time zone; its value
  is an aggregate of the observations whose event time falls in it.
- A **window** is the ``size`` of event time up to and including the newest observation; its
  value is an aggregate of the observations in it, or with ``compare: previous`` the change
  from the window before it, as a fraction of that window's value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from goalwatch.rules.transitions import Point

MAX_RAW: Final = 1000
"""Observations a key keeps for its periods or windows at most; the oldest go first."""
DAY: Final = timedelta(days=1)

_AGGREGATES: Final[dict[str, Callable[[Sequence[Point]], float]]] = {
    "last": lambda points: points[-1].value,
    "avg": lambda points: sum(p.value for p in points) / len(points),
    "sum": lambda points: float(sum(p.value for p in points)),
    "min": lambda points: min(p.value for p in points),
    "max": lambda points: max(p.value for p in points),
    "count": lambda points: float(len(points)),
}


def aggregate(points: Sequence[Point], how: str, *, window: timedelta | None = None) -> float:
    """The ``how`` of ``points`` (ordered by event time, at least one); ``rate`` is the sum
    per day of ``window``."""
    if how == "rate":
        assert window is not None
        return _AGGREGATES["sum"](points) / (window / DAY)
    return _AGGREGATES[how](points)


@dataclass(frozen=True)
class PeriodValue:
    """One period that has observations: where it starts, its name and its value."""

    start: datetime
    label: str
    value: float
    follows: bool  # the period just before it has observations too


def period_start(time: datetime, per: str, zone: ZoneInfo) -> date:
    """The first day of the period ``time`` falls in, as a date in ``zone``."""
    day = time.astimezone(zone).date()
    if per == "week":
        return day - timedelta(days=day.weekday())
    if per == "month":
        return day.replace(day=1)
    return day


def _next(start: date, per: str) -> date:
    if per == "day":
        return start + DAY
    if per == "week":
        return start + timedelta(weeks=1)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def _label(start: date, per: str) -> str:
    if per == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if per == "month":
        return start.strftime("%Y-%m")
    return start.isoformat()


def periods(points: Sequence[Point], per: str, how: str, zone: ZoneInfo) -> list[PeriodValue]:
    """The periods ``points`` (ordered by event time) fall in, oldest first, with values."""
    grouped: dict[date, list[Point]] = {}
    for point in points:
        grouped.setdefault(period_start(point.time, per, zone), []).append(point)
    values: list[PeriodValue] = []
    previous: date | None = None
    for start in sorted(grouped):
        values.append(
            PeriodValue(
                start=datetime(start.year, start.month, start.day, tzinfo=zone),
                label=_label(start, per),
                value=aggregate(grouped[start], how),
                follows=previous is not None and _next(previous, per) == start,
            )
        )
        previous = start
    return values


def retained_periods(points: Sequence[Point], per: str, zone: ZoneInfo, keep: int) -> list[Point]:
    """The observations of the newest ``keep`` periods that have any (at most
    :data:`MAX_RAW`)."""
    starts = sorted({period_start(p.time, per, zone) for p in points})[-keep:]
    kept = [p for p in points if period_start(p.time, per, zone) >= starts[0]] if starts else []
    return kept[-MAX_RAW:]


def window_value(
    points: Sequence[Point], size: timedelta, how: str, *, compare: bool
) -> float | None:
    """The value of the window of ``size`` ending at the newest of ``points`` (ordered by
    event time): its aggregate, or with ``compare`` its change from the window before as a
    fraction of that one's value (None when that window is empty or its value is 0)."""
    end = points[-1].time
    current = [p for p in points if end - size < p.time]
    value = aggregate(current, how, window=size)
    if not compare:
        return value
    before = [p for p in points if end - 2 * size < p.time <= end - size]
    if not before:
        return None
    base = aggregate(before, how, window=size)
    return None if base == 0 else (value - base) / abs(base)


def retained_window(points: Sequence[Point], size: timedelta, *, compare: bool) -> list[Point]:
    """The observations a window rule still needs after the newest of ``points``."""
    end = points[-1].time
    span = 2 * size if compare else size
    return [p for p in points if end - span < p.time][-MAX_RAW:]
