"""``goalwatch bench --mode evaluator``: the evaluator alone, next to raw durable_rules.

For each rule count it generates that many threshold rules (:func:`write_rules`) and one
stream of metric events over many subjects (:func:`bench_events`), then times, on the same
events:

1. **raw durable_rules**, in this process: the rulesets the engine builds (the rules of a
   metric packed by :func:`goalwatch.rules.compiler.pack`, compiled by
   :func:`~goalwatch.rules.compiler.compile_metric`), each a bare ``durable.engine.Ruleset``
   with recording actions, asked as the engine asks them (each event asserted once to each
   ruleset of its metric as a fact, one constant ``sid``, the event id as ``id``, then
   retracted) through durable_rules' own Python API (``assert_fact``, ``do_actions``,
   ``retract_fact``), with nothing of goalwatch around them. The engine drives the same
   rulesets through the C extension under that API (:mod:`goalwatch.rules.engine`);
2. **the engine**, in this process: :meth:`goalwatch.rules.RuleEngine.evaluate`, verdicts
   only (both run three times, alternated, the best of each kept);
3. **the evaluator**, in a process of its own (``services/evaluator/bench.py``: the kernel
   imports no service): ``Evaluator.handle_batch`` on batches of the consumer's size, decoded
   from JSON as the consumer does, with the real ``StreakStore`` on a real redis-server and
   alerts published to a real JetStream stream through the service's own publisher; then
   Redis' memory (``INFO memory``) and keys, and that process's RSS.

It starts its own nats-server and redis-server (no services) in a temporary folder and
measures the JetStream ceiling (:func:`goalwatch.dev.bench.measure_ceiling`) on that server
before and after, so every figure has the ceiling of the same run beside it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from durable.engine import MessageNotHandledException, Ruleset

from goalwatch.contracts import MetricRecorded
from goalwatch.dev.bench import measure_ceiling
from goalwatch.dev.stack import Stack, StackSettings, tool_env
from goalwatch.messaging import ensure_streams
from goalwatch.rules import RuleEngine, RuleSpec, load_rules, metric_rules
from goalwatch.rules.compiler import compile_metric, pack
from goalwatch.rules.engine import SID

DEFAULT_RULES: Final = (1, 100, 1000)
DEFAULT_SUBJECTS: Final = 100_000
DEFAULT_EVENTS: Final = 50_000
DEFAULT_EVALUATOR_EVENTS: Final = 20_000
"""Events the evaluator with its Redis state is timed on: three days each of a third as many
subjects (a whole run over 100,000 subjects took too long while the evaluator was slow)."""
PER_EVENT: Final = 10
"""Rules per metric, so each event reaches this many rules (or all of them, if fewer)."""
BREACHING_EVERY: Final = 10
"""One subject in this many breaches every threshold of its metric on every event."""
CONSECUTIVE: Final = 3
_DAY0: Final = datetime(2026, 1, 1, 18, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    """One measured setting: ``rules`` rules, each event reaching ``per_event`` of them."""

    rules: int
    per_event: int
    events: int
    evaluator_events: int

    @property
    def metrics(self) -> int:
        """How many metrics the rules are spread over."""
        return math.ceil(self.rules / self.per_event)

    def label(self) -> str:
        """How the case reads in the report."""
        return f"{self.rules:,} rules, {self.per_event:,} per event"


def cases(
    rule_counts: Sequence[int], *, events: int, evaluator_events: int, dense: bool = True
) -> list[Case]:
    """Each count with :data:`PER_EVENT` rules per metric; with ``dense``, also the case where
    every event reaches all 100 rules of one metric (with a tenth of the events: it posts ten
    times as many messages per event)."""
    chosen = [Case(n, min(n, PER_EVENT), events, evaluator_events) for n in rule_counts]
    if dense and 100 in rule_counts:
        chosen.append(Case(100, 100, max(events // 10, 1), max(evaluator_events // 10, 1)))
    return chosen


def metric_name(index: int) -> str:
    """The name of the bench's ``index``-th metric."""
    return f"bench_metric_{index:03d}"


