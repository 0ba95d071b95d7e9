"""What happens to one alert message: recipients, inbox, channels, outcomes, dead letters.

The steps, in order (an invalid message never gets here: the consumer dead-letters it):
resolve recipients through the goals service; record the transition in the inbox (always,
whatever the channels do); deliver it on every configured channel, once per transition; publish
one ``NotificationSent`` per channel outcome; dead-letter a delivery that failed for good so an
operator can replay it. Failures that may pass (goals or Redis unreachable) ask for the message
to be redelivered later, with a growing delay, until the last allowed delivery dead-letters it.

A channel attempt that failed but may pass asks for a redelivery after the channel's own
delay: each delivery of the message is one attempt (attempt n is delivery n), and nothing
waits inside the handler, so a failing receiver holds neither the batch nor the consumer.
Channels already delivered are skipped on the redelivery (their claims say so).

On each channel the transitions of one alert go out in order (:mod:`services.notifier.ordering`):
a resolution or an escalation waits, with a redelivery, while an earlier transition of its
episode is not settled on that channel; and a transition whose delivery was under way on a
channel is finished there even if a later one reached the inbox meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from goalwatch.consumers import (
    ACK,
    Received,
    RedeliveryPolicy,
    Reject,
    Retry,
    Verdict,
    dead_letter,
    dead_letter_id,
)
from goalwatch.contracts import (
    AlertFired,
    AlertNotification,
    AlertResolved,
    AlertState,
    DeliveryStatus,
    NotificationSent,
    SubjectRef,
    subjects,
)
from goalwatch.goals_client import OrgUnits, PersonDirectory
from services.notifier.channels import Channel, DeliveryResult
from services.notifier.claims import DeliveryClaims, claim_key
from services.notifier.deliveries import DeliveryLog
from services.notifier.inbox import Inbox, InboxAlert, holds
from services.notifier.metrics import ESCALATIONS_SENT, NOTIFICATIONS_FAILED, NOTIFICATIONS_SENT
from services.notifier.notification import Alert, build_notification, headline, transition_key
from services.notifier.ordering import DeliveryOrder
from services.notifier.outcomes import Outcomes
from services.notifier.recipients import resolve_recipients
from services.notifier.silences import Silences

logger = logging.getLogger(__name__)

INBOX_CHANNEL = "inbox"

_SUBJECTS: dict[type[Alert], str] = {
    AlertFired: subjects.ALERTS_FIRED,
    AlertResolved: subjects.ALERTS_RESOLVED,
}


class DeliveryInProgress(Exception):
    """Another delivery of the same transition holds the claim; try again later."""


def notification_id(
    *, channel: str, notification: AlertNotification, status: DeliveryStatus
) -> str:
    """Stable id of one outcome of one transition on one channel (also its Nats-Msg-Id); an
    escalation is a transition of its own (:func:`transition_key`).

    Redeliveries of the same outcome share the id, so JetStream drops the copies; a failure
    and a later successful replay have different ids.
    """
    key = "|".join((channel, *transition_key(notification), status.value))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def idempotency_key(*, channel: str, notification: AlertNotification) -> str:
    """The key receivers de-duplicate on: one per transition (an escalation is one of its own),
    recipient set and channel.

    Every attempt and redelivery of one transition to the same people on one channel carries
    it, so a receiver that processed a request can drop its repeat (the one duplicate left:
    the notifier died after the receiver's 2xx and before recording it).
    """
    recipients = ",".join(sorted(r.id for r in notification.recipients))
    key = "|".join((channel, *transition_key(notification), recipients))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _transition_name(notification: AlertNotification) -> str:
    """``firing``, ``resolved``, or ``escalation to critical``, for log lines."""
    if notification.escalated_from is not None:
        return f"escalation to {notification.severity.value}"
    return notification.state.value


class Notifier:
    """Turns alert messages into inbox entries and channel deliveries."""

    def __init__(
        self,
        *,
        directory: PersonDirectory,
        inbox: Inbox,
        claims: DeliveryClaims,
        channels: Sequence[Channel],
        outcomes: Outcomes,
        policy: RedeliveryPolicy,
        clock: Callable[[], datetime] = _utcnow,
        deliveries: DeliveryLog | None = None,
        silences: Silences | None = None,
        org_units: OrgUnits | None = None,
        order: DeliveryOrder | None = None,
    ) -> None:
        """``deliveries``: where each outcome is also kept for ``GET /v1/deliveries``;
        ``silences``: what keeps matching alerts off the channels for a while;
        ``org_units``: the org chart, for the ``unit_head`` and ``hrbp`` recipients;
        ``order``: what keeps each channel's transitions of an alert in order (None: they
        go out as they are handled)."""
        self._order = order
        self._deliveries = deliveries
        self._silences = silences
        self._org_units = org_units
        self._directory = directory
        self._inbox = inbox
        self._claims = claims
        self._channels = tuple(channels)
        self._outcomes = outcomes
        self._policy = policy
        self._clock = clock

    async def handle(self, message: Alert, received: Received) -> Verdict:
        """Handle one alert message; failures that may pass are retried by the policy."""
        try:
            retry = await self.notify(alert=message, received=received)
        except Exception as exc:
            verdict = self._policy.on_failure(
                deliveries=received.deliveries,
                reason=f"alert {message.fingerprint} not processed: {exc}",
            )
            if isinstance(verdict, Reject):
                await self._given_up(message)
            return verdict
        return retry or ACK

    async def notify(self, *, alert: Alert, received: Received) -> Retry | None:
        """Resolve, record and deliver one alert transition; raises on transient failures.

        Returns when to come back if a channel's attempt failed and may pass, else None.
        """
        extra = {"fingerprint": alert.fingerprint, "event_id": alert.event_id}
        incoming = await self._notification(alert)
        # Before the inbox: a later transition recorded after this one finds the markers.
        owed = await self._begin(incoming)
        recorded = await self._inbox.record(incoming)
        if not recorded.current:
            return await self._stale(
                incoming, recorded.alert, owed=owed, alert=alert, received=received
            )
        notification = recorded.alert.notification()
        escalation = notification.escalated_from is not None
        NOTIFICATIONS_SENT.labels(INBOX_CHANNEL).inc()
        if escalation:
            ESCALATIONS_SENT.labels(INBOX_CHANNEL).inc()
        logger.info(
            "%s: %s in the inbox of %s",
            _transition_name(notification),
            headline(notification),
            ", ".join(r.id for r in notification.recipients),
            extra=extra,
        )
        await self._publish_outcome(
            notification,
            channel=INBOX_CHANNEL,
            result=DeliveryResult(status=DeliveryStatus.SENT, attempts=1),
        )
        return await self._send(notification, self._channels, alert=alert, received=received)

    async def _stale(
        self,
        incoming: AlertNotification,
        entry: InboxAlert,
        *,
        owed: set[str],
        received: Received,
        alert: Alert,
    ) -> Retry | None:
        """A transition that arrived after a later one: sent only on the channels where an
        earlier handling of it began and did not finish (what came later waits for it)."""
        extra = {"fingerprint": incoming.fingerprint, "event_id": alert.event_id}
        channels = [c for c in self._channels if c.name in owed]
        await self._settle(incoming, [c for c in self._channels if c.name not in owed])
        if not channels:
            # For an escalation: the alert resolved meanwhile, or rose higher already. Telling
            # managers it is now critical after they heard it is over would mislead them.
            logger.info(
                "%s arrived after a later transition; the alert is %s at %s; inbox updated, "
                "not announced",
                _transition_name(incoming),
                entry.state.value,
                entry.severity.value,
                extra=extra,
            )
            return None
        logger.info(
            "%s arrived after a later transition, but its delivery on %s was under way: "
            "finished there first",
            _transition_name(incoming),
            ", ".join(c.name for c in channels),
            extra=extra,
        )
        return await self._send(incoming, channels, alert=alert, received=received)

    async def _send(
        self,
        notification: AlertNotification,
        channels: Sequence[Channel],
        *,
        alert: Alert,
        received: Received,
    ) -> Retry | None:
        """Deliver ``notification`` on ``channels``, unless a silence matches it."""
        extra = {"fingerprint": alert.fingerprint, "event_id": alert.event_id}
        silence = None
        if self._silences is not None and channels:
            silence = await self._silences.matching(notification, self._clock())
        if silence is not None:
            logger.info(
                "%s silenced by %s (%s, by %s until %s): sent on no channel",
                _transition_name(notification),
                silence.id,
                silence.comment,
                silence.created_by,
                silence.ends_at.isoformat(),
                extra=extra,
            )
            await self._settle(notification, channels)
            for channel in channels:
                await self._publish_outcome(
                    notification,
                    channel=channel.name,
                    result=DeliveryResult(
                        status=DeliveryStatus.SILENCED,
                        attempts=1,
                        error=f"silence {silence.id}: {silence.comment}",
                    ),
                )
            return None
        retries: list[Retry] = []
        for channel in channels:
            # One channel's failure does not keep the others from delivering.
            retry = await self._deliver(
                channel, notification=notification, alert=alert, received=received
            )
            if retry is not None:
                retries.append(retry)
        return min(retries, key=lambda r: r.delay, default=None)

    async def restore(self, alert: Alert) -> bool:
        """Merge a transition replayed from the stream into the inbox, and nothing else;
        True if the inbox lacked it. Raises on transient failures (goals, Redis).

        The channels are not run and no outcome is published: the transition was handled
        when it was first delivered (it was acknowledged), and its delivery claims may have
        been lost with the inbox entry, so a channel would send it a second time. An entry
        that already holds the transition is left as it is, without asking goals again.
        """
        if isinstance(alert, AlertFired):
            state = AlertState.FIRING
            escalated_to = None if alert.escalated_from is None else alert.severity
        else:
            state, escalated_to = AlertState.RESOLVED, None
        entry = await self._inbox.get(alert.fingerprint)
        if holds(entry, state=state, started_at=alert.started_at, escalated_to=escalated_to):
            return False
        await self._inbox.record(await self._notification(alert))
        logger.info(
            "%s transition restored to the inbox from the stream",
            state.value,
            extra={"fingerprint": alert.fingerprint, "event_id": alert.event_id},
        )
        return True

    async def _notification(self, alert: Alert) -> AlertNotification:
        audience = await resolve_recipients(
            directory=self._directory,
            subject=alert.subject,
            notify=alert.notify,
            fingerprint=alert.fingerprint,
            org_units=self._org_units,
        )
        return build_notification(
            alert=alert,
            # Named by the evaluator when it fired: the notifier does not look the name up again.
            subject=SubjectRef(id=alert.subject, name=alert.subject_name),
            recipients=audience.recipients,
        )

    async def _begin(self, incoming: AlertNotification) -> set[str]:
        """Mark a transition unsettled on every channel; the channels where it already was
        (:meth:`services.notifier.ordering.DeliveryOrder.begin`)."""
        if self._order is None:
            return set()
        return {c.name for c in self._channels if await self._order.begin(c.name, incoming)}

    async def _settle(self, notification: AlertNotification, channels: Sequence[Channel]) -> None:
        """Nothing waits on ``channels`` for ``notification``: it will not be delivered there."""
        if self._order is not None:
            for channel in channels:
                await self._order.settled(channel.name, notification)

    async def _given_up(self, alert: Alert) -> None:
        """The message of ``alert`` is dead-lettered: what waited for it on the channels goes
        ahead (its notification is rebuilt without recipients: the markers need none)."""
        subject = SubjectRef(id=alert.subject, name=alert.subject_name)
        transition = build_notification(alert=alert, subject=subject, recipients=[])
        try:
            await self._settle(transition, self._channels)
        except Exception as exc:  # Redis down: the markers lapse with their TTL
            logger.warning("ordering markers of a dead-lettered alert kept: %r", exc)

    async def _deliver(
        self,
        channel: Channel,
        *,
        notification: AlertNotification,
        alert: Alert,
        received: Received,
    ) -> Retry | None:
        """Deliver on one channel, after the earlier transitions of the alert settled there."""
        if self._order is not None:
            wait = await self._order.wait(
                channel.name, notification, deliveries=received.deliveries
            )
            if wait is not None:
                return wait
        retry = await self._attempt(
            channel, notification=notification, alert=alert, received=received
        )
        if self._order is not None:
            await self._order.after(channel.name, notification, retry=retry)
        return retry

    async def _attempt(
        self,
        channel: Channel,
        *,
        notification: AlertNotification,
        alert: Alert,
        received: Received,
    ) -> Retry | None:
        extra = {"fingerprint": notification.fingerprint, "channel": channel.name}
        key = claim_key(channel=channel.name, notification=notification)
        notification = notification.model_copy(
            update={
                "idempotency_key": idempotency_key(channel=channel.name, notification=notification)
            }
        )
        claim = await self._claims.acquire(key)
        if not claim.acquired:
            if claim.previous is None:
                raise DeliveryInProgress(
                    f"{channel.name} delivery of this {_transition_name(notification)} "
                    "is under way elsewhere"
                )
            logger.info("already delivered on %s; not sending again", channel.name, extra=extra)
            # The earlier attempt may have stopped before publishing its outcome; the
            # Nats-Msg-Id makes a second copy a no-op within the stream's duplicate window.
            await self._publish_outcome(notification, channel=channel.name, result=claim.previous)
            return None
        assert claim.token is not None  # acquired
        try:
            # Renewed while the attempt runs, so the claim dies with this process.
            async with self._claims.held(key, claim.token):
                result = await channel.deliver(
                    notification=notification, attempt=received.deliveries
                )
        except BaseException:
            await self._claims.release(key, claim.token)
            raise
        if result.status is DeliveryStatus.SENT:
            await self._claims.mark_sent(key, result)
            NOTIFICATIONS_SENT.labels(channel.name).inc()
            if notification.escalated_from is not None:
                ESCALATIONS_SENT.labels(channel.name).inc()
            logger.info(
                "%s notification sent on %s (%d attempt(s))",
                _transition_name(notification),
                channel.name,
                result.attempts,
                extra=extra,
            )
            await self._publish_outcome(notification, channel=channel.name, result=result)
            return None
        # Not kept: a redelivery or a replay of the dead letter must be able to try again.
        await self._claims.release(key, claim.token)
        # The last delivery JetStream makes (max_deliver) is the last attempt, whatever the
        # channel would allow: a nak there would let the message vanish without a trace.
        if result.retry_in is not None and received.deliveries < self._policy.max_deliver:
            return Retry(
                delay=result.retry_in,
                reason=f"{channel.name} attempt {result.attempts} failed: {result.error}",
            )
        NOTIFICATIONS_FAILED.labels(channel.name).inc()
        logger.error(
            "%s notification failed on %s after %d attempt(s): %s",
            _transition_name(notification),
            channel.name,
            result.attempts,
            result.error,
            extra=extra,
        )
        await self._publish_outcome(notification, channel=channel.name, result=result)
        origin = _SUBJECTS[type(alert)]
        await self._outcomes.dead_letter(
            dead_letter(
                origin_subject=origin,
                reason=f"{channel.name} delivery failed after {result.attempts} attempt(s): "
                f"{result.error}; fix the receiver, then republish the payload to {origin}",
                payload=alert.model_dump_json().encode(),
                at=self._clock(),
            ),
            msg_id=dead_letter_id(received, cause=f"failed-{channel.name}"),
        )
        return None

    async def _publish_outcome(
        self, notification: AlertNotification, *, channel: str, result: DeliveryResult
    ) -> None:
        outcome_id = notification_id(
            channel=channel, notification=notification, status=result.status
        )
        outcome = NotificationSent(
            id=outcome_id,
            fingerprint=notification.fingerprint,
            rule_id=notification.rule_id,
            state=notification.state,
            channel=channel,
            recipients=notification.recipients,
            status=result.status,
            attempts=result.attempts,
            error=result.error,
            at=self._clock(),
        )
        await self._outcomes.sent(outcome)
        if self._deliveries is not None:
            await self._deliveries.record(outcome)
