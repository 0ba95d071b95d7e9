"""The web inbox: one entry per alert, newest first, kept in Redis.

Keys (prefix ``goalwatch:notifier:``)

- ``alert:{fingerprint}``: JSON of :class:`InboxAlert`, the alert's latest known transition. An
  escalation (the alert, still firing, rose to a higher severity) updates the same entry: it
  takes the new severity, message, ``escalated_from`` and ``escalated_at`` and keeps the
  first ``fired_at``. A resolution updates the same entry: its state becomes resolved and it
  keeps ``started_at``, ``fired_at``, ``escalated_at``, the highest severity, labels and
  history from the firing.
- ``index:all``, ``index:recipient:{person_id}``, ``index:rule:{rule_id}``,
  ``index:state:{state}``: sorted sets of fingerprints scored by ``updated_at`` (Unix seconds).

Transitions can arrive out of order (a firing whose channel attempt failed is redelivered
after its resolution was handled, another replica handles one while this one handles the
other, a replay after a Redis loss), so an entry only moves forward: episode ``started_at`` first, then
firing, each rise in severity, resolved. An older transition only fills in fields the entry
lacks: severity never goes down within an episode, and an escalation that arrives after the
resolution does not reopen the alert.

The merge is idempotent per transition: recording a transition the entry already reflects
changes nothing (:func:`holds` says so without merging), which is what lets a replay from
the alerts stream (:mod:`services.notifier.recovery`) pass over the entries Redis kept.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import AwareDatetime, Field
from redis.asyncio import Redis
from redis.exceptions import WatchError

from goalwatch.contracts import AlertNotification, AlertState, Recipient, Severity
from goalwatch.contracts.base import Contract
from services.notifier.pages import Walk, Window

PREFIX = "goalwatch:notifier:"
INDEX_ALL = f"{PREFIX}index:all"
UPDATES = f"{PREFIX}updates"
"""Redis pub/sub channel on which every change to an entry is published, as the entry's JSON."""
DEFAULT_LIMIT = 50
DEFAULT_RETENTION = timedelta(days=90)
MAX_LIMIT = 500


def alert_key(fingerprint: str) -> str:
    """Redis key of one inbox entry."""
    return f"{PREFIX}alert:{fingerprint}"


def recipient_index(person_id: str) -> str:
    """Sorted set of the alerts addressed to one person."""
    return f"{PREFIX}index:recipient:{person_id}"


def rule_index(rule_id: str) -> str:
    """Sorted set of the alerts of one rule."""
    return f"{PREFIX}index:rule:{rule_id}"


def state_index(state: AlertState) -> str:
    """Sorted set of the alerts currently in one state."""
    return f"{PREFIX}index:state:{state.value}"


class InboxAlert(AlertNotification):
    """An inbox entry: the alert's latest transition and when it happened."""

    updated_at: AwareDatetime = Field(
        description="Time of the latest transition (fired_at, escalated_at or resolved_at); "
        "sort key."
    )
    acked_at: AwareDatetime | None = Field(
        default=None, description="When someone acknowledged this firing; null: nobody yet."
    )
    acked_by: str | None = Field(default=None, description="Who acknowledged it.")
    ack_comment: str | None = Field(default=None, description="What they said.")

    def notification(self) -> AlertNotification:
        """The entry as the notification channels send it."""
        return AlertNotification.model_validate(
            {k: v for k, v in dict(self).items() if k not in _INBOX_ONLY}
        )


_INBOX_ONLY: Final = frozenset({"updated_at", "acked_at", "acked_by", "ack_comment"})
_ACK: Final = ("acked_at", "acked_by", "ack_comment")


class NotFiring(Exception):
    """The alert is not firing: there is nothing to acknowledge."""


class InboxPage(Contract):
    """``GET /v1/alerts`` response."""

    alerts: list[InboxAlert] = Field(description="Matching alerts, newest update first.")
    next_cursor: str | None = Field(
        default=None,
        description="Pass as ?cursor= (with the same filters) for the next page; null: this "
        "is the last.",
    )


@dataclass(frozen=True)
class Recorded:
    """Result of recording a transition.

    ``current`` is False when the inbox already held a later transition of the same alert: the
    incoming one is stale and should not be announced again.
    """

    alert: InboxAlert
    current: bool


def _order(notification: AlertNotification) -> tuple[datetime, int, int]:
    """Where a transition stands in the life of an alert: episode, then the firing and each
    rise in severity (ranked by severity, which only rises while firing), then resolved."""
    if notification.state is AlertState.RESOLVED:
        return (notification.started_at, 1, 0)
    return (notification.started_at, 0, notification.severity.rank)


