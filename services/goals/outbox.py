"""Publishing changes: from a Redis outbox to ``GOALWATCH_GOALS`` (goals) or
``GOALWATCH_PEOPLE`` (people and org units), oldest first.

A write appends its change record to the outbox in the same script that makes the change
(:mod:`services.goals.scripts`), so a change cannot be stored without its events being owed.
The writer then flushes the outbox; a record leaves it only once JetStream has acknowledged
every event it stands for. If the publish fails (NATS down, a timeout), the record stays,
the write still answers (it is stored), and the relay flushes again with backoff until
the outbox is empty, and at every start. A record published but not yet removed (a crash in
between) is published again under the same ``Nats-Msg-Id``s, which the stream drops within
its one-day duplicate window: every change reaches the stream, once, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from faststream.nats import NatsBroker
from faststream.nats.publisher.usecase import LogicPublisher
from prometheus_client import Gauge
from redis.asyncio import Redis

from goalwatch.consumers import provisioned
from goalwatch.contracts import subjects
from goalwatch.contracts.directory_events import DirectoryEvent
from goalwatch.contracts.goal_events import GoalEvent
from services.goals import keys
from services.goals.directory import SUBJECT_OF as DIRECTORY_SUBJECT_OF
from services.goals.directory import DirectoryRecord, event_of
from services.goals.events import SUBJECT_OF, ChangeRecord, events_of
from services.goals.metrics import EVENTS_PUBLISHED, OUTBOX_PENDING

logger = logging.getLogger(__name__)

# Records taken from the outbox per round.
CHUNK = 200


Event = GoalEvent | DirectoryEvent
"""What the goals service publishes: every event has an ``event_id`` (its Nats-Msg-Id)."""

Unpack = Callable[[str], tuple[str, list[Event]]]
"""A change record (as the outbox holds it) → (what orders its events, the events)."""


def goal_events(raw: str) -> tuple[str, list[Event]]:
    """A goal's change record → its events (:func:`goalwatch.goal_graph.events_of`)."""
    record = ChangeRecord.model_validate_json(raw)
    return record.goal_id, list(events_of(record))


def directory_events(raw: str) -> tuple[str, list[Event]]:
    """A person's or org unit's change record → its event."""
    record = DirectoryRecord.model_validate_json(raw)
    return f"{record.kind}:{record.id}", [event_of(record)]


class StreamPublisher:
    """The publishers of one stream's events, declared on the broker so the AsyncAPI document
    lists them; publishes the events of outbox records."""

    def __init__(
        self,
        broker: NatsBroker,
        *,
        stream: str,
        subject_of: Mapping[type[Event], str],
        unpack: Unpack,
        timeout: float,
    ) -> None:
        self._stream = stream
        self._subject_of = subject_of
        self._unpack = unpack
        self._timeout = timeout
        self._publishers: dict[str, LogicPublisher] = {
            subject: broker.publisher(
                subject,
                stream=provisioned(stream),
                schema=model,
                title=f"goals:{subject}",
                description=(model.__doc__ or model.__name__).split("\n\n")[0],
            )
            for model, subject in subject_of.items()
        }

    async def publish(self, records: Sequence[str]) -> None:
        """Publish every event of ``records``; raise if JetStream does not ack one.

        The events of one goal (or person, or org unit) go one after the other, in order;
        different ones' go concurrently, as awaiting every ack in turn is about ten times
        slower.
        """
        by_key: dict[str, list[Event]] = defaultdict(list)
        for raw in records:
            key, events = self._unpack(raw)
            by_key[key].extend(events)
        await asyncio.gather(*(self._in_order(events) for events in by_key.values()))

    async def _in_order(self, events: Sequence[Event]) -> None:
        for event in events:
            await self._publishers[self._subject_of[type(event)]].publish(
                event.model_dump_json(),
                headers={"Nats-Msg-Id": event.event_id, "content-type": "application/json"},
                stream=self._stream,
                timeout=self._timeout,
            )
            EVENTS_PUBLISHED.labels(event=type(event).__name__).inc()


def goal_publisher(broker: NatsBroker, *, timeout: float) -> StreamPublisher:
    """Goal changes to ``GOALWATCH_GOALS``."""
    return StreamPublisher(
        broker,
        stream=subjects.STREAM_GOALS,
        subject_of={model: subject for model, subject in SUBJECT_OF.items()},
        unpack=goal_events,
        timeout=timeout,
    )


def directory_publisher(broker: NatsBroker, *, timeout: float) -> StreamPublisher:
    """People and org unit changes to ``GOALWATCH_PEOPLE``."""
    return StreamPublisher(
        broker,
        stream=subjects.STREAM_PEOPLE,
        subject_of={model: subject for model, subject in DIRECTORY_SUBJECT_OF.items()},
        unpack=directory_events,
        timeout=timeout,
    )


class EventSink(Protocol):
    """Where the outbox sends change records (a :class:`StreamPublisher`, or a test's)."""

    async def publish(self, records: Sequence[str]) -> None:
        """Publish the events of ``records`` (as the outbox holds them); raise unless every
        one was acknowledged."""
        ...


class Outbox:
    """Flushes the outbox: after each write, at start, and with backoff after a failure."""

    def __init__(
        self,
        redis: Redis,
        publisher: EventSink,
        *,
        key: str = keys.OUTBOX,
        pending: Gauge = OUTBOX_PENDING,
        retry_delay: float = 1.0,
    ) -> None:
        """``key`` is the Redis list the records wait in and ``pending`` the gauge of how many
        wait after a failed publish (the goals' by default)."""
        self._redis = redis
        self._key = key
        self._pending = pending
        self._publisher = publisher
        self._retry_delay = retry_delay
        self._lock = asyncio.Lock()
        self._failed = asyncio.Event()

    async def flush(self) -> bool:
        """Publish and remove every pending record; False if a publish failed (they stay)."""
        async with self._lock:  # one flush at a time keeps the order of the stream
            while True:
                raw = [str(r) for r in await self._redis.lrange(self._key, 0, CHUNK - 1)]
                if not raw:
                    self._pending.set(0)
                    return True
                try:
                    await self._publisher.publish(raw)
                except Exception as exc:  # NATS down, timeout: the relay tries again
                    logger.warning("goal events not published yet (%r); will retry", exc)
                    self._pending.set(await self._redis.llen(self._key))
                    self._failed.set()
                    return False
                # By value, not by position: another replica may have flushed them already.
                pipe = self._redis.pipeline(transaction=False)
                for text in raw:
                    pipe.lrem(self._key, 1, text)
                await pipe.execute()

    async def after_write(self) -> bool:
        """Flush after a write, unless the relay is already retrying a failed publish: then a
        write answers at once, its events following with the others when NATS is back."""
        if self._failed.is_set():
            return False
        return await self.flush()

    async def relay(self) -> None:
        """Run while the service serves: flush at start, and again after any failed flush."""
        delay = self._retry_delay
        while True:
            try:
                ok = await self.flush()
            except Exception as exc:  # Redis down: as for NATS, try again later
                logger.warning("goal outbox not readable (%r); will retry", exc)
                ok = False
            if ok:
                delay = self._retry_delay
                self._failed.clear()
                await self._failed.wait()
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
