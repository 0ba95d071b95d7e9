"""``goalwatch bench``: the real pipeline on real servers, next to the raw JetStream ceiling.

It starts its own installation (nats-server, redis-server and the four services, on free ports
in a temporary folder), then measures in the same run:

1. the ceiling: 200-byte messages through one JetStream stream with ``publish_async`` and a
   pull consumer (``fetch(500)`` + ack), nothing else;
2. the pipeline: metric events published by a source (on NATS, or POSTed in batches over HTTP),
   validated by ingestion, evaluated against ``rules/``, alerted and put in the inbox.

One subject in ten breaches the shipped rule's threshold every day and so fires exactly one
alert, on its third day; the others stay under it, as most people do. Latencies are measured
from the publication of the event that completes a streak to the alert on
``goalwatch.alerts.fired.v1`` and to the notifier's inbox record on
``goalwatch.notifications.sent.v1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from goalwatch.catalogue import DEFAULT_CATALOGUE
from goalwatch.checkpoints import KEY_PREFIX as CHECKPOINT_PREFIX
from goalwatch.checkpoints import Checkpoint
from goalwatch.connections import NatsTarget, connect_nats
from goalwatch.contracts import subjects
from goalwatch.dev.fault_counts import Arrival, Receiver
from goalwatch.dev.stack import Stack, StackSettings
from goalwatch.settings import ServiceSettings

_CEILING_STREAM = "GOALWATCH_BENCH_CEILING"
# The evaluator's consumer of the metric events; each partition's is this, "-p<partition>".
EVALUATOR_CONSUMER = "evaluator"
_CEILING_SUBJECT = "goalwatch.bench.ceiling"
_DAY0 = datetime(2026, 1, 1, 18, tzinfo=UTC)


@dataclass(frozen=True)
class Latencies:
    """Percentiles of a set of latencies, in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float = float("nan")

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latencies:
        """Summarise ``seconds``."""
        ms = sorted(s * 1000 for s in seconds)
        if len(ms) < 2:
            value = ms[0] if ms else float("nan")
            return cls(len(ms), value, value, value, value, value)
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        return cls(len(ms), cuts[49], cuts[94], cuts[98], ms[-1], statistics.fmean(ms))

    def row(self) -> str:
        """``p50 / p95 / p99 / max`` in ms."""
        return f"{self.p50:.0f} / {self.p95:.0f} / {self.p99:.0f} / {self.max:.0f} ms"


@dataclass(frozen=True)
class Result:
    """What one benchmark run measured."""

    transport: str
    events: int
    subjects: int
    ceiling_per_s: float
    ingest_per_s: float
    pipeline_per_s: float
    fired: Latencies
    notified: Latencies
    idle: Latencies
    checkpoint: Checkpointing
    rules: str = "rules/"
    steady: Steady | None = None
    backlog: Backlog | None = None
    ceiling_after: float | None = None
    load: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None

    def report(self) -> str:
        """A Markdown table of the run."""
        share = 100 * self.pipeline_per_s / self.ceiling_per_s if self.ceiling_per_s else 0.0
        after = "" if self.ceiling_after is None else f"; {self.ceiling_after:,.0f} at the end"
        rows = [
            f"| measure ({self.events} events, {self.subjects} subjects, "
            f"source over {self.transport}, {self.rules}) | result |",
            "|---|---|",
            f"| JetStream ceiling (publish_async + pull fetch 500 + ack) | "
            f"{self.ceiling_per_s:,.0f} msgs/s{after} |",
        ]
        if self.steady is not None:
            rows += self.steady.rows()
        if self.backlog is not None:
            rows += self.backlog.rows()
        if self.load is not None:
            rows.append(
                "| load average (1/5/15 min), start → end | "
                + " → ".join(" ".join(f"{x:.2f}" for x in avg) for avg in self.load)
                + " |"
            )
        return "\n".join(
            [
                *rows,
                f"| events accepted by ingestion | {self.ingest_per_s:,.0f} events/s |",
                f"| events through the pipeline (published → evaluated) | "
                f"{self.pipeline_per_s:,.0f} events/s ({share:.0f}% of the ceiling) |",
                f"| event → alert fired, p50 / p95 / p99 / max ({self.fired.count} alerts) | "
                f"{self.fired.row()} |",
                f"| event → in the manager's inbox, p50 / p95 / p99 / max | {self.notified.row()} |",
                f"| one streak at a time on an idle pipeline: event → alert fired "
                f"({self.idle.count} alerts) | {self.idle.row()} |",
                f"| rule-state checkpoint, once per evaluator batch, p50 / p95 / p99 / max "
                f"({self.checkpoint.each.count} rounds) | {self.checkpoint.each.row()} |",
                f"| evaluator batches in the burst, events per batch, checkpoint share of "
                f"batch time | {self.checkpoint.batches:,} batches, "
                f"{self.events / max(self.checkpoint.batches, 1):.0f} events/batch, "
                f"{self.checkpoint.share():.1%} |",
            ]
        )


