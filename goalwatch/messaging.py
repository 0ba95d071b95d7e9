"""JetStream streams and the broker every service uses.

Streams are provisioned here, with ``ensure_streams``; subscribers refer to them with
``declare=False`` (see :mod:`goalwatch.consumers`) so no service silently re-creates a stream
with a different configuration.

Each stream has one owner (:data:`goalwatch.nats_users.STREAM_OWNERS`): a service creates
and updates only the streams it owns — its NATS user may not touch the others' configuration,
since whoever may update a stream can make it copy messages in from elsewhere — and waits for
the other streams it uses until their owners have created them. The owners' dependencies have
no cycle (goals needs no other stream, ingestion only goals', and so on), so the services may
start in any order. Tools and tests provision every stream at once (no owner).

Durable consumers are provisioned here too. A new consumer that takes over the work of
others (:attr:`goalwatch.consumers.ConsumerSpec.replaces`, e.g. one consumer of several
subjects replacing one consumer per subject) starts where they left off — at the first
message one of them had not acknowledged, not at the start of the stream (everything again)
nor at its end (what was pending, lost) — and they are deleted once it exists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import nats.errors
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from goalwatch.connections import NatsAccess, NatsTarget, connect_nats, nats_security
from goalwatch.consumers import ConsumerSpec
from goalwatch.contracts import subjects
from goalwatch.nats_users import STREAM_OWNERS, user
from goalwatch.timers import TIMERS_STREAM

logger = logging.getLogger(__name__)

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
        # One subject per partition; the bare subject of the versions before partitioning
        # stays, so an upgraded stream keeps its old events readable (docs/scaling.md).
        subjects=[subjects.METRICS_RECORDED, subjects.METRICS_RECORDED_PARTITIONS],
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
    StreamConfig(
        name=subjects.STREAM_AUDIT,
        description="The audit log: who changed what, when, from where (docs/audit.md).",
        subjects=[subjects.AUDIT_ALL],
        storage=StorageType.FILE,
        # GOALWATCH_AUDIT_RETENTION replaces it; until then nothing may remove a record.
        max_age=400 * _DAY,
        deny_delete=True,
        deny_purge=True,
    ),
    # Durable timers: message schedules, bounded by the TTL of what they fire (timers.py).
    TIMERS_STREAM,
)


PARTITIONS_METADATA = "goalwatch.metrics_partitions"
"""The metrics stream's metadata key holding the number of partitions ingestion stores on."""


def start_time(at: datetime) -> datetime:
    """``at`` as a consumer's ``opt_start_time``: a microsecond earlier when it has no
    fraction of a second, because nats-py cannot read back a start time without one (the
    server echoes it in the consumer's info, and parsing that fails). Starting a microsecond
    earlier costs nothing: readers keep messages by their own time afterwards."""
    return at - timedelta(microseconds=1) if at.microsecond == 0 else at


async def stream_partitions(js: JetStreamContext) -> int | None:
    """The number of partitions ingestion stores metric events on, from the metrics stream's
    metadata; None when no partitioning version of ingestion has provisioned it yet."""
    info = await js.stream_info(subjects.STREAM_METRICS)
    value = (info.config.metadata or {}).get(PARTITIONS_METADATA)
    return int(value) if value and value.isdigit() else None


# How often a service looks again for a stream another service creates, and how often it
# says it is still waiting.
_STREAM_POLL_SECONDS = 0.5
_WAITING_LOG_SECONDS = 10.0