def holds(
    entry: InboxAlert | None,
    *,
    state: AlertState,
    started_at: datetime,
    escalated_to: Severity | None = None,
) -> bool:
    """Whether ``entry`` already reflects the transition to ``state`` of the episode that
    began at ``started_at`` (an escalation to ``escalated_to`` when given), so that merging
    it again would change nothing.

    A later episode ignores an earlier one's transitions. Within one episode, an entry holds
    the firing once it has its ``fired_at`` (only the first firing carries it), an escalation
    once it was escalated and is at that severity or above (resolved or not), and the
    resolution once it is resolved.
    """
    if entry is None:
        return False
    if entry.started_at != started_at:
        return entry.started_at > started_at
    if escalated_to is not None:
        return entry.escalated_at is not None and entry.severity.rank >= escalated_to.rank
    if state is AlertState.RESOLVED:
        return entry.state is AlertState.RESOLVED
    return entry.fired_at is not None


def _union(first: list[Recipient], second: list[Recipient]) -> list[Recipient]:
    seen = {r.id for r in first}
    return [*first, *(r for r in second if r.id not in seen)]


def _fill(base: AlertNotification, other: AlertNotification) -> dict[str, Any]:
    """``base``'s fields (same episode), with what only the firing or an escalation carries
    taken from ``other`` when missing. ``escalated_from`` is always ``base``'s: it says
    whether ``base`` announces an escalation."""
    fields = dict(base)
    fields["kind"] = base.kind or other.kind
    # The loudest the episode has been: a late, lower escalation or a resolution does not
    # make a critical alert look like a warning.
    fields["severity"] = max(base.severity, other.severity, key=lambda s: s.rank)
    fields["fired_at"] = base.fired_at or other.fired_at
    fields["escalated_at"] = base.escalated_at or other.escalated_at
    fields["history"] = base.history or other.history
    fields["labels"] = base.labels or other.labels
    fields["impact"] = base.impact or other.impact
    fields["goal"] = base.goal or other.goal
    fields["recipients"] = _union(base.recipients, other.recipients)
    return fields


def merge(previous: InboxAlert | None, incoming: AlertNotification) -> Recorded:
    """What the inbox holds after ``incoming`` arrives on top of ``previous``."""
    if previous is None:
        return Recorded(
            alert=InboxAlert.model_validate({**dict(incoming), "updated_at": incoming.changed_at}),
            current=True,
        )
    same_episode = previous.started_at == incoming.started_at
    if _order(incoming) < _order(previous):
        if not same_episode:
            return Recorded(alert=previous, current=False)
        return Recorded(alert=InboxAlert.model_validate(_fill(previous, incoming)), current=False)
    fields = _fill(incoming, previous) if same_episode else dict(incoming)
    if same_episode:
        # An acknowledgement holds for its episode: an escalation or the resolution keeps it.
        fields.update({name: getattr(previous, name) for name in _ACK})
    fields["updated_at"] = incoming.changed_at
    return Recorded(alert=InboxAlert.model_validate(fields), current=True)


@dataclass(frozen=True)
class Filters:
    """What ``GET /v1/alerts`` asks for: every filter given must match."""

    recipient: str | None = None
    rule: str | None = None
    state: AlertState | None = None
    severity: Severity | None = None
    kind: str | None = None
    since: datetime | None = None  # updated at or after
    until: datetime | None = None  # updated before
    acked: bool | None = None

    def match(self, alert: InboxAlert) -> bool:
        """Whether ``alert`` passes every filter."""
        if self.recipient is not None and all(r.id != self.recipient for r in alert.recipients):
            return False
        if self.rule is not None and alert.rule_id != self.rule:
            return False
        if self.state is not None and alert.state is not self.state:
            return False
        if self.severity is not None and alert.severity is not self.severity:
            return False
        if self.kind is not None and alert.kind != self.kind:
            return False
        if self.since is not None and alert.updated_at < self.since:
            return False
        if self.acked is not None and (alert.acked_at is not None) != self.acked:
            return False
        return self.until is None or alert.updated_at < self.until

    def index(self) -> str:
        """The most selective index to walk."""
        if self.recipient is not None:
            return recipient_index(self.recipient)
        if self.rule is not None:
            return rule_index(self.rule)
        if self.state is not None:
            return state_index(self.state)
        return INDEX_ALL


