"""``goalwatch faults``: what reaches a webhook when a process dies, Redis loses data, the
webhook fails or a burst arrives.

Each scenario starts its own installation (nats-server, redis-server and the four services, on
free ports in a temporary folder) with the notifier's webhook pointed at a receiver in this
process that checks every signature, as a real receiver must
(:mod:`goalwatch.dev.fault_counts`). A source then streams the workload
(:mod:`goalwatch.dev.fault_workload`) over HTTP: one threshold alert per subject, firing all
through the stream, overdue alerts from heartbeats that stop (durable timers falling due all
through the run), and dependency-impact alerts from goal status changes made through goals'
API, so a fault in the middle meets work in every service and every consumer.

Halfway through the stream, the scenario's fault lands: a ``kill -9`` and restart of one
process (at that moment, at the next moment that process is inside a batch — of metrics, of
fired timers or of goal changes —, four times over, or right after a webhook was answered),
goals killed holding a stored change whose event it could not publish yet, a Redis that loses its last second of AOF writes, a
webhook answering 500 for half the stream's length, or a burst of 10,000 events posted at
once. The source resends a batch whose request failed, as the ingestion contract asks of it.
When the stream is over and the fault recovered, the run waits until the receiver has every
expected transition and every pipeline consumer has nothing pending and nothing
unacknowledged (both awaited), or at most the settle time, reads the services' logs for
errors, and counts, per alert transition (and per alert kind), what arrived.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from goalwatch.connections import connect_nats
from goalwatch.contracts import subjects
from goalwatch.dev.catalogues import entry, write_catalogue
from goalwatch.dev.fault_counts import (
    LATE_AFTER,
    Arrival,
    Counts,
    Outcome,
    Receiver,
    error_lines,
    missing,
    repeats_per_kill,
    report,
    tally,
    tally_by_kind,
)
from goalwatch.dev.fault_workload import (
    DAY0,
    DAYS,
    HEARTBEAT_METRIC,
    IMPACT,
    OVERDUE,
    PER_MANAGER,
    PRESSURE_METRIC,
    PRESSURE_RULE_ID,
    SCOPED,
    THRESHOLD,
    UNIT_METRIC,
    UNIT_RULE_ID,
    StatusChange,
    Transition,
    Workload,
    absence_transition,
    batches,
    burst_batches,
    burst_days,
    burst_people,
    burst_subject_id,
    burst_transitions,
    expected_transitions,
    heartbeat_rule,
    heartbeats,
    impact_goals,
    movers,
    org_units,
    people,
    pressure_readings,
    pressure_rule,
    pressure_transitions,
    status_changes,
    subject_id,
    unit_readings,
    unit_rule,
    unit_transitions,
)
from goalwatch.dev.stack import Stack, StackSettings, pipeline_services

__all__ = [
    "DAY0",
    "DAYS",
    "LATE_AFTER",
    "PER_MANAGER",
    "Arrival",
    "Counts",
    "Outcome",
    "Receiver",
    "Run",
    "Scenario",
    "Transition",
    "Workload",
    "batches",
    "burst_batches",
    "burst_days",
    "burst_people",
    "burst_subject_id",
    "burst_transitions",
    "error_lines",
    "expected_transitions",
    "harness_rules",
    "logged_errors",
    "people",
    "repeats_per_kill",
    "report",
    "run_scenario",
    "scenarios",
    "subject_id",
    "tally",
    "tally_by_kind",
]

# Longest wait between two readings of the consumers' counters while settling: the reading
# after the last acknowledgement may have been asked before it.
_RECHECK = 2.0
# The evaluator's consumer of GOALWATCH_PEOPLE (its directory view).
DIRECTORY_CONSUMER = "evaluator-directory"
# Streams whose durable consumers make up the pipeline, upstream first (the evaluator's
# directory view names subjects; it arms timers from metrics; goal changes come from goals'
# outbox; every alert goes on ALERTS).
_PIPELINE_STREAMS = (
    subjects.STREAM_PEOPLE,
    subjects.STREAM_INGEST,
    subjects.STREAM_METRICS,
    subjects.STREAM_TIMERS,
    subjects.STREAM_GOALS,
    subjects.STREAM_ALERTS,
)


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
    due: dict[Transition, float] = field(default_factory=dict)
    """Every transition the run must produce, with when it was due: when the event or goal
    change completing it was accepted, or (overdue) when its deadline passed."""
    kinds: dict[Transition, str] = field(default_factory=dict)
    """The alert kind of every transition due."""
    episodes: dict[str, datetime] = field(default_factory=dict)
    """Per goal marked invalid, when that change was made: its episode's ``started_at``."""
    changes_made: int = 0
    """Status changes goals has answered so far."""
    change_made: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at each status change goals answered."""
    last_change: StatusChange | None = None
    """The status change goals answered last."""
    kills: list[float] = field(default_factory=list)
    """When each ``kill -9`` of the scenario landed."""
    resent: int = 0
    """Requests the source sent again after a failure."""
    epilogue: list[Callable[[Sequence[Arrival]], str]] = field(default_factory=list)
    """Notes a fault can only write from every arrival of the run, once it is over."""

    def expect(self, transition: Transition, kind: str, *, due: float) -> None:
        """Count ``transition`` (of alert ``kind``) as due at ``due``."""
        self.due[transition] = due
        self.kinds[transition] = kind

    async def next_change(self) -> None:
        """Wait until goals has answered one more status change than it has now."""
        seen = self.changes_made
        while self.changes_made == seen:
            self.change_made.clear()
            await self.change_made.wait()

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

    def kill(self, name: str) -> float:
        """``kill -9`` ``name`` now; when it landed."""
        self.stack.kill(name)
        self.kills.append(time.monotonic())
        return self.kills[-1]

    async def restart(self, name: str, *, killed: float, note: bool = True) -> None:
        """Start ``name`` again and (unless told not to) note when it was killed and when it
        was back."""
        await asyncio.to_thread(self.stack.restart, name)
        self.recovered = time.monotonic()
        if note:
            self.notes.append(
                f"kill -9 {name} at {self.since(killed)}, "
                f"ready again at {self.since(self.recovered)}"
            )

    def note_kills(self, name: str) -> None:
        """One note for several kills of ``name``: when they landed, and when it was back."""
        at = ", ".join(f"{k - self.started:.1f}" for k in self.kills)
        back = "—" if self.recovered is None else self.since(self.recovered)
        self.notes.append(
            f"kill -9 {name} {len(self.kills)} times, at {at} s; ready again at {back}"
        )


Fault = Callable[[Run], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Scenario:
    """A named fault and what it does."""

    name: str
    description: str
    fault: Fault | None
    allows_duplicates: bool = False
    """It kills the notifier, which may die between a receiver's 2xx and recording it: a copy
    under the first one's ``Idempotency-Key`` is then the documented exception (webhook.md)."""
    quiet: bool = False
    """No service may log an error while it runs."""
    replicas: int = 1
    """Processes per service (the others named ``<service>-2`` ...)."""


