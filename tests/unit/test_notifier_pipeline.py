"""The notifier's handling of one alert message, with fakes for goals, Redis, channels, NATS."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, cast

import pytest
from fakeredis import FakeAsyncRedis
from pydantic import SecretStr
from redis.asyncio import Redis

from goalwatch.consumers import ACK, Received, RedeliveryPolicy, Reject, Retry, Verdict
from goalwatch.contracts import (
    AlertFired,
    AlertNotification,
    AlertResolved,
    AlertState,
    DeadLetter,
    DeliveryStatus,
    NotificationSent,
    OrgUnitRead,
    PersonRead,
    Severity,
    SubjectRef,
    subjects,
)
from goalwatch.contracts.base import Contract
from goalwatch.goals_client import GoalsUnavailable
from services.notifier.channels import DeliveryResult
from services.notifier.claims import DeliveryClaims, claim_key
from services.notifier.inbox import Inbox
from services.notifier.links import AckLinks
from services.notifier.metrics import ESCALATIONS_SENT
from services.notifier.notification import build_notification, headline
from services.notifier.ordering import DeliveryOrder
from services.notifier.pipeline import Notifier, idempotency_key, notification_id
from services.notifier.receivers import fixed_receiver
from services.notifier.recipients import resolve_recipients
from services.notifier.routing import Routing

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
MAX_DELIVER = 10
POLICY = RedeliveryPolicy(max_deliver=MAX_DELIVER, first_delay=5.0, max_delay=300.0)


class Directory:
    def __init__(self) -> None:
        self.down = False
        self.people = {
            "emp-1": PersonRead(id="emp-1", name="Dr Li", managers=["mgr-1"]),
            "mgr-1": PersonRead(id="mgr-1", name="Head Wang"),
        }

    async def get_person(self, person_id: str) -> PersonRead | None:
        if self.down:
            raise GoalsUnavailable("goals service did not answer")
        return self.people.get(person_id)


class FakeChannel:
    name = "webhook"

    def __init__(self, *outcomes: DeliveryResult | Exception) -> None:
        self.outcomes = list(outcomes) or [DeliveryResult(status=DeliveryStatus.SENT, attempts=1)]
        self.delivered: list[AlertNotification] = []
        self.attempts: list[int] = []

    async def deliver(self, *, notification: AlertNotification, attempt: int) -> DeliveryResult:
        self.delivered.append(notification)
        self.attempts.append(attempt)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class Published:
    def __init__(self) -> None:
        self.messages: list[tuple[str, Contract, str | None]] = []

    async def sent(self, outcome: NotificationSent) -> None:
        self.messages.append((subjects.NOTIFICATIONS_SENT, outcome, outcome.id))

    async def dead_letter(self, letter: DeadLetter, *, msg_id: str | None) -> None:
        self.messages.append((subjects.dead_letter_subject(letter.origin_subject), letter, msg_id))

    def outcomes(self) -> list[NotificationSent]:
        return [m for s, m, _ in self.messages if isinstance(m, NotificationSent)]

    def dead_letters(self) -> list[DeadLetter]:
        return [m for s, m, _ in self.messages if isinstance(m, DeadLetter)]


class World:
    def __init__(self, channel: FakeChannel | None = None, *more: FakeChannel) -> None:
        self.redis = FakeAsyncRedis(decode_responses=True)
        self.directory = Directory()
        self.channel = channel or FakeChannel()
        self.published = Published()
        self.inbox = Inbox(cast(Redis, self.redis))
        self.now = T0
        self.order = DeliveryOrder(
            cast(Redis, self.redis),
            policy=POLICY,
            in_flight=timedelta(seconds=60),
            ttl=timedelta(hours=1),
            clock=lambda: self.now,
        )
        self.notifier = Notifier(
            directory=self.directory,
            inbox=self.inbox,
            claims=DeliveryClaims(cast(Redis, self.redis)),
            channels=[self.channel, *more],
            outcomes=self.published,
            policy=POLICY,
            clock=lambda: self.now,
            order=self.order,
        )

    async def send(
        self, message: AlertFired | AlertResolved, *, deliveries: int = 1, sequence: int = 41
    ) -> Verdict:
        received = Received("notifier-alerts", sequence, deliveries)
        return await self.notifier.handle(message, received)

    async def keys(self, prefix: str) -> list[str]:
        return [str(k) async for k in self.redis.scan_iter(match=f"{prefix}*")]


def fired(**overrides: object) -> AlertFired:
    fields: dict[str, object] = {
        "fingerprint": "fp-1",
        "rule_id": "rework-high",
        "rule_name": "Rework above 8%",
        "kind": "threshold",
        "severity": Severity.WARNING,
        "subject": "emp-1",
        "subject_name": "Dr Li",
        "metric": "report_rework_rate",
        "value": 0.11,
        "message": "Dr Li: rework 11%",
        "notify": ["subject", "manager"],
        "labels": {"department": "radiology"},
        "started_at": T0 - timedelta(days=2),
        "fired_at": T0,
        "event_id": "e-3",
    }
    return AlertFired.model_validate({**fields, **overrides})


def resolved_of(alert: AlertFired) -> AlertResolved:
    return AlertResolved(
        fingerprint=alert.fingerprint,
        rule_id=alert.rule_id,
        rule_name=alert.rule_name,
        severity=alert.severity,
        subject=alert.subject,
        subject_name=alert.subject_name,
        metric=alert.metric,
        value=0.05,
        message="Dr Li: rework back to 5%",
        notify=alert.notify,
        started_at=alert.started_at,
        resolved_at=T0 + timedelta(hours=5),
        event_id="e-9",
    )


async def test_fired_alert_reaches_inbox_and_webhook() -> None:
    world = World()
    assert await world.send(fired()) == ACK
    (sent,) = world.channel.delivered
    assert sent.state is AlertState.FIRING
    assert [(r.id, r.role) for r in sent.recipients] == [("emp-1", "subject"), ("mgr-1", "manager")]
    assert sent.subject.name == "Dr Li"
    assert [(o.channel, o.status) for o in world.published.outcomes()] == [
        ("inbox", DeliveryStatus.SENT),
        ("webhook", DeliveryStatus.SENT),
    ]
    listed = await world.inbox.list(recipient="mgr-1")
    assert [a.fingerprint for a in listed] == ["fp-1"]
    assert world.published.dead_letters() == []


async def test_resolution_updates_the_same_entry_and_is_delivered() -> None:
    world = World()
    alert = fired()
    await world.send(alert)
    assert await world.send(resolved_of(alert)) == ACK
    assert [n.state for n in world.channel.delivered] == [AlertState.FIRING, AlertState.RESOLVED]
    last = world.channel.delivered[-1]
    # The resolution notice carries the firing's context.
    assert last.fired_at == T0 and last.labels == {"department": "radiology"}
    entries = await world.inbox.list()
    assert len(entries) == 1 and entries[0].state is AlertState.RESOLVED


async def test_redelivery_after_success_does_not_deliver_twice() -> None:
    world = World()
    await world.send(fired())
    await world.send(fired(), deliveries=2)
    assert len(world.channel.delivered) == 1
    ids = [
        msg_id
        for _, m, msg_id in world.published.messages
        if isinstance(m, NotificationSent) and m.channel == "webhook"
    ]
    # The outcome is republished under the same Nats-Msg-Id, which JetStream de-duplicates.
    assert len(ids) == 2 and ids[0] == ids[1]


async def test_final_failure_is_reported_dead_lettered_and_acked() -> None:
    failure = DeliveryResult(status=DeliveryStatus.FAILED, attempts=5, error="HTTP 503")
    world = World(FakeChannel(failure))
    alert = fired()
    assert await world.send(alert) == ACK
    webhook = [o for o in world.published.outcomes() if o.channel == "webhook"]
    assert [(o.status, o.attempts, o.error) for o in webhook] == [
        (DeliveryStatus.FAILED, 5, "HTTP 503")
    ]
    (dead,) = world.published.dead_letters()
    assert dead.origin_subject == subjects.ALERTS_FIRED
    assert "after 5 attempt(s)" in dead.reason
    # The payload is the original message, ready to be republished.
    assert AlertFired.model_validate_json(dead.payload) == alert
    # The failed delivery left no claim: a replay tries again.
    key = claim_key(channel="webhook", notification=world.channel.delivered[0])
    assert await world.redis.get(key) is None
    # Kept once per alert message and channel: a redelivery of it is not kept twice.
    [(_, _, msg_id)] = [m for m in world.published.messages if isinstance(m[1], DeadLetter)]
    assert msg_id == "deadletter:notifier-alerts:41:failed-webhook"
    # The inbox has it regardless.
    assert await world.inbox.get("fp-1") is not None


async def test_replay_after_failure_delivers() -> None:
    failure = DeliveryResult(status=DeliveryStatus.FAILED, attempts=5, error="HTTP 503")
    ok = DeliveryResult(status=DeliveryStatus.SENT, attempts=1)
    world = World(FakeChannel(failure, ok))
    await world.send(fired())
    await world.send(fired())
    assert len(world.channel.delivered) == 2
    statuses = [o.status for o in world.published.outcomes() if o.channel == "webhook"]
    assert statuses == [DeliveryStatus.FAILED, DeliveryStatus.SENT]
    ids = {o.id for o in world.published.outcomes() if o.channel == "webhook"}
    assert len(ids) == 2


async def test_channel_crash_releases_the_claim_and_asks_for_redelivery() -> None:
    world = World(FakeChannel(RuntimeError("boom")))
    verdict = await world.send(fired())
    assert isinstance(verdict, Retry) and verdict.delay == 5.0
    assert await world.keys("goalwatch:notifier:claim:") == []


async def test_delivery_under_way_elsewhere_is_retried_later() -> None:
    world = World()
    alert = fired()
    # Another replica holds the claim for this transition.
    audience = await resolve_recipients(
        directory=world.directory, subject="emp-1", notify=alert.notify, fingerprint="fp-1"
    )
    notification = build_notification(
        alert=alert, subject=SubjectRef(id="emp-1", name="Dr Li"), recipients=audience.recipients
    )
    key = claim_key(channel="webhook", notification=notification)
    await world.redis.set(key, "pending:other-owner")
    verdict = await world.send(alert, deliveries=3)
    assert isinstance(verdict, Retry) and verdict.delay == 20.0
    assert "under way elsewhere" in verdict.reason
    assert world.channel.delivered == []


async def test_goals_down_retries_with_growing_delay_then_dead_letters() -> None:
    world = World()
    world.directory.down = True
    assert await world.send(fired(), deliveries=1) == Retry(
        delay=5.0, reason="alert fp-1 not processed: goals service did not answer"
    )
    assert await world.send(fired(), deliveries=2) == Retry(
        delay=10.0, reason="alert fp-1 not processed: goals service did not answer"
    )
    last_retry = await world.send(fired(), deliveries=9)
    assert isinstance(last_retry, Retry) and last_retry.delay == 300.0
    assert world.published.messages == []
    verdict = await world.send(fired(), deliveries=MAX_DELIVER)
    assert isinstance(verdict, Reject) and verdict.cause == "gave-up"
    assert f"gave up after {MAX_DELIVER} deliveries" in verdict.reason
    assert "goals service did not answer" in verdict.reason


async def test_stale_firing_is_recorded_but_not_announced() -> None:
    world = World()
    alert = fired()
    await world.send(resolved_of(alert))
    await world.send(alert)
    assert [n.state for n in world.channel.delivered] == [AlertState.RESOLVED]
    entry = await world.inbox.get("fp-1")
    assert entry is not None
    assert entry.state is AlertState.RESOLVED and entry.fired_at == T0


@pytest.mark.parametrize("channels", [0, 1])
async def test_inbox_is_written_with_or_without_channels(channels: int) -> None:
    world = World()
    if not channels:
        world.notifier = Notifier(
            directory=world.directory,
            inbox=world.inbox,
            claims=DeliveryClaims(cast(Redis, world.redis)),
            channels=[],
            outcomes=world.published,
            policy=POLICY,
            clock=lambda: T0,
        )
    await world.send(fired())
    assert await world.inbox.get("fp-1") is not None
    assert [o.channel for o in world.published.outcomes()] == ["inbox", "webhook"][: 1 + channels]


async def test_every_delivery_carries_one_idempotency_key_per_transition_and_recipients() -> None:
    retry = DeliveryResult(status=DeliveryStatus.FAILED, attempts=1, error="HTTP 500", retry_in=1)
    world = World(FakeChannel(retry, DeliveryResult(status=DeliveryStatus.SENT, attempts=2)))
    alert = fired()
    await world.send(alert)
    await world.send(alert, deliveries=2)
    await world.send(resolved_of(alert))
    first, again, resolution = (n.idempotency_key for n in world.channel.delivered)
    assert first is not None and first == again
    assert resolution is not None and resolution != first
    # Another recipient set is another notification.
    other = idempotency_key(
        channel="webhook",
        notification=world.channel.delivered[0].model_copy(update={"recipients": []}),
    )
    assert other != first
    # The inbox entry is not a delivery: it has no key.
    entry = await world.inbox.get("fp-1")
    assert entry is not None and entry.idempotency_key is None


async def test_a_failed_attempt_that_may_pass_is_redelivered_not_waited_for() -> None:
    retry = DeliveryResult(status=DeliveryStatus.FAILED, attempts=1, error="HTTP 500", retry_in=1.5)
    world = World(FakeChannel(retry, DeliveryResult(status=DeliveryStatus.SENT, attempts=2)))
    verdict = await world.send(fired())
    assert verdict == Retry(delay=1.5, reason="webhook attempt 1 failed: HTTP 500")
    # Nothing recorded yet but the inbox, and the claim is free for the redelivery.
    assert [o.channel for o in world.published.outcomes()] == ["inbox"]
    assert await world.keys("goalwatch:notifier:claim:") == []
    assert await world.send(fired(), deliveries=2) == ACK
    assert world.channel.attempts == [1, 2]  # attempt n is delivery n
    webhook = [o for o in world.published.outcomes() if o.channel == "webhook"]
    assert [(o.status, o.attempts) for o in webhook] == [(DeliveryStatus.SENT, 2)]


async def test_the_last_delivery_is_the_last_attempt_whatever_the_channel_says() -> None:
    retry = DeliveryResult(status=DeliveryStatus.FAILED, attempts=10, error="HTTP 500", retry_in=1)
    world = World(FakeChannel(retry))
    assert await world.send(fired(), deliveries=MAX_DELIVER) == ACK
    (dead,) = world.published.dead_letters()
    assert "webhook delivery failed after 10 attempt(s): HTTP 500" in dead.reason


# --- escalation: a firing alert rising to a higher severity -------------------------------


def escalated(alert: AlertFired, **overrides: object) -> AlertFired:
    """The evaluator's announcement that ``alert`` rose to critical, two days after it fired."""
    fields: dict[str, object] = {
        "severity": Severity.CRITICAL,
        "escalated_from": alert.severity,
        "message": "Dr Li: rework 15% for 5 days",
        "value": 0.15,
        "fired_at": T0 + timedelta(days=2),
        "event_id": "e-5",
        **overrides,
    }
    return alert.model_copy(update=fields)


