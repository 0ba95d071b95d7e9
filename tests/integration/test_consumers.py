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
from dataclasses import dataclass, replace

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NotFoundError
from redis.asyncio import Redis

from goalwatch.checkpoints import KEY_PREFIX, Checkpoint, Replay, server_run_id
from goalwatch.consumers import ACK, Consumers, ConsumerSpec, Received, RedeliveryPolicy, Verdict
from goalwatch.contracts import MetricRecorded, subjects
from goalwatch.dev.stack import Stack
from goalwatch.messaging import ensure_consumer, ensure_streams, new_broker, takeover_start
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


class Ordered:
    """Records when each message (by event id) starts and ends; the first message of
    subject ``a`` does not end until a message of subject ``b`` has started."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.b_started = asyncio.Event()

    async def handle(self, message: MetricRecorded, received: Received) -> Verdict:
        self.log.append(f"start {message.id}")
        if message.subject == "b":
            self.b_started.set()
        if message.id == "a1":
            # Fails the test, rather than hangs it, if b's messages wait for a's.
            await asyncio.wait_for(self.b_started.wait(), timeout=10)
        self.log.append(f"end {message.id}")
        return ACK


async def test_one_keys_messages_are_handled_in_stream_order_other_keys_alongside(
    stack: Stack, nc: Client
) -> None:
    target, handler = await probe(nc), Ordered()
    broker = new_broker(stack.settings.nats_url, name="probe")
    consumers = Consumers(broker, service="probe", seconds=handler_seconds(service_registry()))
    consumers.add_ordered(
        target.spec, MetricRecorded, handler, key=lambda event: event.subject, description="probe"
    )
    await ensure_streams(stack.settings.nats_url, consumers=consumers.specs)
    # All four are in the stream before the consumer fetches: they come as one batch.
    for subject, day in (("a", 1), ("b", 1), ("a", 2), ("b", 2)):
        event = {**rework_event(subject, day, 0.2), "id": f"{subject}{day}"}
        await nc.jetstream().publish(target.subject, json.dumps(event).encode())
    await broker.start()
    try:
        await drained(nc, target.spec)
    finally:
        await broker.stop()
    log = handler.log
    assert log.index("end a1") < log.index("start a2")
    assert log.index("end b1") < log.index("start b2")
    assert log.index("start b1") < log.index("end a1")  # b did not wait for a


async def test_a_new_consumer_takes_over_where_the_consumers_it_replaces_left_off(
    nc: Client,
) -> None:
    js = nc.jetstream()
    name = unique("takeover").upper()
    fired, resolved = f"goalwatch.test.{name}.fired", f"goalwatch.test.{name}.resolved"
    await js.add_stream(StreamConfig(name=name, subjects=[fired, resolved]))
    old = {}
    for consumer, subject in (("old-fired", fired), ("old-resolved", resolved)):
        config = ConsumerConfig(durable_name=consumer, filter_subject=subject)
        await js.add_consumer(name, config)
        old[consumer] = await js.pull_subscribe_bind(consumer, name)
    sequences = {}
    for label, subject in (("f1", fired), ("r1", resolved), ("f2", fired), ("f3", fired)):
        sequences[label] = (await js.publish(subject, label.encode())).seq
    # The resolved consumer handled its only message long ago; the fired one handled f1 and
    # f2 and is in the middle of f3.
    for msg in await old["old-resolved"].fetch(1):
        await msg.ack_sync()
    for msg in await old["old-fired"].fetch(2):
        await msg.ack_sync()
    assert [m.data for m in await old["old-fired"].fetch(1)] == [b"f3"]  # not acknowledged

    replaces = ("old-fired", "old-resolved")
    # f3 is the first either still owes; r1's floor + 1 would bring f2 back for nothing.
    assert await takeover_start(js, name, replaces) == sequences["f3"]
    spec = ConsumerSpec(
        name="new",
        stream=name,
        subject=f"goalwatch.test.{name}.*",
        filter_subjects=(fired, resolved),
        policy=RedeliveryPolicy(max_deliver=3, first_delay=0.1, max_delay=0.2),
        ack_wait=5.0,
        batch_size=10,
        replaces=replaces,
    )
    await ensure_consumer(js, spec)
    info = await js.consumer_info(name, "new")
    assert (info.config.deliver_policy, info.config.opt_start_seq) == (
        DeliverPolicy.BY_START_SEQUENCE,
        sequences["f3"],
    )
    assert info.num_pending == 1
    for consumer in replaces:
        with pytest.raises(NotFoundError):
            await js.consumer_info(name, consumer)

    # Provisioned again (the next start): where it starts stays; its settings follow the spec.
    r2 = (await js.publish(resolved, b"r2")).seq
    await ensure_consumer(js, replace(spec, ack_wait=7.0))
    info = await js.consumer_info(name, "new")
    assert (info.config.opt_start_seq, info.config.ack_wait, info.num_pending) == (
        sequences["f3"],
        7.0,
        2,
    )
    assert r2 > sequences["f3"]


async def test_a_consumer_with_nothing_to_take_over_starts_at_the_first_message(
    nc: Client,
) -> None:
    js = nc.jetstream()
    name = unique("fresh").upper()
    subject = f"goalwatch.test.{name}.fired"
    await js.add_stream(StreamConfig(name=name, subjects=[subject]))
    await js.publish(subject, b"published before the consumer existed")
    assert await takeover_start(js, name, ("gone",)) is None
    spec = ConsumerSpec(
        name="new",
        stream=name,
        subject=subject,
        policy=RedeliveryPolicy(max_deliver=3, first_delay=0.1, max_delay=0.2),
        ack_wait=5.0,
        batch_size=10,
        replaces=("gone",),
    )
    await ensure_consumer(js, spec)
    info = await js.consumer_info(name, "new")
    assert (info.config.deliver_policy, info.num_pending) == (DeliverPolicy.ALL, 1)


async def test_a_checkpoint_stands_on_those_of_the_consumers_it_replaced_until_it_has_its_own(
    stack: Stack, nc: Client
) -> None:
    js = nc.jetstream()
    name = unique("inherit").upper()
    subject = f"goalwatch.test.{name}.fired"
    await js.add_stream(StreamConfig(name=name, subjects=[subject]))
    for n in range(5):
        await js.publish(subject, str(n).encode())
    own = unique("new")
    # Created by the takeover at sequence 4: 1-3 were handled by the consumers it replaced.
    await js.add_consumer(
        name,
        ConsumerConfig(
            durable_name=own,
            filter_subject=subject,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=4,
        ),
    )
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    old = [unique("old-fired"), unique("old-resolved")]

    def checkpoint() -> Checkpoint:
        return Checkpoint(
            redis=redis,
            connection=lambda: nc,
            stream=name,
            subject=subject,
            consumer=own,
            inherits=old,
        )

    async def store(consumer: str, floor: int, run_id: str) -> None:
        value = json.dumps({"floor": floor, "run_id": run_id})
        await redis.set(f"{KEY_PREFIX}{consumer}", value)

    try:
        run_id = await server_run_id(redis)
        # Written to a Redis server that has restarted since: what came after the older
        # floor may be lost, and is replayed up to where the new consumer stands.
        await store(old[0], 3, "an-earlier-run")
        await store(old[1], 1, "an-earlier-run")
        assert await checkpoint().begin() == Replay(first=2, last=3)
        await store(old[1], 1, run_id)  # they disagree: no server vouches for both
        assert await checkpoint().begin() == Replay(first=2, last=3)
        # Both written to this server: nothing lost.
        await store(old[0], 3, run_id)
        current = checkpoint()
        assert await current.begin() is None
        assert await current.commit()
        assert await redis.get(f"{KEY_PREFIX}{own}") is not None
        assert await redis.exists(*(f"{KEY_PREFIX}{consumer}" for consumer in old)) == 0
    finally:
        await redis.delete(*(f"{KEY_PREFIX}{consumer}" for consumer in [*old, own]))
        await redis.aclose()