def _kill_at_fault_time(name: str) -> Fault:
    async def fault(run: Run) -> None:
        await run.until(run.workload.fault_at)
        killed = run.kill(name)
        run.notes.append(f"unacknowledged at the kill: {await run.in_flight()}")
        await run.restart(name, killed=killed)

    return fault


async def _replicas(run: Run) -> None:
    """Two processes per service: at 30% of the stream SIGTERM the first evaluator and the
    second notifier (they drain: finish and acknowledge what they hold, hand their partitions
    and leases over) and start them again (they take their share back); at 60%, back or
    not yet, ``kill -9`` the second evaluator mid-stream (its partitions move once its
    leases expire, what it held unacknowledged comes again) and start it again."""
    stack = run.stack
    await run.until(run.workload.duration * 0.3)
    stopping = time.monotonic()
    held = await run.in_flight()
    logged = {name: _log_size(stack, name) for name in ("evaluator", "notifier-2")}
    await asyncio.gather(
        asyncio.to_thread(stack.terminate, "evaluator"),
        asyncio.to_thread(stack.terminate, "notifier-2"),
    )
    took = time.monotonic() - stopping
    # Uvicorn ends a graceful shutdown by raising the signal again, so the exit status is
    # the signal's whatever happened: the log says whether the shutdown completed.
    handed = _log_since(stack, "evaluator", logged["evaluator"]).count("no longer serves")
    clean = [
        name
        for name, size in logged.items()
        if "Application shutdown complete" in _log_since(stack, name, size)
    ]
    run.notes.append(
        f"SIGTERM evaluator and notifier-2 at {run.since(stopping)} (unacknowledged: {held}): "
        f"both gone after {took:.1f} s, the evaluator handing over {handed} slot(s)"
    )
    if len(clean) < len(logged):
        run.notes.append("a replica stopped by SIGTERM did not shut down cleanly")
    restarted = asyncio.gather(
        asyncio.to_thread(stack.restart, "evaluator"),
        asyncio.to_thread(stack.restart, "notifier-2"),
    )
    # Whether or not they are back yet: the kill lands while events flow.
    await run.until(run.workload.duration * 0.6)
    killed = run.kill("evaluator-2")
    run.notes.append(f"unacknowledged at the kill: {await run.in_flight()}")
    await restarted
    run.notes.append(f"evaluator and notifier-2 ready again at {run.since(time.monotonic())}")
    await run.restart("evaluator-2", killed=killed)


def _log_size(stack: Stack, name: str) -> int:
    path = stack.log_dir / f"{name}.log"
    return path.stat().st_size if path.exists() else 0


