"""``goalwatch bench --mode overdue``: how late absence alerts reach a webhook under 100k timers.

It starts its own installation (nats-server, redis-server and the four services, on free
ports in a temporary folder) with a rules folder of its own: one overdue rule,
:data:`RULE_ID`, ``absent_for: 1h``, and the notifier's webhook pointed at a real HTTP
receiver in this process. Then, twice — first with nothing else pending, then with the
background load armed:

- a few hundred **probe** subjects report the metric once, back-dated so that their
  deadlines (report time + 1 h) fall due spread over the next minute;
- for each probe it records when the fired timer was stored by nats-server (the scheduler),
  when the ``AlertFired`` came by on NATS (the evaluator) and when the webhook got the POST
  (the notifier), each measured from the deadline.

The **background load** is :data:`DEFAULT_DEADLINES` subjects whose deadlines fall an hour
after the measurement, armed either through the real path (``--arm events``: one event each,
ingestion → evaluator → ``Timers.arm``) or straight into the evaluator's own timer keys in
``GOALWATCH_TIMERS`` with ``publish_async`` (``--arm timers``: the same pending schedules in
seconds instead of minutes, when pushing 100,000 events through the evaluator is too slow).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from goalwatch.connections import connect_nats
from goalwatch.contracts import TimerFired, subjects
from goalwatch.dev.bench import Latencies, wait_evaluated
from goalwatch.dev.catalogues import entry, write_catalogue
from goalwatch.dev.fault_counts import Arrival, Receiver
from goalwatch.dev.stack import Stack, StackSettings
from goalwatch.rules import overdue
from goalwatch.rules.transitions import fingerprint
from goalwatch.timers import TimerKey, fired_subject, schedule

RULE_ID: Final = "bench-report-missing"
METRIC: Final = "bench_report_logged"
# Long enough that the background deadlines fall well after the measurement; the probes are
# back-dated by about this much so that theirs fall due within it.
GAP: Final = timedelta(hours=1)
RULE: Final = f"""\
id: {RULE_ID}
name: No bench report for an hour
kind: overdue
metric: {METRIC}
condition: {{absent_for: 1h}}
severity: info
notify: [subject, manager]
message: "{{subject_name}}: no bench report since {{last_seen:%H:%M:%S}}"
"""

DEFAULT_DEADLINES: Final = 100_000
ARM_PATHS: Final = ("events", "timers")
# Events per POST /v1/events while arming through the real path (ingestion's limit is 1000).
_ARM_BATCH: Final = 1000
_TIMERS_OWNER: Final = "evaluator"  # the evaluator's timers: services/evaluator/evaluation.py


def rules_dir(directory: Path) -> Path:
    """A rules folder holding only the benchmark's overdue rule."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{RULE_ID}.yaml").write_text(RULE, encoding="utf-8")
    return directory


def probe_deadlines(start: datetime, *, probes: int, lead: float, spread: float) -> list[datetime]:
    """``probes`` deadlines evenly spread over ``spread`` seconds, the first ``lead`` s after
    ``start``: a steady trickle, not a burst at one instant."""
    step = spread / max(probes - 1, 1)
    return [start + timedelta(seconds=lead + n * step) for n in range(probes)]


def report(subject: str, at: datetime, *, run: str) -> dict[str, Any]:
    """One report of :data:`METRIC` by ``subject`` at event time ``at``."""
    return {
        "id": f"{run}-{subject}",
        "metric": METRIC,
        "value": 1,
        "time": at.isoformat(),
        "subject": subject,
        "source": "bench",
    }


def probe_reports(deadlines: Mapping[str, datetime], *, run: str) -> list[dict[str, Any]]:
    """Each probe's one report, dated :data:`GAP` before the deadline it should produce."""
    return [report(subject, due - GAP, run=run) for subject, due in deadlines.items()]


def lateness(
    deadlines: Mapping[str, datetime], arrivals: Mapping[str, datetime]
) -> tuple[list[float], int]:
    """Seconds from each subject's deadline to its arrival, and how many never arrived.

    A negative value is an arrival before the deadline (a timer that fired early).
    """
    late = [
        (arrivals[subject] - due).total_seconds()
        for subject, due in deadlines.items()
        if subject in arrivals
    ]
    return late, sum(1 for subject in deadlines if subject not in arrivals)


