"""Org units (company → department → team) in Redis: one JSON document each, a set of ids."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from goalwatch.contracts.goals import OrgUnitKind, OrgUnitRead, OrgUnitUpsert
from services.goals import keys

# A unit's parent must sit one level up: a team in a department, a department in a company.
PARENT_KIND = {
    OrgUnitKind.DEPARTMENT: OrgUnitKind.COMPANY,
    OrgUnitKind.TEAM: OrgUnitKind.DEPARTMENT,
}


class OrgUnitError(ValueError):
    """A batch of org units that does not make a company → department → team tree."""


class OrgUnitStore:
    """Batch upsert and bulk reads of org units."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def upsert(self, *, units: Sequence[OrgUnitUpsert]) -> tuple[int, int]:
        """Create or replace ``units`` in one transaction; (created, replaced).

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
        async with self._redis.pipeline(transaction=True) as pipe:
            for unit in latest.values():
                pipe.set(keys.org_unit(unit.id), unit.model_dump_json())
                pipe.zadd(keys.ORG_UNIT_IDS, {unit.id: 0})
            added = await pipe.execute()
        created = sum(int(flag) for flag in added[1::2])
        return created, len(latest) - created

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
