"""Silences: for a while, alerts that match say nothing on any channel.

A silence is a list of matchers on an alert's labels, a start and an end, who made it and
why, as in Prometheus Alertmanager. An alert transition that arrives while a silence matches
it is still recorded in the inbox, but sent on no channel; the delivery log records it as
``silenced`` on each channel, with the silence's id. A transition is judged when it arrives:
a firing silenced, then resolved after the silence ended, sends the resolution.

The labels matched: ``rule`` (rule id), ``kind``, ``severity``, ``subject`` (person id),
``metric``, ``fingerprint``, and the alert's own labels (``department``, ...). A matcher is
``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex``; a regex matches the whole
value. A label the alert lacks has the value "".

Silences are kept in one Redis hash, ``goalwatch:notifier:silences`` (id -> JSON); an expired
one is kept for ``GOALWATCH_INBOX_RETENTION`` after its end, then dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import cast

from pydantic import AwareDatetime, Field, field_validator
from redis.asyncio import Redis

from goalwatch.contracts import AlertNotification
from goalwatch.contracts.base import Contract
from goalwatch.routing.matchers import Matcher, alert_labels

__all__ = ["Matcher", "Silence", "SilenceCreate", "SilenceState", "Silences", "alert_labels"]

KEY = "goalwatch:notifier:silences"


class SilenceCreate(Contract):
    """A silence asked for."""

    matchers: list[Matcher] = Field(
        min_length=1, max_length=20, description="Every matcher must hold for an alert."
    )
    starts_at: AwareDatetime | None = Field(None, description="From when; default: now.")
    ends_at: AwareDatetime = Field(description="Until when.")
    comment: str = Field(min_length=1, max_length=1000, description="Why: shown with it.")

    @field_validator("ends_at")
    @classmethod
    def _future(cls, value: datetime) -> datetime:
        if value <= datetime.now(UTC):
            raise ValueError("is in the past: a silence must end after now")
        return value


class SilenceState(StrEnum):
    """Where a silence stands now."""

    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


class Silence(Contract):
    """A silence as stored."""

    id: str = Field(description="Its id.")
    matchers: list[Matcher]
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    comment: str
    created_by: str = Field(description="Who made it.")
    created_at: AwareDatetime

    def state_at(self, now: datetime) -> SilenceState:
        """Pending, active or expired at ``now``."""
        if now < self.starts_at:
            return SilenceState.PENDING
        return SilenceState.ACTIVE if now < self.ends_at else SilenceState.EXPIRED

    def silences(
        self, notification: AlertNotification, now: datetime, org_units: Sequence[str] = ()
    ) -> bool:
        """Whether this silence keeps ``notification`` (about someone in ``org_units``) from
        being sent at ``now``."""
        if self.state_at(now) is not SilenceState.ACTIVE:
            return False
        labels = alert_labels(notification, org_units)
        return all(matcher.matches(labels) for matcher in self.matchers)


class Silences:
    """Silences in Redis."""

    def __init__(self, redis: Redis, *, retention: timedelta) -> None:
        self._redis = redis
        self._retention = retention

    async def create(self, asked: SilenceCreate, *, author: str, now: datetime) -> Silence:
        """Store a new silence."""
        silence = Silence(
            id=uuid.uuid4().hex[:12],
            matchers=asked.matchers,
            starts_at=asked.starts_at or now,
            ends_at=asked.ends_at,
            comment=asked.comment,
            created_by=author,
            created_at=now,
        )
        await self._redis.hset(KEY, silence.id, silence.model_dump_json())
        return silence

    async def all(self, now: datetime) -> list[Silence]:
        """Every silence kept, newest first; those expired beyond retention are dropped."""
        # decode_responses=True: field names and values come back as str.
        raw = cast(dict[str, str], await self._redis.hgetall(KEY))
        silences = [Silence.model_validate_json(doc) for doc in raw.values()]
        old = [s.id for s in silences if s.ends_at + self._retention < now]
        if old:
            await self._redis.hdel(KEY, *old)
        kept = [s for s in silences if s.id not in old]
        return sorted(kept, key=lambda s: s.created_at, reverse=True)

    async def get(self, silence_id: str) -> Silence | None:
        """One silence, or None."""
        raw = cast(str | None, await self._redis.hget(KEY, silence_id))
        return None if raw is None else Silence.model_validate_json(raw)

    async def expire(self, silence_id: str, now: datetime) -> Silence | None:
        """End a silence now (one already over stays as it was); None if there is none."""
        silence = await self.get(silence_id)
        if silence is None or silence.ends_at <= now:
            return silence
        ended = silence.model_copy(update={"ends_at": now})
        await self._redis.hset(KEY, silence_id, ended.model_dump_json())
        return ended

    async def matching(
        self, notification: AlertNotification, now: datetime, org_units: Sequence[str] = ()
    ) -> Silence | None:
        """The first active silence that keeps ``notification`` quiet, or None."""
        for silence in await self.all(now):
            if silence.silences(notification, now, org_units):
                return silence
        return None