def _log_since(stack: Stack, name: str, offset: int) -> str:
    with (stack.log_dir / f"{name}.log").open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


Match = Callable[[dict[str, Any]], bool]
"""Whether a message (its JSON body) is the one a fault waits for."""


def _of_kind(kind: str) -> Match:
    """An alert of ``kind`` that is not an escalation."""
    return lambda alert: alert.get("kind") == kind and not alert.get("escalated_from")


def _stream_threshold(alert: dict[str, Any]) -> bool:
    """A threshold alert the stream's events fire (not one of the harness's timer rule)."""
    return _of_kind(THRESHOLD)(alert) and alert.get("rule_id") != PRESSURE_RULE_ID


def _escalation(alert: dict[str, Any]) -> bool:
    """An alert announcing an escalation (fired from a timer)."""
    return bool(alert.get("escalated_from"))


def _kill_on_message(name: str, subject: str, *, match: Match | None = None) -> Fault:
    """Kill ``name`` on the first message published on ``subject`` after the fault time (one
    that ``match`` accepts, if given)."""

    async def fault(run: Run) -> None:
        await run.until(run.workload.fault_at)
        done = asyncio.Event()

        async def kill(msg: Msg) -> None:
            if match is not None and not match(json.loads(msg.data)):
                return
            if not done.is_set():
                run.kill(name)
                done.set()

        sub = await run.nc.subscribe(subject, cb=kill)
        try:
            await asyncio.wait_for(done.wait(), timeout=run.workload.duration)
        except TimeoutError:
            run.notes.append(f"no message on {subject}: killed at the end of the wait")
            run.kill(name)
        killed = run.kills[-1]
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
            run.kill(name)
            done.set()

        run.receiver.on_post = kill
        if not await asyncio.to_thread(done.wait, run.workload.duration):
            run.receiver.on_post = None
            run.notes.append("no webhook POST came: killed at the end of the wait")
            run.kill(name)
        killed = run.kills[-1]
        run.notes.append(f"unacknowledged at the kill: {await run.in_flight()}")
        await run.restart(name, killed=killed)

    return fault


async def _outbox_pending(run: Run) -> float:
    """goals' ``goalwatch_goal_outbox_pending``: change records stored, events not yet out."""
    async with run.stack.async_client(timeout=5) as client:
        answer = await client.get(f"{run.stack.settings.url('goals')}/metrics")
    for line in answer.text.splitlines():
        if line.startswith("goalwatch_goal_outbox_pending "):
            return float(line.split()[1])
    raise RuntimeError("goals' /metrics has no goalwatch_goal_outbox_pending")


async def _kill_goals_before_publish(run: Run) -> None:
    """Leave a status change stored in goals' Redis with its event not yet published, then
    kill -9 goals: only the outbox, relayed at its restart, can bring the change to the
    evaluator.

    nats-server is killed at the fault time, so goals' next status change is stored (with
    its change record in the outbox) but cannot be published; once goals has answered it
    and its outbox holds the record, goals is killed, nats-server restarted, goals restarted.
    """
    await run.until(run.workload.fault_at)
    nats_killed = run.kill("nats")
    await run.next_change()
    answered = time.monotonic()
    owed = await _outbox_pending(run)
    goals_killed = run.kill("goals")
    await run.restart("nats", killed=nats_killed, note=False)
    nats_back = time.monotonic()
    await run.restart("goals", killed=goals_killed, note=False)
    run.notes.append(
        f"kill -9 nats at {run.since(nats_killed)}; a status change stored at "
        f"{run.since(answered)} with {owed:.0f} change record owed in the outbox; kill -9 goals "
        f"at {run.since(goals_killed)}; nats back at {run.since(nats_back)}, goals ready again "
        f"at {run.since(run.recovered or goals_killed)}"
    )


def _aof_cut(*, after_invalid: bool = False, before: Fault | None = None) -> Fault:
    """kill -9 redis at the fault time (or, ``after_invalid``, right after the next key
    result goals marks invalid, its events published; or when ``before`` returns), cut its
    AOF back to its size one second earlier, restart it."""

    async def fault(run: Run) -> None:
        aof = run.stack.settings.state_dir / "redis" / "appendonly.aof"
        sizes: list[tuple[float, int]] = []

        async def sample() -> None:
            while True:
                sizes.append((time.monotonic(), aof.stat().st_size if aof.exists() else 0))
                await asyncio.sleep(0.1)  # the file's size, as a power cut would find it

        sampler = asyncio.create_task(sample())
        try:
            if before is not None:
                await before(run)
            await run.until(run.workload.fault_at)
            while after_invalid and not (run.last_change and run.last_change.opens):
                await run.next_change()
        finally:
            sampler.cancel()
        changed = time.monotonic()
        killed = run.kill("redis")
        size = aof.stat().st_size
        keep = max((s for at, s in sizes if at <= killed - 1.0), default=0)
        os.truncate(aof, keep)
        if after_invalid and run.last_change is not None:
            run.notes.append(
                f"{run.last_change.goal_id} marked invalid at {run.since(changed)}, its events "
                "published"
            )
        run.notes.append(f"AOF cut from {size:,} to {keep:,} bytes (its size 1 s before the kill)")
        await run.restart("redis", killed=killed)

    return fault


