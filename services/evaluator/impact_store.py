"""Dependency-impact state per (rule, failing goal) in Redis, one JSON document per key.

``goalwatch:evaluator:impact:{<rule>}:<goal>`` holds :class:`goalwatch.rules.impact.ImpactState`:
the last goal version applied, the open episode (whom the alert went to) and what is pending.
One evaluator replica applies a goal's changes one at a time (the consumer's batches are
handled in order, per goal), so a plain GET and SET suffice; the checkpoint that brackets each
batch makes a Redis that lost its last writes replay them (``docs/architecture.md``).
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis

from goalwatch.rules.impact import ImpactState

KEY_PREFIX: Final = "goalwatch:evaluator:impact:"


def state_key(rule_id: str, goal_id: str) -> str:
    """The Redis key of ``rule_id``'s state for ``goal_id``."""
    return f"{KEY_PREFIX}{{{rule_id}}}:{goal_id}"


class ImpactStore:
    """Reads and writes :class:`ImpactState` documents."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, *, rule_id: str, goal_id: str) -> ImpactState:
        """The state, or the empty state of a goal never seen."""
        raw = await self._redis.get(state_key(rule_id, goal_id))
        return ImpactState() if raw is None else ImpactState.model_validate_json(raw)

    async def put(self, *, rule_id: str, goal_id: str, state: ImpactState) -> None:
        """Store ``state``."""
        await self._redis.set(state_key(rule_id, goal_id), state.model_dump_json())
