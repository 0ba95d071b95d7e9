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

On each delivery the transitions of one alert go out in order (:mod:`services.notifier.ordering`):
a resolution or an escalation waits, with a redelivery, while an earlier transition of its
episode is not settled on that delivery; and a transition whose delivery was under way there
is finished there even if a later one reached the inbox meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

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
    RecipientRole,
    SubjectRef,
    TimerFired,
    Unacknowledged,
    subjects,
)
from goalwatch.goals_client import OrgUnits, PersonDirectory
from goalwatch.timers import TimerKey, fired_subject
from services.notifier.channels import Channel, DeliveryResult
from services.notifier.claims import DeliveryClaims, claim_key
from services.notifier.deliveries import DeliveryLog
from services.notifier.groups import OWNER as TIMER_OWNER
from services.notifier.groups import Arm, Groups
from services.notifier.inbox import Inbox, InboxAlert, episode_id, holds
from services.notifier.limits import Limiter
from services.notifier.links import AckLinks
from services.notifier.metrics import (
    ESCALATIONS_SENT,
    NOTIFICATIONS_FAILED,
    NOTIFICATIONS_HELD,
    NOTIFICATIONS_SENT,
)
from services.notifier.notification import Alert, build_notification, headline, transition_key
from services.notifier.ordering import DeliveryOrder
from services.notifier.outcomes import Outcomes
from services.notifier.receivers import Delivery
from services.notifier.recipients import recipient_of, resolve_recipients, unit_chain
from services.notifier.routing import Plan, Routing, fixed_router
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


PASS_UP = "pass-up"
"""Name of the timers that pass an unacknowledged alert up the manager chain."""