async def _acknowledged(nc: NATS, stream: str, consumer: str, seq: int, *, within: float) -> bool:
    """Wait until ``consumer`` of ``stream`` has acknowledged everything up to stream sequence
    ``seq`` (its ack floor), read again at every acknowledgement that passes; whether it did
    within ``within`` seconds."""
    js = nc.jetstream()
    acked = asyncio.Event()

    async def on_ack(_: Msg) -> None:
        acked.set()

    deadline = time.monotonic() + within
    sub = await nc.subscribe(f"$JS.ACK.{stream}.{consumer}.>", cb=on_ack)
    try:
        while True:
            acked.clear()
            if (await js.consumer_info(stream, consumer)).ack_floor.stream_seq >= seq:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with suppress(TimeoutError):
                await asyncio.wait_for(acked.wait(), timeout=min(left, _RECHECK))
    finally:
        await sub.unsubscribe()


async def _move_people(run: Run) -> None:
    """Place the movers in their org units at the start, move them half a second before the
    fault time, and return once the evaluator's directory view has acknowledged the moves."""
    workload = run.workload
    goals = run.stack.settings.url("goals")
    async with run.stack.async_client(timeout=30) as client:
        answer = await client.post(f"{goals}/v1/org-units", json=org_units())
        answer.raise_for_status()
        answer = await client.post(f"{goals}/v1/people", json=movers(workload, moved=False))
        answer.raise_for_status()
        await run.until(workload.fault_at - 0.5)
        answer = await client.post(f"{goals}/v1/people", json=movers(workload, moved=True))
        answer.raise_for_status()
    moved = time.monotonic()
    last = (await run.nc.jetstream().stream_info(subjects.STREAM_PEOPLE)).state.last_seq
    applied = await _acknowledged(
        run.nc, subjects.STREAM_PEOPLE, DIRECTORY_CONSUMER, last, within=workload.duration
    )
    run.notes.append(
        f"{len(movers(workload, moved=True))} people moved between org units at "
        f"{run.since(moved)}, "
        + (
            f"acknowledged by the evaluator's view at {run.since(time.monotonic())}"
            if applied
            else "not acknowledged by the evaluator's view in time"
        )
    )


def _aof_cut_after_move() -> Fault:
    """People move between org units half a second before the fault time; once the
    evaluator's directory view has acknowledged the moves, kill -9 redis, cut its AOF back to
    its size one second earlier (which takes the moves from the view) and restart it. Then
    every mover sends a reading to the rule scoped by org unit: it must fire for those who
    moved into the watched unit, and only for them, so the view must have replayed the moves
    from ``GOALWATCH_PEOPLE`` before the readings were judged."""
    cut = _aof_cut(before=_move_people)

    async def fault(run: Run) -> None:
        await cut(run)
        readings = unit_readings(run.workload, datetime.now(UTC))
        async with run.stack.async_client(timeout=30) as client:
            await _post(run, client, f"{run.stack.settings.url('ingestion')}/v1/events", readings)
        accepted = time.monotonic()
        for transition in unit_transitions(run.workload, readings):
            run.expect(transition, SCOPED, due=accepted)
        run.notes.append(f"their readings accepted at {run.since(accepted)}")

    return fault


async def _webhook_outage(run: Run) -> None:
    """The receiver answers 500 for half the stream's length."""
    await run.until(run.workload.fault_at)
    outage = run.workload.duration / 2
    began = time.monotonic()
    run.receiver.fail_until = began + outage
    await asyncio.sleep(outage)  # the scenario is "the webhook fails for this long"
    run.recovered = time.monotonic()
    run.notes.append(f"webhook answered 500 from {run.since(began)} to {run.since(run.recovered)}")


async def _rule_changes(run: Run) -> None:
    """Every rule changed once a second for half the stream's length: nothing a rule does
    changes (a comment line), but every change is a stored version the evaluator swaps in."""
    await run.until(run.workload.fault_at)
    url = f"{run.stack.settings.url('evaluator')}/v1/rules"
    began, versions, round_ = time.monotonic(), 0, 0
    async with run.stack.async_client(timeout=30) as client:
        listed = await client.get(url)
        listed.raise_for_status()
        rules = {rule["id"]: rule["source"] for rule in listed.json()}
        while time.monotonic() - began < run.workload.duration / 2:
            round_ += 1
            for rule_id, source in rules.items():
                answer = await client.put(
                    f"{url}/{rule_id}",
                    json={"source": f"{source}# change {round_}\n", "comment": "fault run"},
                )
                answer.raise_for_status()
                versions += 1
            await asyncio.sleep(1.0)  # the pace of the scenario: a round a second
    run.recovered = time.monotonic()
    run.notes.append(
        f"{versions} rule versions ({len(rules)} rules, {round_} rounds) stored from "
        f"{run.since(began)} to {run.since(run.recovered)}"
    )


