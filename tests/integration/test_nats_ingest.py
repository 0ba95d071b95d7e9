"""Events published straight on NATS get the same treatment as HTTP; rejects are dead-lettered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from goalwatch.consumers import ConsumerSpec, RedeliveryPolicy
from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack
from goalwatch.messaging import ensure_streams
from tests.integration.conftest import WebhookCall, WebhookReceiver
from tests.integration.helpers import add_doctor, rework_event, unique

pytestmark = pytest.mark.integration


async def dead_letter_carrying(js: JetStreamContext, marker: str) -> Msg:
    """The first metrics dead letter whose payload holds ``marker`` (an ephemeral consumer
    over the dead-letter stream, from its start)."""
    sub = await js.subscribe(
        subjects.DEADLETTER_METRICS,
        stream=subjects.STREAM_DEADLETTER,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=30)
            if marker in json.loads(msg.data)["payload"]:
                return msg
    finally:
        await sub.unsubscribe()


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[Client]:
    client = await nats.connect(stack.settings.nats_url)
    yield client
    await client.drain()


async def test_events_published_on_nats_fire_alerts(
    stack: Stack, nc: Client, webhook: WebhookReceiver
) -> None:
    with stack.client() as http:
        doctor, _ = add_doctor(http, stack.settings.url("goals"))
    js = nc.jetstream()
    batch = [rework_event(doctor, d, 0.25) for d in (1, 2, 3)]
    await js.publish(subjects.METRICS_IN, json.dumps(batch).encode())

    def fired(deliveries: list[WebhookCall]) -> bool:
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

    msg = await dead_letter_carrying(js, marker)
    letter = json.loads(msg.data)
    assert letter["origin_subject"] == subjects.METRICS_IN
    # One error, for the one missing field, naming the event.
    assert [(e["loc"], e["event_id"]) for e in letter["errors"]] == [("time", marker)], letter
    assert letter["errors"][0]["msg"].startswith('time is required (add "time"'), letter


async def test_changed_consumer_settings_reach_an_existing_consumer(
    stack: Stack, nc: Client
) -> None:
    name = unique("probe")
    for max_deliver in (3, 7):
        consumer = ConsumerSpec(
            name=name,
            stream=subjects.STREAM_METRICS,
            subject=subjects.METRICS_RECORDED,
            policy=RedeliveryPolicy(max_deliver=max_deliver, first_delay=1, max_delay=1),
            ack_wait=12,
            batch_size=1,
        )
        await ensure_streams(stack.settings.nats_url, consumers=[consumer])
    info = await nc.jetstream().consumer_info(subjects.STREAM_METRICS, name)
    await nc.jetstream().delete_consumer(subjects.STREAM_METRICS, name)
    assert (info.config.max_deliver, info.config.ack_wait) == (7, 12)


@pytest.mark.parametrize(
    ("what", "payload"),
    [
        ("lone surrogate in the id", b'{"id": "BAD-\\ud800", "metric": "m", "value": 1}'),
        ("5000-digit integer", b'{"id": "BAD", "metric": "m", "value": ' + b"7" * 5000 + b"}"),
    ],
)
async def test_bad_input_on_nats_is_dead_lettered_not_dropped(
    stack: Stack, nc: Client, what: str, payload: bytes
) -> None:
    js = nc.jetstream()
    marker = unique("unreadable")
    payload = payload.replace(b"BAD", marker.encode())
    ack = await js.publish(subjects.METRICS_IN, payload)
    msg = await dead_letter_carrying(js, marker)
    letter = json.loads(msg.data)
    assert ack.seq > 0
    # Dead-lettered at the first delivery, as bad input, not after the retries ran out.
    assert "gave up" not in letter["reason"], (what, letter["reason"])
    assert letter["errors"], letter


async def test_a_message_near_max_payload_is_dead_lettered_with_its_payload_cut(
    stack: Stack, nc: Client
) -> None:
    js = nc.jetstream()
    marker = unique("huge")
    head = b'{"id": "' + marker.encode() + b'", "metric": "m", "value": 1, "pad": "'
    # Escaped quotes double in the dead letter's JSON: the whole body cannot fit in it.
    pad = b'\\"' * ((nc.max_payload - len(head) - 1024) // 2)
    payload = head + pad + b'"}'
    ack = await js.publish(subjects.METRICS_IN, payload)
    msg = await dead_letter_carrying(js, marker)
    letter = json.loads(msg.data)
    assert len(msg.data) <= nc.max_payload
    assert letter["payload_truncated"] is True
    assert letter["payload_bytes"] == len(payload)
    assert payload.decode().startswith(letter["payload"])
    # The whole body is where the dead letter says.
    assert (letter["origin_stream"], letter["origin_sequence"]) == (ack.stream, ack.seq)
    original = await js.get_msg(letter["origin_stream"], letter["origin_sequence"])
    assert original.data == payload
