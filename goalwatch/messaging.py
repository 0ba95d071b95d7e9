"""JetStream streams and the broker every service uses.

Streams are provisioned once, here, with ``ensure_streams``; subscribers refer to them with
``declare=False`` (see :mod:`goalwatch.consumers`) so no service silently re-creates a stream
with a different configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import nats
from faststream.nats import NatsBroker
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from goalwatch.consumers import ConsumerSpec
from goalwatch.contracts import subjects
from goalwatch.timers import TIMERS_STREAM

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
        name=subjects.STREAM_GOALS,
        description="Changes to the goal graph: goals created, updated, checked in, re-linked.",
        subjects=[subjects.GOALS_ALL],
        storage=StorageType.FILE,
        max_age=365 * _DAY,
        # An event relayed again from the outbox after a failed publish is stored once.
        duplicate_window=_DAY,
    ),
    StreamConfig(
        name=subjects.STREAM_PEOPLE,
        description="Changes to people and org units: each record as stored, with its version.",
        subjects=[subjects.PERSON_CHANGED, subjects.ORG_UNIT_CHANGED],
        storage=StorageType.FILE,
        # No age limit (0: none): it is the record of the directory, from which goals
        # rebuilds its store, and a person unchanged for years must still be in it.
        max_age=0,
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
    StreamConfig(
        name=subjects.STREAM_RULES,
        description="Every version of every rule: who changed it, when, why, and what it says.",
        subjects=[subjects.RULES_ALL],
        storage=StorageType.FILE,
        # The history is the audit trail and what rollbacks restore: kept whole, per rule.
        max_age=0,
        max_msgs_per_subject=-1,
        deny_delete=True,
    ),
    # Durable timers: message schedules, bounded by the TTL of what they fire (timers.py).
    TIMERS_STREAM,
)


async def ensure_streams(
    nats_url: str,
    *,
    consumers: Sequence[ConsumerSpec] = (),
    metrics_retention: timedelta | None = None,
) -> None:
    """Create the goalwatch streams and ``consumers``, or update them to these settings;
    ``metrics_retention`` replaces the 30 days metric events are kept."""
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        for config in STREAMS:
            if config.name == subjects.STREAM_METRICS and metrics_retention is not None:
                config = replace(config, max_age=metrics_retention.total_seconds())
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
