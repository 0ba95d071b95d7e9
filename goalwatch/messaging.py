"""JetStream streams and the broker every service uses.

Streams are provisioned once, here, with ``ensure_streams``; subscribers refer to them with
``declare=False`` so no service silently re-creates a stream with a different configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import nats
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from goalwatch.contracts import subjects

_DAY = timedelta(days=1).total_seconds()

STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=subjects.STREAM_INGEST,
        description="Raw metric events published on NATS, waiting for validation.",
        subjects=[subjects.METRICS_IN],
        storage=StorageType.FILE,
        max_age=7 * _DAY,
    ),
    StreamConfig(
        name=subjects.STREAM_METRICS,
        description="Validated metric events, de-duplicated by event id.",
        subjects=[subjects.METRICS_RECORDED],
        storage=StorageType.FILE,
        max_age=30 * _DAY,
        # A resent event within a day is recognised by its Nats-Msg-Id; older resends are
        # still harmless because the evaluator keys observations by event id.
        duplicate_window=_DAY,
    ),
    StreamConfig(
        name=subjects.STREAM_ALERTS,
        description="Alerts fired and resolved by the evaluator.",
        subjects=[subjects.ALERTS_FIRED, subjects.ALERTS_RESOLVED],
        storage=StorageType.FILE,
        max_age=90 * _DAY,
        duplicate_window=_DAY,
    ),
    StreamConfig(
        name=subjects.STREAM_NOTIFICATIONS,
        description="Delivery outcomes recorded by the notifier.",
        subjects=[subjects.NOTIFICATIONS_SENT],
        storage=StorageType.FILE,
        max_age=90 * _DAY,
        # Redeliveries of one alert can span half an hour of backoff; record each outcome once.
        duplicate_window=_DAY,
    ),
    StreamConfig(
        name=subjects.STREAM_DEADLETTER,
        description="Messages that could not be processed, for inspection and replay.",
        subjects=[f"{subjects.DEADLETTER_PREFIX}.>"],
        storage=StorageType.FILE,
        max_age=30 * _DAY,
        # A batch retried for minutes must not dead-letter the same message twice.
        duplicate_window=_DAY,
    ),
)


# How long one pull request may wait for its batch to fill. A request that finds the stream
# empty lingers on the server for this long and can hold back a message that arrives meanwhile
# (seen as seconds of extra latency with 5 s); short requests keep an idle pipeline prompt at
# the cost of a few empty fetches a second.
FETCH_TIMEOUT_SECONDS = 0.5


def pull_sub(batch_size: int) -> PullSub[Literal[False]]:
    """Pull-consumer settings every service uses: fetch up to ``batch_size`` at a time."""
    return PullSub(batch_size=batch_size, timeout=FETCH_TIMEOUT_SECONDS)


# How long a batch consumer keeps collecting before it handles what it has: the most latency
# batching adds when traffic is light; under load batches fill long before.
BATCH_WINDOW_SECONDS = 0.05


def pull_batch(batch_size: int) -> PullSub[Literal[True]]:
    """Pull-consumer settings for a handler that takes the fetched messages as one batch."""
    return PullSub(batch_size=batch_size, timeout=BATCH_WINDOW_SECONDS, batch=True)


@dataclass(frozen=True)
class Durable:
    """A durable pull consumer, provisioned by :func:`ensure_streams` like the streams.

    FastStream only creates a consumer that is missing; provisioning it here as well means a
    changed setting (``max_deliver``, ``ack_wait``) also reaches one that already exists.
    """

    name: str
    stream: str
    subject: str
    max_deliver: int
    ack_wait: float

    def config(self) -> ConsumerConfig:
        """The consumer's settings, for ``ensure_streams`` and the FastStream subscriber alike."""
        return ConsumerConfig(
            durable_name=self.name,
            filter_subject=self.subject,
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=self.max_deliver,
            ack_wait=self.ack_wait,
        )


@dataclass(frozen=True)
class Delivery:
    """Where a JetStream message sits in its stream, and how often it has been delivered."""

    sequence: int | None  # stream sequence: the same for every delivery, new for a republish
    count: int  # deliveries so far, this one included


def delivery(raw: Msg) -> Delivery:
    """The delivery facts of ``raw``; ``(None, 1)`` when it carries no JetStream metadata."""
    try:
        metadata = raw.metadata
        return Delivery(int(metadata.sequence.stream), int(metadata.num_delivered))
    except Exception:  # in-memory test brokers deliver plain messages
        return Delivery(None, 1)


def stream(name: str) -> JStream:
    """A FastStream handle on a stream provisioned by :func:`ensure_streams`."""
    return JStream(name, declare=False)


async def ensure_streams(nats_url: str, *, consumers: Sequence[Durable] = ()) -> None:
    """Create the goalwatch streams and ``consumers``, or update them to these settings."""
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        for config in STREAMS:
            assert config.name is not None
            try:
                await js.stream_info(config.name)
            except NotFoundError:
                await js.add_stream(config)
            else:
                await js.update_stream(config)
        for consumer in consumers:
            await js.add_consumer(consumer.stream, consumer.config())
    finally:
        await nc.close()


def new_broker(nats_url: str, *, name: str) -> NatsBroker:
    """A broker whose per-message logs are DEBUG: at INFO they halve consumer throughput."""
    return NatsBroker(
        nats_url,
        name=name,
        log_level=logging.DEBUG,
        logger=logging.getLogger(f"goalwatch.{name}.broker"),
        # Keep trying while the server restarts instead of giving up after 60 attempts.
        max_reconnect_attempts=-1,
        graceful_timeout=10,
    )
