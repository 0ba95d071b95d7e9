"""Ingestion's JetStream publisher against a real nats-server: every event gets its own
outcome (stored, a duplicate, or an error), and a failure is an outcome, not an exception."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.js.api import StreamConfig

from goalwatch.contracts import MetricRecorded, subjects
from goalwatch.messaging import ensure_streams, new_broker
from services.ingestion.publisher import NatsPublisher
from tests.integration.helpers import unique
from tests.integration.test_timers import NatsServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    running = NatsServer(store=tmp_path_factory.mktemp("publisher-nats"))
    running.start()
    yield running
    assert running.process is not None
    running.process.terminate()
    running.process.wait()


@pytest.fixture
async def publisher(server: NatsServer) -> AsyncIterator[NatsPublisher]:
    await ensure_streams(server.url)
    broker = new_broker(server.url, name="publisher-test")
    sink = NatsPublisher(broker, timeout=2.0, partitions=PARTITIONS)
    await broker.start()
    yield sink
    await broker.stop()


PARTITIONS = 4


def event(n: int, run: str) -> MetricRecorded:
    return MetricRecorded(
        id=f"{run}-{n}",
        source="crm",
        metric="customer_visits",
        subject=f"emp-{n}",
        value=float(n),
        time=datetime(2026, 12, 1, tzinfo=UTC),
    )


async def test_each_event_is_stored_once_and_a_resent_one_is_a_duplicate(
    server: NatsServer, publisher: NatsPublisher
) -> None:
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    try:
        before = (await js.stream_info(subjects.STREAM_METRICS)).state.messages
        run = unique("pub")
        first = await publisher.publish_events([event(n, run) for n in range(50)])
        assert [(o.event.id, o.stored, o.duplicate) for o in first] == [
            (f"{run}-{n}", True, False) for n in range(50)
        ]
        again = await publisher.publish_events([event(7, run), event(50, run)])
        assert [(o.stored, o.duplicate) for o in again] == [(True, True), (True, False)]
        after = (await js.stream_info(subjects.STREAM_METRICS)).state.messages
        assert after - before == 51
        # Each on the partition of its subject: one subject's events keep their order.
        for n in (0, 7, 50):
            partition = subjects.metrics_partition(f"emp-{n}", PARTITIONS)
            stored = await js.get_last_msg(
                subjects.STREAM_METRICS, subjects.metrics_partition_subject(partition)
            )
            assert stored.subject == f"{subjects.METRICS_RECORDED}.{partition}"
        partitions_used = {subjects.metrics_partition(f"emp-{n}", PARTITIONS) for n in range(51)}
        assert partitions_used == set(range(PARTITIONS))
    finally:
        await nc.close()


async def test_an_event_the_stream_refuses_is_an_error_outcome_not_an_exception(
    server: NatsServer, publisher: NatsPublisher
) -> None:
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    try:
        # The subject now belongs to another stream: JetStream answers with an error for
        # each event (the expected stream does not match).
        await js.delete_stream(subjects.STREAM_METRICS)
        await js.add_stream(
            StreamConfig(name="ELSEWHERE", subjects=[subjects.METRICS_RECORDED_PARTITIONS])
        )
        outcomes = await publisher.publish_events([event(n, unique("refused")) for n in range(3)])
        assert [o.stored for o in outcomes] == [False, False, False]
        assert all(o.error is not None and not isinstance(o.error, TimeoutError) for o in outcomes)
    finally:
        await js.delete_stream("ELSEWHERE")
        await nc.close()


async def test_the_metric_events_retention_is_the_setting(server: NatsServer) -> None:
    await ensure_streams(server.url, metrics_retention=timedelta(days=90))
    nc = await nats.connect(server.url)
    try:
        info = await nc.jetstream().stream_info(subjects.STREAM_METRICS)
        assert info.config.max_age == timedelta(days=90).total_seconds()
    finally:
        await nc.close()
    await ensure_streams(server.url)  # back to the default, 30 days
