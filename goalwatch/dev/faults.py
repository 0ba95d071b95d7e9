"""``goalwatch faults``: what reaches a webhook when a process dies, Redis loses data or the
webhook fails.

Each scenario starts its own installation (nats-server, redis-server and the four services, on
free ports in a temporary folder) with the notifier's webhook pointed at a receiver in this
process that checks every signature, as a real receiver must. A source then streams
``report_rework_rate`` events over HTTP: every subject breaches the shipped rule on three days,
so each one fires exactly one alert, and the receiver should see exactly one ``firing`` POST per
subject. Subjects come ten to a manager; batch ``k`` carries day 1 of group ``k``, day 2 of
group ``k-1`` and day 3 of group ``k-2``, so alerts fire all through the stream and a fault in
the middle meets work in every service.

Halfway through the stream, the scenario's fault lands: a ``kill -9`` and restart of one
process (at that moment, or at the next moment that process is inside a batch), a Redis that
loses its last second of AOF writes, or a webhook answering 500 for half the stream's length.
The source resends a batch whose request failed, as the ingestion contract asks of it. When the
stream is over and the fault recovered, the run waits until the receiver has every expected
transition and every pipeline consumer has nothing pending and nothing unacknowledged, or until
the settle time has passed, and then counts, per alert transition, what arrived.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from goalwatch.contracts import subjects
from goalwatch.contracts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from goalwatch.dev.stack import Stack, StackSettings, services

DAYS = 3  # the shipped rule fires on the third breaching day in a row
PER_MANAGER = 10
LATE_AFTER = 60.0  # seconds after it was due (or after recovery) that an arrival counts as late
_DAY0 = datetime(2026, 1, 1, 18, tzinfo=UTC)
# Streams whose durable consumers make up the pipeline, upstream first.
_PIPELINE_STREAMS = (subjects.STREAM_INGEST, subjects.STREAM_METRICS, subjects.STREAM_ALERTS)

Transition = tuple[str, str, datetime]
"""One alert transition as a receiver keys it: (subject id, state, started_at)."""


@dataclass(frozen=True)
class Workload:
    """How big a run is and how long it lasts."""

    subjects: int = 400
    duration: float = 40.0
    settle: float = 90.0

    @property
    def fault_at(self) -> float:
        """Seconds into the stream at which the fault lands: halfway."""
        return self.duration / 2

    @property
    def managers(self) -> int:
        """Managers, one per ten subjects."""
        return -(-self.subjects // PER_MANAGER)


def subject_id(n: int) -> str:
    """The id of subject ``n``."""
    return f"s{n:04d}"


def people(workload: Workload) -> list[dict[str, Any]]:
    """The managers, then the subjects, ten to a manager."""
    managers = [
        {"id": f"m{m:03d}", "name": f"Head {m:03d}", "email": f"m{m:03d}@example.org"}
        for m in range(workload.managers)
    ]
    staff = [
        {"id": subject_id(n), "name": f"Dr {n:04d}", "manager_id": f"m{n // PER_MANAGER:03d}"}
        for n in range(workload.subjects)
    ]
    return managers + staff


def _event(n: int, day: int) -> dict[str, Any]:
    return {
        "id": f"{subject_id(n)}-d{day}",
        "metric": "report_rework_rate",
        "value": 0.2,
        "time": (_DAY0 + timedelta(days=day)).isoformat(),
        "subject": subject_id(n),
        "source": "faults",
    }


def batches(workload: Workload) -> list[list[dict[str, Any]]]:
    """The stream, batch by batch: batch ``k`` holds day ``d`` of manager group ``k - d``."""
    groups = [
        range(first, min(first + PER_MANAGER, workload.subjects))
        for first in range(0, workload.subjects, PER_MANAGER)
    ]
    return [
        [
            _event(n, day)
            for day in range(DAYS)
            if 0 <= k - day < len(groups)
            for n in groups[k - day]
        ]
        for k in range(len(groups) + DAYS - 1)
    ]


def expected_transitions(workload: Workload) -> list[Transition]:
    """One ``firing`` per subject, starting at its first breaching day."""
    return [(subject_id(n), "firing", _DAY0) for n in range(workload.subjects)]


@dataclass(frozen=True)
class Arrival:
    """One POST the receiver accepted."""

    transition: Transition
    at: float
    degraded: bool
    """The subject's name was missing (its id stood in): goals was not asked or not reached."""