def _kill_repeatedly(name: str, times: int) -> Fault:
    """Kill ``name`` ``times`` times, evenly over the stream's second half, each time
    restarting it: the next kill may meet it catching up on what the last one left."""

    async def fault(run: Run) -> None:
        gap = run.workload.duration / 2 / times
        for n in range(times):
            await run.until(run.workload.fault_at + n * gap)
            killed = run.kill(name)
            await run.restart(name, killed=killed, note=False)
        run.note_kills(name)

    return fault


def _kill_after_answers(name: str) -> Fault:
    """Kill ``name`` within 20 ms after a webhook was answered 2xx, ``workload.kills``
    times over the stream's second half: the window between a receiver's answer and the
    notifier recording it, which only the ``Idempotency-Key`` covers."""

    async def fault(run: Run) -> None:
        gap = run.workload.duration / 2 / max(1, run.workload.kills)
        for n in range(run.workload.kills):
            await run.until(run.workload.fault_at + n * gap)
            done = threading.Event()

            def kill(done: threading.Event = done) -> None:
                time.sleep(random.uniform(0, 0.02))  # a random moment of the window
                run.kill(name)
                done.set()

            run.receiver.arm(on_answered=kill)
            answered = await asyncio.to_thread(done.wait, run.workload.duration)
            if not answered and run.receiver.disarm():
                run.notes.append(f"no webhook answered after kill {n}: stopped there")
                break
            await asyncio.to_thread(done.wait)  # taken just before the disarm: it kills
            await run.restart(name, killed=run.kills[-1], note=False)
        run.note_kills(name)
        run.epilogue.append(lambda arrivals: _repeats_note(arrivals, run.kills))

    return fault


def _repeats_note(arrivals: Sequence[Arrival], kills: Sequence[float]) -> str:
    per_kill = repeats_per_kill(arrivals, kills)
    return (
        f"repeats per kill {', '.join(map(str, per_kill))} "
        f"({sum(1 for n in per_kill if n)} of {len(per_kill)} kills caused one; "
        f"most in one kill {max(per_kill, default=0)})"
    )


async def _burst(run: Run) -> None:
    """Post ``burst_events`` events for ``burst_subjects`` new subjects all at once, halfway
    through the stream: every request of up to 1,000 events concurrently."""
    workload = run.workload
    settings = run.stack.settings
    async with run.stack.async_client(timeout=120) as client:
        everyone = burst_people(workload)
        for first in range(0, len(everyone), 1000):  # goals takes up to 1,000 at a time
            answer = await client.post(
                f"{settings.url('goals')}/v1/people", json=everyone[first : first + 1000]
            )
            answer.raise_for_status()
        await run.until(workload.fault_at)
        plan = burst_batches(workload)
        began = time.monotonic()
        url = f"{settings.url('ingestion')}/v1/events"
        await asyncio.gather(*(_post(run, client, url, batch) for batch in plan))
    accepted = time.monotonic()
    for transition in burst_transitions(workload):
        run.expect(transition, THRESHOLD, due=accepted)
    run.recovered = accepted
    run.notes.append(
        f"burst of {sum(map(len, plan)):,} events for {workload.burst_subjects:,} subjects in "
        f"{len(plan)} concurrent requests at {run.since(began)}, all accepted "
        f"{accepted - began:.1f} s later"
    )


# How to catch a service inside a batch: the first thing it does that can be seen from outside.
_IN_BATCH: dict[str, tuple[str, Callable[[str], Fault]]] = {
    "ingestion": (
        "at the next event it stores (a POST in flight)",
        lambda name: _kill_on_message(name, subjects.METRICS_RECORDED_PARTITIONS),
    ),
    "goals": (
        "at the next alert fired (the notifier is about to ask goals for its recipients)",
        lambda name: _kill_on_message(name, subjects.ALERTS_FIRED),
    ),
    "evaluator": (
        "at the next threshold alert it publishes from an event (its batch is not yet "
        "acknowledged)",
        lambda name: _kill_on_message(name, subjects.ALERTS_FIRED, match=_stream_threshold),
    ),
    "notifier": ("at the next webhook POST, before it is answered", _kill_on_webhook),
}
# The notifier may die between a receiver's 2xx and recording it (docs/webhook.md).
_MAY_REPEAT = {"notifier"}


