"""Events published straight on NATS get the same treatment as HTTP; rejects are dead-lettered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from goalwatch.contracts import subjects
from goalwatch.devstack import Stack
from tests.integration.conftest import Delivery, WebhookReceiver
from tests.integration.helpers import add_doctor, rework_event, unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[Client]:
    client = await nats.connect(stack.settings.nats_url)
    yield client
    await client.drain()


async def test_events_published_on_nats_fire_alerts(
    stack: Stack, nc: Client, webhook: WebhookReceiver
) -> None:
    with httpx.Client() as http:
        doctor, _ = add_doctor(http, stack.settings.url("goals"))
    js = nc.jetstream()
    batch = [rework_event(doctor, d, 0.25) for d in (1, 2, 3)]
    await js.publish(subjects.METRICS_IN, json.dumps(batch).encode())

    def fired(deliveries: list[Delivery]) -> bool:
        return any(d.json["subject"]["id"] == doctor for d in deliveries)

    delivered = webhook.wait_for(fired)
    assert next(d.json for d in delivered if d.json["subject"]["id"] == doctor)["state"] == "firing"


async def test_invalid_event_on_nats_goes_to_the_dead_letter_stream(
    stack: Stack, nc: Client
) -> None:
    js = nc.jetstream()
    marker = unique("bad")
    bad = {
        "id": marker,
        "metric": "report_rework_rate",
        "value": 0.2,
        "subject": "x",
        "source": "his",
    }
    await js.publish(subjects.METRICS_IN, json.dumps(bad).encode())

    # An ephemeral consumer over the dead-letter stream; wait for the message carrying our id.
    sub = await js.subscribe(
        subjects.DEADLETTER_METRICS,
        stream=subjects.STREAM_DEADLETTER,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=30)
            letter = json.loads(msg.data)
            if marker in letter["payload"]:
                break
    finally:
        await sub.unsubscribe()
    assert letter["origin_subject"] == subjects.METRICS_IN
    assert any(e.get("field") == "time" or "time" in json.dumps(e) for e in letter["errors"])