def _level_of(entry: InboxAlert, manager_id: str) -> int:
    """The level at which ``entry`` went to ``manager_id`` (its place among the pass-ups)."""
    ups = [t.to for t in entry.timeline if t.to is not None]
    return ups.index(manager_id) + 1 if manager_id in ups else 0


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
        outcomes: Outcomes,
        policy: RedeliveryPolicy,
        clock: Callable[[], datetime] = _utcnow,
        deliveries: DeliveryLog | None = None,
        silences: Silences | None = None,
        org_units: OrgUnits | None = None,
        routing: Routing | None = None,
        channels: Sequence[Channel] = (),
        groups: Groups | None = None,
        limiter: Limiter | None = None,
        links: AckLinks | None = None,
        timers: Arm | None = None,
        order: DeliveryOrder | None = None,
    ) -> None:
        """``deliveries``: where each outcome is also kept for ``GET /v1/deliveries``;
        ``silences``: what keeps matching alerts off the channels for a while;
        ``org_units``: the org chart, for the ``unit_head`` and ``hrbp`` recipients and the
        inbox's org unit filter; ``routing``: which receivers each alert goes to; without
        it, every alert goes to ``channels``; ``groups``: where routes that group alerts
        gather them (without it, such routes send each transition at once); ``links``: what
        signs the acknowledgement link of a firing (None: messages carry none); ``order``:
        what keeps each delivery's transitions of an alert in order (None: they go out as
        they are handled)."""
        self._order = order
        self._links = links
        self._groups = groups
        self._limiter = limiter
        self._timers = timers
        self._deliveries = deliveries
        self._silences = silences
        self._org_units = org_units
        self._directory = directory
        self._inbox = inbox
        self._claims = claims
        self._routing = routing or Routing(fixed_router(channels))
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
        incoming, units = await self._notification(alert)
        router = self._routing.current
        marked = [d.name for d in router.plan(incoming, units).now]
        # Before the inbox: a later transition recorded after this one finds the markers.
        owed = await self._begin(incoming, marked)
        recorded = await self._inbox.record(incoming, org_units=units)
        if not recorded.current:
            return await self._stale(
                incoming, recorded.alert, marked=marked, owed=owed, alert=alert, received=received
            )
        notification = self._linked(recorded.alert)
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
            delivery=None,
            result=DeliveryResult(status=DeliveryStatus.SENT, attempts=1),
        )
        units = recorded.alert.org_units
        plan = router.plan(notification, units)
        if self._groups is None:  # nowhere to gather them: each transition goes at once
            now = list(plan.now)
            for group in plan.groups:
                now += router.receivers[group.receiver].deliveries(notification)
            plan = replace(plan, now=now, groups=[])
        # Marked where it will not be delivered after all (the inbox's merge changed its
        # recipients, say): nothing is to wait for it there.
        sending = {d.name for d in plan.now}
        await self._settle(notification, [name for name in marked if name not in sending])
        return await self._send(
            notification, plan, entry=recorded.alert, alert=alert, received=received
        )

    async def _stale(
        self,
        incoming: AlertNotification,
        entry: InboxAlert,
        *,
        marked: list[str],
        owed: set[str],
        alert: Alert,
        received: Received,
    ) -> Retry | None:
        """A transition that arrived after a later one: sent only on the deliveries where an
        earlier handling of it began and did not finish (what came later waits for it)."""
        extra = {"fingerprint": incoming.fingerprint, "event_id": alert.event_id}
        await self._settle(incoming, [name for name in marked if name not in owed])
        deliveries = [
            d for d in self._routing.current.plan(incoming, entry.org_units).now if d.name in owed
        ]
        if not deliveries:
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
            ", ".join(d.name for d in deliveries),
            extra=extra,
        )
        plan = Plan(now=deliveries, groups=[])
        return await self._send(incoming, plan, entry=entry, alert=alert, received=received)

    async def _send(
        self,
        notification: AlertNotification,
        plan: Plan,
        *,
        entry: InboxAlert,
        alert: Alert,
        received: Received,
    ) -> Retry | None:
        """Deliver ``notification`` as ``plan`` says, unless a silence matches it: at once
        on its deliveries, into its groups, and watched for an acknowledgement."""
        extra = {"fingerprint": alert.fingerprint, "event_id": alert.event_id}
        deliveries = plan.now
        silence = None
        if self._silences is not None and (deliveries or plan.groups):
            silence = await self._silences.matching(notification, self._clock(), entry.org_units)
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
            await self._settle(notification, [d.name for d in deliveries])
            for delivery in deliveries:
                await self._publish_outcome(
                    delivery.notification,
                    delivery=delivery,
                    result=DeliveryResult(
                        status=DeliveryStatus.SILENCED,
                        attempts=1,
                        error=f"silence {silence.id}: {silence.comment}",
                    ),
                )
            return None
        await self._watch_for_ack(entry, plan)
        for group in plan.groups:
            assert self._groups is not None  # plans without a place for groups have none
            due = await self._groups.add(group, notification)
            logger.info(
                "%s gathered into group %s of %s (%s); its next message goes at %s",
                _transition_name(notification),
                group.id,
                group.receiver,
                ", ".join(f"{k}={v}" for k, v in group.labels.items()),
                due.isoformat(),
                extra=extra,
            )
        retries: list[Retry] = []
        for delivery in deliveries:
            # One delivery's failure does not keep the others from delivering.
            retry = await self._deliver(delivery, alert=alert, received=received)
            if retry is not None:
                retries.append(retry)
        return min(retries, key=lambda r: r.delay, default=None)

    async def _begin(self, incoming: AlertNotification, deliveries: list[str]) -> set[str]:
        """Mark a transition unsettled on every delivery it goes to now; the deliveries
        where it already was (:meth:`services.notifier.ordering.DeliveryOrder.begin`)."""
        if self._order is None:
            return set()
        return {name for name in deliveries if await self._order.begin(name, incoming)}

    async def _settle(self, notification: AlertNotification, deliveries: list[str]) -> None:
        """Nothing waits on ``deliveries`` for ``notification``: it will not go there."""
        if self._order is not None:
            for name in deliveries:
                await self._order.settled(name, notification)

    async def _given_up(self, alert: Alert) -> None:
        """The message of ``alert`` is dead-lettered: what waited for it goes ahead (its
        notification is rebuilt without recipients: the markers need none, and a per-person
        delivery's marker, which needs one, lapses with its TTL)."""
        subject = SubjectRef(id=alert.subject, name=alert.subject_name)
        transition = build_notification(alert=alert, subject=subject, recipients=[])
        try:
            names = [d.name for d in self._routing.current.plan(transition).now]
            await self._settle(transition, names)
        except Exception as exc:  # Redis down: the markers lapse with their TTL
            logger.warning("ordering markers of a dead-lettered alert kept: %r", exc)

    async def _watch_for_ack(self, entry: InboxAlert, plan: Plan) -> None:
        """Arm the timer that passes ``entry`` up the manager chain if nobody acknowledges
        it within its routes' ``escalate_after`` (a firing, or a rise in severity)."""
        if (
            plan.escalate_after is None
            or self._timers is None
            or entry.state is not AlertState.FIRING
            or entry.acked_at is not None
        ):
            return
        after = plan.escalate_after
        due = await self._timers.arm(
            TimerKey(owner=TIMER_OWNER, name=PASS_UP, key=entry.id),
            self._clock() + after,
            data={
                "level": "1",
                "levels": str(plan.escalate_levels),
                "after": str(int(after.total_seconds())),
            },
        )
        logger.debug("passed up unless acknowledged by %s (arm %d)", self._clock() + after, due)

    async def pass_up(self, fired: TimerFired, received: Received) -> Verdict:
        """A pass-up timer fell due: if the episode still fires unacknowledged, tell the next
        manager up the subject's chain who has not been told, and watch again for the next
        level. Failures that may pass are retried by the policy."""
        try:
            return await self._pass_up(fired, received) or ACK
        except Exception as exc:
            return self._policy.on_failure(
                deliveries=received.deliveries,
                reason=f"alert {fired.key} not passed up: {exc!r}",
            )

    async def _pass_up(self, fired: TimerFired, received: Received) -> Retry | None:
        extra = {"episode": fired.key}
        level = int(fired.data.get("level", "1"))
        levels = int(fired.data.get("levels", "1"))
        after = int(fired.data.get("after", "0"))
        entry = await self._inbox.episode(fired.key)
        if entry is None or entry.state is not AlertState.FIRING or entry.acked_at is not None:
            logger.debug(
                "pass-up timer: acknowledged, resolved or gone; nothing to do", extra=extra
            )
            return None
        subject = await self._directory.get_person(entry.subject.id)
        told = {r.id for r in entry.recipients} | {entry.subject.id}
        passed = {t.to for t in entry.timeline if t.to is not None}
        chain = [] if subject is None else subject.managers
        # This level's manager: the one it went to already (a redelivered timer), else the
        # first up the chain who has not heard of it.
        manager_id = next(
            (m for m in chain if m in passed and _level_of(entry, m) == level),
            next((m for m in chain if m not in told), None),
        )
        if manager_id is None:
            logger.warning(
                "%s: nobody acknowledged it, and no manager above those told is known; "
                "not passed up",
                headline(entry),
                extra=extra,
            )
            return None
        now = self._clock()
        person = await self._directory.get_person(manager_id)
        manager = recipient_of(person, person_id=manager_id, role=RecipientRole.MANAGER)
        up = Unacknowledged(to=manager_id, level=level, after_seconds=after, at=now)
        recorded = await self._inbox.pass_up(fired.key, to=manager, at=now)
        if recorded is None or recorded.state is not AlertState.FIRING:
            return None
        notification = self._linked(recorded).model_copy(
            update={"recipients": [manager], "unacknowledged": up, "escalated_from": None}
        )
        if self._silences is not None:
            silence = await self._silences.matching(notification, now, recorded.org_units)
            if silence is not None:
                logger.info("not passed up: silenced by %s", silence.id, extra=extra)
                return None
        logger.info(
            "%s: not acknowledged in %ss, passed up to %s (level %d)",
            headline(notification),
            after,
            manager_id,
            level,
            extra=extra,
        )
        retries = [
            retry
            for delivery in self._routing.current.every_delivery(notification, recorded.org_units)
            if (retry := await self._deliver(delivery, alert=None, received=received, timer=fired))
            is not None
        ]
        if retries:
            return min(retries, key=lambda r: r.delay)
        if level < levels and self._timers is not None:
            await self._timers.arm(
                TimerKey(owner=TIMER_OWNER, name=PASS_UP, key=fired.key),
                now + timedelta(seconds=after),
                data={**fired.data, "level": str(level + 1)},
            )
        return None

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
        entry = await self._inbox.episode(episode_id(alert.fingerprint, alert.started_at))
        if holds(entry, state=state, started_at=alert.started_at, escalated_to=escalated_to):
            return False
        notification, units = await self._notification(alert)
        await self._inbox.record(notification, org_units=units)
        logger.info(
            "%s transition restored to the inbox from the stream",
            state.value,
            extra={"fingerprint": alert.fingerprint, "event_id": alert.event_id},
        )
        return True

    def _linked(self, entry: InboxAlert) -> AlertNotification:
        """What the channels send of ``entry``: with an acknowledgement link when it fires
        and links are on.

        The link is shared (its page asks which recipient is acknowledging) even when the
        alert has one recipient: every channel sends one message per transition to a place
        others may read too (a chat group, one e-mail to everyone), so a link that
        acknowledged as one named person would let whoever clicked speak for them unasked.
        """
        notification = entry.notification()
        if self._links is None or notification.state is not AlertState.FIRING:
            return notification
        link = self._links.url(episode=entry.id, recipient=None, now=self._clock())
        return notification.model_copy(update={"ack_url": link})

    async def _notification(self, alert: Alert) -> tuple[AlertNotification, list[str]]:
        """The notification of ``alert``, and the subject's org unit with those above it."""
        audience = await resolve_recipients(
            directory=self._directory,
            subject=alert.subject,
            notify=alert.notify,
            fingerprint=alert.fingerprint,
            org_units=self._org_units,
            # Read per alert: a reload of the routing file changes who is in a group.
            groups=self._routing.current.groups,
        )
        notification = build_notification(
            alert=alert,
            # Named by the evaluator when it fired: the notifier does not look the name up again.
            subject=SubjectRef(id=alert.subject, name=alert.subject_name),
            recipients=audience.recipients,
        )
        unit = None if audience.subject is None else audience.subject.org_unit_id
        return notification, await unit_chain(self._org_units, unit)

    async def _deliver(
        self,
        delivery: Delivery,
        *,
        alert: Alert | None,
        received: Received,
        timer: TimerFired | None = None,
    ) -> Retry | None:
        """Deliver one transition on one delivery, after the earlier transitions of its
        alert settled there; ``alert`` is the message it came from (None for a pass-up,
        which came from ``timer`` and waits for nothing), dead-lettered if it fails for good."""
        if self._order is None or alert is None:
            return await self._attempt(delivery, alert=alert, received=received, timer=timer)
        notification = delivery.notification
        wait = await self._order.wait(delivery.name, notification, deliveries=received.deliveries)
        if wait is not None:
            return wait
        retry = await self._attempt(delivery, alert=alert, received=received, timer=timer)
        await self._order.after(delivery.name, notification, retry=retry)
        return retry

    async def _attempt(
        self,
        delivery: Delivery,
        *,
        alert: Alert | None,
        received: Received,
        timer: TimerFired | None,
    ) -> Retry | None:
        channel, name = delivery.channel, delivery.name
        notification = delivery.notification
        extra = {"fingerprint": notification.fingerprint, "channel": name}
        key = claim_key(channel=name, notification=notification)
        notification = notification.model_copy(
            update={"idempotency_key": idempotency_key(channel=name, notification=notification)}
        )

        async def send() -> DeliveryResult:
            held = await self._hold(delivery, notification)
            if held is not None:
                return held
            return await channel.deliver(notification=notification, attempt=received.deliveries)

        claimed = await self._claims.run(key, send)
        if claimed is None:
            raise DeliveryInProgress(
                f"{name} delivery of this {_transition_name(notification)} is under way elsewhere"
            )
        result, earlier = claimed
        if earlier:
            logger.info("already delivered on %s; not sending again", name, extra=extra)
            # The earlier attempt may have stopped before publishing its outcome; the
            # Nats-Msg-Id makes a second copy a no-op within the stream's duplicate window.
            await self._publish_outcome(notification, delivery=delivery, result=result)
            return None
        if result.status is DeliveryStatus.HELD:
            # Held back (logged where it was held): it goes later, with the others.
            await self._publish_outcome(notification, delivery=delivery, result=result)
            return None
        if result.status is DeliveryStatus.SENT:
            NOTIFICATIONS_SENT.labels(channel.name).inc()
            if notification.escalated_from is not None:
                ESCALATIONS_SENT.labels(channel.name).inc()
            logger.info(
                "%s notification sent on %s (%d attempt(s))",
                _transition_name(notification),
                name,
                result.attempts,
                extra=extra,
            )
            await self._publish_outcome(notification, delivery=delivery, result=result)
            return None
        # The claim was released: a redelivery or a replay of the dead letter tries again.
        # The last delivery JetStream makes (max_deliver) is the last attempt, whatever the
        # channel would allow: a nak there would let the message vanish without a trace.
        if result.retry_in is not None and received.deliveries < self._policy.max_deliver:
            return Retry(
                delay=result.retry_in,
                reason=f"{name} attempt {result.attempts} failed: {result.error}",
            )
        NOTIFICATIONS_FAILED.labels(channel.name).inc()
        logger.error(
            "%s notification failed on %s after %d attempt(s): %s",
            _transition_name(notification),
            name,
            result.attempts,
            result.error,
            extra=extra,
        )
        await self._publish_outcome(notification, delivery=delivery, result=result)
        origin = fired_subject(TIMER_OWNER) if alert is None else _SUBJECTS[type(alert)]
        payload = (alert or timer or notification).model_dump_json().encode()
        await self._outcomes.dead_letter(
            dead_letter(
                origin_subject=origin,
                reason=f"{name} delivery failed after {result.attempts} attempt(s): "
                f"{result.error}; fix the receiver, then republish the payload to {origin}",
                payload=payload,
                at=self._clock(),
            ),
            msg_id=dead_letter_id(received, cause=f"failed-{name}"),
        )
        return None

    async def _hold(
        self, delivery: Delivery, notification: AlertNotification
    ) -> DeliveryResult | None:
        """Hold ``notification`` back from ``delivery`` when its reader is in quiet hours,
        when messages there are held back already (it must not overtake them), or when the
        target's rate limit is full: it then goes later, with the others, as one digest."""
        if self._groups is None:
            return None
        now = self._clock()
        reason, until = "quiet_hours", delivery.quiet_until(now)
        if until is None and await self._groups.holding(delivery.name):
            reason = "rate_limit"  # joins the held ones, whatever holds them
        elif until is None and self._limiter is not None:
            wait = await self._limiter.take(delivery.bucket, delivery.limits, now)
            if wait <= 0:
                return None
            reason, until = "rate_limit", now + timedelta(seconds=wait)
        due = await self._groups.hold(
            delivery=delivery.name,
            receiver=delivery.receiver,
            reason=reason,
            notification=notification.model_copy(update={"idempotency_key": None}),
            until=until,
        )
        NOTIFICATIONS_HELD.labels(delivery.channel.name, reason).inc()
        logger.info(
            "%s held back on %s (%s): goes with the others held there at %s",
            _transition_name(notification),
            delivery.name,
            reason.replace("_", " "),
            due.isoformat(),
            extra={"fingerprint": notification.fingerprint, "channel": delivery.name},
        )
        return DeliveryResult(
            status=DeliveryStatus.HELD,
            attempts=1,
            error=f"held back ({reason.replace('_', ' ')}); sent with the others at {due.isoformat()}",
        )

    async def _publish_outcome(
        self,
        notification: AlertNotification,
        *,
        delivery: Delivery | None,
        result: DeliveryResult,
    ) -> None:
        """Publish and log one outcome; ``delivery`` None is the inbox."""
        name = INBOX_CHANNEL if delivery is None else delivery.name
        outcome_id = notification_id(channel=name, notification=notification, status=result.status)
        outcome = NotificationSent(
            id=outcome_id,
            fingerprint=notification.fingerprint,
            rule_id=notification.rule_id,
            state=notification.state,
            channel=INBOX_CHANNEL if delivery is None else delivery.channel.name,
            receiver=None if delivery is None else delivery.receiver,
            recipients=notification.recipients,
            status=result.status,
            attempts=result.attempts,
            error=result.error,
            at=self._clock(),
            started_at=notification.started_at,
        )
        await self._outcomes.sent(outcome)
        if self._deliveries is not None:
            await self._deliveries.record(outcome)