def between(earlier: Mapping[str, datetime], later: Mapping[str, datetime]) -> list[float]:
    """Seconds from each subject's ``earlier`` stage to its ``later`` one, where it reached
    both: the part of the lateness one hop of the path adds."""
    return [
        (later[subject] - at).total_seconds() for subject, at in earlier.items() if subject in later
    ]


@dataclass(frozen=True)
class Stage:
    """Lateness at one point of the path, over the probes that reached it."""

    latencies: Latencies
    missing: int
    early: int

    @classmethod
    def of(cls, deadlines: Mapping[str, datetime], arrivals: Mapping[str, datetime]) -> Stage:
        """Lateness of ``arrivals`` against ``deadlines``."""
        late, missing = lateness(deadlines, arrivals)
        return cls(Latencies.of(late), missing, sum(1 for s in late if s < 0))

    def cell(self) -> str:
        """``p50 / p95 / p99 / max``, with what did not arrive or came early."""
        notes = [f"{self.missing} missing"] if self.missing else []
        notes += [f"{self.early} early"] if self.early else []
        return self.latencies.row() + (f" ({', '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class Phase:
    """One round of probes: what was pending meanwhile and how late each stage was."""

    label: str
    probes: int
    pending: int  # schedules pending in GOALWATCH_TIMERS once the probes were armed
    nats_rss_mib: float  # nats-server's resident memory then
    scheduled: Stage  # deadline → fired timer stored in the stream by nats-server
    fired: Stage  # deadline → AlertFired seen on NATS
    delivered: Stage  # deadline → the webhook receiver got the POST
    evaluating: Latencies  # fired timer stored → AlertFired: the evaluator's hop
    notifying: Latencies  # AlertFired → webhook receipt: the notifier's hop


@dataclass(frozen=True)
class OverdueResult:
    """What one overdue benchmark run measured."""

    deadlines: int
    armed_via: str
    arm_seconds: float
    spread: float
    nats_peak_mib: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    phases: Sequence[Phase]

    def report(self) -> str:
        """A Markdown table of the run, one column per phase."""
        via = (
            "events through ingestion and the evaluator"
            if self.armed_via == "events"
            else "publish_async straight into the evaluator's timer keys"
        )
        rate = self.deadlines / self.arm_seconds if self.arm_seconds else 0.0
        probes = self.phases[0].probes if self.phases else 0

        def row(measure: str, cells: Sequence[str]) -> str:
            return f"| {measure} | {' | '.join(cells)} |"

        lines = [
            row(
                f"measure ({probes} probes due over {self.spread:.0f} s; p50 / p95 / p99 / max "
                "from the deadline)",
                [phase.label for phase in self.phases],
            ),
            "|---|" + "---|" * len(self.phases),
            row("timers pending in GOALWATCH_TIMERS", [f"{p.pending:,}" for p in self.phases]),
            row(
                "deadline → timer fired (stored by nats-server)",
                [p.scheduled.cell() for p in self.phases],
            ),
            row("deadline → AlertFired on NATS", [p.fired.cell() for p in self.phases]),
            row("deadline → webhook receipt", [p.delivered.cell() for p in self.phases]),
            row(
                "of which timer stored → AlertFired (evaluator)",
                [p.evaluating.row() for p in self.phases],
            ),
            row(
                "of which AlertFired → webhook (notifier)",
                [p.notifying.row() for p in self.phases],
            ),
            row("nats-server RSS", [f"{p.nats_rss_mib:.0f} MiB" for p in self.phases]),
        ]
        load = " → ".join(
            " ".join(f"{x:.2f}" for x in avg) for avg in (self.load_before, self.load_after)
        )
        return "\n".join(
            [
                *lines,
                "",
                f"{self.deadlines:,} background deadlines armed via {via} in "
                f"{self.arm_seconds:.1f} s ({rate:,.0f}/s), due {GAP} after they were armed; "
                f"nats-server peak RSS {self.nats_peak_mib:.0f} MiB; "
                f"load average (1/5/15 min) {load}.",
            ]
        )


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of process ``pid`` from ``/proc`` (Linux), in MiB; NaN elsewhere."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    return float("nan")


async def pending_timers(js: JetStreamContext) -> int:
    """Schedules pending in ``GOALWATCH_TIMERS`` (a fired one is removed by the server)."""
    info = await js.add_consumer(
        subjects.STREAM_TIMERS,
        ConsumerConfig(
            filter_subject=f"{subjects.TIMERS_SCHEDULE_PREFIX}.>",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30,
        ),
    )
    try:
        return int(info.num_pending or 0)
    finally:
        await js.delete_consumer(subjects.STREAM_TIMERS, info.name)


async def arm_through_events(stack: Stack, js: JetStreamContext, count: int, run: str) -> None:
    """``count`` subjects report once now: the evaluator arms each deadline, GAP from now."""
    settings = stack.settings
    now = datetime.now(UTC)
    async with stack.async_client(timeout=60) as client:
        for first in range(0, count, _ARM_BATCH):
            batch = [
                report(f"{run}-bg{n}", now, run=run)
                for n in range(first, min(first + _ARM_BATCH, count))
            ]
            response = await client.post(f"{settings.url('ingestion')}/v1/events", json=batch)
            response.raise_for_status()
    await wait_evaluated(js)


async def arm_through_timers(js: JetStreamContext, count: int, run: str) -> None:
    """``count`` of the evaluator's own absence timers, GAP from now, published at once.

    The same subjects and bodies the evaluator arms (a fired one finds no state and is
    stale), without the events: the scheduler's load, not the evaluator's.
    """
    now = datetime.now(UTC)
    for n in range(count):
        subject = f"{run}-bg{n}"
        arm = schedule(
            TimerKey(_TIMERS_OWNER, overdue.TIMER, fingerprint(RULE_ID, subject, METRIC)),
            now + GAP,
            data={"rule_id": RULE_ID, "subject": subject, "metric": METRIC},
            now=now,
        )
        await js.publish_async(arm.subject, arm.body, headers=arm.headers)
    await js.publish_async_completed()


class _Watch:
    """Arrival times of the probes at each stage, as they happen."""

    def __init__(self, probes: Mapping[str, datetime], loop: asyncio.AbstractEventLoop) -> None:
        self.probes = probes
        self.scheduled: dict[str, datetime] = {}
        self.fired: dict[str, datetime] = {}
        self.delivered: dict[str, datetime] = {}
        self.all_delivered = asyncio.Event()
        self._loop = loop

    async def on_timer(self, msg: Msg) -> None:
        fired = TimerFired.model_validate_json(msg.data)
        subject = fired.data.get("subject", "")
        if subject in self.probes:
            # The time the server stored the fired timer: the scheduler's own lateness, free
            # of this process's delivery.
            self.scheduled.setdefault(subject, msg.metadata.timestamp)

    async def on_alert(self, msg: Msg) -> None:
        at = datetime.now(UTC)
        alert = json.loads(msg.data)
        if alert.get("rule_id") == RULE_ID and alert.get("subject") in self.probes:
            self.fired.setdefault(alert["subject"], at)

    def on_arrival(self, arrival: Arrival) -> None:
        """Called from the receiver's thread: stamped there, recorded in the loop's."""
        at = datetime.now(UTC)
        subject, state, _ = arrival.transition
        if state == "firing" and subject in self.probes:
            self._loop.call_soon_threadsafe(self._deliver, subject, at)

    def _deliver(self, subject: str, at: datetime) -> None:
        self.delivered.setdefault(subject, at)
        if len(self.delivered) == len(self.probes):
            self.all_delivered.set()


async def measure_probes(
    stack: Stack,
    nc: Client,
    receiver: Receiver,
    *,
    label: str,
    probes: int,
    lead: float,
    spread: float,
    grace: float,
) -> Phase:
    """Arm ``probes`` deadlines due over the next ``lead + spread`` s and time each alert."""
    settings = stack.settings
    js = nc.jetstream()
    run = f"probe-{uuid.uuid4().hex[:6]}"
    due = probe_deadlines(datetime.now(UTC), probes=probes, lead=lead, spread=spread)
    deadlines = {f"{run}-{n}": at for n, at in enumerate(due)}
    people = [{"id": f"{run}-head", "name": "Head of department"}] + [
        {"id": subject, "name": f"Dr {subject}", "manager_id": f"{run}-head"}
        for subject in deadlines
    ]
    watch = _Watch(deadlines, asyncio.get_running_loop())
    receiver.on_arrival = watch.on_arrival
    timers = await js.subscribe(
        fired_subject(_TIMERS_OWNER),
        stream=subjects.STREAM_TIMERS,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
        cb=watch.on_timer,
    )
    alerts = await nc.subscribe(subjects.ALERTS_FIRED, cb=watch.on_alert)
    try:
        async with stack.async_client(timeout=60) as client:
            answer = await client.post(f"{settings.url('goals')}/v1/people", json=people)
            answer.raise_for_status()
            answer = await client.post(
                f"{settings.url('ingestion')}/v1/events", json=probe_reports(deadlines, run=run)
            )
            answer.raise_for_status()
        await wait_evaluated(js)
        armed = datetime.now(UTC)
        if armed >= due[0]:
            raise RuntimeError(
                f"the probes were armed {(armed - due[0]).total_seconds():.1f} s after the first "
                "deadline: raise --lead"
            )
        pending = await pending_timers(js)
        rss = memory_mib(stack.pid("nats"))
        wait = (due[-1] - datetime.now(UTC)).total_seconds() + grace
        with contextlib.suppress(TimeoutError):  # what did not arrive is reported missing
            await asyncio.wait_for(watch.all_delivered.wait(), timeout=wait)
    finally:
        await timers.unsubscribe()
        await alerts.unsubscribe()
        receiver.on_arrival = None
    return Phase(
        label=label,
        probes=probes,
        pending=pending,
        nats_rss_mib=rss,
        scheduled=Stage.of(deadlines, watch.scheduled),
        fired=Stage.of(deadlines, watch.fired),
        delivered=Stage.of(deadlines, watch.delivered),
        evaluating=Latencies.of(between(watch.scheduled, watch.fired)),
        notifying=Latencies.of(between(watch.fired, watch.delivered)),
    )


async def _measure(
    stack: Stack,
    receiver: Receiver,
    *,
    deadlines: int,
    probes: int,
    lead: float,
    spread: float,
    arm: str,
) -> tuple[list[Phase], float]:
    nc = await connect_nats(stack.settings.nats_access())
    js = nc.jetstream(publish_async_max_pending=4000)
    grace = 30.0
    try:
        quiet = await measure_probes(
            stack, nc, receiver, label="no background load", probes=probes, lead=lead,
            spread=spread, grace=grace,
        )  # fmt: skip
        run = f"bg-{uuid.uuid4().hex[:6]}"
        started = time.perf_counter()
        if arm == "events":
            await arm_through_events(stack, js, deadlines, run)
        else:
            await arm_through_timers(js, deadlines, run)
        arm_seconds = time.perf_counter() - started
        loaded = await measure_probes(
            stack, nc, receiver, label=f"{deadlines:,} deadlines pending", probes=probes,
            lead=lead, spread=spread, grace=grace,
        )  # fmt: skip
    finally:
        await nc.close()
    return [quiet, loaded], arm_seconds


def run(
    *,
    deadlines: int = DEFAULT_DEADLINES,
    probes: int = 300,
    lead: float = 10.0,
    spread: float = 60.0,
    arm: str = "events",
) -> OverdueResult:
    """Start an installation, measure the probes without and with the load, stop it."""
    if arm not in ARM_PATHS:
        raise ValueError(f"arm must be one of {', '.join(ARM_PATHS)}, not {arm!r}")
    load_before = os.getloadavg()
    secret = secrets.token_hex(16)
    receiver = Receiver(secret)
    try:
        with tempfile.TemporaryDirectory(prefix="goalwatch-bench-overdue-") as state:
            settings = StackSettings.on_free_ports(
                Path(state) / "state",
                rules_dir(Path(state) / "rules"),
                write_catalogue(
                    Path(state) / "catalogue.yaml",
                    {
                        METRIC: entry(
                            description="A report the overdue bench logs.",
                            sources=["bench"],
                            low=0,
                        )
                    },
                ),
            )
            stack = Stack(
                settings=settings,
                env={"GOALWATCH_WEBHOOK_URL": receiver.url, "GOALWATCH_WEBHOOK_SECRET": secret},
            )
            stack.start()
            try:
                phases, arm_seconds = asyncio.run(
                    _measure(
                        stack,
                        receiver,
                        deadlines=deadlines,
                        probes=probes,
                        lead=lead,
                        spread=spread,
                        arm=arm,
                    )
                )
                peak = memory_mib(stack.pid("nats"), "VmHWM")
            finally:
                stack.stop()
    finally:
        receiver.close()
    return OverdueResult(
        deadlines=deadlines,
        armed_via=arm,
        arm_seconds=arm_seconds,
        spread=spread,
        nats_peak_mib=peak,
        load_before=load_before,
        load_after=os.getloadavg(),
        phases=phases,
    )
