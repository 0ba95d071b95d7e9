"""Sending a group's message when its timer falls due (:mod:`services.notifier.groups`).

The notifier consumes its fired timers (``goalwatch.timers.v1.fired.notifier``). For a group
timer that is not stale, it reads the group and decides: something changed since the last
message, so the group is sent; or nothing changed, the group still fires and a reminder is
due (``repeat_interval``), so it is sent as a reminder; or neither, and nothing is sent. A
group of one alert, sent for a change, is the plain message of that alert; otherwise the
receiver's channels get an :class:`AlertDigest`.

Each message is one delivery per receiver channel (per person, for a per-person receiver),
claimed like a transition's (:class:`services.notifier.claims.DeliveryClaims`) under the
group's send sequence, so a redelivered timer sends nothing twice. A channel attempt that
may pass later asks for the timer to be redelivered; only when every delivery is settled is
the send recorded (and the group's next timer armed). Every alert of the message gets its
``NotificationSent`` on each channel, so the delivery log answers for each alert.

A message that failed for good is logged, recorded as failed for each alert, and kept in the
dead-letter stream for inspection; it is not replayed (the group's next message carries its
alerts again, as they are then).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

from goalwatch.consumers import (
    ACK,
    Received,
    RedeliveryPolicy,
    Retry,
    Verdict,
    dead_letter,
    dead_letter_id,
)
from goalwatch.contracts import (
    AlertDigest,
    AlertNotification,
    DeliveryStatus,
    DigestReason,
    NotificationSent,
    Recipient,
    TimerFired,
)
from services.notifier.channels import DeliveryResult
from services.notifier.claims import DeliveryClaims
from services.notifier.deliveries import DeliveryLog
from services.notifier.groups import Groups, Snapshot
from services.notifier.inbox import PREFIX
from services.notifier.limits import Limiter
from services.notifier.metrics import GROUP_MESSAGES, NOTIFICATIONS_FAILED, NOTIFICATIONS_SENT
from services.notifier.outcomes import Outcomes
from services.notifier.receivers import DigestDelivery
from services.notifier.routing import Routing

logger = logging.getLogger(__name__)

EARLY = timedelta(seconds=1)
"""How early a group timer may fire and still count (schedules fire on the second)."""
DIGESTS_SUBJECT = "goalwatch.notifier.digests.v1"
"""The origin named in the dead letter of a message that failed for good (not replayable)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GroupFlusher:
    """Handles the notifier's fired group timers."""

    def __init__(
        self,
        *,
        groups: Groups,
        routing: Routing,
        claims: DeliveryClaims,
        outcomes: Outcomes,
        policy: RedeliveryPolicy,
        limiter: Limiter,
        deliveries: DeliveryLog | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._limiter = limiter
        self._groups = groups
        self._routing = routing
        self._claims = claims
        self._outcomes = outcomes
        self._policy = policy
        self._deliveries = deliveries
        self._clock = clock

    async def handle(self, fired: TimerFired, received: Received) -> Verdict:
        """One fired timer; failures that may pass are retried by the policy."""
        try:
            return await self.flush(fired, received) or ACK
        except Exception as exc:
            return self._policy.on_failure(
                deliveries=received.deliveries,
                reason=f"group {fired.key} not sent: {exc!r}",
            )

    async def flush(self, fired: TimerFired, received: Received) -> Retry | None:
        """Send the group ``fired`` is for, if anything is due; raises on Redis trouble."""
        extra = {"group": fired.key}
        snapshot = await self._groups.snapshot(fired.key)
        now = self._clock()
        # Not compared with fired.due_at: replicas adding to a new group at once each arm
        # the timer, and the last arm (which fires) need not be the time recorded. A timer
        # is stale when the group holds no message due by now (it was moved later).
        due = None if snapshot is None else snapshot.meta.due_at
        if snapshot is None or due is None or due > now + EARLY:
            logger.debug("stale group timer (due %s); ignored", fired.due_at, extra=extra)
            return None
        if snapshot.changed:
            reason = DigestReason(snapshot.meta.reason)
        elif snapshot.repeat_due(now):
            reason = DigestReason.REPEAT
        else:
            await self._groups.done(snapshot, sent=False)
            return None
        receiver = self._routing.current.receivers.get(snapshot.meta.receiver)
        if receiver is None:
            logger.warning(
                "receiver %s of group %s is no longer in the routing; its alerts are in the "
                "inbox and sent nowhere",
                snapshot.meta.receiver,
                fired.key,
                extra=extra,
            )
            await self._groups.done(snapshot, sent=False)
            return None
        digest = _digest(snapshot, reason=reason, receiver=receiver.name, now=now)
        retries: list[Retry] = []
        limited = 0.0
        for delivery in receiver.digest_deliveries(digest):
            if snapshot.meta.delivery not in (None, delivery.name):
                continue  # held back from one delivery: sent there only
            outcome = await self._deliver(delivery, snapshot, received)
            if isinstance(outcome, Retry):
                retries.append(outcome)
            elif outcome is not None:
                limited = max(limited, outcome)
        if retries:
            return min(retries, key=lambda r: r.delay)
        if limited:
            # A target's rate limit is full: the group waits for room on its own timer,
            # without spending the timer message's deliveries.
            later = await self._groups.postpone(snapshot, now + timedelta(seconds=limited))
            logger.info(
                "group %s waits for room under a rate limit until %s",
                fired.key,
                later.isoformat(),
                extra=extra,
            )
            return None
        due = await self._groups.done(snapshot, sent=True)
        GROUP_MESSAGES.labels(reason.value).inc()
        logger.info(
            "group %s of %s sent (%s, %d alert(s)); next message %s",
            fired.key,
            receiver.name,
            reason.value,
            len(digest.alerts),
            "when it changes" if due is None else f"at {due.isoformat()}",
            extra=extra,
        )
        return None

    async def _deliver(
        self, delivery: DigestDelivery, snapshot: Snapshot, received: Received
    ) -> Retry | float | None:
        """Send one delivery of the group's message: None when settled, a :class:`Retry`
        when an attempt failed and may pass, or the seconds until the target's rate limit
        has room (nothing was sent)."""
        digest, channel, name = delivery.digest, delivery.channel, delivery.name
        extra = {"group": snapshot.id, "channel": name}
        key = f"{PREFIX}claim:{name}:group:{snapshot.id}:{snapshot.meta.seq}"
        idempotency = hashlib.sha256(f"{name}|{digest.id}".encode()).hexdigest()[:32]
        digest = digest.model_copy(update={"idempotency_key": idempotency})
        single = len(digest.alerts) == 1 and digest.reason is DigestReason.GROUP
        attempt = received.deliveries

        waited: list[float] = []

        async def send() -> DeliveryResult:
            wait = await self._limiter.take(delivery.bucket, delivery.limits, self._clock())
            if wait > 0:
                waited.append(wait)
                # Released by the claim (not sent): the postponed flush tries again.
                return DeliveryResult(status=DeliveryStatus.FAILED, attempts=1, error="limited")
            if single:
                alert = digest.alerts[0].model_copy(update={"idempotency_key": idempotency})
                return await channel.deliver(notification=alert, attempt=attempt)
            return await channel.deliver_digest(digest=digest, attempt=attempt)

        claimed = await self._claims.run(key, send)
        if claimed is None:
            raise RuntimeError(f"{name} delivery of group {snapshot.id} is under way elsewhere")
        result, earlier = claimed
        if waited:
            return waited[0]
        if earlier or result.status is DeliveryStatus.SENT:
            if not earlier:
                NOTIFICATIONS_SENT.labels(channel.name).inc()
            await self._publish(digest, delivery, result)
            return None
        if result.retry_in is not None and received.deliveries < self._policy.max_deliver:
            return Retry(
                delay=result.retry_in,
                reason=f"{name} attempt {result.attempts} failed: {result.error}",
            )
        NOTIFICATIONS_FAILED.labels(channel.name).inc()
        logger.error(
            "group message failed on %s after %d attempt(s): %s",
            name,
            result.attempts,
            result.error,
            extra=extra,
        )
        await self._publish(digest, delivery, result)
        await self._outcomes.dead_letter(
            dead_letter(
                origin_subject=DIGESTS_SUBJECT,
                reason=f"{name} delivery of a group message failed after {result.attempts} "
                f"attempt(s): {result.error}; its alerts are in the inbox, and the group's "
                "next message carries them again. Kept for inspection, not for replay.",
                payload=digest.model_dump_json().encode(),
                at=self._clock(),
            ),
            msg_id=dead_letter_id(received, cause=f"failed-{name}"),
        )
        return None

    async def _publish(
        self, digest: AlertDigest, delivery: DigestDelivery, result: DeliveryResult
    ) -> None:
        """One outcome per alert of the message, so the delivery log answers for each."""
        for alert in digest.alerts:
            outcome = NotificationSent(
                id=hashlib.sha256(
                    f"{delivery.name}|{digest.id}|{alert.fingerprint}|{result.status.value}".encode()
                ).hexdigest()[:32],
                fingerprint=alert.fingerprint,
                rule_id=alert.rule_id,
                state=alert.state,
                channel=delivery.channel.name,
                receiver=delivery.receiver,
                recipients=alert.recipients,
                status=result.status,
                attempts=result.attempts,
                error=result.error,
                at=self._clock(),
                # The episode each alert of the digest belongs to: GET /v1/alerts/{id} lists it.
                started_at=alert.started_at,
            )
            await self._outcomes.sent(outcome)
            if self._deliveries is not None:
                await self._deliveries.record(outcome)


TimerAction = Callable[[TimerFired, Received], Awaitable[Verdict]]


class NotifierTimers:
    """The notifier's fired timers, each to what its name says: ``group`` (a group's
    message, :class:`GroupFlusher`) or ``pass-up`` (an unacknowledged alert to the next
    manager, :meth:`services.notifier.pipeline.Notifier.pass_up`)."""

    def __init__(self, actions: Mapping[str, TimerAction]) -> None:
        self._actions = dict(actions)

    async def handle(self, fired: TimerFired, received: Received) -> Verdict:
        """Run the action of ``fired``'s name; an unknown name is logged and dropped."""
        action = self._actions.get(fired.name)
        if action is None:
            logger.warning(
                "timer %s/%s is none the notifier arms; ignored",
                fired.name,
                fired.key,
                extra={"timer": fired.name},
            )
            return ACK
        return await action(fired, received)


def _digest(
    snapshot: Snapshot, *, reason: DigestReason, receiver: str, now: datetime
) -> AlertDigest:
    alerts: list[AlertNotification] = snapshot.notifications()
    recipients: dict[str, Recipient] = {}
    for alert in alerts:
        for recipient in alert.recipients:
            recipients.setdefault(recipient.id, recipient)
    return AlertDigest(
        id=f"{snapshot.id}-{snapshot.meta.seq}",
        reason=reason,
        receiver=receiver,
        group_labels={k: v for k, v in snapshot.meta.labels.items() if k != "fingerprint"},
        alerts=alerts,
        recipients=list(recipients.values()),
        previous_at=snapshot.meta.last_sent_at,
        created_at=now,
    )
