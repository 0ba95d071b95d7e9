"""`goalwatch bench --mode evaluator` and the pipeline mode with generated rules and a steady
rate, end to end on a tiny size: they run and count what they should. No timing is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from goalwatch.dev import bench, evaluator_bench

pytestmark = pytest.mark.integration


def test_the_evaluator_mode_evaluates_every_stage_on_the_same_events() -> None:
    # 150 events over 50 subjects: three days each, so breaching subjects (0, 10, ... 40, all
    # reporting metric 0 of two) complete their streak on the last day.
    result = evaluator_bench.run(
        rule_counts=[1, 12], subjects=50, events=150, evaluator_events=150, dense=False,
        progress=lambda _: None,
    )  # fmt: skip
    one, twelve = result.results
    assert (one.case.per_event, twelve.case.per_event) == (1, 10)
    assert one.verdicts == 150
    # Metric 0 has 10 rules, metric 1 the other 2; 25 subjects report each.
    assert twelve.verdicts == 3 * (25 * 10 + 25 * 2)
    # One threshold hash per subject's metric, holding the state of each rule it reached.
    assert twelve.redis_keys == 25 + 25
    # Five breaching subjects: one alert each per rule of their metric.
    assert (one.published, twelve.published) == (5, 5 * 10)
    assert result.ceiling_before > 0 and result.ceiling_after > 0
    assert "| 12 rules, 10 per event |" in result.report()


def test_the_pipeline_mode_with_generated_rules_times_alerts_to_the_webhook() -> None:
    result = bench.run(
        subjects_count=50, days=3, transport="http", rules_dir=Path("rules"),
        generated_rules=20, rate=300, steady_seconds=2,
    )  # fmt: skip
    assert result.fired.count == 5  # one alert per breaching subject
    assert result.steady is not None
    # 600 events in blocks of 100 subjects x 3 days: two blocks, 20 breaching subjects.
    assert result.steady.events == 600
    assert result.steady.delivered.count == 20 and result.steady.missing == 0
    assert "event → webhook received" in result.report()
