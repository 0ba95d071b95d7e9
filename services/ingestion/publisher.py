"""Storing accepted events in JetStream, de-duplicated by event id."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from faststream.nats import NatsBroker

from goalwatch.consumers import provisioned
from goalwatch.contracts import MetricRecorded, subjects


@dataclass(frozen=True)
class PublishOutcome:
    """What JetStream said about one event: stored, a duplicate, or an error."""

    event: MetricRecorded
    duplicate: bool = False
    error: Exception | None = None

    @property
    def stored(self) -> bool:
        """Whether the event is in the stream now (newly, or from an earlier send)."""
        return self.error is None


class Publisher(Protocol):
    """Where ingestion puts what it has validated; a fake stands in for it in unit tests."""

    async def publish_events(self, events: Sequence[MetricRecorded]) -> list[PublishOutcome]:
        """Store ``events``; one outcome per event, in order. Never raises for one event."""
        ...


class NatsPublisher:
    """Publishes to JetStream through a FastStream broker."""

    def __init__(self, broker: NatsBroker, *, timeout: float) -> None:
        self._publisher = broker.publisher(
            subjects.METRICS_RECORDED,
            stream=provisioned(subjects.STREAM_METRICS),
            schema=MetricRecorded,
            title="ingestion:" + subjects.METRICS_RECORDED,
            description="Every valid metric event, once per event id, for the evaluator.",
        )
        self._timeout = timeout

    async def publish_events(self, events: Sequence[MetricRecorded]) -> list[PublishOutcome]:
        """Publish all events concurrently: awaiting each PubAck in turn is ~10x slower."""
        results = await asyncio.gather(
            *(self._publish(event) for event in events), return_exceptions=True
        )
        outcomes: list[PublishOutcome] = []
        for event, result in zip(events, results, strict=True):
            if isinstance(result, Exception):
                outcomes.append(PublishOutcome(event=event, error=result))
            elif isinstance(result, BaseException):
                raise result  # cancellation: not an outcome of this event
            else:
                outcomes.append(PublishOutcome(event=event, duplicate=result))
        return outcomes

    async def _publish(self, event: MetricRecorded) -> bool:
        ack = await self._publisher.publish(
            event.model_dump_json(),
            # JetStream drops a second message with the same Nats-Msg-Id within the stream's
            # duplicate window, so a resent event is stored, and evaluated, once.
            headers={"Nats-Msg-Id": event.id, "content-type": "application/json"},
            stream=subjects.STREAM_METRICS,
            timeout=self._timeout,
        )
        return bool(ack.duplicate)
