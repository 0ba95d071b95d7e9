"""Goal-based overdue state per (rule, goal) in Redis, one JSON document per key.

``goalwatch:evaluator:overdue:{<rule>}:<goal>`` holds
:class:`goalwatch.rules.goal_overdue.GoalOverdueState`: the goal version applied, the goal as
last seen, the deadline armed, the open episode and the transition not yet published. Goal
events and fired timers reach it one at a time (the evaluator's batches take turns under one
lock, each goal's events in stream order), so a plain GET and SET suffice; the checkpoints
that bracket every batch make a Redis that lost its last writes replay them
(``docs/architecture.md``).
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis

from goalwatch.rules.goal_overdue import GoalOverdueState

KEY_PREFIX: Final = "goalwatch:evaluator:overdue:"


def state_key(rule_id: str, goal_id: str) -> str:
    """The Redis key of ``rule_id``'s state for ``goal_id``."""
    return f"{KEY_PREFIX}{{{rule_id}}}:{goal_id}"


class GoalOverdueStore:
    """Reads and writes :class:`GoalOverdueState` documents."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, *, rule_id: str, goal_id: str) -> GoalOverdueState:
        """The state, or the empty state of a goal never seen."""
        raw = await self._redis.get(state_key(rule_id, goal_id))
        return GoalOverdueState() if raw is None else GoalOverdueState.model_validate_json(raw)

    async def put(self, *, rule_id: str, goal_id: str, state: GoalOverdueState) -> None:
        """Store ``state``."""
        await self._redis.set(state_key(rule_id, goal_id), state.model_dump_json())