def scenarios() -> list[Scenario]:
    """Every scenario, in the order ``goalwatch faults`` runs them."""
    found = [Scenario("none", "no fault: the baseline", None, quiet=True)]
    for name in pipeline_services():
        repeats = name in _MAY_REPEAT
        found.append(
            Scenario(
                f"kill-{name}",
                f"kill -9 {name} halfway through the stream, then restart it",
                _kill_at_fault_time(name),
                allows_duplicates=repeats,
            )
        )
        if name in _IN_BATCH:
            when, make = _IN_BATCH[name]
            found.append(
                Scenario(
                    f"kill-{name}-in-batch",
                    f"kill -9 {name} {when}, then restart it",
                    make(name),
                    allows_duplicates=repeats,
                )
            )
    found += [
        Scenario(
            "kill-evaluator-in-timer",
            "kill -9 the evaluator at the next overdue alert it publishes (the fired timer is "
            "not yet acknowledged), then restart it",
            _kill_on_message("evaluator", subjects.ALERTS_FIRED, match=_of_kind(OVERDUE)),
        ),
        Scenario(
            "kill-evaluator-in-escalation",
            "kill -9 the evaluator at the next escalation it publishes (the fired threshold "
            "timer is not yet acknowledged, other for and escalation timers still pending), "
            "then restart it",
            _kill_on_message("evaluator", subjects.ALERTS_FIRED, match=_escalation),
        ),
        Scenario(
            "kill-evaluator-in-impact",
            "kill -9 the evaluator at the next dependency-impact alert it publishes (the goal "
            "change is not yet acknowledged, the other owners' alerts not yet out), then "
            "restart it",
            _kill_on_message("evaluator", subjects.ALERTS_FIRED, match=_of_kind(IMPACT)),
        ),
        Scenario(
            "kill-goals-before-publish",
            "a status change stored by goals while nats-server is down (its event owed in the "
            "outbox), then kill -9 goals, restart nats-server and goals: the outbox relays it",
            _kill_goals_before_publish,
        ),
        Scenario(
            "kill-evaluator-4x",
            "kill -9 the evaluator four times in the stream's second half (20 s by default), "
            "restarting it each time",
            _kill_repeatedly("evaluator", 4),
        ),
        Scenario(
            "kill-notifier-after-2xx",
            "kill -9 the notifier within 20 ms after a webhook was answered 2xx, --kills times "
            "(10 by default) in the stream's second half, restarting it each time: how often "
            "a receiver sees a repeat",
            _kill_after_answers("notifier"),
            allows_duplicates=True,
        ),
        Scenario(
            "replicas",
            "two processes of every service; at 30% of the stream SIGTERM one evaluator and "
            "one notifier and start them again, at 60% kill -9 the other evaluator and start "
            "it again: partitions move, nothing is lost or doubled",
            _replicas,
            replicas=2,
        ),
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
            "kill-redis-in-delivery",
            "kill -9 redis-server when the notifier's next webhook POST reaches the receiver, "
            "before it is answered, then restart it: the notifier must record the delivery "
            "once Redis is back, not send it again",
            _kill_on_webhook("redis"),
        ),
        Scenario(
            "redis-aof-cut",
            "kill -9 redis-server halfway and cut its AOF back to its size 1 s earlier (a power "
            "cut inside the fsync window), then restart it",
            _aof_cut(),
        ),
        Scenario(
            "redis-aof-cut-after-goal-change",
            "kill -9 redis-server right after goals published a key result marked invalid, "
            "and cut its AOF back to its size 1 s earlier: goals must replay the change from "
            "GOALWATCH_GOALS, or the key result's next change reuses its version and is "
            "dropped as a duplicate",
            _aof_cut(after_invalid=True),
        ),
        Scenario(
            "redis-aof-cut-after-move",
            "people moved between org units halfway; once the evaluator's directory view has "
            "them, kill -9 redis-server and cut its AOF back to its size 1 s earlier: the view "
            "must replay the moves from GOALWATCH_PEOPLE before the movers' next readings are "
            "judged by a rule scoped by org unit",
            _aof_cut_after_move(),
        ),
        Scenario(
            "webhook-500",
            "the webhook answers 500 from halfway for half the stream's length (20 s by default)",
            _webhook_outage,
        ),
        Scenario(
            "rule-changes",
            "from halfway, for half the stream's length, every rule gets a new version over "
            "the API once a second (its text gains a comment line): each version is swapped "
            "into the running evaluator while events flow",
            _rule_changes,
            quiet=True,
        ),
        Scenario(
            "burst",
            "halfway, 10,000 events for 3,000 more subjects (--burst-events, --burst-subjects) "
            "posted at once: all evaluated and delivered, and no service logs an error",
            _burst,
            quiet=True,
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


async def _post(run: Run, client: httpx.AsyncClient, url: str, batch: list[dict[str, Any]]) -> None:
    """POST one batch until ingestion accepts it, as a source following its contract does."""
    while True:
        try:
            response = await client.post(url, json=batch)
            if response.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        run.resent += 1
        await asyncio.sleep(0.5)  # the source's own retry interval
    answer = response.json()
    if answer.get("rejected"):
        raise RuntimeError(f"ingestion rejected events of a batch: {answer}")


async def _stream(run: Run, client: httpx.AsyncClient) -> None:
    """POST the batches, paced over the workload's duration, noting when each is due."""
    plan = batches(run.workload)
    gap = run.workload.duration / max(1, len(plan) - 1)
    url = f"{run.stack.settings.url('ingestion')}/v1/events"
    for k, days in enumerate(plan):
        await run.until(k * gap)
        sent = datetime.now(UTC)
        beats = heartbeats(run.workload, k, sent)
        readings = pressure_readings(run.workload, k, sent)
        await _post(run, client, url, days + beats + readings)
        accepted = time.monotonic()
        for event in days:
            if event["id"].endswith(f"-d{DAYS - 1}"):
                run.expect((event["subject"], "firing", DAY0), THRESHOLD, due=accepted)
        for beat in beats:
            transition = absence_transition(beat, run.workload)
            run.expect(transition, OVERDUE, due=_at(accepted, transition[2]))
        for reading in readings:
            for transition, kind, at in pressure_transitions(reading, run.workload):
                run.expect(transition, kind, due=_at(accepted, at))


def _at(accepted: float, moment: datetime) -> float:
    """``moment`` (a timer's due time) as a ``time.monotonic()`` value, no earlier than
    ``accepted`` (when the event arming the timer was accepted)."""
    return accepted + max(0.0, (moment - datetime.now(UTC)).total_seconds())


async def _check_in(run: Run, client: httpx.AsyncClient, change: StatusChange) -> datetime:
    """Make ``change`` through goals' API, resending it (same check-in id: recorded once)
    until goals answers; when goals made it, which is its episode's ``started_at``."""
    url = f"{run.stack.settings.url('goals')}/v1/goals/{change.goal_id}/check-ins"
    body = {"id": change.check_in_id, "status": change.status, "by": change.by}
    while True:
        try:
            response = await client.post(url, json=body)
            if response.status_code == 201:
                return datetime.fromisoformat(response.json()["at"])
            if response.status_code < 500 and response.status_code != 409:
                raise RuntimeError(f"goals refused a check-in: {response.text}")
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)  # as the source does


