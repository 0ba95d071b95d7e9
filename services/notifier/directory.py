"""The notifier's cache of the people directory, refreshed by the directory's change events.

Every alert asks who its recipients are: the subject, their managers, the heads and HRBPs of
their org units. Asked of the goals service each time, that is an HTTP request per person
per alert. :class:`CachedDirectory` answers from memory instead, and keeps what it holds
current by following ``GOALWATCH_PEOPLE`` (:func:`follow_changes`):

- a ``PersonChanged`` drops that person; if their ``manager_id`` or ``org_unit_id`` is not
  what the cache held (or the cache did not hold them, so it cannot tell), every cached
  person is dropped, because a person's ``managers`` chain is derived from other people's
  records: a new manager changes the chain of everyone below them;
- an ``OrgUnitChanged`` drops every cached org unit (the walk up to a unit head or an HRBP
  reads several units, and a unit's move changes what every unit below it reaches).

Each entry also expires after a TTL (``GOALWATCH_DIRECTORY_CACHE_TTL``), a backstop for a
change missed while the notifier was cut off from NATS. "Not found" is cached too (many
alert subjects are wards or teams, not people), for at most :data:`NOT_FOUND_TTL`; a person
created later is found as soon as their ``PersonChanged`` arrives, which drops it.

A miss asks the goals service; :class:`~goalwatch.goals_client.GoalsUnavailable` passes
through uncached, so the alert is redelivered as before. Lookups of one id made while one is
already in flight wait for it rather than ask again. A lookup that was in flight when a
change arrived answers its callers but is not cached: it may have read the record before the
change.

Every replica follows the stream on an ordered consumer of its own, from the newest message
on: a replica starts with an empty cache, so older changes say nothing it needs, and nothing
has to be durable. The ordered consumer re-creates itself after a NATS restart and resumes
after the last change it delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Generic, Protocol, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import BaseModel, ConfigDict, ValidationError

from goalwatch.contracts import OrgUnitRead, PersonRead, subjects
from services.notifier.metrics import DIRECTORY_CHANGES, DIRECTORY_LOOKUPS

logger = logging.getLogger(__name__)

V = TypeVar("V")

DEFAULT_TTL = timedelta(minutes=10)
"""How long an entry is kept when no change event drops it first."""
NOT_FOUND_TTL = timedelta(minutes=1)
"""How long "no such person or unit" is kept at most (less if the TTL is shorter)."""
MAX_PEOPLE = 10_000
"""People kept at most; the least recently used go first."""
MAX_ORG_UNITS = 5_000
"""Org units kept at most; the least recently used go first."""


class Source(Protocol):
    """Where misses are looked up: the goals service (:class:`~goalwatch.goals_client.GoalsClient`)."""

    async def get_person(self, person_id: str) -> PersonRead | None:
        """The person, or None when goals has no such id."""
        ...

    async def get_org_unit(self, unit_id: str) -> OrgUnitRead | None:
        """The org unit, or None when goals has no such id."""
        ...


class _Lru(Generic[V]):
    """At most ``max_size`` entries, each with its own expiry; the least recently read goes
    first when full."""

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._entries: OrderedDict[str, tuple[float, V | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, *, now: float) -> tuple[bool, V | None]:
        """(True, value) for a live entry, (False, None) for none or an expired one."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, value = entry
        if expires <= now:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    def peek(self, key: str, *, now: float) -> tuple[bool, V | None]:
        """Like :meth:`get`, without making the entry the most recently read."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            return False, None
        return True, entry[1]

    def put(self, key: str, value: V | None, *, expires: float) -> None:
        """Keep ``value`` under ``key`` until ``expires``."""
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)

    def pop(self, key: str) -> None:
        """Forget ``key``."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()


class _Table(Generic[V]):
    """One kind of record (people or org units): the entries, the lookups in flight, and a
    generation that every drop advances, so that a lookup that began before a drop does not
    store what it read."""

    def __init__(self, kind: str, max_size: int) -> None:
        self.kind = kind
        self.entries: _Lru[V] = _Lru(max_size)
        self.in_flight: dict[str, asyncio.Future[V | None]] = {}
        self.generation = 0

    def drop(self, key: str) -> None:
        self.generation += 1
        self.entries.pop(key)
        # Callers from now on must not join a lookup that may have read the old record.
        self.in_flight.pop(key, None)

    def drop_all(self) -> None:
        self.generation += 1
        self.entries.clear()
        self.in_flight.clear()


