"""What a goal's failure reaches: up the alignment tree and across dependencies, any depth.

One script walks the graph inside Redis (:data:`services.goals.scripts.IMPACT`), then one
MGET reads the goals reached and one the people who own them: three round trips whatever the
size of the answer. The answer is put together by :func:`goalwatch.goal_graph.assemble_impact`,
which also serves the same walk over goals in memory (the rule tests).
"""

from __future__ import annotations

from redis.asyncio import Redis

from goalwatch.contracts import PersonUpsert
from goalwatch.contracts.goals import GoalImpact, GoalRead, LinkKind
from goalwatch.goal_graph import assemble_impact
from services.goals import keys
from services.goals.scripts import IMPACT

MAX_AFFECTED = 100_000
"""Most goals one impact answer lists."""


class ImpactWalk:
    """Computes :class:`GoalImpact` answers."""

    def __init__(self, redis: Redis, *, max_affected: int = MAX_AFFECTED) -> None:
        self._redis = redis
        self._script = redis.register_script(IMPACT)
        self._max = max_affected

    async def steps(self, goal_id: str) -> list[tuple[str, str, LinkKind, float, int]] | None:
        """The walk alone: ``(goal, reached from, link, share, depth)``, nearest first; None
        if there is no such goal."""
        answer = await self._script(keys=[keys.OUTBOX], args=[keys.GRAPH, goal_id, self._max])
        if not answer:
            return None
        raw, _truncated = answer
        return [
            (str(g), str(via), LinkKind(str(link)), float(share), int(depth))
            for g, via, link, share, depth in raw
        ]

    async def impact(self, goal_id: str) -> GoalImpact | None:
        """Every goal affected if ``goal_id`` fails, with the path, weight, owner, manager;
        None if there is no such goal."""
        steps = await self.steps(goal_id)
        if steps is None:
            return None
        goal_ids = [s[0] for s in steps]
        docs = await self._redis.mget([keys.goal(g) for g in goal_ids]) if goal_ids else []
        goals = {
            g: GoalRead.model_validate_json(doc)
            for g, doc in zip(goal_ids, docs, strict=True)
            if doc
        }
        owners = sorted({g.owner_id for g in goals.values()})
        docs = await self._redis.mget([keys.person(p) for p in owners]) if owners else []
        people = {
            owner: PersonUpsert.model_validate_json(doc)
            for owner, doc in zip(owners, docs, strict=True)
            if doc
        }
        return assemble_impact(goal_id, steps, goals=goals, people=people)
