"""The delivery log: what became of each alert transition on each channel, and for whom.

It answers "was manager X told, when, where, and did it arrive": every outcome the notifier
records in ``GOALWATCH_NOTIFICATIONS`` (:class:`~goalwatch.contracts.NotificationSent`) is
also kept here, in Redis, for ``GOALWATCH_INBOX_RETENTION``, indexed by recipient and by
alert, so that ``GET /v1/deliveries`` reads it without scanning the stream.

Keys (prefix ``goalwatch:notifier:delivery:``): ``record:{id}``, the outcome's JSON, with a
TTL; ``index:all``, ``index:recipient:{person}``, ``index:alert:{fingerprint}``,
``index:episode:{episode id}``, sorted sets of ids scored by the outcome's time. Recording an
outcome again (a redelivery finds the transition delivered and records it once more) changes
nothing. Outcomes recorded before they carried ``started_at`` are in no episode's index: they
are found by alert (fingerprint), until they expire.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from goalwatch.contracts import DeliveryStatus, NotificationSent
from services.notifier.inbox import episode_id
from services.notifier.pages import Walk, Window

PREFIX = "goalwatch:notifier:delivery:"
INDEX_ALL = f"{PREFIX}index:all"


def record_key(outcome_id: str) -> str:
    """Redis key of one outcome."""
    return f"{PREFIX}record:{outcome_id}"


def recipient_index(person_id: str) -> str:
    """The outcomes of the notifications addressed to one person."""
    return f"{PREFIX}index:recipient:{person_id}"


def alert_index(fingerprint: str) -> str:
    """The outcomes of one alert's notifications."""
    return f"{PREFIX}index:alert:{fingerprint}"


def episode_index(episode: str) -> str:
    """The outcomes of the notifications of one episode of an alert (one inbox entry)."""
    return f"{PREFIX}index:episode:{episode}"


def episode_of(outcome: NotificationSent) -> str | None:
    """The id of the episode ``outcome`` belongs to; None if it does not say."""
    if outcome.started_at is None:
        return None
    return episode_id(outcome.fingerprint, outcome.started_at)


@dataclass(frozen=True)
class DeliveryFilters:
    """What ``GET /v1/deliveries`` asks for: every filter given must match."""

    recipient: str | None = None
    alert: str | None = None
    episode: str | None = None
    channel: str | None = None
    status: DeliveryStatus | None = None
    since: datetime | None = None
    until: datetime | None = None

    def match(self, outcome: NotificationSent) -> bool:
        """Whether ``outcome`` passes every filter."""
        if self.recipient is not None and all(r.id != self.recipient for r in outcome.recipients):
            return False
        if self.alert is not None and outcome.fingerprint != self.alert:
            return False
        if self.episode is not None and episode_of(outcome) != self.episode:
            return False
        if self.channel is not None and outcome.channel != self.channel:
            return False
        return self.status is None or outcome.status is self.status

    def index(self) -> str:
        """The most selective index to walk."""
        if self.episode is not None:
            return episode_index(self.episode)
        if self.alert is not None:
            return alert_index(self.alert)
        if self.recipient is not None:
            return recipient_index(self.recipient)
        return INDEX_ALL


class DeliveryLog:
    """Delivery outcomes in Redis, kept ``retention`` from when each was known."""

    def __init__(self, redis: Redis, *, retention: timedelta) -> None:
        self._redis = redis
        self._retention = retention

    async def record(self, outcome: NotificationSent) -> None:
        """Keep ``outcome`` (idempotent by its id)."""
        entry = {outcome.id: outcome.at.timestamp()}
        pipe: Any  # redis-py leaves the pipeline untyped
        async with self._redis.pipeline(transaction=True) as pipe:
            # The first record of an outcome stands: a later copy has a later ``at`` only.
            pipe.set(record_key(outcome.id), outcome.model_dump_json(), px=self._retention, nx=True)
            pipe.zadd(INDEX_ALL, entry, nx=True)
            pipe.zadd(alert_index(outcome.fingerprint), entry, nx=True)
            episode = episode_of(outcome)
            if episode is not None:
                pipe.zadd(episode_index(episode), entry, nx=True)
            for recipient in outcome.recipients:
                pipe.zadd(recipient_index(recipient.id), entry, nx=True)
            await pipe.execute()

    async def page(
        self, filters: DeliveryFilters, limit: int, cursor: str | None = None
    ) -> tuple[list[NotificationSent], str | None]:
        """Outcomes matching ``filters``, newest first, at most ``limit``, after ``cursor``;
        and the cursor of the next page (None: none)."""
        walk = Walk(
            redis=self._redis,
            index=filters.index(),
            key=record_key,
            parse=NotificationSent.model_validate_json,
            match=filters.match,
        )
        return await walk.page(Window(filters.since, filters.until), limit, cursor)
