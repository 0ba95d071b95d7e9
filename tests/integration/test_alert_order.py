"""One alert's transitions reach the webhook in the order they happened, on real servers.

Alerts are published onto the alerts stream as the evaluator publishes them. The stack is
this module's own: its notifier is killed and its consumers rebuilt by the migration test,
and its webhook retries are slow enough (1 s, doubling, 5 attempts) for a resolution to be
published while its firing waits for a retry.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from redis.asyncio import Redis

from goalwatch.checkpoints import KEY_PREFIX, server_run_id
from goalwatch.contracts import AlertFired, AlertResolved, Severity, subjects
from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookCall, WebhookReceiver, stack_of_its_own
from tests.integration.helpers import await_drained, first_message, unique

pytestmark = pytest.mark.integration

STARTED = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
ALERTS_CONSUMER = "notifier-alerts"
OLD_CONSUMERS = {
    "notifier-fired": subjects.ALERTS_FIRED,
    "notifier-resolved": subjects.ALERTS_RESOLVED,
}

Alert = AlertFired | AlertResolved


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver) -> Iterator[Stack]:
    env = {"GOALWATCH_WEBHOOK_MAX_ATTEMPTS": "5", "GOALWATCH_WEBHOOK_BACKOFF": "1.0"}
    with stack_of_its_own(tmp_path_factory, receiver, name="order", env=env) as running:
        yield running


@pytest.fixture(scope="module")
def person(stack: Stack) -> str:
    """Who every alert here is about (one person: the receiver is asked per fingerprint)."""
    subject = unique("ordered")
    with stack.client(timeout=10.0) as http:
        response = http.post(
            f"{stack.settings.url('goals')}/v1/people", json=[{"id": subject, "name": "Dr Order"}]
        )
    assert response.status_code == 200, response.text
    return subject


def _fired(subject: str, fingerprint: str, *, episode: int = 0) -> AlertFired:
    started = STARTED + timedelta(days=episode)
    return AlertFired(
        fingerprint=fingerprint,
        rule_id="report-rework-rate-high",
        rule_name="Report rework rate above 8%",
        kind="threshold",
        severity=Severity.WARNING,
        subject=subject,
        subject_name="Dr Order",
        metric="report_rework_rate",
        value=0.11,
        message="Dr Order: rework rate 11% for 3 days",
        notify=["subject"],
        started_at=started,
        fired_at=started + timedelta(days=2),
        event_id=f"{fingerprint}-{episode}-fired",
    )


def _resolved(alert: AlertFired) -> AlertResolved:
    return AlertResolved(
        fingerprint=alert.fingerprint,
        rule_id=alert.rule_id,
        rule_name=alert.rule_name,
        severity=alert.severity,
        subject=alert.subject,
        subject_name=alert.subject_name,
        metric=alert.metric,
        value=0.04,
        message="Dr Order: rework rate back to 4%",
        notify=alert.notify,
        started_at=alert.started_at,
        resolved_at=alert.fired_at + timedelta(hours=1),
        event_id=alert.event_id.replace("fired", "resolved"),
    )


async def _publish(stack: Stack, alerts: list[Alert]) -> list[int]:
    """Onto the alerts stream, back to back, as the evaluator publishes them; their stream
    sequences."""
    nc = await nats.connect(stack.settings.nats_url)
    try:
        js = nc.jetstream()
        sequences = []
        for alert in alerts:
            subject = (
                subjects.ALERTS_FIRED if isinstance(alert, AlertFired) else subjects.ALERTS_RESOLVED
            )
            headers = {"Nats-Msg-Id": unique("order-test")}
            ack = await js.publish(subject, alert.model_dump_json().encode(), headers=headers)
            sequences.append(ack.seq)
        return sequences
    finally:
        await nc.close()


def publish(stack: Stack, *alerts: Alert) -> list[int]:
    return asyncio.run(_publish(stack, list(alerts)))


def _of(fingerprint: str, calls: list[WebhookCall]) -> list[WebhookCall]:
    return [c for c in calls if c.json["fingerprint"] == fingerprint]


def _answered(fingerprint: str, state: str) -> Callable[[list[WebhookCall]], bool]:
    def predicate(calls: list[WebhookCall]) -> bool:
        return any(c.json["state"] == state and c.status == 200 for c in _of(fingerprint, calls))

    return predicate


def test_a_resolution_waits_for_its_firing_that_is_being_retried(
    stack: Stack, receiver: WebhookReceiver, person: str
) -> None:
    fingerprint = unique("fp-retried")
    alert = _fired(person, fingerprint)
    receiver.failing.add(person)  # the receiver answers 500 for now
    publish(stack, alert)
    receiver.wait_for(lambda calls: len(_of(fingerprint, calls)) >= 2)

    # The firing waits for its third attempt; its resolution arrives and is recorded in the
    # inbox at once (the inbox's outcome is published right after).
    publish(stack, _resolved(alert))
    first_message(
        stack.settings.nats_url,
        subjects.NOTIFICATIONS_SENT,
        stream=subjects.STREAM_NOTIFICATIONS,
        match=lambda n: (
            (n["fingerprint"], n["state"], n["channel"]) == (fingerprint, "resolved", "inbox")
        ),
    )
    receiver.failing.discard(person)

    receiver.wait_for(_answered(fingerprint, "resolved"), timeout=60)
    await_drained(stack.settings.nats_url, timeout=60)
    calls = [(c.json["state"], c.status) for c in _of(fingerprint, receiver.deliveries)]
    failed, rest = calls[:-2], calls[-2:]
    assert len(failed) >= 2 and set(failed) == {("firing", 500)}
    assert rest == [("firing", 200), ("resolved", 200)]


def test_firings_and_resolutions_published_back_to_back_arrive_in_order(
    stack: Stack, receiver: WebhookReceiver, person: str
) -> None:
    fingerprints = [unique("fp-burst") for _ in range(20)]
    episodes = range(3)
    alerts: list[Alert] = []
    for episode in episodes:
        for fingerprint in fingerprints:
            alert = _fired(person, fingerprint, episode=episode)
            alerts += [alert, _resolved(alert)]
    publish(stack, *alerts)

    expected = [
        (state, STARTED + timedelta(days=episode))
        for episode in episodes
        for state in ("firing", "resolved")
    ]
    receiver.wait_for(
        lambda calls: all(len(_of(fp, calls)) >= len(expected) for fp in fingerprints),
        timeout=60,
    )
    await_drained(stack.settings.nats_url, timeout=60)
    for fingerprint in fingerprints:
        seen = [
            (c.json["state"], datetime.fromisoformat(c.json["started_at"]))
            for c in _of(fingerprint, receiver.deliveries)
        ]
        assert seen == expected, fingerprint


def test_two_replicas_send_each_episodes_resolution_after_its_firing(
    stack: Stack, receiver: WebhookReceiver, person: str
) -> None:
    # A firing and its resolution may now be handled by different processes at once: the
    # marker, set before the firing reaches the inbox, keeps the resolution behind it.
    stack.start_replica("notifier", "notifier-2")
    try:
        fingerprints = [unique("fp-replicas") for _ in range(20)]
        episodes = range(3)

        def resolved(fingerprint: str, calls: list[WebhookCall]) -> int:
            return sum(c.json["state"] == "resolved" for c in _of(fingerprint, calls))

        # One episode at a time: each firing and its resolution back to back, so that the two
        # replicas take them at once. (A resolution that arrives after the *next* episode
        # began is not announced: docs/architecture.md, "One alert's transitions in order".)
        for episode in episodes:
            alerts: list[Alert] = []
            for fingerprint in fingerprints:
                alert = _fired(person, fingerprint, episode=episode)
                alerts += [alert, _resolved(alert)]
            publish(stack, *alerts)
            # A resolution held behind a firing that the other replica handles waits with
            # redeliveries (6 s, 11 s, 21 s, ...): on a loaded machine that can pass a minute.
            receiver.wait_for(
                lambda calls, n=episode + 1: all(resolved(fp, calls) == n for fp in fingerprints),
                timeout=240,
            )
        await_drained(stack.settings.nats_url, timeout=240)
    finally:
        stack.kill("notifier-2")
    for fingerprint in fingerprints:
        seen = [
            (datetime.fromisoformat(c.json["started_at"]), c.json["state"])
            for c in _of(fingerprint, receiver.deliveries)
        ]
        for episode in episodes:
            mine = [
                state for started, state in seen if started == STARTED + timedelta(days=episode)
            ]
            # A firing not yet begun when its resolution was handled is superseded (not sent);
            # one that was sent came first.
            assert mine in (["firing", "resolved"], ["resolved"]), (fingerprint, episode, seen)


def _handled(stack: Stack) -> float:
    """How many alert messages the notifier process handled, from its /metrics."""
    text = httpx.get(f"{stack.settings.url('notifier')}/metrics", timeout=10.0).text
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("goalwatch_handler_seconds_count{")
        and f'handler="{ALERTS_CONSUMER}"' in line
    )


async def _before_the_change(stack: Stack, *, first: int, later: list[Alert]) -> dict[str, int]:
    """What an installation with one consumer per alert subject leaves behind when it is
    stopped for the upgrade, for this test's alerts (from stream sequence ``first``): those
    two consumers and their checkpoints, and no ``notifier-alerts``.

    The fired consumer acknowledged the two firings handled before; the resolved one was
    given a's resolution (sent) and did not acknowledge it. Then ``later`` is published, and
    the fired consumer is given the first of it, which it does not acknowledge either.
    Returns the stream sequences of a's resolution and of the first later alert.
    """
    nc = await nats.connect(stack.settings.nats_url)
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    try:
        js = nc.jetstream()
        await js.delete_consumer(subjects.STREAM_ALERTS, ALERTS_CONSUMER)
        await redis.delete(f"{KEY_PREFIX}{ALERTS_CONSUMER}")
        run_id = await server_run_id(redis)
        old = {}
        for name, subject in OLD_CONSUMERS.items():
            config = ConsumerConfig(
                durable_name=name,
                filter_subject=subject,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=first,
            )
            await js.add_consumer(subjects.STREAM_ALERTS, config)
            old[name] = await js.pull_subscribe_bind(name, subjects.STREAM_ALERTS)
            checkpoint = json.dumps({"floor": first - 1, "run_id": run_id})
            await redis.set(f"{KEY_PREFIX}{name}", checkpoint)
        for msg in await old["notifier-fired"].fetch(2):
            await msg.ack_sync()
        (resolution,) = await old["notifier-resolved"].fetch(1)
        sequences = await _publish(stack, later)
        (in_flight,) = await old["notifier-fired"].fetch(1)
        assert in_flight.metadata.sequence.stream == sequences[0]
        return {
            "resolution": resolution.metadata.sequence.stream,
            "in_flight": in_flight.metadata.sequence.stream,
        }
    finally:
        await redis.aclose()
        await nc.close()


async def _alert_consumers(stack: Stack) -> dict[str, ConsumerInfo]:
    nc = await nats.connect(stack.settings.nats_url)
    try:
        found = await nc.jetstream().consumers_info(subjects.STREAM_ALERTS)
        return {info.name: info for info in found}
    finally:
        await nc.close()


def test_the_notifier_takes_over_from_the_consumers_it_had_before_without_repeating_itself(
    stack: Stack, receiver: WebhookReceiver, person: str
) -> None:
    a, b, c, d = (unique(f"fp-move-{n}") for n in "abcd")
    fired_a, fired_b = _fired(person, a), _fired(person, b)
    # Handled before the upgrade: both firings and a's resolution reached the receiver.
    first, _, resolution = publish(stack, fired_a, fired_b, _resolved(fired_a))
    receiver.wait_for(_answered(a, "resolved"))
    await_drained(stack.settings.nats_url)

    stack.kill("notifier")
    # While it is down: c fires, b resolves, d fires.
    later: list[Alert] = [_fired(person, c), _resolved(fired_b), _fired(person, d)]
    left = asyncio.run(_before_the_change(stack, first=first, later=later))
    assert left["resolution"] == resolution

    stack.restart("notifier")  # one consumer now, started at what the old ones still owed
    for fingerprint, state in ((c, "firing"), (b, "resolved"), (d, "firing")):
        receiver.wait_for(_answered(fingerprint, state), timeout=60)
    await_drained(stack.settings.nats_url, timeout=60)

    # a's resolution is the oldest message the old consumers owed: it came again, and was
    # recognised as sent. Each transition reached the receiver once.
    consumers = asyncio.run(_alert_consumers(stack))
    assert not set(consumers) & set(OLD_CONSUMERS)
    config = consumers[ALERTS_CONSUMER].config
    assert (config.deliver_policy, config.opt_start_seq) == (
        DeliverPolicy.BY_START_SEQUENCE,
        min(left["resolution"], left["in_flight"]),
    )
    assert _handled(stack) == 4  # a's resolution, c, b's resolution, d
    for fingerprint, states in (
        (a, ["firing", "resolved"]),
        (b, ["firing", "resolved"]),
        (c, ["firing"]),
        (d, ["firing"]),
    ):
        assert [x.json["state"] for x in _of(fingerprint, receiver.deliveries)] == states
