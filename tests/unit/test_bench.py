"""The benchmark's arithmetic: percentiles and the report."""

from __future__ import annotations

import math

from goalwatch.dev.bench import Checkpointing, Latencies


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
