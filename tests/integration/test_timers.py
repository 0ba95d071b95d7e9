"""Durable timers against a real nats-server: fire, move, cancel, survive kill -9.

Each test arms timers of an owner of its own and consumes them with a consumer built by
:class:`goalwatch.consumers.Consumers`, as a service would. The server is this module's
own, so that one test can kill it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from goalwatch.consumers import ACK, Consumers, ConsumerSpec, Received, RedeliveryPolicy, Verdict
from goalwatch.contracts import TimerFired, subjects
from goalwatch.dev.stack import free_port
from goalwatch.messaging import ensure_streams, new_broker
from goalwatch.telemetry import handler_seconds, service_registry
from goalwatch.timers import TimerKey, Timers, fired_subject
from tests.integration.helpers import unique

pytestmark = pytest.mark.integration


@dataclass
class NatsServer:
    """A nats-server with JetStream on a free port, which a test may kill and restart."""

    store: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = Path(sys.executable).parent / "nats-server"
        self.process = subprocess.Popen(
            [str(binary), "--jetstream", "--store_dir", str(self.store), "--addr", "127.0.0.1",
             "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        asyncio.run(self._wait_ready())

    async def _wait_ready(self) -> None:
        for _ in range(200):
            try:
                nc = await nats.connect(self.url, connect_timeout=0.5, max_reconnect_attempts=0)
            except Exception:
                await asyncio.sleep(0.05)  # the server is starting: nothing to await but it
                continue
            await nc.close()
            return
        raise AssertionError(f"nats-server did not start on {self.url}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: nothing flushed
        self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    running = NatsServer(store=tmp_path_factory.mktemp("timers-nats"))
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.process.terminate()
        running.process.wait()


class Collector:
    """A timer consumer's handler: records what fired and when it arrived."""

    def __init__(self) -> None:
        self.fired: list[tuple[TimerFired, datetime]] = []
        self.changed = asyncio.Event()

    async def handle(self, message: TimerFired, received: Received) -> Verdict:
        self.fired.append((message, datetime.now(UTC)))
        self.changed.set()
        return ACK

    async def wait_for(self, key: str, *, within: float = 20.0) -> tuple[TimerFired, datetime]:
        """The first timer of ``key`` to fire; fails the test after ``within`` seconds."""

        async def first() -> tuple[TimerFired, datetime]:
            while True:
                for fired, at in self.fired:
                    if fired.key == key:
                        return fired, at
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(first(), timeout=within)

    def of(self, key: str) -> list[TimerFired]:
        return [fired for fired, _ in self.fired if fired.key == key]


@dataclass
class Owner:
    name: str
    spec: ConsumerSpec

    def key(self, key: str) -> TimerKey:
        return TimerKey(owner=self.name, name="test", key=key)


def owner() -> Owner:
    name = unique("owner")
    return Owner(
        name,
        ConsumerSpec(
            name=name,
            stream=subjects.STREAM_TIMERS,
            subject=fired_subject(name),
            policy=RedeliveryPolicy(max_deliver=3, first_delay=0.1, max_delay=0.2),
            ack_wait=5.0,
            batch_size=10,
        ),
    )


