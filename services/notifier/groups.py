"""Groups: the alerts a route gathers and sends as one message, on durable timers.

A route with timing other than the default (each alert alone, at once: see
:class:`goalwatch.routing.spec.Timing`) does not send a transition when it arrives. It files
the alert, as the inbox has it now, into a **group**: the route's receiver and the values of
its ``group_by`` labels. The group's first message goes ``group_wait`` after its first alert;
a group that changes afterwards (an alert fires, rises or resolves) sends again at most every
``group_interval``; one that fires unchanged is repeated every ``repeat_interval`` (0: never).
Each message holds every alert of the group still firing, and those resolved since the
previous one; a resolved alert then leaves the group, and a group with no alert left ends.

State, in one Redis hash per group (``goalwatch:notifier:group:<id>``): ``meta`` (JSON of
:class:`GroupMeta`: the group's labels and timing, a ``version`` counted up on every change,
the ``sent_version`` its last message showed, the send sequence, the pending flush time) and
``a:<fingerprint>``, each alert's latest notification. Changes are optimistic transactions
(``WATCH``), so notifier replicas can add to one group at once.

The flush is a durable timer (:mod:`goalwatch.timers`, owner ``notifier``, name ``group``,
the group id as key), armed before the transaction that records it, so a crash cannot leave
a recorded flush without its timer. A timer whose ``due_at`` is not the one the group holds
is stale and ignored. A group whose recorded flush is long overdue (its timer lost with a
NATS store) is armed again by its next alert.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, Protocol, TypeVar, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.exceptions import WatchError

from goalwatch.contracts import AlertNotification, AlertState
from goalwatch.routing.spec import ALONE, Timing
from goalwatch.routing.tree import Matched
from goalwatch.timers import TimerKey
from services.notifier.inbox import PREFIX

logger = logging.getLogger(__name__)

OWNER: Final = "notifier"
TIMER: Final = "group"
OVERDUE: Final = timedelta(minutes=2)
"""A recorded flush this late has lost its timer: the next alert of the group arms it again."""
T = TypeVar("T")
_META: Final = "meta"
_ALERT: Final = "a:"


class Arm(Protocol):
    """Arms a durable timer (:meth:`goalwatch.timers.Timers.arm`)."""

    async def arm(
        self, key: TimerKey, at: datetime, *, data: Mapping[str, str] | None = None
    ) -> int:
        """Arm ``key`` to fire at ``at``, or move it there; the fired timer carries ``data``."""
        ...


def held_id(delivery: str) -> str:
    """The group of what is held back from one delivery."""
    return hashlib.sha256(f"held|{delivery}".encode()).hexdigest()[:24]


def group_key(group_id: str) -> str:
    """Redis key of one group."""
    return f"{PREFIX}group:{group_id}"


def timer_key(group_id: str) -> TimerKey:
    """The durable timer that flushes one group."""
    return TimerKey(owner=OWNER, name=TIMER, key=group_id)


@dataclass(frozen=True)
class GroupSpec:
    """Which group an alert joins on one route, and the route's timing."""

    id: str
    receiver: str
    route: str
    labels: dict[str, str]
    timing: Timing


def group_of(matched: Matched, labels: dict[str, str]) -> GroupSpec:
    """The group an alert with ``labels`` joins on the route ``matched``."""
    by = matched.timing.group_by
    values = (
        {"fingerprint": labels.get("fingerprint", "")}
        if by == (ALONE,)
        else {name: labels.get(name, "") for name in by}
    )
    token = json.dumps([matched.receiver, matched.path, sorted(values.items())])
    group_id = hashlib.sha256(token.encode()).hexdigest()[:24]
    return GroupSpec(
        id=group_id,
        receiver=matched.receiver,
        route=matched.path,
        labels=values,
        timing=matched.timing,
    )