def _webhook_ids(world: World) -> list[str | None]:
    return [
        msg_id
        for _, m, msg_id in world.published.messages
        if isinstance(m, NotificationSent) and m.channel == "webhook"
    ]


async def test_escalation_is_delivered_once_as_a_transition_of_its_own() -> None:
    world = World()
    alert = fired()
    rise = escalated(alert)
    assert await world.send(alert) == ACK
    assert await world.send(rise, sequence=42) == ACK
    # Redelivered, and published again under another Nats-Msg-Id: not delivered again.
    assert await world.send(rise, sequence=42, deliveries=2) == ACK
    assert await world.send(rise, sequence=43) == ACK

    first, second = world.channel.delivered
    assert (first.severity, first.escalated_from) == (Severity.WARNING, None)
    assert (second.state, second.severity) == (AlertState.FIRING, Severity.CRITICAL)
    assert second.escalated_from is Severity.WARNING
    assert second.escalated_at == T0 + timedelta(days=2)
    assert second.fired_at == T0  # when it first fired
    assert second.message == "Dr Li: rework 15% for 5 days"
    assert first.idempotency_key != second.idempotency_key
    # Claims: the firing's and the escalation's are two keys, each marked sent.
    assert claim_key(channel="webhook", notification=first) != claim_key(
        channel="webhook", notification=second
    )
    # Outcome ids: one per transition; the repeats reuse the escalation's (JetStream drops them).
    ids = _webhook_ids(world)
    assert len(ids) == 4 and ids[0] != ids[1] and ids[1] == ids[2] == ids[3]


