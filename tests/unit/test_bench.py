"""The benchmark's arithmetic: percentiles and the report."""

from __future__ import annotations

import math

from goalwatch.dev.bench import Latencies


def test_percentiles_in_milliseconds() -> None:
    summary = Latencies.of([n / 1000 for n in range(1, 101)])  # 1 ms .. 100 ms
    assert summary.count == 100
    assert (round(summary.p50), round(summary.p95), round(summary.p99)) == (50, 95, 99)
    assert summary.max == 100
    assert summary.row() == "50 / 95 / 99 / 100 ms"


def test_a_single_sample_and_none() -> None:
    assert Latencies.of([0.25]).p99 == 250
    assert math.isnan(Latencies.of([]).p50)
