"""Partitions of the metric events and the fair share of leased slots (pure parts)."""

from __future__ import annotations

import pytest

from goalwatch.consumers import ConsumerSpec, RedeliveryPolicy
from goalwatch.contracts import subjects
from goalwatch.partitions import fair_share, partition_specs


def test_a_subject_always_lands_on_the_same_partition_the_fnv1a_hash_names() -> None:
    # FNV-1a 32 of "" is its offset basis, of "a" 0xe40c292c: the hash nats-server's
    # partition() mapping uses, so another system can compute a subject's partition.
    assert subjects.metrics_partition("", 2**32 - 1) == 0x811C9DC5 % (2**32 - 1)
    assert subjects.metrics_partition("a", 1000) == 0xE40C292C % 1000
    assert subjects.metrics_partition("emp-42", 16) == subjects.metrics_partition("emp-42", 16)
    assert subjects.metrics_partition("emp-42", 1) == 0


def test_subjects_spread_over_every_partition() -> None:
    counts = [0] * 16
    for n in range(16_000):
        counts[subjects.metrics_partition(f"emp-{n}", 16)] += 1
    assert min(counts) > 800 and max(counts) < 1200, counts


def test_no_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        subjects.metrics_partition("emp-1", 0)


def test_the_partition_subjects_are_what_the_stream_and_its_consumers_read() -> None:
    assert subjects.metrics_partition_subject(3) == "goalwatch.metrics.recorded.v1.3"
    assert subjects.matches(subjects.METRICS_RECORDED_PARTITIONS, "goalwatch.metrics.recorded.v1.3")
    assert subjects.matches(subjects.METRICS_RECORDED_ALL, subjects.METRICS_RECORDED)
    assert subjects.matches(subjects.METRICS_RECORDED_ALL, "goalwatch.metrics.recorded.v1.3")


def test_each_partition_has_a_consumer_that_holds_at_most_one_batch() -> None:
    base = ConsumerSpec(
        name="evaluator",
        stream=subjects.STREAM_METRICS,
        subject=subjects.METRICS_RECORDED,
        policy=RedeliveryPolicy(max_deliver=3, first_delay=1, max_delay=1),
        ack_wait=30,
        batch_size=100,
    )
    specs = partition_specs(base, 3)
    assert [slot for slot, _ in specs] == ["metrics-0", "metrics-1", "metrics-2"]
    assert [spec.name for _, spec in specs] == ["evaluator-p0", "evaluator-p1", "evaluator-p2"]
    config = specs[2][1].config()
    assert config.filter_subject == "goalwatch.metrics.recorded.v1.2"
    # A new holder is never handed messages after a batch its last holder still holds.
    assert config.max_ack_pending == 100


@pytest.mark.parametrize(
    ("slots", "live", "share"), [(18, 1, 18), (18, 2, 9), (18, 3, 6), (18, 4, 5), (18, 40, 1)]
)
def test_live_replicas_together_serve_every_slot(slots: int, live: int, share: int) -> None:
    assert fair_share(slots, live) == share
    assert fair_share(slots, live) * live >= slots
