"""How far along a goal is, from its own values. Pure.

A parent's progress is rolled up from its contributors by the write script, in the same step
as the write (:data:`services.goals.scripts.UPSERT_GOALS`).
"""

from __future__ import annotations


def own_progress(
    *, start: float | None, target: float | None, current: float | None
) -> float | None:
    """Percent of the way from ``start`` (0 when unset) to ``target``, clamped to 0-100.

    Works for targets below the start (a rate to bring down) too; ``None`` when the target or
    the current value is unknown.
    """
    if target is None or current is None:
        return None
    origin = 0.0 if start is None else start
    if target == origin:
        return 100.0 if current == target else 0.0
    return _clamp((current - origin) / (target - origin) * 100.0)


def _clamp(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 4)