async def _change_goals(run: Run, client: httpx.AsyncClient) -> None:
    """Mark the key results invalid and back on track on their schedule, noting the alert
    transitions each change owes its affected owners."""
    for change in status_changes(run.workload):
        await run.until(change.at)
        made = await _check_in(run, client, change)
        answered = time.monotonic()
        if change.opens:
            run.episodes[change.goal_id] = made
            state, started = "firing", made
        else:
            state, started = "resolved", run.episodes.pop(change.goal_id)
        for owner in change.owners:
            run.expect((owner, state, started), IMPACT, due=answered)
        run.changes_made += 1
        run.last_change = change
        run.change_made.set()


async def _settle(run: Run, nc: NATS, deadline: float) -> bool:
    """Wait until every transition due has arrived and the pipeline is drained, or until
    ``deadline``; whether it settled.

    Arrivals are awaited on the receiver. The consumers' counters have no event of their own,
    but they only reach "drained" through an acknowledgement, so they are read again at
    every acknowledgement that passes (``$JS.ACK.>``), and at least every few seconds, in
    case the last one went by while NATS was being asked.
    """
    left = deadline - time.monotonic()
    if not await asyncio.to_thread(run.receiver.wait_for, set(run.due), left):
        return False
    js = nc.jetstream()
    acked = asyncio.Event()

    async def on_ack(_: Msg) -> None:
        acked.set()

    sub = await nc.subscribe("$JS.ACK.>", cb=on_ack)
    try:
        while True:
            acked.clear()
            with suppress(nats.errors.Error, TimeoutError):  # a server just restarted
                if await asyncio.wait_for(_drained(js), timeout=2.0):
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with suppress(TimeoutError):
                await asyncio.wait_for(acked.wait(), timeout=min(left, _RECHECK))
    finally:
        await sub.unsubscribe()