class Inbox:
    """Redis-backed inbox of alerts, queried by recipient, rule and state.

    A resolved entry expires ``retention`` after its resolution (a firing one is kept while
    it fires); the indexes drop an expired entry when a listing meets it.
    """

    def __init__(self, redis: Redis, *, retention: timedelta = DEFAULT_RETENTION) -> None:
        self._redis = redis
        self._retention = retention

    async def record(self, notification: AlertNotification) -> Recorded:
        """Store a transition (merged with what is stored) and update the indexes atomically."""
        key = alert_key(notification.fingerprint)
        # redis-py leaves the pipeline's MULTI/reset untyped.
        pipe: Any
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    previous = InboxAlert.model_validate_json(raw) if raw else None
                    result = merge(previous, notification)
                    if result.alert == previous:
                        await pipe.reset()
                        return result
                    pipe.multi()
                    self._write(
                        pipe, previous=previous, alert=result.alert, keep=self._keep(result.alert)
                    )
                    await pipe.execute()
                    return result
                except WatchError:
                    # Another replica updated the same alert meanwhile: merge again on top of it.
                    continue

    def _keep(self, alert: InboxAlert) -> int | None:
        """Milliseconds ``alert`` is kept from now; None while it fires."""
        if alert.state is not AlertState.RESOLVED:
            return None
        left = alert.updated_at + self._retention - datetime.now(UTC)
        # At least a second: a transition replayed long after still lands, then goes.
        return max(1000, int(left.total_seconds() * 1000))

    @staticmethod
    def _write(
        pipe: Any, *, previous: InboxAlert | None, alert: InboxAlert, keep: int | None
    ) -> None:
        fingerprint = alert.fingerprint
        entry = {fingerprint: alert.updated_at.timestamp()}
        document = alert.model_dump_json()
        pipe.set(alert_key(fingerprint), document, px=keep)
        # In the transaction: announced once stored, and only then.
        pipe.publish(UPDATES, document)
        pipe.zadd(INDEX_ALL, entry)
        pipe.zadd(rule_index(alert.rule_id), entry)
        pipe.zadd(state_index(alert.state), entry)
        for state in AlertState:
            if state is not alert.state:
                pipe.zrem(state_index(state), fingerprint)
        for recipient in alert.recipients:
            pipe.zadd(recipient_index(recipient.id), entry)
        if previous is not None:
            kept = {r.id for r in alert.recipients}
            for gone in (r.id for r in previous.recipients if r.id not in kept):
                pipe.zrem(recipient_index(gone), fingerprint)

    async def ack(
        self, fingerprint: str, *, by: str, comment: str, at: datetime
    ) -> InboxAlert | None:
        """Acknowledge the firing alert ``fingerprint`` (None if the inbox has no such
        alert; :class:`NotFiring` if it is resolved). The first acknowledgement of an episode
        stands: acknowledging again changes nothing."""
        key = alert_key(fingerprint)
        pipe: Any
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if not raw:
                        await pipe.reset()
                        return None
                    entry = InboxAlert.model_validate_json(raw)
                    if entry.state is not AlertState.FIRING:
                        await pipe.reset()
                        raise NotFiring(
                            f"alert {fingerprint!r} resolved at {entry.resolved_at}: there is "
                            "nothing to acknowledge"
                        )
                    if entry.acked_at is not None:
                        await pipe.reset()
                        return entry
                    acked = entry.model_copy(
                        update={"acked_at": at, "acked_by": by, "ack_comment": comment or None}
                    )
                    document = acked.model_dump_json()
                    pipe.multi()
                    pipe.set(key, document, keepttl=True)
                    pipe.publish(UPDATES, document)
                    await pipe.execute()
                    return acked
                except WatchError:
                    continue  # a transition landed meanwhile: acknowledge what it left

    async def updates(self) -> AsyncIterator[InboxAlert | None]:
        """None once listening, then every entry as it changes from then on, on any
        replica, until the caller stops (each caller holds one Redis connection while it
        listens)."""
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(UPDATES)
            yield None
            async for message in pubsub.listen():
                if message["type"] == "message":
                    yield InboxAlert.model_validate_json(message["data"])
        finally:
            await pubsub.aclose()

    async def get(self, fingerprint: str) -> InboxAlert | None:
        """One entry by fingerprint, or None."""
        raw = await self._redis.get(alert_key(fingerprint))
        return InboxAlert.model_validate_json(raw) if raw else None

    async def list(
        self,
        *,
        recipient: str | None = None,
        rule: str | None = None,
        state: AlertState | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[InboxAlert]:
        """Entries matching every given filter, most recently updated first, at most ``limit``."""
        alerts, _ = await self.page(Filters(recipient=recipient, rule=rule, state=state), limit)
        return alerts

    async def page(
        self, filters: Filters, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> tuple[builtins.list[InboxAlert], str | None]:
        """Entries matching ``filters``, most recently updated first, at most ``limit``, from
        after ``cursor`` (a previous page's); and the cursor of the next page (None: none).

        The most selective index is walked (:mod:`services.notifier.pages`); the other
        filters are applied to the entries read. An entry updated while a client pages moves
        to the front: it is not seen twice on the way down.
        """
        walk = Walk(
            redis=self._redis,
            index=filters.index(),
            key=alert_key,
            parse=InboxAlert.model_validate_json,
            match=filters.match,
        )
        return await walk.page(Window(filters.since, filters.until), limit, cursor)
