"""How far along a goal is: from its own values, or rolled up from its contributors. Pure."""

from __future__ import annotations

from collections.abc import Mapping


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


def rolled_up(
    goal_id: str,
    *,
    own: Mapping[str, float | None],
    children: Mapping[str, Mapping[str, float]],
) -> float | None:
    """Progress of ``goal_id``: the weighted mean of its contributors' progress (their own,
    or theirs rolled up), clamped to 0-100; its own when it has no contributor with a known
    progress. ``children`` maps a goal to its contributors and their weights."""
    memo: dict[str, float | None] = {}

    def walk(node: str, path: frozenset[str]) -> float | None:
        if node in memo:
            return memo[node]
        total = weighted = 0.0
        for child, weight in children.get(node, {}).items():
            if child in path:  # unreachable for a stored graph, which has no cycle
                continue
            value = walk(child, path | {child})
            if value is not None:
                total += weight
                weighted += weight * value
        result = _clamp(weighted / total) if total > 0 else own.get(node)
        memo[node] = result
        return result

    return walk(goal_id, frozenset({goal_id}))


def _clamp(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 4)