class Receiver:
    """A webhook receiver checking signatures and recording every alert transition it gets.

    ``fail_until`` (a ``time.monotonic()`` value) makes it answer 500 until then; ``on_post``,
    when set, is called once, from the request's thread, with the next valid POST before it is
    answered. ``on_arrival``, when set, is called from the request's thread with every
    arrival once it is recorded.
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.arrivals: list[Arrival] = []
        self.refused = 0
        self.invalid = 0
        self.fail_until = 0.0
        self.on_post: Callable[[], None] | None = None
        self.on_arrival: Callable[[Arrival], None] | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._take(
                    body,
                    self.headers.get(TIMESTAMP_HEADER, ""),
                    self.headers.get(SIGNATURE_HEADER, ""),
                )
                try:
                    self.send_response(status)
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone (killed while waiting for this answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _take(self, body: bytes, timestamp: str, signature: str) -> int:
        if not verify_signature(
            secret=self.secret, timestamp=timestamp, body=body, signature=signature
        ):
            with self._lock:
                self.invalid += 1
            return 401
        now = time.monotonic()
        with self._lock:
            if now < self.fail_until:
                self.refused += 1
                return 500
            hook, self.on_post = self.on_post, None
        if hook is not None:
            hook()
        payload = json.loads(body)
        subject = payload["subject"]
        transition = (
            str(subject["id"]),
            str(payload["state"]),
            datetime.fromisoformat(payload["started_at"]),
        )
        arrival = Arrival(transition, time.monotonic(), subject.get("name") == subject["id"])
        with self._lock:
            self.arrivals.append(arrival)
            listener = self.on_arrival
        if listener is not None:
            listener(arrival)
        return 204

    def snapshot(self) -> list[Arrival]:
        """Every arrival so far, in order."""
        with self._lock:
            return list(self.arrivals)

    def received(self) -> set[Transition]:
        """The distinct transitions accepted so far."""
        with self._lock:
            return {a.transition for a in self.arrivals}

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


@dataclass(frozen=True)
class Counts:
    """Per alert transition, what the receiver got."""

    expected: int
    received: int
    lost: int
    duplicated: int
    late: int
    unexpected: int
    degraded: int
    latest: float | None
    """Seconds from recovery to the last first arrival of an expected transition."""


def tally(
    due: Mapping[Transition, float],
    arrivals: Sequence[Arrival],
    *,
    recovered: float,
    late_after: float = LATE_AFTER,
) -> Counts:
    """Count ``arrivals`` against the transitions ``due`` (each with when it was due).

    A transition is late when its first arrival comes more than ``late_after`` seconds after
    the later of its due time and ``recovered``; every copy after the first is a duplicate.
    """
    copies = Counter(a.transition for a in arrivals)
    first: dict[Transition, float] = {}
    for arrival in arrivals:
        first.setdefault(arrival.transition, arrival.at)
    received = [t for t in due if t in first]
    late = sum(1 for t in received if first[t] - max(due[t], recovered) > late_after)
    return Counts(
        expected=len(due),
        received=len(received),
        lost=len(due) - len(received),
        duplicated=sum(copies[t] - 1 for t in due if t in copies),
        late=late,
        unexpected=sum(n for t, n in copies.items() if t not in due),
        degraded=sum(1 for a in arrivals if a.degraded),
        latest=max(first[t] for t in received) - recovered if received else None,
    )


@dataclass(frozen=True)
class Outcome:
    """What one scenario measured."""

    scenario: str
    counts: Counts
    dead_letters: int
    held: int
    """Messages still pending or unacknowledged in the pipeline's consumers when the run ended."""
    refused: int
    invalid: int
    resent: int
    seconds: float
    notes: tuple[str, ...]

    HEADER = (
        "| scenario | expected | received | lost | duplicated | late | latest after recovery "
        "| dead letters | held at end | what happened |\n|---|---|---|---|---|---|---|---|---|---|"
    )

    def row(self) -> str:
        """One Markdown table row."""
        c = self.counts
        latest = "—" if c.latest is None else f"{c.latest:.1f} s"
        extra = [
            *self.notes,
            *([f"{self.refused} POSTs answered 500"] if self.refused else []),
            *([f"{self.invalid} bad signatures"] if self.invalid else []),
            *([f"{c.unexpected} unexpected"] if c.unexpected else []),
            *([f"{c.degraded} with the id for a name"] if c.degraded else []),
            *([f"source resent {self.resent} batches"] if self.resent else []),
            f"{self.seconds:.0f} s",
        ]
        return (
            f"| {self.scenario} | {c.expected} | {c.received} | {c.lost} | {c.duplicated} | "
            f"{c.late} | {latest} | {self.dead_letters} | {self.held} | {'; '.join(extra)} |"
        )


