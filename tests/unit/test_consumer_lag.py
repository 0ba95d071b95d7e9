"""Consumer lag gauges: JetStream's counts kept per stream and consumer, read without NATS."""

from __future__ import annotations

import asyncio

from nats.js.api import ConsumerConfig, ConsumerInfo
from prometheus_client import CollectorRegistry, generate_latest

from goalwatch.consumer_lag import ConsumerLag, consumer_lag, refresh

PENDING = "goalwatch_consumer_pending_messages"
ACK_PENDING = "goalwatch_consumer_ack_pending_messages"
REDELIVERED = "goalwatch_consumer_redelivered_messages"
FAILURES = "goalwatch_consumer_info_failures_total"
LABELS = {"stream": "GOALWATCH_METRICS", "consumer": "evaluator"}


def info(pending: int, ack_pending: int, redelivered: int = 0) -> ConsumerInfo:
    return ConsumerInfo(
        stream_name=LABELS["stream"],
        name=LABELS["consumer"],
        config=ConsumerConfig(durable_name=LABELS["consumer"]),
        created=0,
        num_pending=pending,
        num_ack_pending=ack_pending,
        num_redelivered=redelivered,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_latest_counts_are_exported_per_stream_and_consumer() -> None:
    registry = CollectorRegistry()
    lag = ConsumerLag()
    registry.register(lag)
    lag.record("GOALWATCH_METRICS", "evaluator", info(12, 3, 1))
    lag.record("GOALWATCH_ALERTS", "notifier-alerts", info(0, 0))
    assert registry.get_sample_value(PENDING, LABELS) == 12
    assert registry.get_sample_value(ACK_PENDING, LABELS) == 3
    assert registry.get_sample_value(REDELIVERED, LABELS) == 1
    alerts = {"stream": "GOALWATCH_ALERTS", "consumer": "notifier-alerts"}
    assert registry.get_sample_value(PENDING, alerts) == 0
    lag.record("GOALWATCH_METRICS", "evaluator", info(2, 0))
    assert registry.get_sample_value(PENDING, LABELS) == 2


def test_a_stale_reading_is_left_out_rather_than_shown_as_current() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    lag = ConsumerLag(stale_after=30, clock=clock)
    registry.register(lag)
    lag.record("GOALWATCH_METRICS", "evaluator", info(5, 1))
    clock.now += 30
    assert registry.get_sample_value(PENDING, LABELS) == 5
    clock.now += 1
    assert registry.get_sample_value(PENDING, LABELS) is None
    # The families stay declared, so /metrics still says what they are.
    assert f"# TYPE {PENDING} gauge" in generate_latest(registry).decode()


def test_one_lag_per_registry_however_many_apps_are_built_on_it() -> None:
    registry = CollectorRegistry()
    assert consumer_lag(registry) is consumer_lag(registry)
    assert consumer_lag(registry) is not consumer_lag(CollectorRegistry())


async def test_a_read_that_fails_or_hangs_is_counted_and_keeps_the_last_counts() -> None:
    registry = CollectorRegistry()
    lag, failures = consumer_lag(registry)
    answers: dict[str, ConsumerInfo | Exception | None] = {"evaluator": info(7, 2)}
    hung = asyncio.Event()

    async def info_of(stream: str, consumer: str) -> ConsumerInfo:
        answer = answers[consumer]
        if answer is None:
            await hung.wait()  # never set: only the timeout ends it
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, ConsumerInfo)
        return answer

    await refresh(lag, failures, [("GOALWATCH_METRICS", "evaluator")], info_of=info_of, within=1)
    assert registry.get_sample_value(PENDING, LABELS) == 7
    for answer in (ConnectionError("nats down"), None):
        answers["evaluator"] = answer
        await refresh(
            lag, failures, [("GOALWATCH_METRICS", "evaluator")], info_of=info_of, within=0.01
        )
    assert registry.get_sample_value(FAILURES, LABELS) == 2
    assert registry.get_sample_value(PENDING, LABELS) == 7


def test_fresh_readings_come_with_their_age_and_stale_ones_are_left_out() -> None:
    clock = Clock()
    lag = ConsumerLag(stale_after=30.0, clock=clock)
    lag.record("GOALWATCH_METRICS", "evaluator-p1", info(5, 2, 1))
    clock.now += 20
    lag.record("GOALWATCH_ALERTS", "notifier-alerts", info(0, 0))
    clock.now += 15
    # The first reading is 35 s old (stale); the second 15 s.
    assert [(s, c, r.pending, age) for s, c, r, age in lag.fresh()] == [
        ("GOALWATCH_ALERTS", "notifier-alerts", 0, 15.0)
    ]