@dataclass(frozen=True)
class Checkpointing:
    """What the evaluator's rule-state checkpoint costs (``goalwatch/checkpoints.py``)."""

    each: Latencies  # one begin() + commit(), as the evaluator does around every batch
    batches: int  # batches the evaluator handled during the burst
    handling_seconds: float  # their total handling time, checkpoints included

    def share(self) -> float:
        """The checkpoints' part of the evaluator's batch time, by the mean round."""
        mean = self.each.mean / 1000
        return self.batches * mean / self.handling_seconds if self.handling_seconds else 0.0


async def measure_checkpoint(settings: StackSettings, *, rounds: int) -> Latencies:
    """Time ``rounds`` checkpoint rounds against the installation's own servers.

    A durable consumer of its own over the metrics stream stands in for the evaluator's, so
    the round makes the same requests (Redis INFO, JetStream consumer info, the commit
    script) without touching the evaluator's checkpoint.
    """
    nc = await connect_nats(settings.nats_access())
    redis = Redis.from_url(settings.redis_url)
    name = f"bench-checkpoint-{uuid.uuid4().hex[:6]}"
    js = nc.jetstream()
    await js.add_consumer(
        subjects.STREAM_METRICS,
        ConsumerConfig(durable_name=name, filter_subject=subjects.METRICS_RECORDED),
    )
    checkpoint = Checkpoint(
        redis=redis,
        connection=lambda: nc,
        stream=subjects.STREAM_METRICS,
        subject=subjects.METRICS_RECORDED,
        consumer=name,
    )
    took = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            await checkpoint.begin()
            await checkpoint.commit()
            took.append(time.perf_counter() - started)
    finally:
        await js.delete_consumer(subjects.STREAM_METRICS, name)
        await redis.delete(f"{CHECKPOINT_PREFIX}{name}")
        await redis.aclose()
        await nc.close()
    return Latencies.of(took)