async def test_ids_of_firings_and_resolutions_are_what_they_always_were() -> None:
    world = World()
    alert = fired()
    await world.send(alert)
    await world.send(resolved_of(alert))
    started = alert.started_at.isoformat()
    recipients = "emp-1,mgr-1"
    for notification, state in zip(world.channel.delivered, ("firing", "resolved"), strict=True):
        base = f"webhook|fp-1|{state}|{started}"
        assert notification.idempotency_key == _sha(f"{base}|{recipients}")
        assert notification_id(
            channel="webhook", notification=notification, status=DeliveryStatus.SENT
        ) == _sha(f"{base}|sent")
        key = f"goalwatch:notifier:claim:webhook:fp-1:{state}:{started}"
        assert claim_key(channel="webhook", notification=notification) == key
        assert await world.redis.get(key) is not None  # marked sent under that key


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


async def test_an_escalation_after_the_resolution_is_recorded_not_delivered() -> None:
    world = World()
    alert = fired()
    await world.send(alert)
    await world.send(resolved_of(alert))
    outcomes = len(world.published.outcomes())
    assert await world.send(escalated(alert), sequence=44) == ACK
    assert [n.state for n in world.channel.delivered] == [AlertState.FIRING, AlertState.RESOLVED]
    assert len(world.published.outcomes()) == outcomes  # not even the inbox announces it
    entry = await world.inbox.get("fp-1")
    assert entry is not None
    assert entry.state is AlertState.RESOLVED
    assert entry.resolved_at == T0 + timedelta(hours=5)