@pytest.fixture
async def nc(server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    await ensure_streams(server.url)
    yield client
    await client.close()


@asynccontextmanager
async def consuming(server: NatsServer, who: Owner, collector: Collector) -> AsyncIterator[None]:
    broker = new_broker(server.url, name="timers-test")
    consumers = Consumers(broker, service="probe", seconds=handler_seconds(service_registry()))
    consumers.add(who.spec, TimerFired, collector, description="timers under test")
    await ensure_streams(server.url, consumers=consumers.specs)
    await broker.start()
    try:
        yield
    finally:
        await broker.stop()


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_a_timer_fires_at_its_time_not_before(server: NatsServer, nc: Client) -> None:
    who, collector = owner(), Collector()
    timers = Timers(lambda: nc)
    async with consuming(server, who, collector):
        due = soon(1.0)
        await timers.arm(who.key("a"), due, data={"rule_id": "r1"})
        fired, arrived = await collector.wait_for("a")
    assert arrived >= due
    assert fired.due_at == due
    assert fired.data == {"rule_id": "r1"}
    assert await timers.pending(who.key("a")) is None


async def test_a_moved_timer_fires_once_at_the_new_time(server: NatsServer, nc: Client) -> None:
    who, collector = owner(), Collector()
    timers = Timers(lambda: nc)
    async with consuming(server, who, collector):
        # Earlier: armed for a minute from now, moved to one second from now.
        await timers.arm(who.key("earlier"), soon(60))
        earlier = soon(1.0)
        await timers.arm(who.key("earlier"), earlier)
        # Later: armed for one second from now, moved to two.
        await timers.arm(who.key("later"), soon(1.0))
        later = soon(2.0)
        await timers.arm(who.key("later"), later)
        assert await timers.pending(who.key("later")) == later
        fired_earlier, at_earlier = await collector.wait_for("earlier")
        fired_later, at_later = await collector.wait_for("later")
        # A sentinel armed after both: once it fired, anything still due from them had too.
        await timers.arm(who.key("sentinel"), soon(0.5))
        await collector.wait_for("sentinel")
    assert (fired_earlier.due_at, fired_later.due_at) == (earlier, later)
    assert at_earlier >= earlier
    assert at_later >= later
    assert len(collector.of("earlier")) == 1
    assert len(collector.of("later")) == 1
    assert await timers.pending(who.key("earlier")) is None


async def test_a_cancelled_timer_does_not_fire(server: NatsServer, nc: Client) -> None:
    who, collector = owner(), Collector()
    timers = Timers(lambda: nc)
    async with consuming(server, who, collector):
        sequence = await timers.arm(who.key("by-sequence"), soon(1.0))
        await timers.arm(who.key("by-subject"), soon(1.0))
        assert await timers.cancel(who.key("by-sequence"), sequence=sequence)
        assert await timers.cancel(who.key("by-subject"))
        # Cancelling again is harmless and says nothing was pending.
        assert not await timers.cancel(who.key("by-sequence"), sequence=sequence)
        assert not await timers.cancel(who.key("by-subject"))
        # Due after the cancelled ones: when it fires, they would have.
        await timers.arm(who.key("sentinel"), soon(2.0))
        await collector.wait_for("sentinel")
    assert collector.of("by-sequence") == []
    assert collector.of("by-subject") == []


async def test_cancel_by_sequence_leaves_a_newer_arm_alone(server: NatsServer, nc: Client) -> None:
    who, collector = owner(), Collector()
    timers = Timers(lambda: nc)
    async with consuming(server, who, collector):
        first = await timers.arm(who.key("moved"), soon(30))
        moved_to = soon(1.0)
        await timers.arm(who.key("moved"), moved_to)
        # The first arm is gone (moved): cancelling it must not cancel the move.
        assert not await timers.cancel(who.key("moved"), sequence=first)
        fired, _ = await collector.wait_for("moved")
    assert fired.due_at == moved_to


async def test_a_timer_pending_while_the_server_is_killed_still_fires(
    server: NatsServer, nc: Client
) -> None:
    who, collector = owner(), Collector()
    timers = Timers(lambda: nc)
    async with consuming(server, who, collector):
        due = soon(2.0)
        await timers.arm(who.key("survivor"), due)
        server.kill()
        # Down until after the deadline: the timer falls due while there is no server.
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.5)
        await asyncio.to_thread(server.start)
        fired, arrived = await collector.wait_for("survivor", within=30)
    assert fired.due_at == due
    assert arrived >= due


async def test_a_timer_due_while_its_consumer_is_down_fires_when_it_comes_back(
    server: NatsServer, nc: Client
) -> None:
    who, collector = owner(), Collector()
    timers = Timers(lambda: nc)
    # The consumer exists (as after a first start), but nothing runs it.
    await ensure_streams(server.url, consumers=[who.spec])
    due = soon(0.5)
    await timers.arm(who.key("waiting"), due)
    js = nc.jetstream()
    for _ in range(400):  # the server's counter: no event to await without a consumer
        if (await js.consumer_info(who.spec.stream, who.spec.name)).num_pending:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the timer did not fire into the stream")
    assert collector.fired == []
    async with consuming(server, who, collector):
        fired, arrived = await collector.wait_for("waiting")
    assert fired.due_at == due
    assert arrived >= due