class GroupMeta(BaseModel):
    """What a group keeps besides its alerts."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    receiver: str
    route: str
    labels: dict[str, str]
    group_wait: float = Field(ge=0)
    group_interval: float = Field(ge=0)
    repeat_interval: float = Field(ge=0)
    created_at: AwareDatetime
    last_sent_at: AwareDatetime | None = None
    seq: int = 0
    version: int = 0
    sent_version: int = 0
    due_at: AwareDatetime | None = None
    delivery: str | None = None
    reason: str = "group"

    def first_due(self, now: datetime) -> datetime:
        """When a change recorded at ``now`` is sent: ``group_wait`` after the group's start,
        or ``group_interval`` after its last message, and not before now."""
        if self.last_sent_at is None:
            due = self.created_at + timedelta(seconds=self.group_wait)
        else:
            due = self.last_sent_at + timedelta(seconds=self.group_interval)
        return max(due, now)


@dataclass(frozen=True)
class Snapshot:
    """A group as read for a flush."""

    id: str
    meta: GroupMeta
    alerts: dict[str, str]

    def notifications(self) -> list[AlertNotification]:
        """The alerts: firing ones first, then resolved, each newest first."""
        alerts = [AlertNotification.model_validate_json(raw) for raw in self.alerts.values()]
        alerts.sort(key=lambda a: a.changed_at, reverse=True)
        return [a for a in alerts if a.state is AlertState.FIRING] + [
            a for a in alerts if a.state is AlertState.RESOLVED
        ]

    @property
    def changed(self) -> bool:
        """Whether something changed since the group's last message."""
        return self.meta.version != self.meta.sent_version

    def repeat_due(self, now: datetime) -> bool:
        """Whether the group, unchanged and firing, is due a reminder at ``now``."""
        if self.meta.repeat_interval <= 0 or self.meta.last_sent_at is None:
            return False
        if not any(a.state is AlertState.FIRING for a in self.notifications()):
            return False
        return now >= self.meta.last_sent_at + timedelta(seconds=self.meta.repeat_interval)