async def test_a_lower_escalation_after_a_higher_one_is_not_delivered() -> None:
    world = World()
    alert = fired(severity=Severity.INFO)
    to_warning = escalated(alert, severity=Severity.WARNING, fired_at=T0 + timedelta(days=1))
    to_critical = escalated(alert, escalated_from=Severity.WARNING)
    await world.send(alert)
    await world.send(to_critical)
    await world.send(to_warning)
    assert [(n.severity, n.escalated_from) for n in world.channel.delivered] == [
        (Severity.INFO, None),
        (Severity.CRITICAL, Severity.WARNING),
    ]
    entry = await world.inbox.get("fp-1")
    assert entry is not None and entry.severity is Severity.CRITICAL


async def test_an_escalation_arriving_first_is_delivered_and_the_late_firing_is_not() -> None:
    world = World()
    alert = fired()
    await world.send(escalated(alert))
    await world.send(alert)
    (only,) = world.channel.delivered
    assert (only.severity, only.escalated_from) == (Severity.CRITICAL, Severity.WARNING)
    assert only.fired_at is None  # not seen to fire when the escalation went out
    entry = await world.inbox.get("fp-1")
    assert entry is not None and entry.fired_at == T0  # filled in by the late firing


async def test_escalations_delivered_are_counted_per_channel() -> None:
    def count(channel: str) -> float:
        return float(ESCALATIONS_SENT.labels(channel)._value.get())

    world = World()
    alert = fired()
    before = count("webhook")
    await world.send(alert)
    assert count("webhook") == before
    await world.send(escalated(alert))
    await world.send(escalated(alert), deliveries=2)
    assert count("webhook") == before + 1