async def ensure_streams(
    server: NatsTarget,
    *,
    owner: str | None = None,
    consumers: Sequence[ConsumerSpec] = (),
    metrics_retention: timedelta | None = None,
    audit_retention: timedelta | None = None,
    metrics_partitions: int | None = None,
    replicas: int | None = None,
) -> None:
    """Create the goalwatch streams and ``consumers``, or update them to these settings;
    ``metrics_retention`` replaces the 30 days metric events are kept, ``audit_retention``
    the 400 days of audit records, ``replicas`` the server's default of one copy of each
    stream (consumers follow their stream's); ``metrics_partitions`` is recorded in the
    metrics stream's metadata (:data:`PARTITIONS_METADATA`), where the evaluator checks it.

    With ``owner`` (a service's name), only the streams it owns are created or updated; it
    then waits, however long it takes, until every other stream it uses exists.
    """
    nc = await connect_nats(server, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        for config in STREAMS:
            assert config.name is not None
            if owner is not None and STREAM_OWNERS[config.name] != owner:
                continue
            if config.name == subjects.STREAM_METRICS and metrics_retention is not None:
                config = replace(config, max_age=metrics_retention.total_seconds())
            if config.name == subjects.STREAM_AUDIT and audit_retention is not None:
                config = replace(config, max_age=audit_retention.total_seconds())
            if config.name == subjects.STREAM_METRICS and metrics_partitions is not None:
                config = replace(config, metadata={PARTITIONS_METADATA: str(metrics_partitions)})
            if replicas is not None:
                config = replace(config, num_replicas=replicas)
            try:
                found = await js.stream_info(config.name or "")
            except NotFoundError:
                await js.add_stream(config)
            else:
                if config.name == subjects.STREAM_METRICS and metrics_partitions is None:
                    # A tool provisioning every stream keeps what ingestion recorded there.
                    kept = {
                        key: value
                        for key, value in (found.config.metadata or {}).items()
                        if not key.startswith("_nats.")  # the server's own
                    }
                    config = replace(config, metadata=kept or None)
                await js.update_stream(config)
        if owner is not None:
            await _await_streams(js, _used_streams(owner, consumers), waiting=owner)
        for consumer in consumers:
            await ensure_consumer(js, consumer)
    except nats.errors.TimeoutError as exc:
        # A request the user may not make is dropped without an answer: it times out.
        login = server.login if isinstance(server, NatsAccess) else "the URL's login"
        raise StreamsUnavailable(
            f"JetStream did not answer while provisioning streams as {login}: the server is "
            "overloaded, or the user lacks a permission (its log then shows a 'Permissions "
            "Violation'; docs/security-nats.md lists what each user needs)"
        ) from exc
    finally:
        await nc.close()


class StreamsUnavailable(RuntimeError):
    """Streams or consumers could not be provisioned; the message says what to check."""


def _used_streams(owner: str, consumers: Sequence[ConsumerSpec]) -> list[str]:
    """The streams of others that ``owner`` reads, consumes or writes dead letters to."""
    used = user(owner)
    streams = [*used.reads, *(spec.stream for spec in consumers)]
    if used.dead_letters:
        streams.append(subjects.STREAM_DEADLETTER)
    return [s for s in dict.fromkeys(streams) if STREAM_OWNERS.get(s) != owner]


async def _await_streams(js: JetStreamContext, streams: Sequence[str], *, waiting: str) -> None:
    """Return once every one of ``streams`` exists, saying now and then which are missing."""
    missing = list(streams)
    said = 0.0
    while True:
        still: list[str] = []
        for stream in missing:
            try:
                await js.stream_info(stream)
            except NotFoundError:
                still.append(stream)
        if not still:
            return
        missing = still
        if time.monotonic() - said >= _WAITING_LOG_SECONDS:
            said = time.monotonic()
            logger.warning(
                "%s is waiting for stream(s) %s, created by %s when it starts",
                waiting,
                ", ".join(missing),
                ", ".join(sorted({STREAM_OWNERS[s] for s in missing})),
            )
        await asyncio.sleep(_STREAM_POLL_SECONDS)


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create ``spec``'s consumer, or bring the existing one to its settings; then delete the
    consumers it replaces.

    Created, it starts at :func:`takeover_start` of the consumers it replaces, or, when none
    of them exists (a new installation), at the first message of the stream: every message
    the stream holds is then new to this consumer's work. Where a consumer starts cannot
    change once it exists, so an existing one keeps its own.
    """
    config = spec.config()
    existing = await _consumer_info(js, spec.stream, spec.name)
    if existing is None:
        start = await takeover_start(js, spec.stream, spec.replaces)
        created = config
        if start is not None:
            created = replace(
                config, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
            )
        try:
            await js.add_consumer(spec.stream, created)
        except APIError:
            # Another replica starting at the same time may have created it first, starting
            # where it saw the others: then it is updated below like any existing one.
            existing = await _consumer_info(js, spec.stream, spec.name)
            if existing is None:
                raise
        else:
            if start is not None:
                logger.warning(
                    "consumer %s created at stream sequence %d of %s, taking over from %s",
                    spec.name,
                    start,
                    spec.stream,
                    ", ".join(spec.replaces),
                )
    if existing is not None:
        kept = existing.config
        await js.add_consumer(
            spec.stream,
            replace(
                config,
                deliver_policy=kept.deliver_policy,
                opt_start_seq=kept.opt_start_seq,
                opt_start_time=kept.opt_start_time,
            ),
        )
    for name in spec.replaces:
        try:
            await js.delete_consumer(spec.stream, name)
        except NotFoundError:
            continue
        logger.warning("consumer %s of %s deleted: %s does its work", name, spec.stream, spec.name)


async def takeover_start(js: JetStreamContext, stream: str, replaced: Sequence[str]) -> int | None:
    """The stream sequence at which a consumer taking over the work of the ``replaced``
    consumers of ``stream`` must start: the first message one of them still owes (not
    acknowledged, or not yet delivered). None when none of them exists.

    Messages from there on that one of them had already handled come again: the new
    consumer's handler must recognise them (the notifier's delivery claims do).
    """
    # Read before the consumers: a consumer that owes nothing of what was stored up to here
    # starts the newcomer after it, and anything stored later is after it too.
    info = await js.stream_info(stream)
    end = (info.state.last_seq or 0) + 1
    starts = [
        await _first_owed(js, stream, found, end=end)
        for found in [await _consumer_info(js, stream, name) for name in replaced]
        if found is not None
    ]
    return min(starts, default=None)


async def _first_owed(
    js: JetStreamContext, stream: str, consumer: ConsumerInfo, *, end: int
) -> int:
    """The first stream sequence ``consumer`` still owes; ``end`` if it owes nothing.

    Every message of its subjects up to its ack floor is acknowledged, so it owes the first
    one of its subjects after the floor. Not simply the floor + 1: a consumer of one subject
    keeps its floor at its own last message while others' are stored, so on a quiet subject
    floor + 1 can be days of other subjects' messages back.
    """
    floor = consumer.ack_floor.stream_seq if consumer.ack_floor else 0
    config = consumer.config
    filters = config.filter_subjects or ([config.filter_subject] if config.filter_subject else [])
    if not filters:
        return (floor or 0) + 1
    firsts: list[int] = []
    for subject in filters:
        try:
            found = await js.get_msg(stream, seq=(floor or 0) + 1, subject=subject, next=True)
        except NotFoundError:
            continue  # none of this subject after the floor: it owes nothing of it
        if found.seq is not None:
            firsts.append(found.seq)
    return min(firsts, default=end)


async def _consumer_info(js: JetStreamContext, stream: str, name: str) -> ConsumerInfo | None:
    try:
        info: ConsumerInfo = await js.consumer_info(stream, name)
    except NotFoundError:
        return None
    return info


def new_broker(server: NatsTarget, *, name: str) -> NatsBroker:
    """A broker connecting to ``server`` (with its login and TLS) whose per-message logs are
    DEBUG: at INFO they halve consumer throughput."""
    return NatsBroker(
        server if isinstance(server, str) else server.url,
        security=nats_security(server),
        name=name,
        log_level=logging.DEBUG,
        logger=logging.getLogger(f"goalwatch.{name}.broker"),
        # Keep trying while the server restarts instead of giving up after 60 attempts.
        max_reconnect_attempts=-1,
        graceful_timeout=10,
    )
