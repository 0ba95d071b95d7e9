"""People and their manager chain, stored in Redis.

One JSON document per person under ``goalwatch:goals:person:<id>`` and a set of all ids.
The manager chain is resolved on read, so a manager added after their reports still links up.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence

from redis.asyncio import Redis

from goalwatch.contracts import PersonRead, PersonUpsert
from services.goals.directory import Directory, Written

_PREFIX = "goalwatch:goals:"
_IDS = f"{_PREFIX}people"
# A manager chain deeper than this is a data error (or a cycle), not an org chart.
MAX_CHAIN = 64
# People read at a time when a page is filtered to what its reader may see.
VISIBLE_CHUNK = 500


def _key(person_id: str) -> str:
    return f"{_PREFIX}person:{person_id}"


class ManagerCycleError(ValueError):
    """Upserting these people would make someone their own (indirect) manager."""


class PeopleStore:
    """Batch upsert and read of people, with manager chains."""

    def __init__(self, redis: Redis, *, directory: Directory | None = None) -> None:
        """``directory`` writes people with the events they owe (the service's, with its
        checks against Redis restarts; a plain one by default)."""
        self._redis = redis
        self._directory = directory or Directory(redis)

    async def upsert(self, *, people: Sequence[PersonUpsert]) -> Written:
        """Create or replace ``people`` atomically; refuse a batch that makes a manager cycle.

        An id given twice in one batch counts once: the later entry wins. Each person who
        changed is published to ``GOALWATCH_PEOPLE`` (once the outbox is flushed).
        """
        latest = list({person.id: person for person in people}.values())
        await self._check_no_cycle(people=latest)
        return await self._directory.write("person", latest)

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

    async def list(
        self,
        *,
        limit: int,
        after: str | None = None,
        visible: Callable[[PersonRead], Awaitable[bool]] | None = None,
    ) -> list[PersonRead]:
        """Up to ``limit`` people with ids after ``after``, ordered by id (and, given
        ``visible``, only those visible to the reader).

        Read in bulk: one MGET for the page, then one per level of the manager chains.
        """
        stored = (str(i) for i in await self._redis.smembers(_IDS))
        ids = sorted(i for i in stored if after is None or i > after)
        if visible is None:
            return await self._read(ids[:limit])
        shown: builtins.list[PersonRead] = []
        for start in range(0, len(ids), VISIBLE_CHUNK):
            for person in await self._read(ids[start : start + VISIBLE_CHUNK]):
                if await visible(person):
                    shown.append(person)
                    if len(shown) == limit:
                        return shown
        return shown

    async def _read(self, ids: Sequence[str]) -> builtins.list[PersonRead]:
        page = await self._load_many(ids)
        known = dict(page)
        missing = {p.manager_id for p in page.values() if p.manager_id} - known.keys()
        tried = set(known)
        for _ in range(MAX_CHAIN):
            if not missing:
                break
            tried |= missing
            found = await self._load_many(sorted(missing))
            known.update(found)
            missing = {p.manager_id for p in found.values() if p.manager_id} - tried
        return [
            PersonRead(**person.model_dump(), managers=_chain(person, known))
            for person in page.values()
        ]

    async def _load_many(self, ids: Sequence[str]) -> dict[str, PersonUpsert]:
        if not ids:
            return {}
        raw = await self._redis.mget([_key(i) for i in ids])
        return {i: PersonUpsert.model_validate_json(r) for i, r in zip(ids, raw, strict=True) if r}

    async def count(self) -> int:
        """How many people are stored."""
        return int(await self._redis.scard(_IDS))

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored."""
        if not ids:
            return set()
        flags = await self._redis.smismember(_IDS, list(ids))
        return {i for i, flag in zip(ids, flags, strict=True) if flag}

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


def _chain(person: PersonUpsert, known: dict[str, PersonUpsert]) -> list[str]:
    """``person``'s managers, nearest first, as far as ``known`` reaches."""
    managers: list[str] = []
    seen = {person.id}
    manager_id = person.manager_id
    while manager_id and manager_id not in seen and len(managers) < MAX_CHAIN:
        managers.append(manager_id)
        seen.add(manager_id)
        manager = known.get(manager_id)
        manager_id = manager.manager_id if manager else None
    return managers
