"""The benchmarks' arithmetic: percentiles, lateness and the reports."""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from goalwatch.dev import overdue_bench
from goalwatch.dev.bench import Checkpointing, Latencies, _machine_busy_seconds
from goalwatch.rules import load_rules


def test_percentiles_in_milliseconds() -> None:
    summary = Latencies.of([n / 1000 for n in range(1, 101)])  # 1 ms .. 100 ms
    assert summary.count == 100
    assert (round(summary.p50), round(summary.p95), round(summary.p99)) == (50, 95, 99)
    assert summary.max == 100
    assert summary.row() == "50 / 95 / 99 / 100 ms"


def test_a_single_sample_and_none() -> None:
    assert Latencies.of([0.25]).p99 == 250
    assert math.isnan(Latencies.of([]).p50)


def test_the_checkpoint_share_of_batch_time() -> None:
    each = Latencies.of([0.001, 0.003])  # a mean of 2 ms per round
    assert each.mean == 2
    # 100 batches took 4 s in all, of which 100 rounds of 2 ms: 5%.
    assert Checkpointing(each=each, batches=100, handling_seconds=4.0).share() == 0.05
    assert Checkpointing(each=each, batches=0, handling_seconds=0.0).share() == 0.0


# The overdue mode (goalwatch/dev/overdue_bench.py): probes, lateness and its report.

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def test_probe_deadlines_are_spread_evenly_after_the_lead() -> None:
    due = overdue_bench.probe_deadlines(T0, probes=4, lead=10, spread=60)
    assert [(d - T0).total_seconds() for d in due] == [10, 30, 50, 70]
    assert overdue_bench.probe_deadlines(T0, probes=1, lead=5, spread=60) == [
        T0 + timedelta(seconds=5)
    ]


def test_a_probe_reports_once_a_gap_before_its_deadline() -> None:
    due = T0 + timedelta(seconds=42)
    [event] = overdue_bench.probe_reports({"p-1": due}, run="r")
    assert event["subject"] == "p-1"
    assert event["metric"] == overdue_bench.METRIC
    assert datetime.fromisoformat(event["time"]) + overdue_bench.GAP == due


def test_the_bench_rule_loads_and_its_gap_is_the_one_probes_are_dated_by(tmp_path: Path) -> None:
    [rule] = load_rules(overdue_bench.rules_dir(tmp_path / "rules"))
    assert rule.spec.id == overdue_bench.RULE_ID
    assert rule.spec.metric == overdue_bench.METRIC
    assert rule.spec.overdue.absent_for == overdue_bench.GAP


def test_lateness_counts_what_never_arrived_and_what_came_early() -> None:
    deadlines = {"a": T0, "b": T0, "c": T0}
    arrivals = {"a": T0 + timedelta(milliseconds=250), "b": T0 - timedelta(milliseconds=2)}
    late, missing = overdue_bench.lateness(deadlines, arrivals)
    assert late == [0.25, -0.002]
    assert missing == 1
    stage = overdue_bench.Stage.of(deadlines, arrivals)
    assert (stage.missing, stage.early, stage.latencies.count) == (1, 1, 2)
    assert stage.cell().endswith("(1 missing, 1 early)")


def test_each_hop_is_timed_for_the_subjects_that_passed_both_ends() -> None:
    timer = {"a": T0, "b": T0}
    alert = {"a": T0 + timedelta(milliseconds=40), "c": T0}
    assert overdue_bench.between(timer, alert) == [0.04]


def test_the_overdue_report_has_a_column_per_phase() -> None:
    on_time = overdue_bench.Stage.of({"a": T0}, {"a": T0 + timedelta(milliseconds=300)})
    phase = overdue_bench.Phase(
        label="no background load",
        probes=1,
        pending=1,
        nats_rss_mib=20.4,
        scheduled=on_time,
        fired=on_time,
        delivered=on_time,
        evaluating=Latencies.of([0.04]),
        notifying=Latencies.of([0.02]),
    )
    loaded = dataclasses.replace(phase, label="100,000 deadlines pending", pending=100_001)
    result = overdue_bench.OverdueResult(
        deadlines=100_000,
        armed_via="events",
        arm_seconds=50.0,
        spread=60,
        nats_peak_mib=170.0,
        load_before=(1.0, 1.5, 2.0),
        load_after=(2.0, 2.5, 3.0),
        phases=[phase, loaded],
    )
    text = result.report()
    header, rule, pending, *_ = text.splitlines()
    assert header.endswith("| no background load | 100,000 deadlines pending |")
    assert rule == "|---|---|---|"
    assert pending == "| timers pending in GOALWATCH_TIMERS | 1 | 100,001 |"
    assert (
        "| deadline → webhook receipt | 300 / 300 / 300 / 300 ms | 300 / 300 / 300 / 300 ms |"
        in text
    )
    assert "| of which AlertFired → webhook (notifier) | 20 / 20 / 20 / 20 ms |" in text
    assert "armed via events through ingestion and the evaluator in 50.0 s (2,000/s)" in text
    assert "load average (1/5/15 min) 1.00 1.50 2.00 → 2.00 2.50 3.00" in text


def test_memory_of_a_process_that_is_gone_is_nan() -> None:
    assert math.isnan(overdue_bench.memory_mib(2**22 + 12345))


def test_the_machine_busy_time_grows_with_work() -> None:
    before = _machine_busy_seconds()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # 0.2 s of this process's CPU
        pass
    assert _machine_busy_seconds() - before >= 0.15
