"""Goals, their links and check-ins in Redis (key layout in :mod:`services.goals.keys`).

Writes go through one script (:data:`services.goals.scripts.UPSERT_GOALS`) that checks the
versions read, refuses a link closing a cycle, writes the goals with their links in both
directions and their indexes, and appends the change records to the outbox, all in one
step. The same script keeps every goal's rolled-up progress, so reads never walk the tree for
it; walks that must (tree) take one pipelined round trip per level, never one per goal.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis

from goalwatch.contracts.goals import (
    CheckInCreate,
    CheckInRead,
    GoalRead,
    GoalUpsert,
    TreeNode,
)
from goalwatch.goal_graph import checked_in
from services.goals import keys
from services.goals.caught_up import CaughtUp, WriteGuard
from services.goals.progress import own_progress
from services.goals.scripts import UPSERT_GOALS

# A script answer of "conflict" means another writer changed a goal between our read and
# our write: read again. Past this many tries the write is refused with 409.
MAX_ATTEMPTS = 8
# Most goals a cycle check visits; an upward walk is a few levels, so reaching it means a
# broken graph rather than a large one.
MAX_WALK = 200_000
# Deepest walk of the alignment tree on reads (roll-up, tree).
MAX_DEPTH = 32
# Fields an upsert that leaves them out keeps as stored (check-ins set them).
CHECKED_IN_FIELDS = frozenset({"status", "current_value"})


class GraphError(ValueError):
    """A write the graph's rules refuse; ``item`` is its index in the batch."""

    def __init__(self, message: str, *, item: int | None = None) -> None:
        super().__init__(message)
        self.item = item


class ConflictError(RuntimeError):
    """Other writers kept changing the same goals; the client should retry."""


