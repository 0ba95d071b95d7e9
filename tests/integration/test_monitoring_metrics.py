"""The metrics the dashboard and the alerts read, moving on real servers.

A stack of its own: its services read their consumers' counts from JetStream every 0.2 s,
and its webhook receiver holds deliveries unanswered when a test asks it to.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookReceiver, stack_of_its_own
from tests.integration.helpers import add_doctor, post_events, rework_event

pytestmark = pytest.mark.integration

ALERTS_CONSUMER = {"stream": subjects.STREAM_ALERTS, "consumer": "notifier-alerts"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver) -> Iterator[Stack]:
    with stack_of_its_own(
        tmp_path_factory,
        receiver,
        name="monitoring",
        env={"GOALWATCH_CONSUMER_LAG_SECONDS": "0.2", "GOALWATCH_WEBHOOK_BACKOFF": "0.05"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def http(watched: Stack) -> Iterator[httpx.Client]:
    with watched.client(timeout=10.0) as client:
        yield client


def sample(stack: Stack, service: str, name: str, labels: dict[str, str]) -> float | None:
    """The value of one series on ``service``'s ``/metrics``, or None if it is not there."""
    response = httpx.get(f"{stack.settings.url(service)}/metrics", timeout=5.0)
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return None


def await_sample(
    stack: Stack,
    service: str,
    name: str,
    labels: dict[str, str],
    holds: Callable[[float | None], bool],
    *,
    timeout: float = 30.0,
) -> float | None:
    """Scrape until the series' value satisfies ``holds``; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    value = sample(stack, service, name, labels)
    while not holds(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{service}: {name}{labels} stayed at {value} for {timeout} s")
        time.sleep(0.1)  # a scrape, as Prometheus does: there is no event to await
        value = sample(stack, service, name, labels)
    return value


def test_a_held_delivery_shows_as_unacknowledged_until_it_is_answered(
    watched: Stack, http: httpx.Client, receiver: WebhookReceiver
) -> None:
    pending = "goalwatch_consumer_ack_pending_messages"
    # Every consumer of the notifier is exported, drained before the test begins.
    await_sample(watched, "notifier", pending, ALERTS_CONSUMER, lambda v: v == 0)
    assert sample(watched, "notifier", "goalwatch_consumer_pending_messages", ALERTS_CONSUMER) == 0
    doctor, _ = add_doctor(http, watched.settings.url("goals"))
    receiver.hold(doctor)
    try:
        events = [rework_event(doctor, day, 0.4) for day in (1, 2, 3)]
        post_events(http, watched.settings.url("ingestion"), events)
        receiver.wait_for(lambda calls: any(doctor in c.subjects for c in calls))
        held = await_sample(
            watched, "notifier", pending, ALERTS_CONSUMER, lambda v: v is not None and v >= 1
        )
        assert held is not None and held >= 1
    finally:
        receiver.release(doctor)
    receiver.wait_for(lambda _: any(c.status == 200 for c in receiver.about(doctor)))
    await_sample(watched, "notifier", pending, ALERTS_CONSUMER, lambda v: v == 0)
    fired = sample(
        watched,
        "evaluator",
        "goalwatch_alerts_fired_total",
        {"rule": "report-rework-rate-high", "kind": "threshold"},
    )
    assert fired is not None and fired >= 1


def test_a_message_ingestion_cannot_read_is_counted_as_a_dead_letter(watched: Stack) -> None:
    labels = {"origin_subject": subjects.METRICS_IN}
    before = sample(watched, "ingestion", "goalwatch_dead_letters_total", labels)
    assert before is not None  # exported at 0 before the first dead letter

    async def publish() -> None:
        nc = await nats.connect(watched.settings.nats_url)
        try:
            await nc.jetstream().publish(subjects.METRICS_IN, b"not json")
        finally:
            await nc.close()

    asyncio.run(publish())
    await_sample(
        watched,
        "ingestion",
        "goalwatch_dead_letters_total",
        labels,
        lambda v: v is not None and v == before + 1,
    )


def test_http_answers_are_counted_by_route_and_code(watched: Stack, http: httpx.Client) -> None:
    labels = {"method": "GET", "route": "/v1/people/{person_id}", "code": "404"}
    before = sample(watched, "goals", "goalwatch_http_requests_total", labels) or 0
    response = http.get(f"{watched.settings.url('goals')}/v1/people/nobody-at-all")
    assert response.status_code == 404, response.text
    after = sample(watched, "goals", "goalwatch_http_requests_total", labels)
    assert after == before + 1
    ready = sample(watched, "goals", "goalwatch_dependency_up", {"dependency": "redis"})
    assert ready == 1
