"""Consumer lag as metrics: what a service's durable consumers still owe, read from JetStream.

JetStream counts, per durable consumer, the messages not yet delivered (``num_pending``),
those delivered and not yet acknowledged (``num_ack_pending``) and those being redelivered
(``num_redelivered``). A service asks for its own consumers' counts every few seconds and keeps
the answers; ``/metrics`` reads what was kept and never waits on NATS. Counts older than
:attr:`ConsumerLag.stale_after` are left out rather than shown as current.

Every replica of a service reads the same consumers, so each exports the same counts: take
``max by (stream, consumer)`` across replicas, never ``sum``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Depends
from nats.js.api import ConsumerInfo
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from goalwatch.auth.policies import CONSUMERS_READ

logger = logging.getLogger(__name__)

ConsumerInfoOf = Callable[[str, str], Awaitable[ConsumerInfo]]
"""Reads one durable consumer's info: ``(stream, consumer) -> ConsumerInfo``."""


@dataclass(frozen=True)
class Reading:
    """One consumer's counts, and when (monotonic seconds) they were read."""

    pending: int
    ack_pending: int
    redelivered: int
    at: float


_FAMILIES = (
    (
        "goalwatch_consumer_pending_messages",
        "Messages of the stream the durable consumer has not delivered yet (JetStream "
        "num_pending): its backlog.",
        "pending",
    ),
    (
        "goalwatch_consumer_ack_pending_messages",
        "Messages delivered to the durable consumer and not acknowledged yet (JetStream "
        "num_ack_pending): work in flight.",
        "ack_pending",
    ),
    (
        "goalwatch_consumer_redelivered_messages",
        "Messages delivered to the durable consumer more than once and not acknowledged yet "
        "(JetStream num_redelivered).",
        "redelivered",
    ),
)


