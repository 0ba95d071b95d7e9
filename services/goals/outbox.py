"""Publishing goal changes: from the Redis outbox to ``GOALWATCH_GOALS``, oldest first.

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
from collections.abc import Sequence
from typing import Protocol

from faststream.nats import NatsBroker
from faststream.nats.publisher.usecase import LogicPublisher
from redis.asyncio import Redis

from goalwatch.consumers import provisioned
from goalwatch.contracts import subjects
from goalwatch.contracts.goal_events import GoalEvent
from services.goals import keys
from services.goals.events import SUBJECT_OF, ChangeRecord, events_of
from services.goals.metrics import EVENTS_PUBLISHED, OUTBOX_PENDING

logger = logging.getLogger(__name__)

# Records taken from the outbox per round.
CHUNK = 200


class GoalEventPublisher:
    """The goal event publishers, declared on the broker so the AsyncAPI document lists them."""

    def __init__(self, broker: NatsBroker, *, timeout: float) -> None:
        self._timeout = timeout
        self._publishers: dict[str, LogicPublisher] = {
            subject: broker.publisher(
                subject,
                stream=provisioned(subjects.STREAM_GOALS),
                schema=model,
                title=f"goals:{subject}",
                description=(model.__doc__ or model.__name__).split("\n\n")[0],
            )
            for model, subject in SUBJECT_OF.items()
        }

    async def publish(self, records: Sequence[ChangeRecord]) -> None:
        """Publish every event of ``records``; raise if JetStream does not ack one.

        The events of one goal go one after the other, in order; different goals' go
        concurrently, as awaiting every ack in turn is about ten times slower.
        """
        by_goal: dict[str, list[GoalEvent]] = defaultdict(list)
        for record in records:
            by_goal[record.goal_id].extend(events_of(record))
        await asyncio.gather(*(self._in_order(events) for events in by_goal.values()))

    async def _in_order(self, events: Sequence[GoalEvent]) -> None:
        for event in events:
            await self._publishers[SUBJECT_OF[type(event)]].publish(
                event.model_dump_json(),
                headers={"Nats-Msg-Id": event.event_id, "content-type": "application/json"},
                stream=subjects.STREAM_GOALS,
                timeout=self._timeout,
            )
            EVENTS_PUBLISHED.labels(event=type(event).__name__).inc()


class EventSink(Protocol):
    """Where the outbox sends change records (the JetStream publisher, or a test's)."""

    async def publish(self, records: Sequence[ChangeRecord]) -> None:
        """Publish the events of ``records``; raise unless every one was acknowledged."""
        ...


class Outbox:
    """Flushes the outbox: after each write, at start, and with backoff after a failure."""

    def __init__(self, redis: Redis, publisher: EventSink, *, retry_delay: float = 1.0) -> None:
        self._redis = redis
        self._publisher = publisher
        self._retry_delay = retry_delay
        self._lock = asyncio.Lock()
        self._failed = asyncio.Event()

    async def flush(self) -> bool:
        """Publish and remove every pending record; False if a publish failed (they stay)."""
        async with self._lock:  # one flush at a time keeps the order of the stream
            while True:
                raw = [str(r) for r in await self._redis.lrange(keys.OUTBOX, 0, CHUNK - 1)]
                if not raw:
                    OUTBOX_PENDING.set(0)
                    return True
                try:
                    await self._publisher.publish(
                        [ChangeRecord.model_validate_json(t) for t in raw]
                    )
                except Exception as exc:  # NATS down, timeout: the relay tries again
                    logger.warning("goal events not published yet (%r); will retry", exc)
                    OUTBOX_PENDING.set(await self._redis.llen(keys.OUTBOX))
                    self._failed.set()
                    return False
                # By value, not by position: another replica may have flushed them already.
                pipe = self._redis.pipeline(transaction=False)
                for text in raw:
                    pipe.lrem(keys.OUTBOX, 1, text)
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