def write_catalogue_for(path: Path, count: int, per_event: int = PER_EVENT) -> Path:
    """The shipped catalogue with the metrics of ``count`` generated rules
    (:func:`write_rules`), written to ``path``: the stack's ingestion then accepts their events."""
    from goalwatch.dev.catalogues import entry, write_catalogue

    metrics = -(-count // per_event)
    return write_catalogue(
        path,
        {
            metric_name(m): entry(
                description=f"Generated bench metric {m}.",
                sources=["bench"],
                unit="ratio",
                low=0,
                high=1,
            )
            for m in range(metrics)
        },
    )


def rule_yaml(index: int, *, per_event: int) -> str:
    """The YAML of rule ``index``: threshold rules grouped ``per_event`` to a metric, their
    thresholds spread between 0.5 and 0.86 so a breaching value (0.95) breaches them all."""
    metric = metric_name(index // per_event)
    value = 0.5 + (index % per_event % 10) * 0.04
    return (
        f"id: bench-rule-{index:04d}\n"
        f"name: Bench rule {index} on {metric}\n"
        "kind: threshold\n"
        f"metric: {metric}\n"
        f'condition: {{op: ">", value: {value:.2f}, consecutive: {CONSECUTIVE}}}\n'
        "severity: warning\n"
        "notify: [subject, manager]\n"
        'message: "{subject_name}: {metric} {value:.2f} above {threshold} '
        '{consecutive} times in a row"\n'
    )


def write_rules(directory: Path, count: int, *, per_event: int = PER_EVENT) -> Path:
    """A rules folder of ``count`` generated threshold rules (see :func:`rule_yaml`)."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = directory / f"bench-rule-{index:04d}.yaml"
        path.write_text(rule_yaml(index, per_event=per_event), encoding="utf-8")
    return directory


def bench_event(n: int, *, subjects: int, metrics: int, run: str = "b") -> dict[str, Any]:
    """The ``n``-th event: subjects in turn, a day for each round of them; each subject
    always reports the same metric, and one in :data:`BREACHING_EVERY` always breaches."""
    subject, day = n % subjects, n // subjects
    value = 0.95 if subject % BREACHING_EVERY == 0 else 0.1 + (subject % 7) * 0.04
    return {
        "id": f"{run}-e{n}",
        "metric": metric_name(subject % metrics),
        "value": value,
        "time": (_DAY0 + timedelta(days=day)).isoformat(),
        "subject": f"{run}-s{subject}",
        "source": "bench",
    }


def bench_events(count: int, *, subjects: int, metrics: int, run: str = "b") -> list[bytes]:
    """:func:`bench_event` 0 .. ``count`` - 1, as the JSON the evaluator's consumer receives."""
    return [
        MetricRecorded.model_validate(bench_event(n, subjects=subjects, metrics=metrics, run=run))
        .model_dump_json()
        .encode()
        for n in range(count)
    ]


def raw_rulesets(rules: Sequence[RuleSpec]) -> tuple[dict[str, list[Any]], list[str]]:
    """The compiled rules as bare durable_rules rulesets by metric, and the list their
    actions append to: what :class:`~goalwatch.rules.engine.RuleEngine` builds, without it."""
    fired: list[str] = []
    by_metric: dict[str, list[RuleSpec]] = defaultdict(list)
    for rule in rules:
        by_metric[rule.metric].append(rule)
    rulesets: dict[str, list[Any]] = defaultdict(list)
    for metric, specs in by_metric.items():
        for number, packed in enumerate(pack(specs)):
            definition = compile_metric(packed)
            for action, body in definition.items():
                # One parameter: durable_rules takes an action of two for an asynchronous one.
                body["run"] = _recorder(fired, action)
            rulesets[metric].append(Ruleset(f"{metric}#{number}", None, definition))
    return rulesets, fired


def _recorder(fired: list[str], action: str) -> Callable[[Any], None]:
    def record(_closure: Any) -> None:
        fired.append(action)

    return record


@dataclass(frozen=True)
class Rate:
    """Events per second of wall-clock time and per second of this process's CPU time: on a
    shared machine the second moves less with what else runs."""

    wall: float
    cpu: float

    @classmethod
    def since(cls, events: int, wall: float, cpu: float) -> Rate:
        """The rate of ``events`` since ``time.perf_counter()`` was ``wall`` and
        ``time.process_time()`` was ``cpu``."""
        return cls(
            events / (time.perf_counter() - wall), events / max(time.process_time() - cpu, 1e-9)
        )


def time_raw(rules: Sequence[RuleSpec], events: Sequence[MetricRecorded]) -> tuple[Rate, int]:
    """Events per second through raw durable_rules, and the verdicts it gave."""
    by_metric, fired = raw_rulesets(rules)
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        for ruleset in by_metric.get(event.metric, ()):
            message = {"id": event.id, "sid": SID, "metric": event.metric, "value": event.value}
            try:
                handle = ruleset.assert_fact(message)
            except MessageNotHandledException:
                continue
            ruleset.do_actions(handle, _ignore)
            ruleset.retract_fact(message)
    return Rate.since(len(events), started, cpu), len(fired)


def _ignore(_error: Any, _state: Any) -> None:
    """What raw durable_rules does with a completed action: nothing."""


def time_engine(rules: Sequence[RuleSpec], events: Sequence[MetricRecorded]) -> tuple[Rate, int]:
    """Events per second through :meth:`RuleEngine.evaluate`, and the verdicts it gave."""
    engine = RuleEngine(rules)
    verdicts = 0
    started, cpu = time.perf_counter(), time.process_time()
    for event in events:
        verdicts += len(engine.evaluate(event))
    return Rate.since(len(events), started, cpu), verdicts


@dataclass(frozen=True)
class CaseResult:
    """What one :class:`Case` measured."""

    case: Case
    raw: Rate
    engine: Rate
    evaluator: Rate
    verdicts: int  # (event, rule) verdicts the engine gave
    published: int  # alert transitions the evaluator published
    redis_mib: float  # Redis used_memory grown by the case
    redis_keys: int  # one hash per subject's metric
    alert_keys: int  # the rules' states those hashes hold, one per (subject, rule reached)
    rss_mib: float  # the evaluator process's resident memory after the stage
    rss_grown_mib: float  # ... and what loading the rules and the stage added to it

    def row(self, ceiling: float, *, subjects: int) -> str:
        """One row of the report's table; Redis memory projected to ``subjects`` subjects."""
        wall, cpu = self.engine.wall / self.raw.wall, self.engine.cpu / self.raw.cpu
        per_state = self.redis_mib * 2**20 / self.alert_keys if self.alert_keys else 0.0
        projected = per_state * subjects * self.case.per_event / 2**20
        return (
            f"| {self.case.label()} | {self.case.events:,} / {self.case.evaluator_events:,} | "
            f"{self.raw.wall:,.0f} ({self.raw.cpu:,.0f}) | "
            f"{self.engine.wall:,.0f} ({self.engine.cpu:,.0f}); {wall:.0%} ({cpu:.0%}) | "
            f"{self.evaluator.wall:,.0f} ({self.evaluator.cpu:,.0f}) | {self.published:,} | "
            f"{self.redis_keys:,} keys holding {self.alert_keys:,} rule states, "
            f"{self.redis_mib:,.0f} MiB ({per_state:,.0f} B a rule state; "
            f"{projected:,.0f} MiB for every subject's) | "
            f"{self.rss_mib:,.0f} MiB (+{self.rss_grown_mib:,.0f}) | {ceiling:,.0f} |"
        )


@dataclass(frozen=True)
class EvaluatorResult:
    """A run of the evaluator benchmark."""

    subjects: int
    ceiling_before: float
    ceiling_after: float
    results: list[CaseResult]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    profiles: list[Path] = field(default_factory=list)

    def report(self) -> str:
        """A Markdown table, one row per case, the run's JetStream ceiling beside each."""
        ceiling = (self.ceiling_before + self.ceiling_after) / 2
        load = " → ".join(
            " ".join(f"{x:.2f}" for x in avg) for avg in (self.load_before, self.load_after)
        )
        lines = [
            f"| rules ({self.subjects:,} subjects) | events: engine / evaluator | raw durable_rules, "
            "events/s (per CPU-s) | RuleEngine.evaluate, events/s (per CPU-s); of raw | "
            "Evaluator.handle_batch + Redis + JetStream, events/s (per CPU-s of this process) | "
            "alerts published | Redis memory | evaluator process RSS (grown by rules + stage) | "
            "JetStream ceiling, msgs/s |",
            "|---|---|---|---|---|---|---|---|---|",
            *(result.row(ceiling, subjects=self.subjects) for result in self.results),
            "",
            f"JetStream ceiling (publish_async + pull fetch 500 + ack) "
            f"{self.ceiling_before:,.0f} msgs/s before, {self.ceiling_after:,.0f} after; "
            f"load average (1/5/15 min) {load}.",
        ]
        lines += [f"profile: {path}" for path in self.profiles]
        return "\n".join(lines)


def _evaluate(
    settings: StackSettings, rules_dir: Path, data: Sequence[bytes], *, profile: Path | None
) -> dict[str, Any]:
    """The evaluator stage, run by the evaluator's own code in a process of its own
    (``services/evaluator/bench.py``): the kernel imports no service."""
    events = rules_dir.parent / f"{rules_dir.name}-events.jsonl"
    events.write_bytes(b"\n".join(data))
    argv = [
        sys.executable, "-m", "services.evaluator.bench",
        "--nats-url", settings.nats_address,
        "--rules-dir", str(rules_dir), "--events", str(events),
    ]  # fmt: skip
    if profile is not None:
        argv += ["--profile", str(profile)]
    # Logins go through the environment, not the command line, where `ps` shows them.
    env = {**tool_env(settings), "GOALWATCH_REDIS_URL": settings.redis_url}
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the evaluator stage failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_case(
    case: Case,
    settings: StackSettings,
    *,
    subjects: int,
    folder: Path,
    profile: Path | None = None,
    repeats: int = 3,
) -> CaseResult:
    """Generate ``case``'s rules and events and time the three stages on them; raw
    durable_rules and the engine ``repeats`` times each, the best kept."""
    rules_dir = write_rules(
        folder / f"rules-{case.rules}-{case.per_event}", case.rules, per_event=case.per_event
    )
    rules = metric_rules(load_rules(rules_dir))
    data = bench_events(case.events, subjects=subjects, metrics=case.metrics)
    events = [MetricRecorded.model_validate_json(raw) for raw in data]
    raws, engines = [], []
    for _ in range(repeats):  # alternated, so both see the same share of the shared machine
        raw, raw_verdicts = time_raw(rules, events)
        engine, verdicts = time_engine(rules, events)
        if raw_verdicts != verdicts:
            raise RuntimeError(
                f"raw durable_rules gave {raw_verdicts} verdicts, the engine {verdicts}"
            )
        raws.append(raw)
        engines.append(engine)
    del events, data
    # Three days of a third as many subjects: the first day's reads find no state, the
    # later ones read and rewrite it, and breaching subjects fire on their third day.
    stored = bench_events(
        case.evaluator_events, subjects=max(case.evaluator_events // 3, 1), metrics=case.metrics
    )
    stage = _evaluate(settings, rules_dir, stored, profile=profile)
    return CaseResult(
        case=case,
        raw=max(raws, key=lambda rate: rate.wall),
        engine=max(engines, key=lambda rate: rate.wall),
        evaluator=Rate(stage["wall"], stage["cpu"]),
        verdicts=verdicts,
        published=stage["published"],
        redis_mib=stage["redis_mib"],
        redis_keys=stage["keys"],
        alert_keys=stage["alert_keys"],
        rss_mib=stage["rss_mib"],
        rss_grown_mib=stage["rss_grown_mib"],
    )


def run(
    *,
    rule_counts: Sequence[int] = DEFAULT_RULES,
    subjects: int = DEFAULT_SUBJECTS,
    events: int = DEFAULT_EVENTS,
    evaluator_events: int = DEFAULT_EVALUATOR_EVENTS,
    dense: bool = True,
    profile_dir: Path | None = None,
    progress: Callable[[str], None] = print,
) -> EvaluatorResult:
    """Start nats-server and redis-server, measure the ceiling and every case, stop them."""
    load_before = os.getloadavg()
    results: list[CaseResult] = []
    profiles: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="goalwatch-bench-evaluator-") as state:
        folder = Path(state)
        settings = StackSettings.on_free_ports(folder / "state", folder / "rules")
        stack = Stack(settings=settings)
        stack.start_servers()
        try:
            asyncio.run(ensure_streams(settings.nats_access()))
            before = asyncio.run(measure_ceiling(settings.nats_access(), count=events))
            progress(f"JetStream ceiling {before:,.0f} msgs/s")
            for case in cases(
                rule_counts, events=events, evaluator_events=evaluator_events, dense=dense
            ):
                profile = None
                if profile_dir is not None:
                    profile_dir.mkdir(parents=True, exist_ok=True)
                    profile = profile_dir / f"evaluator-{case.rules}-{case.per_event}.pstats"
                    profiles.append(profile)
                results.append(
                    measure_case(case, settings, subjects=subjects, folder=folder, profile=profile)
                )
                progress(results[-1].row(before, subjects=subjects))
            after = asyncio.run(measure_ceiling(settings.nats_access(), count=events))
        finally:
            stack.stop()
    return EvaluatorResult(
        subjects=subjects,
        ceiling_before=before,
        ceiling_after=after,
        results=results,
        load_before=load_before,
        load_after=os.getloadavg(),
        profiles=profiles,
    )
