"""Durable timers: JetStream message schedules in the ``GOALWATCH_TIMERS`` stream.

A timer is one pending schedule on a subject of its own,
``goalwatch.timers.v1.schedule.<owner>.<name>.<key>`` (:class:`TimerKey`). When it falls
due, the server publishes its body — a :class:`~goalwatch.contracts.TimerFired` — to
``goalwatch.timers.v1.fired.<owner>``, where the owner consumes it with
:class:`goalwatch.consumers.Consumers` like any other message (verdicts, retries, dead
letters). Timers live in JetStream with everything else: they survive a restart of any
service and of the server, and one due while its consumer is down waits in the stream.

- **arm** publishes the schedule (``Nats-Schedule: @at <time>``); a time in the past fires
  at once.
- **move** is arming again: the stream keeps one pending schedule per subject (the server
  rolls the subject up), so only the newest time fires. No ``Nats-Msg-Id`` is set: a
  constant one would make JetStream drop a re-arm inside its duplicate window.
- **cancel** deletes the pending schedule. Given the sequence :meth:`Timers.arm` returned,
  it deletes that arm only, race-free: an arm that fired or was moved meanwhile is gone
  already and nothing else is touched. Without one, it purges the subject. Both are
  idempotent. (The header form, ``Nats-Schedule-Next: purge`` with
  ``Nats-Expected-Last-Subject-Sequence-Subject``, must be published to a subject other
  than the schedule's — the fired subject would hand the owner an empty message.)

A timer can still fire after a cancel or a move that loses the race with it; its owner
compares ``due_at`` with the deadline its state holds and ignores a stale one.

The stream has no ``max_age`` or message limit, because limits also delete *pending*
schedules; fired messages are bounded instead by ``Nats-Schedule-TTL``, which the server
gives to each fired message (:data:`FIRED_TTL`, longer than any outage of a consumer).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from goalwatch.contracts import TimerFired, subjects

# How long a fired timer stays in the stream for its consumer: a consumer down longer than
# this loses the timers that fell due meanwhile.
FIRED_TTL: Final = timedelta(days=7)

TIMERS_STREAM: Final = StreamConfig(
    name=subjects.STREAM_TIMERS,
    description="Durable timers: pending message schedules and the timers they fired.",
    subjects=[f"{subjects.TIMERS}.>"],
    storage=StorageType.FILE,
    allow_msg_schedules=True,
    allow_msg_ttl=True,
    max_age=0,
    # No max_age (0: none), max_msgs or max_bytes: a limit also deletes pending schedules.
    # Fired messages expire by their own TTL (Nats-Schedule-TTL).
)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def fired_subject(owner: str) -> str:
    """Where the timers armed by ``owner`` are delivered when they fall due."""
    return f"{subjects.TIMERS_FIRED_PREFIX}.{_token('owner', owner)}"


def _token(what: str, value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"timer {what} {value!r} must be letters, digits, _ or - (one token)")
    return value


@dataclass(frozen=True)
class TimerKey:
    """Which timer: its owner (who consumes it), its name (what it is for) and its key.

    The key is one subject token, such as an alert fingerprint: ``fingerprint(rule,
    subject, metric)`` for a metric's absence, ``fingerprint(rule, goal, "due")`` for a
    goal's deadline. One key holds at most one pending deadline.
    """

    owner: str
    name: str
    key: str

    def __post_init__(self) -> None:
        _token("owner", self.owner)
        _token("name", self.name)
        _token("key", self.key)

    @property
    def subject(self) -> str:
        """The schedule's own subject."""
        return f"{subjects.TIMERS_SCHEDULE_PREFIX}.{self.owner}.{self.name}.{self.key}"


def _rfc3339(at: datetime) -> str:
    # The header carries milliseconds: rounded up, so that a timer never fires before its
    # due_at (truncated, it fired up to 1 ms early).
    at = at.astimezone(UTC)
    if extra := at.microsecond % 1000:
        at += timedelta(microseconds=1000 - extra)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Schedule:
    """The message that arms a timer: published to ``subject`` in ``GOALWATCH_TIMERS``."""

    subject: str
    body: bytes
    headers: dict[str, str]


def schedule(
    key: TimerKey,
    at: datetime,
    *,
    data: Mapping[str, str] | None = None,
    now: datetime | None = None,
    fired_ttl: timedelta = FIRED_TTL,
) -> Schedule:
    """The message :meth:`Timers.arm` publishes for ``key`` at ``at``.

    Exposed for publishers that arm many timers at once with ``publish_async`` (the overdue
    benchmark); everything else arms through :class:`Timers`.
    """
    if at.tzinfo is None:
        raise ValueError("a timer's time must be timezone-aware")
    body = TimerFired(
        owner=key.owner,
        name=key.name,
        key=key.key,
        due_at=at,
        armed_at=now or datetime.now(UTC),
        data=dict(data or {}),
    )
    return Schedule(
        subject=key.subject,
        body=body.model_dump_json().encode(),
        headers={
            "Nats-Schedule": f"@at {_rfc3339(at)}",
            "Nats-Schedule-Target": fired_subject(key.owner),
            "Nats-Schedule-TTL": f"{int(fired_ttl.total_seconds())}s",
            "content-type": "application/json",
        },
    )


class Timers:
    """Arm, move and cancel durable timers on the broker's NATS connection."""

    def __init__(self, connection: Callable[[], Client], *, fired_ttl: timedelta = FIRED_TTL):
        """``connection`` returns the connected NATS client (the broker's, once it started)."""
        self._connection = connection
        self._fired_ttl = fired_ttl

    async def arm(
        self,
        key: TimerKey,
        at: datetime,
        *,
        data: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> int:
        """Arm ``key`` to fire at ``at`` (or move it there); the stream sequence of the arm.

        The fired :class:`TimerFired` carries ``data``. A time in the past fires at once.
        """
        arm = schedule(key, at, data=data, now=now, fired_ttl=self._fired_ttl)
        ack = await (
            self._connection()
            .jetstream()
            .publish(arm.subject, arm.body, stream=subjects.STREAM_TIMERS, headers=arm.headers)
        )
        return int(ack.seq)

    async def cancel(self, key: TimerKey, *, sequence: int | None = None) -> bool:
        """Cancel ``key``'s pending timer; True if one was removed.

        With ``sequence`` (what :meth:`arm` returned) only that arm is removed: if it fired
        or was moved meanwhile, nothing is. Cancelling twice is harmless.
        """
        jsm = self._connection().jetstream()
        if sequence is None:
            if await self.pending(key) is None:
                return False
            # The purge answers success whether or not it removed anything: asked first.
            await jsm.purge_stream(subjects.STREAM_TIMERS, subject=key.subject)
            return True
        try:
            stored = await jsm.get_msg(subjects.STREAM_TIMERS, sequence)
        except NotFoundError:
            return False
        if stored.subject != key.subject:
            return False
        try:
            return bool(await jsm.delete_msg(subjects.STREAM_TIMERS, sequence))
        except NotFoundError:
            return False

    async def pending(self, key: TimerKey) -> datetime | None:
        """The time ``key`` is armed for, or None when nothing is pending."""
        jsm = self._connection().jetstream()
        try:
            stored = await jsm.get_last_msg(subjects.STREAM_TIMERS, key.subject)
        except NotFoundError:
            return None
        return TimerFired.model_validate_json(stored.data or b"{}").due_at
