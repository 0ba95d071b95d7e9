"""Org units (company → department → team) in Redis: one JSON document each, a set of ids."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from goalwatch.contracts.goals import OrgUnitKind, OrgUnitRead, OrgUnitUpsert
from services.goals import keys
from services.goals.directory import Directory, Written

# A unit's parent must sit one level up: a team in a department, a department in a company.
PARENT_KIND = {
    OrgUnitKind.DEPARTMENT: OrgUnitKind.COMPANY,
    OrgUnitKind.TEAM: OrgUnitKind.DEPARTMENT,
}


class OrgUnitError(ValueError):
    """A batch of org units that does not make a company → department → team tree."""


class OrgUnitStore:
    """Batch upsert and bulk reads of org units."""

    def __init__(self, redis: Redis, *, directory: Directory | None = None) -> None:
        """``directory`` writes org units with the events they owe (a plain one by default)."""
        self._redis = redis
        self._directory = directory or Directory(redis)

    async def upsert(self, *, units: Sequence[OrgUnitUpsert]) -> Written:
        """Create or replace ``units`` in one step; each that changed is published to
        ``GOALWATCH_PEOPLE`` (once the outbox is flushed).

        A parent must be of the level above (in the batch or stored); a company has none.
        """
        latest = {unit.id: unit for unit in units}
        parents = sorted({u.parent_id for u in latest.values() if u.parent_id} - latest.keys())
        known = {u.id: u for u in await self._load(parents)} | latest
        for unit in latest.values():
            if unit.kind is OrgUnitKind.COMPANY:
                if unit.parent_id is not None:
                    raise OrgUnitError(f"org unit '{unit.id}': a company has no parent_id")
                continue
            parent = known.get(unit.parent_id or "")
            wanted = PARENT_KIND[unit.kind]
            if parent is None or parent.kind is not wanted:
                raise OrgUnitError(
                    f"org unit '{unit.id}': a {unit.kind.value} needs parent_id naming a "
                    f"{wanted.value} (in this batch or stored); got {unit.parent_id!r}"
                )
        return await self._directory.write("org_unit", list(latest.values()))

    async def get(self, unit_id: str) -> OrgUnitRead | None:
        """One org unit, or None."""
        found = await self._load([unit_id])
        return found[0] if found else None

    async def page(self, *, limit: int, cursor: str | None) -> list[OrgUnitRead]:
        """Up to ``limit`` org units after ``cursor``, in id order (one ZRANGE, one MGET)."""
        start = f"({cursor}" if cursor else "-"
        ids = [
            str(i)
            for i in await self._redis.zrange(
                keys.ORG_UNIT_IDS, start, "+", bylex=True, offset=0, num=limit
            )
        ]
        return await self._load(ids)

    async def count(self) -> int:
        """How many org units are stored."""
        return int(await self._redis.zcard(keys.ORG_UNIT_IDS))

    async def _load(self, ids: Sequence[str]) -> list[OrgUnitRead]:
        if not ids:
            return []
        raw = await self._redis.mget([keys.org_unit(i) for i in ids])
        return [OrgUnitRead.model_validate_json(r) for r in raw if r]