class ConsumerLag(Collector):
    """The latest counts of a service's durable consumers, as gauges labelled ``stream`` and
    ``consumer``; a reading older than ``stale_after`` seconds is not exported."""

    def __init__(
        self, *, stale_after: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stale_after = stale_after
        self._clock = clock
        self._readings: dict[tuple[str, str], Reading] = {}

    def record(self, stream: str, consumer: str, info: ConsumerInfo) -> None:
        """Keep ``info``'s counts as the latest of ``consumer`` on ``stream``."""
        self._readings[(stream, consumer)] = Reading(
            pending=info.num_pending or 0,
            ack_pending=info.num_ack_pending or 0,
            redelivered=info.num_redelivered or 0,
            at=self._clock(),
        )

    def fresh(self) -> list[tuple[str, str, Reading, float]]:
        """The readings not yet stale, as ``(stream, consumer, reading, age in seconds)``,
        ordered by stream and consumer (what ``GET /v1/<service>/consumers`` answers)."""
        now = self._clock()
        return [
            (stream, consumer, reading, now - reading.at)
            for (stream, consumer), reading in sorted(self._readings.items())
            if now - reading.at <= self.stale_after
        ]

    def collect(self) -> Iterable[Metric]:
        """The fresh readings, one sample per consumer in each family."""
        now = self._clock()
        fresh = {
            key: reading
            for key, reading in self._readings.items()
            if now - reading.at <= self.stale_after
        }
        for name, documentation, attribute in _FAMILIES:
            family = GaugeMetricFamily(name, documentation, labels=["stream", "consumer"])
            for (stream, consumer), reading in sorted(fresh.items()):
                family.add_metric([stream, consumer], getattr(reading, attribute))
            yield family

    def describe(self) -> Iterable[Metric]:
        """The families, without samples: registering does not read the cache."""
        for name, documentation, _ in _FAMILIES:
            yield GaugeMetricFamily(name, documentation, labels=["stream", "consumer"])


_LAGS: WeakKeyDictionary[CollectorRegistry, tuple[ConsumerLag, Counter]] = WeakKeyDictionary()


def consumer_lag(registry: CollectorRegistry) -> tuple[ConsumerLag, Counter]:
    """The :class:`ConsumerLag` of ``registry`` and its failure counter
    ``goalwatch_consumer_info_failures_total{stream, consumer}``, registered once however
    many apps are built on the registry."""
    found = _LAGS.get(registry)
    if found is None:
        lag = ConsumerLag()
        registry.register(lag)
        failures = Counter(
            "goalwatch_consumer_info_failures_total",
            "Reads of a durable consumer's counts from JetStream that failed or timed out; "
            "the consumer's lag gauges go missing once its last reading is stale.",
            ["stream", "consumer"],
            registry=registry,
        )
        found = (lag, failures)
        _LAGS[registry] = found
    return found


async def refresh(
    lag: ConsumerLag,
    failures: Counter,
    consumers: Sequence[tuple[str, str]],
    *,
    info_of: ConsumerInfoOf,
    within: float,
) -> None:
    """Read every ``(stream, consumer)`` once, concurrently, each within ``within`` seconds."""

    async def one(stream: str, consumer: str) -> None:
        try:
            async with asyncio.timeout(within):
                info = await info_of(stream, consumer)
        except Exception as exc:  # NATS down or slow: the reading ages, and a counter says so
            failures.labels(stream=stream, consumer=consumer).inc()
            logger.debug("consumer %s on %s: no counts (%r)", consumer, stream, exc)
            return
        lag.record(stream, consumer, info)

    await asyncio.gather(*(one(stream, consumer) for stream, consumer in consumers))


async def watch(
    lag: ConsumerLag,
    failures: Counter,
    consumers: Sequence[tuple[str, str]],
    *,
    info_of: ConsumerInfoOf,
    every: float,
) -> None:
    """Refresh the counts of ``consumers`` every ``every`` seconds until cancelled.

    Each read gets at most ``every`` seconds; a reading is stale after three rounds.
    """
    lag.stale_after = 3 * every
    while True:
        await refresh(lag, failures, consumers, info_of=info_of, within=every)
        await asyncio.sleep(every)


class ConsumerLagRead(BaseModel):
    """One durable consumer's backlog, as last read from JetStream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str = Field(description="The stream it reads, e.g. GOALWATCH_ALERTS.")
    consumer: str = Field(description="The durable consumer's name.")
    pending: int = Field(description="Messages not delivered yet (its backlog, the lag).")
    ack_pending: int = Field(description="Delivered and not acknowledged yet (in flight).")
    redelivered: int = Field(description="Delivered more than once and not acknowledged yet.")
    age_seconds: float = Field(description="How long ago JetStream was asked.")


class ConsumersRead(BaseModel):
    """``GET /v1/<service>/consumers`` response."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str = Field(description="The service whose consumers these are.")
    every_seconds: float = Field(
        description="How often the counts are read (GOALWATCH_CONSUMER_LAG_SECONDS)."
    )
    consumers: list[ConsumerLagRead] = Field(
        description="Its durable consumers by stream and name; one whose counts could not be "
        "read for three rounds is left out (goalwatch_consumer_info_failures_total says why)."
    )


def consumers_router(service: str, lag: ConsumerLag, *, every: float) -> APIRouter:
    """``GET /v1/<service>/consumers``: the counts ``/metrics`` exports, as JSON for people.

    Each service answers for its own consumers under its own path, so that one Ingress host
    routes each path to the service that knows (every replica answers the same)."""
    router = APIRouter(tags=["operations"])

    @router.get(
        f"/v1/{service}/consumers",
        summary=f"Backlog of {service}'s durable consumers (pending, in flight, redelivered)",
        dependencies=[Depends(CONSUMERS_READ)],
    )
    async def consumers() -> ConsumersRead:
        return ConsumersRead(
            service=service,
            every_seconds=every,
            consumers=[
                ConsumerLagRead(
                    stream=stream,
                    consumer=consumer,
                    pending=reading.pending,
                    ack_pending=reading.ack_pending,
                    redelivered=reading.redelivered,
                    age_seconds=round(age, 3),
                )
                for stream, consumer, reading, age in lag.fresh()
            ],
        )

    return router