class Groups:
    """Groups in Redis, flushed by durable timers."""

    def __init__(
        self,
        redis: Redis,
        timers: Arm,
        *,
        retention: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``retention``: how long a group nobody touches is kept (a safety net: a group
        ends when its last alert resolved and was sent)."""
        self._redis = redis
        self._timers = timers
        self._retention = retention
        self._clock = clock

    async def add(self, spec: GroupSpec, notification: AlertNotification) -> datetime:
        """File ``notification`` into its group; when the group's next message goes."""
        key = group_key(spec.id)
        raw = notification.model_dump_json()
        return await self._transaction(
            key,
            partial(self._add, spec=spec, fingerprint=notification.fingerprint, raw=raw),
        )

    async def _add(
        self,
        pipe: Any,
        *,
        spec: GroupSpec,
        fingerprint: str,
        raw: str,
        now: datetime,
        held: tuple[str, str, datetime | None] | None = None,
    ) -> Callable[[], Awaitable[datetime]]:
        stored = await pipe.hget(group_key(spec.id), _META)
        meta = (
            GroupMeta.model_validate_json(stored)
            if stored is not None
            else GroupMeta(
                receiver=spec.receiver,
                route=spec.route,
                labels=spec.labels,
                group_wait=spec.timing.group_wait.total_seconds(),
                group_interval=spec.timing.group_interval.total_seconds(),
                repeat_interval=spec.timing.repeat_interval.total_seconds(),
                created_at=now,
                delivery=None if held is None else held[0],
                reason="group" if held is None else held[1],
            )
        )
        due = meta.due_at
        if held is None:
            wanted = meta.first_due(now)
        else:  # joining (no time): when the held ones go; else the earlier of theirs and this
            at = max(held[2] or now, now)
            wanted = (due or at) if held[2] is None else min(at, due or at)
        # Armed anew when no message is pending, when the pending one is a reminder later
        # than a change may wait, or when it is so late that its timer must have been lost.
        if due is None or due > wanted or due + OVERDUE < now:
            due = wanted
            # Armed before the change is recorded: a crash in between leaves a timer that
            # finds the group as it was (and is harmless), never a recorded flush without one.
            await self._timers.arm(timer_key(spec.id), due)
        meta = meta.model_copy(update={"version": meta.version + 1, "due_at": due})
        key = group_key(spec.id)

        async def commit() -> datetime:
            pipe.multi()
            pipe.hset(key, mapping={f"{_ALERT}{fingerprint}": raw, _META: meta.model_dump_json()})
            pipe.expire(key, self._retention)
            await pipe.execute()
            return due

        return commit

    async def hold(
        self,
        *,
        delivery: str,
        receiver: str,
        reason: str,
        notification: AlertNotification,
        until: datetime | None,
    ) -> datetime:
        """Hold ``notification`` back from one delivery (``receiver/channel[/person]``) for
        ``reason`` (``rate_limit``, ``quiet_hours``), to go with the others held back there as
        one message at ``until`` (or at an earlier time the held group has already; None:
        when they go, or now if none are held); returns when it goes."""
        spec = GroupSpec(
            id=held_id(delivery),
            receiver=receiver,
            route=f"held:{delivery}",
            labels={},
            timing=Timing(group_wait=timedelta(0), group_interval=timedelta(0)),
        )
        key = group_key(spec.id)
        raw = notification.model_dump_json()
        return await self._transaction(
            key,
            partial(
                self._add,
                spec=spec,
                fingerprint=notification.fingerprint,
                raw=raw,
                held=(delivery, reason, until),
            ),
        )

    async def holding(self, delivery: str) -> bool:
        """Whether messages for ``delivery`` are being held back now: then a new one joins
        them rather than overtaking them."""
        return bool(await self._redis.exists(group_key(held_id(delivery))))

    async def postpone(self, snapshot: Snapshot, until: datetime) -> datetime:
        """Move the pending message of ``snapshot``'s group to ``until`` (a rate limit has no
        room before); nothing changes if the group moved on meanwhile. Returns ``until``."""
        key = group_key(snapshot.id)

        async def prepare(pipe: Any, *, now: datetime) -> Callable[[], Awaitable[datetime]]:
            stored = await pipe.hget(key, _META)
            meta = None if stored is None else GroupMeta.model_validate_json(stored)
            current = meta is not None and meta.due_at == snapshot.meta.due_at
            if current:
                await self._timers.arm(timer_key(snapshot.id), until)

            async def commit() -> datetime:
                if meta is not None and current:
                    pipe.multi()
                    pipe.hset(
                        key, _META, meta.model_copy(update={"due_at": until}).model_dump_json()
                    )
                    await pipe.execute()
                return until

            return commit

        return await self._transaction(key, prepare)

    async def snapshot(self, group_id: str) -> Snapshot | None:
        """The group as it is now, or None when it has ended."""
        raw = cast(dict[str, str], await self._redis.hgetall(group_key(group_id)))
        if _META not in raw:
            return None
        alerts = {k[len(_ALERT) :]: v for k, v in raw.items() if k.startswith(_ALERT)}
        return Snapshot(group_id, GroupMeta.model_validate_json(raw[_META]), alerts)

    async def done(self, snapshot: Snapshot, *, sent: bool) -> datetime | None:
        """Record that ``snapshot`` was sent (``sent``) or needed no message; resolved alerts
        it showed leave the group. Returns when the group sends next, or None."""
        key = group_key(snapshot.id)
        return await self._transaction(key, partial(self._done, snapshot=snapshot, sent=sent))

    async def _done(
        self, pipe: Any, *, snapshot: Snapshot, sent: bool, now: datetime
    ) -> Callable[[], Awaitable[datetime | None]]:
        key = group_key(snapshot.id)
        raw = cast(dict[str, str], await pipe.hgetall(key))
        if _META not in raw:

            async def nothing() -> datetime | None:
                return None

            return nothing
        meta = GroupMeta.model_validate_json(raw[_META])
        shown = snapshot.meta.version
        # Alerts the message showed, unchanged since, leave when they are told for good: a
        # resolved one; and every one of a held-back queue, which is a queue, not a standing
        # group (what stays would hold the delivery back for ever).
        queue = meta.delivery is not None and sent
        gone = [
            f"{_ALERT}{fingerprint}"
            for fingerprint, alert in snapshot.alerts.items()
            if raw.get(f"{_ALERT}{fingerprint}") == alert
            and (queue or AlertNotification.model_validate_json(alert).state is AlertState.RESOLVED)
        ]
        left = [k for k in raw if k.startswith(_ALERT) and k not in gone]
        firing = any(
            AlertNotification.model_validate_json(raw[k]).state is AlertState.FIRING for k in left
        )
        last_sent = now if sent else meta.last_sent_at
        due: datetime | None = None
        if meta.version != shown:  # changed while this message was under way
            base = last_sent or meta.created_at
            due = max(now, base + timedelta(seconds=meta.group_interval))
        elif firing and meta.repeat_interval > 0 and last_sent is not None:
            due = last_sent + timedelta(seconds=meta.repeat_interval)
        if due is not None:
            await self._timers.arm(timer_key(snapshot.id), due)
        updated = meta.model_copy(
            update={
                "seq": meta.seq + (1 if sent else 0),
                "last_sent_at": last_sent,
                "sent_version": shown,
                "due_at": due,
            }
        )

        async def commit() -> datetime | None:
            pipe.multi()
            if not left and due is None:
                pipe.delete(key)
            else:
                if gone:
                    pipe.hdel(key, *gone)
                pipe.hset(key, _META, updated.model_dump_json())
                pipe.expire(key, self._retention)
            await pipe.execute()
            return due

        return commit

    async def _transaction(
        self, key: str, prepare: Callable[..., Awaitable[Callable[[], Awaitable[T]]]]
    ) -> T:
        """Run ``prepare(pipe, now=...)`` under ``WATCH key`` and the commit it returns, again
        from the start whenever another replica changed the key meanwhile."""
        # redis-py leaves the pipeline's WATCH/MULTI untyped.
        pipe: Any
        while True:
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(key)
                    commit = await prepare(pipe, now=self._clock())
                    return await commit()
            except WatchError:
                continue  # another replica changed the group meanwhile: read it again