def evaluator_batches(stack: Stack) -> tuple[int, float]:
    """How many batches of metric events the evaluator processes have handled, and their
    total time in seconds (every partition, every process)."""
    count, total = 0.0, 0.0
    for name in stack.replica_names("evaluator"):
        text = httpx.get(f"{stack.replica_url(name)}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name != "goalwatch_handler_seconds":
                continue
            for sample in family.samples:
                if not sample.labels.get("handler", "").startswith(f"{EVALUATOR_CONSUMER}-p"):
                    continue
                if sample.name.endswith("_count"):
                    count += sample.value
                elif sample.name.endswith("_sum"):
                    total += sample.value
    return int(count), total


async def measure_ceiling(server: NatsTarget, *, count: int) -> float:
    """Messages per second through one JetStream stream, publisher to acking consumer."""
    nc = await connect_nats(server)
    js = nc.jetstream(publish_async_max_pending=4000)
    try:
        await js.add_stream(
            StreamConfig(
                name=_CEILING_STREAM, subjects=[_CEILING_SUBJECT], storage=StorageType.FILE
            )
        )
        sub = await js.pull_subscribe(_CEILING_SUBJECT, durable="bench", stream=_CEILING_STREAM)
        payload = json.dumps({"id": "x" * 120, "metric": "m", "value": 0.5}).encode()[:200]

        async def consume() -> None:
            received = 0
            while received < count:
                try:
                    batch = await sub.fetch(500, timeout=1)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for msg in batch:
                    await msg.ack()
                received += len(batch)

        start = time.perf_counter()
        consumer = asyncio.create_task(consume())
        for _ in range(count):
            await js.publish_async(_CEILING_SUBJECT, payload)
        await js.publish_async_completed()
        await consumer
        return count / (time.perf_counter() - start)
    finally:
        await js.delete_stream(_CEILING_STREAM)
        await nc.close()


BREACHING_EVERY = 10


@dataclass(frozen=True)
class Workload:
    """Which metric each subject reports and the values that breach or not.

    The default is the shipped rule's: ``report_rework_rate`` above 8%. With generated rules
    (:func:`generated`) each subject reports one of their metrics, and a breaching value
    breaches only the lowest threshold of that metric, so a breaching subject fires exactly
    one alert as with the shipped rule, while each event still reaches every rule of its metric.
    """

    metrics: tuple[str, ...] = ("report_rework_rate",)
    breach: float = 0.2
    calm: float = 0.03

    def event(self, run: str, s: int, d: int, *, breaching: bool | None = None) -> dict[str, Any]:
        """Subject ``s``'s event of day ``d``; one subject in ten breaches unless told."""
        breaching = s % BREACHING_EVERY == 0 if breaching is None else breaching
        return {
            "id": f"{run}-s{s}-d{d}",
            "metric": self.metrics[s % len(self.metrics)],
            "value": self.breach if breaching else self.calm,
            "time": (_DAY0 + timedelta(days=d)).isoformat(),
            "subject": f"{run}-s{s}",
            "source": "bench",
        }


def generated(rules: int) -> Workload:
    """The workload of ``rules`` generated rules (:mod:`goalwatch.dev.evaluator_bench`)."""
    from goalwatch.dev.evaluator_bench import PER_EVENT, metric_name

    metrics = -(-rules // PER_EVENT)
    # Thresholds are 0.50, 0.54, ... per metric: 0.52 breaches only the first.
    return Workload(metrics=tuple(metric_name(m) for m in range(metrics)), breach=0.52, calm=0.1)


def _events(
    run: str, *, subjects_count: int, days: int, workload: Workload
) -> list[dict[str, Any]]:
    """Day by day, every subject's event for that day; one subject in ten breaches."""
    return [workload.event(run, s, d) for d in range(days) for s in range(subjects_count)]


async def measure_pipeline(
    stack: Stack, *, subjects_count: int, days: int, transport: str, workload: Workload
) -> tuple[float, float, Latencies, Latencies]:
    """(ingest/s, pipeline/s, event→fired, event→inbox) for one workload."""
    settings = stack.settings
    run = f"bench-{uuid.uuid4().hex[:6]}"
    events = _events(run, subjects_count=subjects_count, days=days, workload=workload)
    # The third day completes each breaching subject's streak.
    trigger = {f"{run}-s{s}": f"{run}-s{s}-d2" for s in range(0, subjects_count, BREACHING_EVERY)}
    published: dict[str, float] = {}
    fired: list[float] = []
    notified: list[float] = []
    all_fired = asyncio.Event()
    all_notified = asyncio.Event()

    # Everyone known to goals, with a manager, as in production: the notifier looks them up.
    people = [{"id": f"{run}-head", "name": "Head of department"}] + [
        {"id": subject, "name": f"Dr {subject}", "manager_id": f"{run}-head"} for subject in trigger
    ]
    async with stack.async_client(timeout=60) as client:
        response = await client.post(f"{settings.url('goals')}/v1/people", json=people)
        response.raise_for_status()

    nc = await connect_nats(settings.nats_access())
    js = nc.jetstream(publish_async_max_pending=4000)

    async def on_fired(msg: Msg) -> None:
        alert = json.loads(msg.data)
        if alert["subject"] in trigger:
            fired.append(time.perf_counter() - published[trigger[alert["subject"]]])
            if len(fired) == len(trigger):
                all_fired.set()

    async def on_notified(msg: Msg) -> None:
        notification = json.loads(msg.data)
        if notification["channel"] != "inbox" or notification["state"] != "firing":
            return
        subject = next((r["id"] for r in notification["recipients"] if r["role"] == "subject"), "")
        if subject in trigger:
            notified.append(time.perf_counter() - published[trigger[subject]])
            if len(notified) == len(trigger):
                all_notified.set()

    await nc.subscribe(subjects.ALERTS_FIRED, cb=on_fired)
    await nc.subscribe(subjects.NOTIFICATIONS_SENT, cb=on_notified)
    start = time.perf_counter()
    if transport == "nats":
        for event in events:
            published[event["id"]] = time.perf_counter()
            await js.publish_async(subjects.METRICS_IN, json.dumps(event).encode())
        await js.publish_async_completed()
    else:
        async with stack.async_client(timeout=30) as client:
            for first in range(0, len(events), 100):
                batch = events[first : first + 100]
                now = time.perf_counter()
                published.update((event["id"], now) for event in batch)
                response = await client.post(f"{settings.url('ingestion')}/v1/events", json=batch)
                response.raise_for_status()
    if transport == "nats":
        await wait_drained(js, subjects.STREAM_INGEST, "ingestion")
    ingest_per_s = len(events) / (time.perf_counter() - start)
    await wait_evaluated(js)
    pipeline_per_s = len(events) / (time.perf_counter() - start)
    await asyncio.wait_for(all_fired.wait(), timeout=120)
    await asyncio.wait_for(all_notified.wait(), timeout=300)
    await nc.close()
    return ingest_per_s, pipeline_per_s, Latencies.of(fired), Latencies.of(notified)


async def measure_idle_latency(stack: Stack, *, alerts: int, workload: Workload) -> Latencies:
    """Event → alert fired when nothing else is going on, one streak after another."""
    settings = stack.settings
    run = f"idle-{uuid.uuid4().hex[:6]}"
    nc = await connect_nats(settings.nats_access())
    arrived: asyncio.Queue[tuple[float, str]] = asyncio.Queue()

    async def on_fired(msg: Msg) -> None:
        await arrived.put((time.perf_counter(), json.loads(msg.data)["subject"]))

    await nc.subscribe(subjects.ALERTS_FIRED, cb=on_fired)
    latencies = []
    async with stack.async_client(timeout=30) as client:
        for n in range(alerts):
            subject = f"{run}-s{n}"
            events = [workload.event(run, n, d, breaching=True) for d in range(3)]
            sent = time.perf_counter()
            response = await client.post(f"{settings.url('ingestion')}/v1/events", json=events)
            response.raise_for_status()
            while True:
                at, who = await asyncio.wait_for(arrived.get(), timeout=30)
                if who == subject:
                    latencies.append(at - sent)
                    break
    await nc.close()
    return Latencies.of(latencies)


async def wait_drained(js: Any, stream: str, consumer: str) -> None:
    """Wait until ``consumer`` has nothing pending and nothing unacknowledged."""
    while True:
        info = await js.consumer_info(stream, consumer)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.02)  # a benchmark polls the server's counters; tests do not


def partition_consumers() -> list[str]:
    """The evaluator's consumers of the metric events, one per partition (the default
    number, which the benchmarks' installations use)."""
    count = ServiceSettings.model_fields["metrics_partitions"].default
    return [f"{EVALUATOR_CONSUMER}-p{partition}" for partition in range(count)]


async def metrics_left(js: Any) -> int:
    """Metric events the evaluator has not yet acknowledged, over every partition."""
    left = 0
    for name in partition_consumers():
        while True:
            try:
                info = await js.consumer_info(subjects.STREAM_METRICS, name)
                break
            except NotFoundError:
                # A replica taking the partition over re-creates its consumer: ask again.
                await asyncio.sleep(0.01)
        left += info.num_pending + info.num_ack_pending
    return left


async def wait_evaluated(js: Any) -> None:
    """Wait until every partition's consumer has nothing pending and nothing unacknowledged."""
    while True:
        if not await metrics_left(js):
            return
        await asyncio.sleep(0.02)  # a benchmark polls the server's counters; tests do not


# The whole machine's busy CPU time in a backlog's CPU row, all cores together.
_MACHINE = f"machine ({os.cpu_count()} cores)"


@dataclass(frozen=True)
class Backlog:
    """How fast the evaluator processes work through a backlog of metric events."""

    processes: int
    events: int
    per_s: float  # events evaluated per second, from 10% to 90% of the backlog
    cpu: dict[str, float]  # CPU seconds per process while the backlog was evaluated
    seconds: float  # from 10% to 90%

    def rows(self) -> list[str]:
        """Its rows in the report."""
        cpu = ", ".join(
            f"{name} {used:.1f} s ({used / self.seconds:.0%})" for name, used in self.cpu.items()
        )
        return [
            f"| backlog of {self.events:,} stored events, {self.processes} evaluator "
            f"process(es): evaluated (10% → 90%) | {self.per_s:,.0f} events/s |",
            f"| CPU per process over those {self.seconds:.1f} s (share of one core) | {cpu} |",
        ]


def _machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have spent busy so far (Linux /proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_backlog(stack: Stack, *, subjects_count: int, days: int) -> Backlog:
    """Stop every evaluator process, have ingestion store a backlog of events, start the
    evaluators again together and time how fast they work through it (between 10% and 90%,
    so their start-up is not counted), with each process's CPU time over that span."""
    evaluators = stack.replica_names("evaluator")
    for name in evaluators:
        stack.terminate(name)
    settings = stack.settings
    run = f"backlog-{uuid.uuid4().hex[:6]}"
    workload = Workload()
    events = _events(run, subjects_count=subjects_count, days=days, workload=workload)
    # The subjects are people goals knows, as in production: alerts take their names from
    # the evaluators' directory view, not from one HTTP request to goals each.
    people = [{"id": f"{run}-s{s}", "name": f"Dr {run}-s{s}"} for s in range(subjects_count)]
    async with stack.async_client(timeout=120) as client:
        for first in range(0, len(people), 1000):
            response = await client.post(
                f"{settings.url('goals')}/v1/people", json=people[first : first + 1000]
            )
            response.raise_for_status()
    nc = await connect_nats(settings.nats_access())
    try:
        js = nc.jetstream(publish_async_max_pending=4000)
        for event in events:
            await js.publish_async(subjects.METRICS_IN, json.dumps(event).encode())
        await js.publish_async_completed()
        await wait_drained(js, subjects.STREAM_INGEST, "ingestion")
        total = await metrics_left(js)
        await asyncio.gather(*(asyncio.to_thread(stack.restart, name) for name in evaluators))
        # Every process of the stack, this one (which polls the consumers) and the machine.
        watched = [name for name in stack.names() if name != "idp"]
        marks: dict[str, tuple[float, dict[str, float]]] = {}
        while "90" not in marks:
            left = await metrics_left(js)
            now = time.perf_counter()
            for mark, share in (("10", 0.9), ("90", 0.1)):
                if mark not in marks and left <= total * share:
                    used = {n: _cpu_seconds(stack.pid(n)) for n in watched}
                    used["bench"] = _cpu_seconds(os.getpid())
                    used[_MACHINE] = _machine_busy_seconds()
                    marks[mark] = (now, used)
            await asyncio.sleep(0.05)  # sampling the server's counters
        await wait_evaluated(js)
    finally:
        await nc.close()
    (start, cpu_start), (end, cpu_end) = marks["10"], marks["90"]
    seconds = max(end - start, 1e-6)
    return Backlog(
        processes=len(evaluators),
        events=total,
        per_s=0.8 * total / seconds,
        cpu={name: cpu_end[name] - cpu_start[name] for name in cpu_end},
        seconds=seconds,
    )


# Events per POST at a steady rate: small, so an event waits little for its batch to go.
STEADY_BATCH = 20
# Subjects whose three days are sent one after another: alerts fire all along the run.
STEADY_BLOCK = 100


@dataclass(frozen=True)
class Steady:
    """Alerts timed from their event to a real webhook receiver at a steady rate."""

    rate: float  # asked for
    sent_per_s: float  # kept up
    events: int
    fired: Latencies  # event POSTed → AlertFired on NATS
    delivered: Latencies  # event POSTed → the webhook receiver got the POST
    missing: int  # alerts that never reached the webhook
    drained_after: float  # seconds from the last event sent to the evaluator drained

    def rows(self) -> list[str]:
        """Rows of the report's table."""
        return [
            f"| steady {self.rate:,.0f} events/s over http ({self.events:,} events, "
            f"{self.sent_per_s:,.0f}/s kept up; evaluator drained {self.drained_after:.1f} s "
            f"after the last) | event → alert fired {self.fired.row()} |",
            f"| the same, event → webhook received, p50 / p95 / p99 / max "
            f"({self.delivered.count} alerts, {self.missing} missing) | {self.delivered.row()} |",
        ]


def steady_events(run: str, *, count: int, workload: Workload) -> list[dict[str, Any]]:
    """``count`` events in blocks of :data:`STEADY_BLOCK` subjects, each block's three days
    in turn, so that streaks complete (and one subject in ten fires) all along the run."""
    events: list[dict[str, Any]] = []
    block = 0
    while len(events) < count:
        first = block * STEADY_BLOCK
        for d in range(3):
            events += [workload.event(run, s, d) for s in range(first, first + STEADY_BLOCK)]
        block += 1
    return events[:count]


async def measure_steady(
    stack: Stack, receiver: Receiver, *, rate: float, seconds: float, workload: Workload
) -> Steady:
    """Send ``rate`` events a second for ``seconds`` over HTTP; time every alert to the
    webhook receiver (and to ``goalwatch.alerts.fired.v1`` on the way)."""
    settings = stack.settings
    run = f"steady-{uuid.uuid4().hex[:6]}"
    events = steady_events(run, count=int(rate * seconds), workload=workload)
    # The event completing each breaching subject's streak: its third day.
    trigger = {
        event["subject"]: event["id"]
        for event in events
        if event["id"].endswith("-d2") and event["value"] == workload.breach
    }
    people = [{"id": f"{run}-head", "name": "Head of department"}] + [
        {"id": subject, "name": f"Dr {subject}", "manager_id": f"{run}-head"} for subject in trigger
    ]
    sent: dict[str, float] = {}
    fired: dict[str, float] = {}
    delivered: dict[str, float] = {}
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_arrival(arrival: Arrival) -> None:  # the receiver's thread
        subject, state, _ = arrival.transition
        if state == "firing" and subject in trigger:
            loop.call_soon_threadsafe(_deliver, subject, arrival.at)

    def _deliver(subject: str, at: float) -> None:
        delivered.setdefault(subject, at)
        if len(delivered) == len(trigger):
            done.set()

    async def on_fired(msg: Msg) -> None:
        subject = json.loads(msg.data)["subject"]
        if subject in trigger:
            fired.setdefault(subject, time.monotonic())

    async with stack.async_client(timeout=60) as client:
        response = await client.post(f"{settings.url('goals')}/v1/people", json=people)
        response.raise_for_status()
    nc = await connect_nats(settings.nats_access())
    js = nc.jetstream()
    await nc.subscribe(subjects.ALERTS_FIRED, cb=on_fired)
    receiver.on_arrival = on_arrival
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    try:
        async with stack.async_client(timeout=60, limits=limits) as client:

            async def post(batch: list[dict[str, Any]]) -> None:
                answer = await client.post(f"{settings.url('ingestion')}/v1/events", json=batch)
                answer.raise_for_status()

            interval = STEADY_BATCH / rate
            posts = []
            started = time.monotonic()
            for n, first in enumerate(range(0, len(events), STEADY_BATCH)):
                # Paced by the clock, not by the answers: a slow answer does not slow the rate.
                delay = started + n * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                batch = events[first : first + STEADY_BATCH]
                now = time.monotonic()
                sent.update((event["id"], now) for event in batch)
                posts.append(asyncio.create_task(post(batch)))
            await asyncio.gather(*posts)
            finished = time.monotonic()
        await wait_evaluated(js)
        drained = time.monotonic()
        with contextlib.suppress(TimeoutError):  # what did not arrive is reported missing
            await asyncio.wait_for(done.wait(), timeout=60)
    finally:
        receiver.on_arrival = None
        await nc.close()
    return Steady(
        rate=rate,
        sent_per_s=len(events) / (finished - started),
        events=len(events),
        fired=Latencies.of([at - sent[trigger[who]] for who, at in fired.items()]),
        delivered=Latencies.of([at - sent[trigger[who]] for who, at in delivered.items()]),
        missing=len(trigger) - len(delivered),
        drained_after=drained - finished,
    )


def run(
    *,
    subjects_count: int,
    days: int,
    transport: str,
    rules_dir: Path,
    generated_rules: int | None = None,
    rate: float | None = None,
    steady_seconds: float = 30.0,
    evaluators: int = 1,
    backlog: int = 0,
) -> Result:
    """Start an installation, measure, stop it.

    ``evaluators``: evaluator processes sharing the partitions. ``backlog``: also time how
    fast they work through that many events stored while they were stopped
    (:func:`measure_backlog`), with their CPU time.

    ``generated_rules``: that many generated threshold rules instead of ``rules_dir``'s, ten
    to a metric (:func:`goalwatch.dev.evaluator_bench.write_rules`). ``rate``: then also send
    that many events a second for ``steady_seconds`` and time each alert to a webhook.
    """
    workload = Workload() if generated_rules is None else generated(generated_rules)
    secret = secrets.token_hex(16)
    receiver = Receiver(secret)
    load_before = os.getloadavg()
    steady = None
    with tempfile.TemporaryDirectory(prefix="goalwatch-bench-") as state:
        catalogue = DEFAULT_CATALOGUE
        if generated_rules is not None:
            from goalwatch.dev.evaluator_bench import write_catalogue_for, write_rules

            rules_dir = write_rules(Path(state) / "rules", generated_rules)
            catalogue = write_catalogue_for(Path(state) / "catalogue.yaml", generated_rules)
        settings = StackSettings.on_free_ports(Path(state) / "state", rules_dir, catalogue)
        stack = Stack(
            settings=settings,
            env={"GOALWATCH_WEBHOOK_URL": receiver.url, "GOALWATCH_WEBHOOK_SECRET": secret},
            replicas={"evaluator": evaluators},
        )
        stack.start()
        measured_backlog = None
        try:
            ceiling = asyncio.run(
                measure_ceiling(settings.nats_access(), count=subjects_count * days)
            )
            ingest, pipeline, fired, notified = asyncio.run(
                measure_pipeline(
                    stack,
                    subjects_count=subjects_count,
                    days=days,
                    transport=transport,
                    workload=workload,
                )
            )
            batches, handling = evaluator_batches(stack)
            idle = asyncio.run(measure_idle_latency(stack, alerts=50, workload=workload))
            each = asyncio.run(measure_checkpoint(settings, rounds=500))
            if rate is not None:
                steady = asyncio.run(
                    measure_steady(
                        stack, receiver, rate=rate, seconds=steady_seconds, workload=workload
                    )
                )
            if backlog:
                measured_backlog = asyncio.run(
                    measure_backlog(stack, subjects_count=max(backlog // days, 1), days=days)
                )
            ceiling_after = asyncio.run(
                measure_ceiling(settings.nats_access(), count=subjects_count * days)
            )
        finally:
            stack.stop()
            receiver.close()
    return Result(
        transport=transport,
        events=subjects_count * days,
        subjects=subjects_count,
        ceiling_per_s=ceiling,
        ingest_per_s=ingest,
        pipeline_per_s=pipeline,
        fired=fired,
        notified=notified,
        idle=idle,
        checkpoint=Checkpointing(each=each, batches=batches, handling_seconds=handling),
        rules=f"{generated_rules} generated rules" if generated_rules else "rules/",
        steady=steady,
        backlog=measured_backlog,
        ceiling_after=ceiling_after,
        load=(load_before, os.getloadavg()),
    )
