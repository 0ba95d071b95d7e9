"""An installation from before partitioning: its metrics stream has the one subject and the
evaluator's one consumer still owes events. Upgraded, ingestion adds the partition subjects
(and records their number), and the evaluator evaluates what the old consumer owed, in order,
deletes it, and only then serves the partitions: a subject's streak begun before the upgrade
completes after it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import nats
import pytest
from nats.js.api import ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from goalwatch.contracts import MetricRecorded, subjects
from goalwatch.dev.stack import Stack
from goalwatch.messaging import PARTITIONS_METADATA
from tests.integration.conftest import WebhookReceiver, stack_of_its_own
from tests.integration.helpers import post_events, rework_event, unique

pytestmark = pytest.mark.integration

DOCTOR = unique("doctor-before")


def _old_installation(stack: Stack) -> None:
    """What an earlier version left: the stream on the bare subject, consumer `evaluator`
    owing the doctor's first two days."""

    async def setup() -> None:
        nc = await nats.connect(stack.settings.nats_url)
        try:
            js = nc.jetstream()
            await js.add_stream(
                StreamConfig(
                    name=subjects.STREAM_METRICS,
                    subjects=[subjects.METRICS_RECORDED],
                    storage=StorageType.FILE,
                )
            )
            await js.add_consumer(
                subjects.STREAM_METRICS,
                ConsumerConfig(durable_name="evaluator", filter_subject=subjects.METRICS_RECORDED),
            )
            for day, value in ((1, 0.11), (2, 0.09)):
                event = MetricRecorded.model_validate(rework_event(DOCTOR, day, value))
                await js.publish(
                    subjects.METRICS_RECORDED,
                    event.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": event.id},
                )
        finally:
            await nc.close()

    asyncio.run(setup())


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver) -> Iterator[Stack]:
    with stack_of_its_own(
        tmp_path_factory, webhook, name="migration", before_services=_old_installation
    ) as running:
        yield running


async def _stream_and_consumer(stack: Stack) -> tuple[list[str], dict[str, str], bool]:
    nc = await nats.connect(stack.settings.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects.STREAM_METRICS)
        try:
            await js.consumer_info(subjects.STREAM_METRICS, "evaluator")
            old = True
        except NotFoundError:
            old = False
        return list(info.config.subjects or []), dict(info.config.metadata or {}), old
    finally:
        await nc.close()


def test_the_old_consumers_events_are_evaluated_before_the_partitions(
    upgraded: Stack, webhook: WebhookReceiver
) -> None:
    stream_subjects, metadata, old_consumer = asyncio.run(_stream_and_consumer(upgraded))
    assert stream_subjects == [subjects.METRICS_RECORDED, subjects.METRICS_RECORDED_PARTITIONS]
    assert metadata[PARTITIONS_METADATA] == "16"
    assert not old_consumer  # retired before the evaluator was ready

    # The doctor joins; day 3 arrives through the upgraded ingestion, on a partition.
    with upgraded.client(timeout=10) as http:
        response = http.post(
            f"{upgraded.settings.url('goals')}/v1/people",
            json=[{"id": DOCTOR, "name": f"Dr {DOCTOR}", "department": "radiology"}],
        )
        assert response.status_code == 200, response.text
        post_events(http, upgraded.settings.url("ingestion"), [rework_event(DOCTOR, 3, 0.12)])
    deliveries = webhook.wait_for(
        lambda calls: any(
            d.json["subject"]["id"] == DOCTOR and d.json["state"] == "firing" for d in calls
        )
    )
    [fired] = [d for d in deliveries if d.json["subject"]["id"] == DOCTOR]
    # Three consecutive days: the two the old consumer owed were evaluated first.
    assert [o["value"] for o in fired.json["history"]] == [0.11, 0.09, 0.12]
