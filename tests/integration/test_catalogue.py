"""The real ingestion service serves its catalogue and enforces it over HTTP and NATS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import nats
import pytest
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from goalwatch.catalogue import load_catalogue
from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack
from tests.integration.conftest import ONBOARDING_SOURCE
from tests.integration.helpers import await_drained, rework_event, unique
from tests.integration.test_nats_ingest import dead_letter_carrying

pytestmark = pytest.mark.integration


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10.0) as client:
        yield client


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[Client]:
    client = await nats.connect(stack.settings.nats_url)
    yield client
    await client.drain()


def test_the_catalogue_is_served_as_the_file_says(stack: Stack, http: httpx.Client) -> None:
    url = stack.settings.url("ingestion")
    served = http.get(f"{url}/v1/metrics")
    assert served.status_code == 200
    expected = load_catalogue(stack.settings.catalogue_file).model.model_dump(mode="json")
    assert served.json() == expected
    one = http.get(f"{url}/v1/metrics/crm.renewal_rate").json()
    assert (one["unit"], one["min"], one["max"]) == ("ratio", 0, 1)
    assert (
        http.get(f"{url}/v1/metrics/renewal_rate")
        .json()["detail"]
        .startswith("unknown metric 'renewal_rate' — did you mean 'crm.renewal_rate'?")
    )


def test_events_the_catalogue_refuses_are_rejected_one_by_one(
    stack: Stack, http: httpx.Client
) -> None:
    doctor = unique("doctor")
    events = [
        rework_event(doctor, 1, 0.05),
        rework_event(doctor, 2, 0.05, metric="report_rework_rat"),
        rework_event(doctor, 3, 11.0),
        rework_event(doctor, 4, 0.05, labels={"dept": "radiology"}),
    ]
    answer = http.post(f"{stack.settings.url('ingestion')}/v1/events", json=events)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (1, 3)
    assert [
        (r["index"], r["errors"][0]["field"], r["errors"][0]["message"]) for r in body["rejects"]
    ] == [
        (
            1,
            "metric",
            "unknown metric 'report_rework_rat' — did you mean 'report_rework_rate'? "
            "see GET /v1/metrics",
        ),
        (
            2,
            "value",
            "value 11 is outside the range of report_rework_rate: from 0 to 1 (ratio); "
            "see GET /v1/metrics/report_rework_rate",
        ),
        (
            3,
            "labels.dept",
            "label 'dept' is not catalogued for report_rework_rate — did you mean "
            "'department'? (its labels: department, feed); see GET /v1/metrics/report_rework_rate",
        ),
    ]


async def test_a_nats_event_the_catalogue_refuses_is_dead_lettered_and_the_rest_stored(
    stack: Stack, nc: Client
) -> None:
    doctor = unique("doctor")
    good = rework_event(doctor, 1, 0.05)
    misspelt = rework_event(doctor, 2, 0.05, metric="report_rework_rat")
    js = nc.jetstream()
    await js.publish(subjects.METRICS_IN, json.dumps([good, misspelt]).encode())

    letter = json.loads((await dead_letter_carrying(js, misspelt["id"])).data)
    assert letter["errors"][0]["loc"] == "[1].metric"
    assert letter["errors"][0]["event_id"] == misspelt["id"]
    assert letter["errors"][0]["msg"].startswith(
        "unknown metric 'report_rework_rat' — did you mean 'report_rework_rate'? "
        "see GET /v1/metrics"
    )
    # The good event of the message was stored: sent again, JetStream knows its id.
    async with stack.async_client(timeout=10.0) as http:
        answer = await http.post(f"{stack.settings.url('ingestion')}/v1/events", json=good)
    assert (answer.json()["accepted"], answer.json()["duplicated"]) == (0, 1)


def uncatalogued_count(text: str, metric: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "goalwatch_events_uncatalogued_total"
                and sample.labels.get("source") == ONBOARDING_SOURCE
                and sample.labels.get("metric") == metric
            ):
                return float(sample.value)
    return 0.0


def test_an_onboarding_source_may_send_uncatalogued_metrics_over_http_and_nats(
    stack: Stack, http: httpx.Client
) -> None:
    url = stack.settings.url("ingestion")
    metric = f"course_completions_{unique('m').split('-')[1]}"
    subject = unique("teacher")
    sent = [
        {"id": f"{subject}-{n}", "metric": metric, "value": n, "subject": subject,
         "time": "2026-11-20T18:00:00+08:00", "source": ONBOARDING_SOURCE,
         "labels": {"course": "algebra"}}
        for n in (1, 2)
    ]  # fmt: skip
    answer = http.post(f"{url}/v1/events", json=sent[0])
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 1
    asyncio.run(publish(stack.settings.nats_url, sent[1]))
    # The same metric from a source not being onboarded is rejected.
    other = {**sent[0], "id": f"{subject}-3", "source": "lms"}
    refused = http.post(f"{url}/v1/events", json=other)
    assert refused.status_code == 422
    assert refused.json()["rejects"][0]["errors"][0]["field"] == "metric"

    await_drained(stack.settings.nats_url)
    # Stored over NATS as well: sent again over HTTP, JetStream knows its id.
    assert http.post(f"{url}/v1/events", json=sent[1]).json()["duplicated"] == 1
    assert uncatalogued_count(http.get(f"{url}/metrics").text, metric) == 2


async def publish(nats_url: str, event: dict[str, object]) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(subjects.METRICS_IN, json.dumps(event).encode())
    finally:
        await nc.drain()
