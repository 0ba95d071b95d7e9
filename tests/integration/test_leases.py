"""Leased consumers against a real nats-server and redis-server: two replicas share the
partitions without overlap; a replica that stalls holding a batch loses its lease, another
takes the partition and gets that batch again at once and in order, and the stalled one, when
it wakes, acknowledges nothing (fencing)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

import nats
import pytest
from prometheus_client import CollectorRegistry, Histogram
from redis.asyncio import Redis

from goalwatch.consumers import ACK, ConsumerSpec, Received, RedeliveryPolicy, Verdict
from goalwatch.contracts import MetricRecorded, subjects
from goalwatch.dev.stack import Stack, StackSettings
from goalwatch.messaging import ensure_consumer, ensure_streams, new_broker
from goalwatch.partitions import LeasedConsumers, Leases, partition_specs
from tests.integration.conftest import REPO
from tests.integration.helpers import unique

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("leases")
    running = Stack(settings=StackSettings.on_free_ports(state, REPO / "rules"))
    running.start_servers()
    yield running
    running.stop()


class Recorder:
    """Records what a replica was handed; blocks its first batch while ``stall`` is set."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.stall = False
        self.stalled = asyncio.Event()
        self.wake = asyncio.Event()
        self.handled = asyncio.Event()

    async def handle_batch(
        self, messages: Sequence[MetricRecorded], received: Sequence[Received]
    ) -> list[Verdict]:
        if self.stall:
            self.stall = False
            self.stalled.set()
            await self.wake.wait()
        self.seen += [(m.subject, r.sequence or 0) for m, r in zip(messages, received, strict=True)]
        self.handled.set()
        return [ACK] * len(messages)


async def until(
    condition: Callable[[], bool], changes: Sequence[asyncio.Event], within: float
) -> None:
    """Return once ``condition`` holds, looking again at each change; fail after ``within``."""
    deadline = time.monotonic() + within
    while not condition():
        for change in changes:
            change.clear()
        left = deadline - time.monotonic()
        assert left > 0, "the condition did not hold in time"
        waits = [asyncio.create_task(change.wait()) for change in changes]
        await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()


def event(subject: str, n: int) -> bytes:
    return (
        MetricRecorded(
            id=f"{subject}-{n}",
            source="test",
            metric="m",
            subject=subject,
            value=float(n),
            time=datetime(2026, 12, 1, tzinfo=UTC),
        )
        .model_dump_json()
        .encode()
    )


async def test_replicas_share_partitions_and_a_stalled_ones_batch_moves_in_order(
    servers: Stack,
) -> None:
    settings = servers.settings
    await ensure_streams(settings.nats_url)
    nc = await nats.connect(settings.nats_url)
    redis = Redis.from_url(settings.redis_url)
    base = ConsumerSpec(
        name=unique("leased"),
        stream=subjects.STREAM_METRICS,
        subject=subjects.METRICS_RECORDED,
        policy=RedeliveryPolicy(max_deliver=5, first_delay=1, max_delay=1),
        # Long: only the takeover can bring a stalled batch back within the test.
        ack_wait=60,
        batch_size=10,
    )
    specs = partition_specs(base, PARTITIONS)
    js = nc.jetstream()
    for _, spec in specs:
        await ensure_consumer(js, spec)
    group = unique("lease-group")
    seconds = Histogram("t", "t", ["service", "handler"], registry=CollectorRegistry())
    replicas: dict[str, tuple[LeasedConsumers, Recorder]] = {}
    for holder in ("a", "b"):
        recorder = Recorder()
        leased = LeasedConsumers(
            leases=Leases(redis, service=group, ttl=1.0, holder=holder),
            broker=new_broker(settings.nats_url, name=f"leases-{holder}"),
            connection=lambda: nc,
            service=group,
            seconds=seconds,
        )
        for slot, spec in specs:
            leased.add(slot, spec, MetricRecorded, recorder)
        replicas[holder] = (leased, recorder)
    (a, seen_a), (b, seen_b) = replicas["a"], replicas["b"]
    changes = [a.changed, b.changed]
    runs = {holder: asyncio.create_task(leased.run()) for holder, (leased, _) in replicas.items()}
    try:
        # Two live replicas: two partitions each, never one partition on both.
        await until(lambda: len(a.serving) == 2 and len(b.serving) == 2, changes, within=10)
        assert not set(a.serving) & set(b.serving)
        holders = await a.leases.holders([slot for slot, _ in specs])
        assert sorted(holders.values(), key=str) == ["a", "a", "b", "b"]

        # b stalls on its next batch of one of its partitions, holding it unacknowledged.
        slot = b.serving[0]
        partition = int(slot.rsplit("-", 1)[1])
        subject = next(
            f"emp-{n}"
            for n in range(1000)
            if subjects.metrics_partition(f"emp-{n}", PARTITIONS) == partition
        )
        seen_b.stall = True
        topic = subjects.metrics_partition_subject(partition)
        sequences = [
            (await js.publish(topic, event(subject, n), stream=subjects.STREAM_METRICS)).seq
            for n in range(25)
        ]
        await asyncio.wait_for(seen_b.stalled.wait(), timeout=10)
        # ... and stops renewing (as a process that hangs, or dies, does).
        runs["b"].cancel()
        # a takes every partition once b's leases and its place among the live expire, and
        # gets b's unacknowledged batch again at once (not after the 60 s ack_wait), in order.
        await until(lambda: len(a.serving) == PARTITIONS, changes, within=15)
        await until(
            lambda: [seq for s, seq in seen_a.seen if s == subject] == sequences,
            [*changes, seen_a.handled],
            within=15,
        )
        # b wakes: its lease is gone, it acknowledges nothing and stops serving the slot.
        seen_b.wake.set()
        await until(lambda: slot not in b.serving, changes, within=10)
        assert [seq for s, seq in seen_a.seen if s == subject] == sequences
        info = await js.consumer_info(subjects.STREAM_METRICS, f"{base.name}-p{partition}")
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
        assert info.ack_floor.stream_seq == sequences[-1]
    finally:
        for run in runs.values():
            run.cancel()
        await asyncio.gather(*runs.values(), return_exceptions=True)
        for leased, recorder in replicas.values():
            recorder.wake.set()
            await leased.drain(within=5)
        await redis.aclose()
        await nc.close()