async def test_a_replayed_escalation_is_restored_to_the_inbox_without_a_delivery() -> None:
    world = World()
    alert = fired()
    rise = escalated(alert)
    await world.send(alert)
    await world.send(rise)
    await world.redis.flushall()  # the inbox and the claims lost
    assert await world.notifier.restore(alert)
    assert await world.notifier.restore(rise)
    assert not await world.notifier.restore(rise)  # held now: nothing asked, nothing changed
    entry = await world.inbox.get("fp-1")
    assert entry is not None
    assert (entry.severity, entry.escalated_from) == (Severity.CRITICAL, Severity.WARNING)
    assert entry.fired_at == T0
    assert len(world.channel.delivered) == 2


def test_an_escalation_reads_as_one_plainly() -> None:
    notification = build_notification(
        alert=escalated(fired()),
        subject=SubjectRef(id="emp-1", name="Dr Li"),
        recipients=[],
    )
    assert headline(notification) == ("[CRITICAL] Rework above 8% — Dr Li (escalated from warning)")
    first = build_notification(
        alert=fired(), subject=SubjectRef(id="emp-1", name="Dr Li"), recipients=[]
    )
    assert headline(first) == "[WARNING] Rework above 8% — Dr Li"


# --- acknowledgement links, org units, episodes -------------------------------------------