async def _measure(
    stack: Stack, receiver: Receiver, scenario: Scenario, workload: Workload
) -> Outcome:
    settings = stack.settings
    async with stack.async_client(timeout=30) as client:
        answer = await client.post(f"{settings.url('goals')}/v1/people", json=people(workload))
        answer.raise_for_status()
        if graph := impact_goals(workload):
            answer = await client.post(f"{settings.url('goals')}/v1/goals", json=graph)
            answer.raise_for_status()

    async def quiet(_: Exception) -> None:
        pass  # connection errors while nats-server is down are the scenario, not news

    nc = await connect_nats(
        settings.nats_access(), max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=quiet
    )
    try:
        run = Run(stack=stack, receiver=receiver, nc=nc, workload=workload)
        fault = asyncio.create_task(scenario.fault(run)) if scenario.fault else None
        async with stack.async_client(timeout=10) as client:
            await asyncio.gather(_stream(run, client), _change_goals(run, client))
        stream_end = time.monotonic()
        if fault is not None:
            await fault
        recovered = run.recovered or stream_end
        # A connection of its own: the first one may still be finding a restarted nats-server.
        after = await connect_nats(settings.nats_access(), error_cb=quiet)
        try:
            settled = await _settle(run, after, max(stream_end, recovered) + workload.settle)
            js = after.jetstream()
            held = sum(i.num_pending + i.num_ack_pending for i in await _consumers(js))
            dead = (await js.stream_info(subjects.STREAM_DEADLETTER)).state.messages
        finally:
            await after.close()
        arrivals = receiver.snapshot()
        notes = [*run.notes, *(write(arrivals) for write in run.epilogue)]
        if not settled:
            notes.append(f"stopped waiting after --settle {workload.settle:.0f} s")
        return Outcome(
            scenario=scenario.name,
            counts=tally(run.due, arrivals, recovered=recovered),
            by_kind=tally_by_kind(run.due, run.kinds, arrivals, recovered=recovered),
            missing=missing(run.due, run.kinds, arrivals),
            dead_letters=dead,
            held=held,
            refused=receiver.refused,
            invalid=receiver.invalid,
            cut=receiver.cut,
            resent=run.resent,
            seconds=time.monotonic() - run.started,
            notes=tuple(notes),
            allows_duplicates=scenario.allows_duplicates,
            quiet=scenario.quiet,
        )
    finally:
        await nc.close()


def logged_errors(stack: Stack) -> dict[str, list[str]]:
    """Per service, the error lines of its log so far (a restarted service's log goes on in
    the same file)."""
    return {
        name: error_lines((stack.log_dir / f"{name}.log").read_text(errors="replace"))
        for service in pipeline_services()
        for name in stack.replica_names(service)
        if (stack.log_dir / f"{name}.log").exists()
    }


def harness_rules(rules_dir: Path, into: Path, workload: Workload) -> Path:
    """A rules folder of the run's own: the rules of ``rules_dir``, the heartbeat rule (its
    ``absent_for`` sized to the workload), the pressure rule (its ``for`` and ``escalate``
    likewise) and the rule scoped by org unit (only ``redis-aof-cut-after-move`` sends its
    metric)."""
    into.mkdir(parents=True, exist_ok=True)
    for rule in rules_dir.glob("*.yaml"):
        (into / rule.name).write_text(rule.read_text(encoding="utf-8"), encoding="utf-8")
    (into / "faults-heartbeat-missing.yaml").write_text(heartbeat_rule(workload), encoding="utf-8")
    (into / f"{PRESSURE_RULE_ID}.yaml").write_text(pressure_rule(workload), encoding="utf-8")
    (into / f"{UNIT_RULE_ID}.yaml").write_text(unit_rule(), encoding="utf-8")
    return into


def harness_catalogue(path: Path) -> Path:
    """The shipped catalogue with the metrics of the harness's own rules, written to ``path``."""
    return write_catalogue(
        path,
        {
            HEARTBEAT_METRIC: entry(description="A faults-harness heartbeat.", sources=["faults"]),
            PRESSURE_METRIC: entry(
                description="A faults-harness reading the pressure rule watches.",
                sources=["faults"],
                unit="ratio",
                low=0,
                high=1,
            ),
            UNIT_METRIC: entry(
                description="A faults-harness reading the org-unit-scoped rule watches.",
                sources=["faults"],
                unit="ratio",
                low=0,
                high=1,
            ),
        },
    )


def run_scenario(scenario: Scenario, workload: Workload, *, rules_dir: Path) -> Outcome:
    """Start an installation, stream the workload with the scenario's fault, count, stop.

    The services' logs are read before they are stopped: what a shutdown logs is not the
    scenario's.
    """
    secret = secrets.token_hex(16)
    receiver = Receiver(secret)
    try:
        with tempfile.TemporaryDirectory(prefix="goalwatch-faults-") as state:
            rules = harness_rules(rules_dir, Path(state) / "rules", workload)
            catalogue = harness_catalogue(Path(state) / "catalogue.yaml")
            settings = StackSettings.on_free_ports(Path(state), rules, catalogue)
            stack = Stack(
                settings=settings,
                env={"GOALWATCH_WEBHOOK_URL": receiver.url, "GOALWATCH_WEBHOOK_SECRET": secret},
                replicas=dict.fromkeys(pipeline_services(), scenario.replicas),
            )
            stack.start()
            try:
                outcome = asyncio.run(_measure(stack, receiver, scenario, workload))
                return replace(outcome, errors=logged_errors(stack))
            finally:
                stack.stop()
    finally:
        receiver.close()