@dataclass(frozen=True)
class WriteResult:
    """What an upsert did, item by item."""

    created: int
    replaced: int
    unchanged: int


Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class GoalStore:
    """Upsert, check in, and read goals and their graph."""

    def __init__(
        self, redis: Redis, *, clock: Clock = _now, caught_up: CaughtUp | None = None
    ) -> None:
        """``caught_up`` makes every write wait for the store to replay what a restarted Redis
        lost (the service passes it; without it writes are not checked)."""
        self._redis = redis
        self._clock = clock
        self._guard = WriteGuard(caught_up)
        self._upsert = redis.register_script(UPSERT_GOALS)

    async def upsert(self, *, goals: Sequence[GoalUpsert]) -> WriteResult:
        """Create or replace ``goals`` (the later of a repeated id wins), atomically.

        Raises :class:`GraphError` for a batch that would close a cycle, naming it.
        """
        latest = list({goal.id: goal for goal in goals}.values())
        position = {goal.id: i for i, goal in enumerate(goals)}
        for _ in range(MAX_ATTEMPTS):
            stored = await self.load(ids=[g.id for g in latest])
            now = self._clock()
            items: list[dict[str, Any]] = []
            created = unchanged = 0
            for goal in latest:
                old = stored.get(goal.id)
                new = self._next(goal, old, now)
                if old is not None and _same(old, new):
                    unchanged += 1
                    continue
                created += old is None
                items.append(_item(new, old))
            if not items:
                return WriteResult(created=0, replaced=len(latest), unchanged=unchanged)
            answer = await self._run(items)
            if answer[0] == "conflict":
                continue
            if answer[0] == "cycle":
                kind = "contributes_to" if answer[1] == "up" else "depends_on"
                loop = " → ".join(answer[2:])
                raise GraphError(
                    f"goal '{answer[2]}': {kind} would close a cycle ({loop}); a goal cannot "
                    f"{'count towards' if kind == 'contributes_to' else 'depend on'} itself, "
                    "directly or through others",
                    item=position.get(answer[2]),
                )
            if answer[0] == "too_large":
                raise GraphError(f"goal '{answer[1]}': its links reach too many goals to check")
            return WriteResult(created=created, replaced=len(latest) - created, unchanged=unchanged)
        raise ConflictError("these goals kept changing under concurrent writes; retry")

    async def check_in(self, *, goal_id: str, check_in: CheckInCreate) -> CheckInRead | None:
        """Record ``check_in`` and apply it to the goal; None if there is no such goal.

        A check-in with an id already recorded changes nothing and returns the stored one.
        """
        check_in_id = check_in.id or uuid.uuid4().hex
        for _ in range(MAX_ATTEMPTS):
            old = (await self.load(ids=[goal_id])).get(goal_id)
            if old is None:
                return None
            now = self._clock()
            at = check_in.at or now
            new = checked_in(
                old,
                value=check_in.value,
                status=check_in.status,
                confidence=check_in.confidence,
                at=at,
                stored_at=now,
            )
            record = CheckInRead(
                id=check_in_id,
                goal_id=goal_id,
                value=check_in.value,
                status=check_in.status,
                confidence=check_in.confidence,
                note=check_in.note,
                by=check_in.by,
                at=at,
                progress=new.progress,
            )
            item = _item(new, old, links=False)
            item |= {"check_in": record.model_dump_json(), "check_in_id": check_in_id}
            answer = await self._run([item])
            if answer[0] == "conflict":
                continue
            if answer[0] == "duplicate":
                history = await self.check_ins(goal_id=goal_id, limit=1000)
                return next((c for c in history if c.id == check_in_id), record)
            return record
        raise ConflictError(f"goal '{goal_id}' kept changing under concurrent writes; retry")

    async def check_ins(self, *, goal_id: str, limit: int, offset: int = 0) -> list[CheckInRead]:
        """A goal's check-ins, newest first."""
        raw = await self._redis.lrange(keys.check_ins(goal_id), offset, offset + limit - 1)
        return [CheckInRead.model_validate_json(text) for text in raw]

    async def load(self, *, ids: Sequence[str]) -> dict[str, GoalRead]:
        """The stored goals of ``ids`` (one MGET), as stored (progress their own)."""
        if not ids:
            return {}
        raw = await self._redis.mget([keys.goal(i) for i in ids])
        return {i: GoalRead.model_validate_json(r) for i, r in zip(ids, raw, strict=True) if r}

    async def with_progress(self, goals: Sequence[GoalRead]) -> list[GoalRead]:
        """``goals`` with their progress rolled up (kept by the write script: one HMGET)."""
        if not goals:
            return []
        rolled = await self._redis.hmget(keys.PROGRESS, [g.id for g in goals])
        return [
            g.model_copy(update={"progress": round(float(value), 4)}) if value else g
            for g, value in zip(goals, rolled, strict=True)
        ]

    async def walk(
        self, *, goal_id: str, direction: Literal["up", "down"], max_depth: int = MAX_DEPTH
    ) -> list[tuple[str, str, float, int]]:
        """Goals above (``up``) or below (``down``) ``goal_id`` through contributes_to links,
        at most ``max_depth`` links away: ``(goal, reached from, weight, depth)``, nearest
        first, each once."""
        key = keys.up if direction == "up" else keys.down
        seen = {goal_id}
        found: list[tuple[str, str, float, int]] = []
        frontier = [goal_id]
        for depth in range(1, min(max_depth, MAX_DEPTH) + 1):
            pipe = self._redis.pipeline(transaction=False)
            for node in frontier:
                pipe.hgetall(key(node))
            levels: list[dict[str, str]] = await pipe.execute()
            next_level: list[str] = []
            for node, linked in zip(frontier, levels, strict=True):
                for other, weight in sorted(linked.items()):
                    if other not in seen:
                        seen.add(other)
                        found.append((other, node, float(weight), depth))
                        next_level.append(other)
            if not next_level:
                break
            frontier = next_level
        return found

    async def tree_nodes(self, steps: Sequence[tuple[str, str, float, int]]) -> list[TreeNode]:
        """``steps`` of :meth:`walk` with their goals (progress rolled up)."""
        loaded = await self.load(ids=[s[0] for s in steps])
        goals = {g.id: g for g in await self.with_progress(list(loaded.values()))}
        return [
            TreeNode(goal=goals[goal_id], via=via, weight=weight, depth=depth)
            for goal_id, via, weight, depth in steps
            if goal_id in goals
        ]

    async def dependencies(self, *, goal_id: str) -> tuple[list[str], list[str]]:
        """(what ``goal_id`` depends on, what depends on it), sorted."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.smembers(keys.deps(goal_id))
        pipe.smembers(keys.dependents(goal_id))
        deps, dependents = await pipe.execute()
        return sorted(deps), sorted(dependents)

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None,
        filters: dict[str, str],
        due_before: datetime | None,
        visible: Callable[[GoalRead], Awaitable[bool]] | None = None,
    ) -> tuple[list[GoalRead], str | None]:
        """Up to ``limit`` goals after ``cursor`` in id order, matching every filter (and,
        given ``visible``, visible to the reader).

        The first filter's index is scanned, a chunk of ids at a time with one MGET each;
        the other filters are checked on the goals read.
        """
        source = keys.index(*next(iter(filters.items()))) if filters else keys.GOAL_IDS
        start = f"({cursor}" if cursor else "-"
        chunk = max(limit * 2, 100)
        matched: list[GoalRead] = []
        while len(matched) <= limit:
            ids = [
                str(i)
                for i in await self._redis.zrange(
                    source, start, "+", bylex=True, offset=0, num=chunk
                )
            ]
            if not ids:
                break
            loaded = await self.load(ids=ids)
            for goal_id in ids:
                goal = loaded.get(goal_id)
                if (
                    goal is not None
                    and _matches(goal, filters, due_before)
                    and (visible is None or await visible(goal))
                ):
                    matched.append(goal)
            start = f"({ids[-1]}"
            if len(ids) < chunk:
                break
        more = len(matched) > limit
        page = matched[:limit]
        return await self.with_progress(page), (page[-1].id if more else None)

    def _next(self, goal: GoalUpsert, old: GoalRead | None, now: datetime) -> GoalRead:
        """What ``goal`` becomes when stored over ``old``: check-in state and version kept."""
        fields = goal.model_dump()
        kept: dict[str, Any] = {}
        if old is not None:
            kept = {"last_check_in_at": old.last_check_in_at, "confidence": old.confidence}
            # Check-ins move these: a goal tool that re-sends a goal's definition without
            # them must not undo the owner's last check-in.
            for field in CHECKED_IN_FIELDS - goal.model_fields_set:
                fields[field] = getattr(old, field)
        new = GoalRead(
            **fields,
            **kept,
            version=(old.version if old else 0) + 1,
            updated_at=now,
        )
        return new.model_copy(update={"progress": _own(new)})

    async def replay(self, messages: Sequence[tuple[int, bytes]]) -> int:
        """Apply goal events from ``GOALWATCH_GOALS`` again, in order: a goal (with its
        links, and the check-in that made it) is written where the store holds an older
        version or none. Returns how many were written; the rest were already stored."""
        applied = 0
        for _, data in messages:
            event = json.loads(data)
            if not isinstance(event, dict) or "goal" not in event:
                continue  # link events: the goal they belong to carries its links
            goal = GoalRead.model_validate(event["goal"])
            check_in = event.get("check_in")
            for _ in range(MAX_ATTEMPTS):
                old = (await self.load(ids=[goal.id])).get(goal.id)
                if old is not None and old.version >= goal.version:
                    break
                item = _item(goal, old)
                if check_in is not None:
                    record = CheckInRead.model_validate(check_in)
                    item |= {"check_in": record.model_dump_json(), "check_in_id": record.id}
                answer = await self._run([item], mode="replay")
                if answer[0] == "conflict":
                    continue  # another replica replays or writes the same goal
                applied += answer[0] == "ok"
                break
        return applied

    async def _run(
        self, items: list[dict[str, Any]], *, mode: Literal["write", "replay"] = "write"
    ) -> list[str]:
        run_id = await self._guard.run_id() if mode == "write" else ""
        answer = await self._upsert(
            keys=[keys.OUTBOX], args=[keys.GRAPH, json.dumps(items), MAX_WALK, run_id, mode]
        )
        if answer[0] == "stale":
            # Redis restarted since the store last caught up: replay, then read again.
            await self._guard.catch_up()
            return ["conflict"]
        return [str(part) for part in answer]


def _own(goal: GoalRead) -> float | None:
    return own_progress(
        start=goal.start_value, target=goal.target_value, current=goal.current_value
    )


def _same(old: GoalRead, new: GoalRead) -> bool:
    skip = {"version", "updated_at"}
    return old.model_dump(exclude=skip) == new.model_dump(exclude=skip)


def _index_keys(goal: GoalRead) -> list[str]:
    values = goal.model_dump(mode="json", include=set(keys.INDEXED))
    return [
        keys.index(field, str(value))[len(keys.GRAPH) :]
        for field, value in values.items()
        if value is not None
    ]


def _item(new: GoalRead, old: GoalRead | None, *, links: bool = True) -> dict[str, Any]:
    old_index = _index_keys(old) if old else []
    new_index = _index_keys(new)
    # Left out when unknown: the script would see JSON null as a value.
    own = {} if new.progress is None else {"own": repr(new.progress)}
    return {
        **own,
        "id": new.id,
        "doc": new.model_dump_json(),
        "expect": old.version if old else 0,
        "links": links,
        "parents": [[c.goal_id, repr(c.weight)] for c in new.contributes_to],
        "deps": list(new.depends_on),
        "idx_del": [k for k in old_index if k not in new_index],
        "idx_add": new_index,
    }


def _matches(goal: GoalRead, filters: dict[str, str], due_before: datetime | None) -> bool:
    values = goal.model_dump(mode="json", include=set(keys.INDEXED))
    if any(str(values.get(field)) != value for field, value in filters.items()):
        return False
    return due_before is None or (goal.due is not None and goal.due < due_before)