class OrgChart:
    """The goals service's org units: a ward in radiology in the hospital."""

    units: ClassVar[dict[str, OrgUnitRead]] = {
        "ward-3": OrgUnitRead(id="ward-3", name="Ward 3", kind="team", parent_id="radiology"),
        "radiology": OrgUnitRead(
            id="radiology", name="Radiology", kind="department", parent_id="hospital"
        ),
        "hospital": OrgUnitRead(id="hospital", name="Hospital", kind="company"),
    }

    async def get_org_unit(self, unit_id: str) -> OrgUnitRead | None:
        return self.units.get(unit_id)


LINK_BASE = "https://goalwatch.example.org"


def linked_world() -> World:
    world = World()
    world.directory.people["emp-1"] = PersonRead(
        id="emp-1", name="Dr Li", managers=["mgr-1"], org_unit_id="ward-3"
    )
    world.notifier = Notifier(
        directory=world.directory,
        org_units=OrgChart(),
        inbox=world.inbox,
        claims=DeliveryClaims(cast(Redis, world.redis)),
        channels=[world.channel],
        outcomes=world.published,
        policy=POLICY,
        clock=lambda: T0,
        links=AckLinks(base_url=LINK_BASE, secret=SecretStr("s" * 40), lifetime=timedelta(days=7)),
    )
    return world