class CachedDirectory:
    """People and org units from ``source``, kept in memory between change events.

    A :class:`~goalwatch.goals_client.PersonDirectory` and
    :class:`~goalwatch.goals_client.OrgUnits`; feed it changes with :meth:`apply` (done by
    :func:`follow_changes`).
    """

    def __init__(
        self,
        source: Source,
        *,
        ttl: timedelta = DEFAULT_TTL,
        not_found_ttl: timedelta = NOT_FOUND_TTL,
        max_people: int = MAX_PEOPLE,
        max_org_units: int = MAX_ORG_UNITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl.total_seconds()
        self._not_found_ttl = min(ttl, not_found_ttl).total_seconds()
        self._clock = clock
        self._people: _Table[PersonRead] = _Table("person", max_people)
        self._units: _Table[OrgUnitRead] = _Table("org_unit", max_org_units)

    async def get_person(self, person_id: str) -> PersonRead | None:
        """The person, or None when the directory has no such id; raises GoalsUnavailable
        when it must ask goals and goals cannot answer."""
        return await self._get(self._people, person_id, self._source.get_person)

    async def get_org_unit(self, unit_id: str) -> OrgUnitRead | None:
        """The org unit, or None when the directory has no such id; raises GoalsUnavailable
        when it must ask goals and goals cannot answer."""
        return await self._get(self._units, unit_id, self._source.get_org_unit)

    async def _get(
        self, table: _Table[V], key: str, fetch: Callable[[str], Awaitable[V | None]]
    ) -> V | None:
        found, value = table.entries.get(key, now=self._clock())
        if found:
            DIRECTORY_LOOKUPS.labels(kind=table.kind, outcome="hit").inc()
            return value
        lookup = table.in_flight.get(key)
        if lookup is not None:
            DIRECTORY_LOOKUPS.labels(kind=table.kind, outcome="joined").inc()
        else:
            DIRECTORY_LOOKUPS.labels(kind=table.kind, outcome="miss").inc()
            fetching = self._fetch(table, key, fetch)
            started = asyncio.create_task(fetching)
            started.add_done_callback(lambda done: _forget(table, key, done))
            table.in_flight[key] = lookup = started
        # Shielded: one caller cancelled (its message's handler gave up) must not cancel
        # the lookup the others wait for.
        return await asyncio.shield(lookup)

    async def _fetch(
        self, table: _Table[V], key: str, fetch: Callable[[str], Awaitable[V | None]]
    ) -> V | None:
        generation = table.generation
        value = await fetch(key)
        if table.generation == generation:
            ttl = self._ttl if value is not None else self._not_found_ttl
            table.entries.put(key, value, expires=self._clock() + ttl)
        return value

    def apply(self, subject: str, data: bytes) -> None:
        """Drop what the change event ``data``, published on ``subject``, makes stale."""
        if subject == subjects.ORG_UNIT_CHANGED:
            self._units.drop_all()
            DIRECTORY_CHANGES.labels(kind="org_unit", dropped="all").inc()
            return
        try:
            person = _PersonChange.model_validate_json(data).person
        except ValidationError as exc:
            # Whoever it was, the cache cannot tell: start again from goals.
            logger.warning("directory change on %s not understood; cache emptied: %s", subject, exc)
            self.clear()
            DIRECTORY_CHANGES.labels(kind="unknown", dropped="all").inc()
            return
        known, cached = self._people.entries.peek(person.id, now=self._clock())
        if (
            known
            and cached is not None
            and cached.manager_id == person.manager_id
            and cached.org_unit_id == person.org_unit_id
        ):
            # Name, e-mail or preferences: nobody else's record derives from those.
            self._people.drop(person.id)
            DIRECTORY_CHANGES.labels(kind="person", dropped="one").inc()
        else:
            self._people.drop_all()
            DIRECTORY_CHANGES.labels(kind="person", dropped="all").inc()

    def clear(self) -> None:
        """Forget every person and org unit."""
        self._people.drop_all()
        self._units.drop_all()

    def sizes(self) -> tuple[int, int]:
        """How many people and org units are cached (expired ones not yet evicted included)."""
        return len(self._people.entries), len(self._units.entries)


def _forget(table: _Table[V], key: str, done: asyncio.Future[V | None]) -> None:
    if table.in_flight.get(key) is done:
        del table.in_flight[key]
    # Retrieved here so that a failure whose callers all went away is not logged as an
    # exception nobody retrieved: the callers that stayed got it.
    if not done.cancelled():
        done.exception()


class _Person(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    manager_id: str | None = None
    org_unit_id: str | None = None


class _PersonChange(BaseModel):
    """What the cache reads of a ``PersonChanged``: lenient, so that a field goals adds to
    people does not empty the cache on every change."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    person: _Person


class DirectoryWatch:
    """A running :func:`follow_changes`."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    async def stop(self) -> None:
        """Stop following (the connection may be closed already: nothing is left to stop)."""
        try:
            await self._subscription.unsubscribe()
        except Exception as exc:  # a closed connection has no subscription left to end
            logger.debug("directory watch stopped: %r", exc)


async def follow_changes(connection: Client, cache: CachedDirectory) -> DirectoryWatch:
    """Apply every change published to ``GOALWATCH_PEOPLE`` from now on to ``cache``, in
    stream order, until the returned watch is stopped.

    Returns once the consumer exists: a change stored after that reaches the cache.
    """

    # The callback runs on the subscription's own task, one message at a time.
    async def on_message(msg: Msg) -> None:
        try:
            cache.apply(msg.subject, msg.data)
        except Exception:
            logger.exception("directory change on %s not applied; cache emptied", msg.subject)
            cache.clear()

    subscription = await connection.jetstream().subscribe(
        subjects.DIRECTORY_CHANGED,
        stream=subjects.STREAM_PEOPLE,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        cb=on_message,
    )
    return DirectoryWatch(subscription)