def report(outcomes: Sequence[Outcome]) -> str:
    """The Markdown table of a run."""
    return "\n".join([Outcome.HEADER, *(o.row() for o in outcomes)])


@dataclass
class Run:
    """One scenario in progress: what the fault needs and what it records."""

    stack: Stack
    receiver: Receiver
    nc: NATS
    workload: Workload
    started: float = field(default_factory=time.monotonic)
    recovered: float | None = None
    notes: list[str] = field(default_factory=list)

    def since(self, moment: float) -> str:
        """``moment`` as seconds into the stream."""
        return f"{moment - self.started:.1f} s"

    async def until(self, seconds: float) -> None:
        """Sleep until ``seconds`` into the stream (the scenario's own timing)."""
        await asyncio.sleep(max(0.0, self.started + seconds - time.monotonic()))

    async def in_flight(self) -> str:
        """Messages fetched but not acknowledged, per pipeline consumer (none: "nothing").

        "not known" when NATS does not answer within a second (it is the process just killed).
        """
        try:
            found = await asyncio.wait_for(_consumers(self.nc.jetstream()), timeout=1.0)
        except (nats.errors.Error, TimeoutError):
            return "not known"
        busy = [f"{info.name} {info.num_ack_pending}" for info in found if info.num_ack_pending]
        return ", ".join(busy) or "nothing"

    async def restart(self, name: str, *, killed: float) -> None:
        """Start ``name`` again and note when it was killed and when it was back."""
        await asyncio.to_thread(self.stack.restart, name)
        self.recovered = time.monotonic()
        self.notes.append(
            f"kill -9 {name} at {self.since(killed)}, ready again at {self.since(self.recovered)}"
        )