async def test_a_firing_carries_an_acknowledgement_link_and_its_resolution_none() -> None:
    world = linked_world()
    alert = fired()
    await world.send(alert)
    await world.send(resolved_of(alert))
    firing_sent, resolution_sent = world.channel.delivered
    assert firing_sent.ack_url is not None and resolution_sent.ack_url is None
    entry = await world.inbox.get("fp-1")
    assert entry is not None and entry.ack_url is None  # the inbox keeps no link
    assert firing_sent.ack_url.startswith(f"{LINK_BASE}/v1/ack/")
    token = firing_sent.ack_url.removeprefix(f"{LINK_BASE}/v1/ack/")
    links = AckLinks(base_url=LINK_BASE, secret=SecretStr("s" * 40), lifetime=timedelta(days=7))
    grant = links.verify(token, now=T0)
    # One message to everyone: a shared link, for this episode, a week from sending.
    assert (grant.episode, grant.recipient) == (entry.id, None)
    assert grant.expires_at == T0 + timedelta(days=7)
    # Shared even for one recipient: a chat group or a forwarded mail may hold it.
    await world.send(fired(fingerprint="fp-solo", notify=["manager"], event_id="e-5"))
    solo = world.channel.delivered[-1]
    assert [r.id for r in solo.recipients] == ["mgr-1"] and solo.ack_url is not None
    assert links.verify(solo.ack_url.rsplit("/", 1)[1], now=T0).recipient is None


async def test_without_links_messages_carry_none() -> None:
    world = World()
    await world.send(fired())
    assert world.channel.delivered[0].ack_url is None


async def test_the_inbox_files_an_alert_under_the_subjects_unit_and_those_above() -> None:
    world = linked_world()
    await world.send(fired())
    entry = await world.inbox.get("fp-1")
    assert entry is not None and entry.org_units == ["ward-3", "radiology", "hospital"]
    # Recipients carry the language the directory knows them by.
    assert {r.id: r.language for r in entry.recipients} == {"emp-1": "zh", "mgr-1": "zh"}


async def test_every_outcome_names_its_episode_and_a_new_firing_is_a_new_entry() -> None:
    world = World()
    first = fired()
    await world.send(first)
    await world.send(resolved_of(first))
    again = fired(started_at=T0 + timedelta(days=1), fired_at=T0 + timedelta(days=1, hours=1))
    await world.send(again)
    started = [o.started_at for o in world.published.outcomes()]
    assert started == [first.started_at] * 4 + [again.started_at] * 2
    newest, earlier = await world.inbox.list()
    assert (newest.state, earlier.state) == (AlertState.FIRING, AlertState.RESOLVED)
    assert [t.what.value for t in earlier.timeline] == ["fired", "resolved"]
    assert [n.state for n in world.channel.delivered] == [
        AlertState.FIRING,
        AlertState.RESOLVED,
        AlertState.FIRING,
    ]


async def test_a_group_is_expanded_from_the_routing_in_force_at_each_alert(
    tmp_path: Path,
) -> None:
    channel = FakeChannel()
    routes = tmp_path / "routes.yaml"
    text = (
        "receivers: [{name: hook, webhook: {url: 'https://h.example.org', secret: '${HOOK_SECRET}'}}]\n"
        "groups: {quality-leads: [mgr-1]}\n"
        "route: {receiver: hook}\n"
    )
    routes.write_text(text, encoding="utf-8")
    # The file's receiver stands for the test's channel: what matters here is its groups.
    routing = Routing.from_file(routes, lambda _: {"hook": fixed_receiver([channel])})
    world = World(channel)
    world.notifier = Notifier(
        directory=world.directory,
        inbox=world.inbox,
        claims=DeliveryClaims(cast(Redis, world.redis)),
        routing=routing,
        outcomes=world.published,
        policy=POLICY,
        clock=lambda: T0,
    )
    notify = ["subject", "group:quality-leads"]
    await world.send(fired(notify=notify))
    told = [(r.id, r.role.value, r.group) for r in channel.delivered[-1].recipients]
    assert told == [("emp-1", "subject", None), ("mgr-1", "group", "quality-leads")]
    # A reload changes the group for the next alert, without a restart.
    routes.write_text(text.replace("[mgr-1]", "[qa-9]"), encoding="utf-8")
    routing.reload()
    await world.send(fired(fingerprint="fp-2", notify=notify))
    told = [(r.id, r.role.value, r.group) for r in channel.delivered[-1].recipients]
    assert told == [("emp-1", "subject", None), ("qa-9", "group", "quality-leads")]
