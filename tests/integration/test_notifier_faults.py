"""The notifier under faults, on real servers: killed mid-delivery, and a receiver that fails.

These tests run on a stack of their own, because they kill its notifier and because its
consumers are configured to show a crash in seconds: ``ack_wait`` 3 s (the delivery claims
follow it), webhook retries 1 s apart at first, doubling, 5 attempts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack, StackSettings
from tests.integration.conftest import REPO, WEBHOOK_SECRET, WebhookCall, WebhookReceiver
from tests.integration.helpers import (
    await_drained,
    first_message,
    post_events,
    replay_dead_letter,
    rework_event,
    unique,
)

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 5


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver) -> Iterator[Stack]:
    settings = StackSettings.on_free_ports(tmp_path_factory.mktemp("faults"), REPO / "rules")
    running = Stack(
        settings=settings,
        env={
            "GOALWATCH_WEBHOOK_URL": receiver.url,
            "GOALWATCH_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GOALWATCH_LOG_LEVEL": "DEBUG",
            "GOALWATCH_NOTIFIER_ACK_WAIT": "3",
            "GOALWATCH_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "GOALWATCH_WEBHOOK_BACKOFF": "1.0",
        },
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def http(faulty: Stack) -> Iterator[httpx.Client]:
    with faulty.client(timeout=10.0) as client:
        yield client


def _add_people(http: httpx.Client, stack: Stack, *ids: str) -> None:
    people = [{"id": person, "name": f"Dr {person}"} for person in ids]
    response = http.post(f"{stack.settings.url('goals')}/v1/people", json=people)
    assert response.status_code == 200, response.text


def _breach(http: httpx.Client, stack: Stack, subject: str) -> None:
    """Three breaching days: the rework rule fires for ``subject``."""
    events = [rework_event(subject, day, 0.4) for day in (1, 2, 3)]
    post_events(http, stack.settings.url("ingestion"), events)


def _answered(subject: str, status: int = 200) -> Callable[[list[WebhookCall]], bool]:
    def predicate(calls: list[WebhookCall]) -> bool:
        return any(c.json["subject"]["id"] == subject and c.status == status for c in calls)

    return predicate


def _arrived(subject: str) -> Callable[[list[WebhookCall]], bool]:
    return lambda calls: any(c.json["subject"]["id"] == subject for c in calls)


def test_a_notifier_killed_mid_delivery_delivers_after_restart(
    faulty: Stack, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    subject = unique("killed")
    _add_people(http, faulty, subject)
    receiver.hold(subject)  # the POST stays open: the notifier is inside the delivery
    _breach(http, faulty, subject)
    receiver.wait_for(_arrived(subject))

    faulty.kill("notifier")
    receiver.release(subject)
    faulty.restart("notifier")

    # The claim of the dead process must not hold the redelivery back: it comes after
    # ack_wait (3 s) and is delivered at once. Generous timeout, far below the old 10 min.
    receiver.wait_for(_answered(subject), timeout=45)
    await_drained(faulty.settings.nats_url, timeout=60)

    first, second = receiver.about(subject)  # exactly two: the interrupted one and its redo
    assert (first.status, second.status) == (500, 200)
    key = first.headers["idempotency-key"]
    assert key and second.headers["idempotency-key"] == key
    assert first.json["idempotency_key"] == second.json["idempotency_key"] == key


def test_a_failing_receiver_blocks_nothing_else(
    faulty: Stack, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    given_up, recovers = unique("outage"), unique("outage")
    flowing = [unique("flowing") for _ in range(3)]
    _add_people(http, faulty, given_up, recovers, *flowing)
    receiver.failing.update({given_up, recovers})
    _breach(http, faulty, given_up)
    _breach(http, faulty, recovers)
    receiver.wait_for(lambda calls: _arrived(given_up)(calls) and _arrived(recovers)(calls))

    # While both fail, alerts for everyone else are delivered, and the failing deliveries
    # are waiting for their next attempt rather than used up inside the handler.
    for subject in flowing:
        _breach(http, faulty, subject)
    for subject in flowing:
        receiver.wait_for(_answered(subject), timeout=60)
    assert len(receiver.about(given_up)) < MAX_ATTEMPTS
    assert len(receiver.about(recovers)) < MAX_ATTEMPTS

    # One receiver recovers within the attempts: the next redelivery gets through.
    receiver.failing.discard(recovers)
    receiver.wait_for(_answered(recovers), timeout=60)

    # The other stays down: after its last attempt it is dead-lettered with the reason ...
    letter, sequence = first_message(
        faulty.settings.nats_url,
        subjects.DEADLETTER_ALERTS,
        stream=subjects.STREAM_DEADLETTER,
        match=lambda letter: given_up in letter["payload"],
        timeout=120,
    )
    assert letter["origin_subject"] == subjects.ALERTS_FIRED
    assert f"after {MAX_ATTEMPTS} attempt(s)" in letter["reason"]
    assert "HTTP 500" in letter["reason"]
    assert [c.status for c in receiver.about(given_up)] == [500] * MAX_ATTEMPTS

    # ... and the documented replay delivers it once the receiver works again.
    receiver.failing.discard(given_up)
    replay_dead_letter(faulty.settings.nats_url, sequence)
    receiver.wait_for(_answered(given_up), timeout=60)

    await_drained(faulty.settings.nats_url, timeout=60)
    for subject in (*flowing, recovers, given_up):
        assert [c.status for c in receiver.about(subject)].count(200) == 1, subject


def test_a_failed_webhook_replayed_from_the_operations_api_is_delivered_exactly_once(
    faulty: Stack, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    """The console's Replay of a failed delivery: goals lists it as the evaluator's to
    replay, the evaluator republishes the alert, and the notifier makes only the delivery
    that failed, once; the inbox keeps one entry, the one it made the first time."""
    subject = unique("replayed")
    _add_people(http, faulty, subject)
    receiver.failing.add(subject)
    _breach(http, faulty, subject)
    _, sequence = first_message(
        faulty.settings.nats_url,
        subjects.DEADLETTER_ALERTS,
        stream=subjects.STREAM_DEADLETTER,
        match=lambda letter: subject in letter["payload"],
        timeout=120,
    )
    assert [c.status for c in receiver.about(subject)] == [500] * MAX_ATTEMPTS
    notifier = faulty.settings.url("notifier")
    inbox = http.get(f"{notifier}/v1/alerts", params={"recipient": subject}).json()["alerts"]
    assert len(inbox) == 1

    ops = faulty.auth_headers("ops")
    [letter] = [
        one
        for one in http.get(f"{faulty.settings.url('goals')}/v1/dead-letters", headers=ops).json()[
            "dead_letters"
        ]
        if one["sequence"] == sequence
    ]
    assert letter["origin_subject"] == subjects.ALERTS_FIRED
    assert letter["replayed_by"] == "evaluator"

    receiver.failing.discard(subject)  # the receiver is fixed
    replay = f"{faulty.settings.url('evaluator')}/v1/evaluator/dead-letters/{sequence}/replay"
    replayed = http.post(replay, headers=ops)
    assert replayed.status_code == 200, replayed.text
    receiver.wait_for(_answered(subject), timeout=60)
    # A second click is refused: the replay is made once.
    assert http.post(replay, headers=ops).status_code == 409

    await_drained(faulty.settings.nats_url, timeout=60)
    calls = receiver.about(subject)
    assert [c.status for c in calls] == [500] * MAX_ATTEMPTS + [200]
    # The same delivery, retried: the receiver can tell it is the one that failed.
    assert len({c.headers["idempotency-key"] for c in calls}) == 1
    after = http.get(f"{notifier}/v1/alerts", params={"recipient": subject}).json()["alerts"]
    assert [entry["id"] for entry in after] == [entry["id"] for entry in inbox]
