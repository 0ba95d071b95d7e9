"""People and their manager chain, stored in Redis.

One JSON document per person under ``goalwatch:goals:person:<id>`` and a set of all ids.
The manager chain is resolved on read, so a manager added after their reports still links up.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from goalwatch.contracts import PersonRead, PersonUpsert

_PREFIX = "goalwatch:goals:"
_IDS = f"{_PREFIX}people"
# A manager chain deeper than this is a data error (or a cycle), not an org chart.
MAX_CHAIN = 64


def _key(person_id: str) -> str:
    return f"{_PREFIX}person:{person_id}"


class ManagerCycleError(ValueError):
    """Upserting these people would make someone their own (indirect) manager."""


class PeopleStore:
    """Batch upsert and read of people, with manager chains."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def upsert(self, *, people: Sequence[PersonUpsert]) -> int:
        """Create or replace ``people`` atomically; refuse a batch that makes a manager cycle.

        An id given twice in one batch counts once: the later entry wins.
        """
        latest = list({person.id: person for person in people}.values())
        await self._check_no_cycle(people=latest)
        async with self._redis.pipeline(transaction=True) as pipe:
            for person in latest:
                pipe.set(_key(person.id), person.model_dump_json())
                pipe.sadd(_IDS, person.id)
            await pipe.execute()
        return len(latest)

    async def get(self, *, person_id: str) -> PersonRead | None:
        """One person with their manager chain (nearest first), or None."""
        person = await self._load(person_id)
        if person is None:
            return None
        managers: list[str] = []
        seen = {person.id}
        manager_id = person.manager_id
        while manager_id and manager_id not in seen and len(managers) < MAX_CHAIN:
            managers.append(manager_id)
            seen.add(manager_id)
            manager = await self._load(manager_id)
            manager_id = manager.manager_id if manager else None
        return PersonRead(**person.model_dump(), managers=managers)

    async def list(self, *, limit: int) -> list[PersonRead]:
        """Up to ``limit`` people, ordered by id."""
        ids = sorted(str(i) for i in await self._redis.smembers(_IDS))[:limit]
        people = [await self.get(person_id=person_id) for person_id in ids]
        return [p for p in people if p is not None]

    async def _load(self, person_id: str) -> PersonUpsert | None:
        raw = await self._redis.get(_key(person_id))
        return PersonUpsert.model_validate_json(raw) if raw else None

    async def _check_no_cycle(self, *, people: Sequence[PersonUpsert]) -> None:
        incoming = {p.id: p.manager_id for p in people}

        async def manager_of(person_id: str) -> str | None:
            if person_id in incoming:
                return incoming[person_id]
            stored = await self._load(person_id)
            return stored.manager_id if stored else None

        for person in people:
            chain = [person.id]
            manager_id = person.manager_id
            while manager_id is not None and len(chain) <= MAX_CHAIN:
                if manager_id in chain:
                    loop = " → ".join([*chain[chain.index(manager_id) :], manager_id])
                    raise ManagerCycleError(
                        f"person '{person.id}': manager_id makes a cycle ({loop}); "
                        "a person cannot manage themselves, directly or through others"
                    )
                chain.append(manager_id)
                manager_id = await manager_of(manager_id)
