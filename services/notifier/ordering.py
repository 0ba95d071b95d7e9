"""Each channel hears the transitions of one alert in the order they happened.

JetStream can hand the notifier a resolution before its firing is done: the firing's channel
attempt failed and waits for a redelivery (a nak with a delay) while the resolution arrives,
or another replica handles the resolution while this one is still delivering the firing.
The inbox copes (its merge only moves forward), but a chat group told "resolved" before
"firing" would not. So every transition leaves a marker per delivery (a channel; with
routing, a receiver's channel) while it is not settled there, and a later transition of the
same episode is not delivered there while the marker of its firing or of an earlier
escalation is present: it asks for a redelivery instead, as a failed channel attempt does.

Keys (prefix ``goalwatch:notifier:``): ``unsettled:{delivery}:{fingerprint}:{state}:
{started_at}``, with ``:{severity}`` appended for an escalation to that severity. The value
is when the transition is next expected to be handled (Unix seconds): ``ack_wait`` from now
while it is being handled (if its process dies, JetStream redelivers it after that), the
channel's retry delay from now once an attempt failed. A later transition waits until then,
or the policy's delay if that is sooner, plus :data:`SETTLE_MARGIN`.

The life of a marker:

- :meth:`DeliveryOrder.begin`, before the transition is recorded in the inbox, on every
  delivery it will go to. Before the inbox, so that a later transition recorded after it (on
  any replica) finds the marker: the inbox serialises the two. If the marker was already
  there, an earlier handling of the same transition was announced, began its delivery there
  and did not settle it (an attempt failed, or it waited for an earlier transition); then it
  is finished on that delivery even when the inbox has moved on since (a later transition
  of the episode waits for it there, or a later episode began meanwhile).
- :meth:`DeliveryOrder.after` once the delivery's attempt is over: removed when the
  transition was sent (or found sent already) or failed for good (dead-lettered); given the
  retry's time when the attempt will be made again.
- :meth:`DeliveryOrder.settled` where the transition will not be delivered after all: it
  is stale (a later one was recorded first) and nothing of it was under way there, it is
  silenced, or its message was dead-lettered.
- the TTL, longer than the whole retry span of a message, for a process that died and a
  message JetStream gave up on without a dead letter.

:meth:`DeliveryOrder.wait` is asked before each delivery of a resolution or an escalation.
At the message's last delivery it goes ahead even if the marker is still there: out of
order, but not lost. Waiting costs deliveries of the message: JetStream counts each one,
and a channel counts its attempts by them.

Not covered: the next episode's firing does not wait for the previous episode's resolution.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from redis.asyncio import Redis

from goalwatch.consumers import RedeliveryPolicy, Retry
from goalwatch.contracts import AlertNotification, AlertState, Severity
from services.notifier.inbox import PREFIX

logger = logging.getLogger(__name__)

SETTLE_MARGIN: Final = 1.0
"""Seconds a later transition gives the earlier one past its expected handling, for the
handling itself (a goals lookup, the inbox, one attempt on the channel)."""


def marker_key(
    delivery: str,
    *,
    fingerprint: str,
    started_at: datetime,
    state: AlertState = AlertState.FIRING,
    escalated_to: Severity | None = None,
) -> str:
    """The marker on ``delivery`` of an episode's firing, its escalation to ``escalated_to``
    (a firing with a severity), or its resolution (``state`` resolved)."""
    parts = [fingerprint, state.value, started_at.astimezone(UTC).isoformat()]
    if escalated_to is not None:
        parts.append(escalated_to.value)
    return f"{PREFIX}unsettled:{delivery}:" + ":".join(parts)


def _own_key(delivery: str, notification: AlertNotification) -> str:
    rise = notification.severity if notification.escalated_from is not None else None
    return marker_key(
        delivery,
        fingerprint=notification.fingerprint,
        started_at=notification.started_at,
        state=notification.state,
        escalated_to=rise,
    )


def _earlier_keys(delivery: str, notification: AlertNotification) -> list[str]:
    """The markers of the transitions of the same episode that come before ``notification``:
    none for a firing; the firing and lower escalations for an escalation; the firing and
    every escalation for a resolution."""
    if notification.state is AlertState.FIRING and notification.escalated_from is None:
        return []
    resolved = notification.state is AlertState.RESOLVED
    rises: list[Severity | None] = [
        None,
        *(s for s in Severity if resolved or s.rank < notification.severity.rank),
    ]
    return [
        marker_key(
            delivery,
            fingerprint=notification.fingerprint,
            started_at=notification.started_at,
            escalated_to=rise,
        )
        for rise in rises
    ]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DeliveryOrder:
    """The "not yet settled" markers of alert transitions, per delivery, in Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        policy: RedeliveryPolicy,
        in_flight: timedelta,
        ttl: timedelta,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """``in_flight``: how long a transition being handled may take before JetStream
        hands it out again (the consumer's ``ack_wait``); ``ttl``: longer than a message's
        whole retry span; ``policy``: the consumer's, whose delays bound a wait."""
        self._redis = redis
        self._policy = policy
        self._in_flight = in_flight
        self._ttl = ttl
        self._clock = clock

    async def begin(self, delivery: str, notification: AlertNotification) -> bool:
        """Mark a transition as not settled on ``delivery``, before it is recorded; True if
        it already was: an earlier handling of it began there and did not finish, so it is
        owed there whatever the inbox says now."""
        due = self._clock() + self._in_flight
        before = await self._redis.set(
            _own_key(delivery, notification), str(due.timestamp()), ex=self._ttl, get=True
        )
        return before is not None

    async def after(
        self, delivery: str, notification: AlertNotification, *, retry: Retry | None
    ) -> None:
        """The attempt on ``delivery`` is over: the transition is settled there (``retry``
        None: sent, found sent, or failed for good), or comes back after ``retry.delay``."""
        key = _own_key(delivery, notification)
        if retry is None:
            await self._redis.delete(key)
            return
        due = self._clock() + timedelta(seconds=retry.delay)
        # Only while it is there: a copy that settled it meanwhile must not bring it back.
        await self._redis.set(key, str(due.timestamp()), ex=self._ttl, xx=True)

    async def settled(self, delivery: str, notification: AlertNotification) -> None:
        """The transition will not be delivered on ``delivery`` (stale, silenced, given up):
        nothing waits for it there."""
        await self._redis.delete(_own_key(delivery, notification))

    async def wait(
        self, delivery: str, notification: AlertNotification, *, deliveries: int
    ) -> Retry | None:
        """Whether ``notification`` must wait before it is delivered on ``delivery``: a
        :class:`Retry` while an earlier transition of its episode is not settled there, None
        to go ahead. ``deliveries``: of the message so far, this one included; the last one
        the policy allows goes ahead regardless."""
        keys = _earlier_keys(delivery, notification)
        if not keys:
            return None
        found = [float(due) for due in await self._redis.mget(keys) if due is not None]
        if not found:
            return None
        what = "resolution" if notification.state is AlertState.RESOLVED else "escalation"
        if deliveries >= self._policy.max_deliver:
            logger.warning(
                "%s sent on %s before an earlier transition settled there: the message's "
                "last delivery cannot wait",
                what,
                delivery,
                extra={"fingerprint": notification.fingerprint, "channel": delivery},
            )
            return None
        until = min(found) - self._clock().timestamp()
        delay = min(max(until, 0.0), self._policy.delay(deliveries)) + SETTLE_MARGIN
        return Retry(
            delay=delay,
            reason=f"{what} of {notification.fingerprint} waits for its firing (or an "
            f"earlier escalation) to be settled on {delivery}",
        )