Fault = Callable[[Run], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Scenario:
    """A named fault and what it does."""

    name: str
    description: str
    fault: Fault | None


def _kill_at_fault_time(name: str) -> Fault:
    async def fault(run: Run) -> None:
        await run.until(run.workload.fault_at)
        killed = time.monotonic()
        run.stack.kill(name)
        run.notes.append(f"unacknowledged at the kill: {await run.in_flight()}")
        await run.restart(name, killed=killed)

    return fault


def _kill_on_message(name: str, subject: str) -> Fault:
    """Kill ``name`` on the first message published on ``subject`` after the fault time."""

    async def fault(run: Run) -> None:
        await run.until(run.workload.fault_at)
        done = asyncio.Event()

        async def kill(_: Msg) -> None:
            if not done.is_set():
                run.stack.kill(name)
                done.set()

        sub = await run.nc.subscribe(subject, cb=kill)
        try:
            await asyncio.wait_for(done.wait(), timeout=run.workload.duration)
        except TimeoutError:
            run.notes.append(f"no message on {subject}: killed at the end of the wait")
            run.stack.kill(name)
        killed = time.monotonic()
        await sub.unsubscribe()
        run.notes.append(f"unacknowledged at the kill: {await run.in_flight()}")
        await run.restart(name, killed=killed)

    return fault


def _kill_on_webhook(name: str) -> Fault:
    """Kill ``name`` when the next webhook POST arrives, before the receiver answers it."""

    async def fault(run: Run) -> None:
        await run.until(run.workload.fault_at)
        done = threading.Event()

        def kill() -> None:
            run.stack.kill(name)
            done.set()

        run.receiver.on_post = kill
        if not await asyncio.to_thread(done.wait, run.workload.duration):
            run.receiver.on_post = None
            run.notes.append("no webhook POST came: killed at the end of the wait")
            run.stack.kill(name)
        killed = time.monotonic()
        run.notes.append(f"unacknowledged at the kill: {await run.in_flight()}")
        await run.restart(name, killed=killed)

    return fault


async def _aof_cut(run: Run) -> None:
    """kill -9 redis, cut its AOF back to its size one second earlier, restart it."""
    aof = run.stack.settings.state_dir / "redis" / "appendonly.aof"
    sizes: list[tuple[float, int]] = []
    while time.monotonic() < run.started + run.workload.fault_at:
        sizes.append((time.monotonic(), aof.stat().st_size if aof.exists() else 0))
        await asyncio.sleep(0.1)  # sampling the file's size, as a power cut would find it
    run.stack.kill("redis")
    killed = time.monotonic()
    size = aof.stat().st_size
    keep = max((s for at, s in sizes if at <= killed - 1.0), default=0)
    os.truncate(aof, keep)
    run.notes.append(f"AOF cut from {size:,} to {keep:,} bytes (its size 1 s before the kill)")
    await run.restart("redis", killed=killed)


async def _webhook_outage(run: Run) -> None:
    """The receiver answers 500 for half the stream's length."""
    await run.until(run.workload.fault_at)
    outage = run.workload.duration / 2
    began = time.monotonic()
    run.receiver.fail_until = began + outage
    await asyncio.sleep(outage)  # the scenario is "the webhook fails for this long"
    run.recovered = time.monotonic()
    run.notes.append(f"webhook answered 500 from {run.since(began)} to {run.since(run.recovered)}")


# How to catch a service inside a batch: the first thing it does that can be seen from outside.
_IN_BATCH: dict[str, tuple[str, Callable[[str], Fault]]] = {
    "ingestion": (
        "at the next event it stores (a POST in flight)",
        lambda name: _kill_on_message(name, subjects.METRICS_RECORDED),
    ),
    "goals": (
        "at the next alert fired (the notifier is about to ask goals for its recipients)",
        lambda name: _kill_on_message(name, subjects.ALERTS_FIRED),
    ),
    "evaluator": (
        "at the next alert it publishes (its batch is not yet acknowledged)",
        lambda name: _kill_on_message(name, subjects.ALERTS_FIRED),
    ),
    "notifier": ("at the next webhook POST, before it is answered", _kill_on_webhook),
}


def scenarios() -> list[Scenario]:
    """Every scenario, in the order ``goalwatch faults`` runs them."""
    found = [Scenario("none", "no fault: the baseline", None)]
    for name in services():
        found.append(
            Scenario(
                f"kill-{name}",
                f"kill -9 {name} halfway through the stream, then restart it",
                _kill_at_fault_time(name),
            )
        )
        if name in _IN_BATCH:
            when, make = _IN_BATCH[name]
            found.append(
                Scenario(
                    f"kill-{name}-in-batch", f"kill -9 {name} {when}, then restart it", make(name)
                )
            )
    found += [
        Scenario(
            "kill-nats",
            "kill -9 nats-server halfway, restart it on the same store",
            _kill_at_fault_time("nats"),
        ),
        Scenario(
            "kill-redis",
            "kill -9 redis-server halfway, restart it on the same AOF",
            _kill_at_fault_time("redis"),
        ),
        Scenario(
            "redis-aof-cut",
            "kill -9 redis-server halfway and cut its AOF back to its size 1 s earlier (a power "
            "cut inside the fsync window), then restart it",
            _aof_cut,
        ),
        Scenario(
            "webhook-500",
            "the webhook answers 500 from halfway for half the stream's length (20 s by default)",
            _webhook_outage,
        ),
    ]
    return found


async def _consumers(js: JetStreamContext) -> list[Any]:
    found = []
    for stream in _PIPELINE_STREAMS:
        found += await js.consumers_info(stream)
    return found


async def _drained(js: JetStreamContext) -> bool:
    """Whether every pipeline consumer has nothing pending and nothing unacknowledged.

    Read upstream first: a service acknowledges a message only after publishing what follows
    from it, so what a drained upstream consumer passed on is already counted downstream.
    """
    for stream in _PIPELINE_STREAMS:
        for info in await js.consumers_info(stream):
            if info.num_pending or info.num_ack_pending:
                return False
    return True


async def _stream(run: Run, client: httpx.AsyncClient, due: dict[Transition, float]) -> int:
    """POST the batches, paced over the workload's duration; returns how many were resent."""
    plan = batches(run.workload)
    gap = run.workload.duration / max(1, len(plan) - 1)
    url = f"{run.stack.settings.url('ingestion')}/v1/events"
    resent = 0
    for k, batch in enumerate(plan):
        await run.until(k * gap)
        while True:
            try:
                response = await client.post(url, json=batch)
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            resent += 1
            await asyncio.sleep(0.5)  # the source's own retry interval
        answer = response.json()
        if answer.get("rejected"):
            raise RuntimeError(f"ingestion rejected events of batch {k}: {answer}")
        accepted = time.monotonic()
        for event in batch:
            if event["id"].endswith(f"-d{DAYS - 1}"):
                due[(event["subject"], "firing", _DAY0)] = accepted
    return resent


async def _settle(
    run: Run, js: JetStreamContext, expected: set[Transition], deadline: float
) -> None:
    while time.monotonic() < deadline:
        try:
            drained = await asyncio.wait_for(_drained(js), timeout=2.0)
            if drained and expected <= run.receiver.received():
                return
        except (nats.errors.Error, TimeoutError):
            pass  # a server just restarted; ask again
        await asyncio.sleep(0.1)  # the server's counters: there is no event to await


async def _measure(
    stack: Stack, receiver: Receiver, scenario: Scenario, workload: Workload
) -> Outcome:
    settings = stack.settings
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(f"{settings.url('goals')}/v1/people", json=people(workload))
        answer.raise_for_status()

    async def quiet(_: Exception) -> None:
        pass  # connection errors while nats-server is down are the scenario, not news

    nc = await nats.connect(
        settings.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=quiet
    )
    try:
        run = Run(stack=stack, receiver=receiver, nc=nc, workload=workload)
        due: dict[Transition, float] = {}
        fault = asyncio.create_task(scenario.fault(run)) if scenario.fault else None
        async with httpx.AsyncClient(timeout=10) as client:
            resent = await _stream(run, client, due)
        stream_end = time.monotonic()
        if fault is not None:
            await fault
        recovered = run.recovered or stream_end
        # A connection of its own: the first one may still be finding a restarted nats-server.
        after = await nats.connect(settings.nats_url, error_cb=quiet)
        js = after.jetstream()
        await _settle(run, js, set(due), max(stream_end, recovered) + workload.settle)
        held = sum(i.num_pending + i.num_ack_pending for i in await _consumers(js))
        dead = (await js.stream_info(subjects.STREAM_DEADLETTER)).state.messages
        await after.close()
        arrivals = receiver.snapshot()
        return Outcome(
            scenario=scenario.name,
            counts=tally(due, arrivals, recovered=recovered),
            dead_letters=dead,
            held=held,
            refused=receiver.refused,
            invalid=receiver.invalid,
            resent=resent,
            seconds=time.monotonic() - run.started,
            notes=tuple(run.notes),
        )
    finally:
        await nc.close()


def run_scenario(scenario: Scenario, workload: Workload, *, rules_dir: Path) -> Outcome:
    """Start an installation, stream the workload with the scenario's fault, count, stop."""
    secret = secrets.token_hex(16)
    receiver = Receiver(secret)
    try:
        with tempfile.TemporaryDirectory(prefix="goalwatch-faults-") as state:
            settings = StackSettings.on_free_ports(Path(state), rules_dir)
            stack = Stack(
                settings=settings,
                env={"GOALWATCH_WEBHOOK_URL": receiver.url, "GOALWATCH_WEBHOOK_SECRET": secret},
            )
            stack.start()
            try:
                return asyncio.run(_measure(stack, receiver, scenario, workload))
            finally:
                stack.stop()
    finally:
        receiver.close()
