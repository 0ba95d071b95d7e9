"""The threshold kind: ``consecutive`` breaching observations in a row, by event time.

A rule with ``consecutive: N`` fires when the latest N observations *by event time* all
breach, so late and backfilled events are put in their place instead of being counted as the
newest. Whether one observation breaches is the rules engine's verdict
(:class:`goalwatch.rules.engine.RuleEngine`); what the run of verdicts means is :func:`decide`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from goalwatch.contracts import AlertState
from goalwatch.rules.transitions import Point, Transition

# Observations kept per key beyond what the rule needs, for context and late arrivals.
MIN_KEPT: Final = 10


@dataclass(frozen=True)
class StreakState:
    """What is remembered about one (rule, subject, metric) between observations."""

    # The newest observations, ordered by event time (ties by event id).
    kept: tuple[Point, ...] = ()
    firing: bool = False
    # Event time the firing alert's breaching run began; kept after it resolves.
    started_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """What one observation does to a key: its new state, and the alert transition if any."""

    state: StreakState
    transition: Transition | None = None
    duplicate: bool = False  # the event id was seen before: the state is unchanged


def _order(point: Point) -> tuple[datetime, str]:
    return point.time, point.event_id


def decide(state: StreakState, new: Point, *, consecutive: int) -> Decision:
    """Add ``new`` to ``state``.

    Firing iff the latest ``consecutive`` observations by event time all breach. Not firing
    to firing is a firing transition; firing to not firing a resolved one; otherwise nothing.
    An event id already kept changes nothing, even with other content. The newest
    ``max(consecutive, MIN_KEPT)`` observations are kept.
    """
    if any(point.event_id == new.event_id for point in state.kept):
        return Decision(state=state, duplicate=True)
    points = sorted([*state.kept, new], key=_order)
    latest = points[-consecutive:]
    holding = len(latest) == consecutive and all(point.breach for point in latest)
    transition: Transition | None = None
    started_at = state.started_at
    if holding and not state.firing:
        started_at = _streak_start(points)
        transition = Transition(AlertState.FIRING, started_at, tuple(latest))
    elif state.firing and not holding:
        transition = Transition(AlertState.RESOLVED, state.started_at or new.time)
    kept = tuple(points[-max(consecutive, MIN_KEPT) :])
    return Decision(
        state=StreakState(kept=kept, firing=holding, started_at=started_at),
        transition=transition,
    )


def _streak_start(points: Sequence[Point]) -> datetime:
    """Event time of the first observation of the breaching run that ends the sequence."""
    start = points[-1].time
    for point in reversed(points):
        if not point.breach:
            break
        start = point.time
    return start
