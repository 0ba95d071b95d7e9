"""The kernel's verdicts against a real nats-server: retries, dead letters, the heartbeat.

Each test runs its own consumer on a stream of its own, with the policy shortened to
fractions of a second, so what JetStream does with a nak delay, a dead letter's
``Nats-Msg-Id`` and an in-progress heartbeat is what the services get.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from goalwatch.consumers import ACK, Consumers, ConsumerSpec, Received, RedeliveryPolicy, Verdict
from goalwatch.contracts import MetricRecorded, subjects
from goalwatch.dev.stack import Stack
from goalwatch.messaging import ensure_streams, new_broker
from goalwatch.telemetry import handler_seconds, service_registry
from tests.integration.helpers import rework_event, unique

pytestmark = pytest.mark.integration


@dataclass
class Probe:
    subject: str
    spec: ConsumerSpec


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[Client]:
    client = await nats.connect(stack.settings.nats_url)
    yield client
    await client.drain()


async def probe(nc: Client, *, ack_wait: float = 5.0) -> Probe:
    name = unique("probe")
    subject = f"goalwatch.test.{name}"
    await nc.jetstream().add_stream(StreamConfig(name=name.upper(), subjects=[subject]))
    spec = ConsumerSpec(
        name=name,
        stream=name.upper(),
        subject=subject,
        policy=RedeliveryPolicy(max_deliver=3, first_delay=0.1, max_delay=0.2),
        ack_wait=ack_wait,
        batch_size=10,
    )
    return Probe(subject, spec)


class Handler:
    """Answers with ``verdict`` (failing while ``fail``) after ``delay`` seconds."""

    def __init__(self, *, fail: bool = False, delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.deliveries: list[int] = []
        self.changed = asyncio.Event()

    async def handle(self, message: MetricRecorded, received: Received) -> Verdict:
        self.deliveries.append(received.deliveries)
        self.changed.set()
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("redis is down")
        return ACK


@asynccontextmanager
async def running(stack: Stack, target: Probe, handler: Handler) -> AsyncIterator[None]:
    broker = new_broker(stack.settings.nats_url, name="probe")
    consumers = Consumers(broker, service="probe", seconds=handler_seconds(service_registry()))
    consumers.add(target.spec, MetricRecorded, handler, description="probe", keep_alive=True)
    await ensure_streams(stack.settings.nats_url, consumers=consumers.specs)
    await broker.start()
    try:
        yield
    finally:
        await broker.stop()


async def dead_letter_of(nc: Client, marker: str, *, wait: float = 20.0) -> tuple[dict, str]:
    """The dead letter whose payload holds ``marker``, and its Nats-Msg-Id."""
    sub = await nc.jetstream().subscribe(
        subjects.DEADLETTER_METRICS,
        stream=subjects.STREAM_DEADLETTER,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        while True:
            msg = await sub.next_msg(timeout=wait)
            letter = json.loads(msg.data)
            if marker in letter["payload"]:
                return letter, (msg.headers or {}).get("Nats-Msg-Id", "")
    finally:
        await sub.unsubscribe()


async def drained(nc: Client, spec: ConsumerSpec, *, wait: float = 20.0) -> None:
    """Wait until the consumer holds nothing pending or unacknowledged."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        info = await nc.jetstream().consumer_info(spec.stream, spec.name)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{spec.name} did not drain: {info}"
        await asyncio.sleep(0.05)


async def test_a_failing_message_is_retried_then_dead_lettered_once(
    stack: Stack, nc: Client
) -> None:
    target, handler = await probe(nc), Handler(fail=True)
    event = rework_event(unique("retried"), 1, 0.2)
    async with running(stack, target, handler):
        ack = await nc.jetstream().publish(target.subject, json.dumps(event).encode())
        letter, msg_id = await dead_letter_of(nc, event["id"])
        await drained(nc, target.spec)
    assert handler.deliveries == [1, 2, 3]
    assert letter["reason"] == (
        "handling failed: ConnectionError('redis is down'); gave up after 3 deliveries"
    )
    assert letter["origin_subject"] == target.subject
    assert msg_id == f"deadletter:{target.spec.name}:{ack.seq}:gave-up"


async def test_an_invalid_payload_is_dead_lettered_at_once(stack: Stack, nc: Client) -> None:
    target, handler = await probe(nc), Handler()
    marker = unique("invalid")
    async with running(stack, target, handler):
        await nc.jetstream().publish(target.subject, json.dumps({"id": marker}).encode())
        letter, msg_id = await dead_letter_of(nc, marker)
        await drained(nc, target.spec)
    assert handler.deliveries == []
    assert {e["loc"] for e in letter["errors"]} >= {"metric", "value", "time"}
    assert msg_id.endswith(":invalid")


async def test_the_heartbeat_keeps_a_slow_message_from_being_redelivered(
    stack: Stack, nc: Client
) -> None:
    # Handling takes three times ack_wait: without in-progress beats JetStream would redeliver.
    target, handler = await probe(nc, ack_wait=1.0), Handler(delay=3.0)
    event = rework_event(unique("slow"), 1, 0.2)
    async with running(stack, target, handler):
        await nc.jetstream().publish(target.subject, json.dumps(event).encode())
        await asyncio.wait_for(handler.changed.wait(), timeout=10)
        await drained(nc, target.spec)
        info = await nc.jetstream().consumer_info(target.spec.stream, target.spec.name)
    assert handler.deliveries == [1]
    assert info.num_redelivered == 0
