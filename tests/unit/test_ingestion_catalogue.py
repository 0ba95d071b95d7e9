"""Ingestion serves the metric catalogue and enforces it on every event, HTTP and NATS alike."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from goalwatch.catalogue import CatalogueLoadError, parse_catalogue
from goalwatch.consumers import Ack, Reject
from goalwatch.contracts import ErrorDetail
from services.ingestion.app import SERVICE, IngestionSettings, create_app
from services.ingestion.intake import MessageIntake, UncataloguedLog
from services.ingestion.metrics import EVENTS_UNCATALOGUED
from services.ingestion.validation import EventLimits
from tests.unit.signed_in import signed_in
from tests.unit.test_ingestion_service import LOCAL, FakePublisher, event, nats_message

CATALOGUE = parse_catalogue(
    """\
customer_visits:
  description: Customer visits a rep made that day.
  unit: count
  min: 0
  sources: [crm]
  cadence: 1d
  owner: sales-operations
  labels:
    region: any
    channel: [phone, visit]
report_rework_rate:
  description: Share of a doctor's reports sent back for rework that day.
  unit: ratio
  min: 0
  max: 1
  sources: [his]
  cadence: 1d
  owner: radiology-quality
""",
    file="metrics.yaml",
)


def visit(**overrides: Any) -> dict[str, Any]:
    return event(**{"metric": "customer_visits", "value": 3, "source": "crm", **overrides})


def client_for(publisher: FakePublisher, **settings: Any) -> TestClient:
    app = signed_in(
        create_app(IngestionSettings(**settings), publisher=publisher, catalogue=CATALOGUE)
    )
    return TestClient(app, base_url=LOCAL)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(publisher: FakePublisher) -> TestClient:
    return client_for(publisher)


def uncatalogued(source: str, metric: str, what: str) -> float:
    value: float = EVENTS_UNCATALOGUED.labels(source=source, metric=metric, what=what)._value.get()
    return value


# --- GET /v1/metrics ----------------------------------------------------------------------


def test_the_catalogue_is_served_as_json(client: TestClient) -> None:
    answer = client.get("/v1/metrics")
    assert answer.status_code == 200
    assert answer.json() == CATALOGUE.model.model_dump(mode="json")
    assert [m["name"] for m in answer.json()["metrics"]] == [
        "customer_visits",
        "report_rework_rate",
    ]


def test_one_metric_is_served_and_an_unknown_one_suggests_the_closest(client: TestClient) -> None:
    answer = client.get("/v1/metrics/customer_visits")
    assert answer.status_code == 200
    assert answer.json()["labels"] == {"region": None, "channel": ["phone", "visit"]}
    assert client.get("/v1/metrics/headcount").json()["detail"] == (
        "unknown metric 'headcount'; GET /v1/metrics lists every catalogued metric"
    )
    missing = client.get("/v1/metrics/customer_visitz")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["detail"] == (
        "unknown metric 'customer_visitz' — did you mean 'customer_visits'? "
        "GET /v1/metrics lists every catalogued metric"
    )


def test_the_openapi_document_describes_the_catalogue(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    listed = document["paths"]["/v1/metrics"]["get"]["responses"]["200"]
    assert listed["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MetricCatalogue"
    }
    assert "404" in document["paths"]["/v1/metrics/{name}"]["get"]["responses"]
    assert "catalogue" in document["paths"]["/v1/events"]["post"]["description"]


def test_the_shipped_catalogue_is_read_from_the_setting(tmp_path: Path) -> None:
    app = signed_in(create_app(IngestionSettings(), publisher=FakePublisher()))  # shipped
    names = [
        m["name"] for m in TestClient(app, base_url=LOCAL).get("/v1/metrics").json()["metrics"]
    ]
    assert "report_rework_rate" in names
    bad = tmp_path / "metrics.yaml"
    bad.write_text("x:\n  unit: count\n", encoding="utf-8")
    settings = IngestionSettings(catalogue_file=bad)
    with pytest.raises(CatalogueLoadError) as caught:
        create_app(settings, publisher=FakePublisher())
    message = SERVICE.explain_startup_error(caught.value, settings)
    assert message is not None
    assert message.splitlines()[0] == (
        f"ingestion cannot start: 4 errors in the metric catalogue {bad} "
        "(set by GOALWATCH_CATALOGUE_FILE):"
    )
    assert f"  {bad}:1: x.description: required field is missing" in message


# --- enforced on POST /v1/events ----------------------------------------------------------


def test_an_unknown_metric_is_rejected_naming_the_closest_and_the_catalogue(
    client: TestClient, publisher: FakePublisher
) -> None:
    answer = client.post(
        "/v1/events", json=[visit(id="a"), visit(id="b", metric="customer_visitz"), visit(id="c")]
    )
    assert answer.status_code == 200
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["rejects"] == [
        {
            "index": 1,
            "id": "b",
            "errors": [
                {
                    "field": "metric",
                    "message": "unknown metric 'customer_visitz' — did you mean "
                    "'customer_visits'? see GET /v1/metrics",
                    "hint": "catalogued: customer_visits, report_rework_rate; a new metric is "
                    "added to catalogue/metrics.yaml in the goalwatch repository",
                }
            ],
        }
    ]
    assert [e.id for e in publisher.stored] == ["a", "c"]


def test_an_unknown_metric_with_nothing_close_still_points_to_the_catalogue(
    client: TestClient,
) -> None:
    answer = client.post("/v1/events", json=visit(metric="headcount"))
    assert answer.status_code == 422
    [error] = answer.json()["rejects"][0]["errors"]
    assert error["message"] == "unknown metric 'headcount': see GET /v1/metrics"
    assert error["hint"].startswith("catalogued: customer_visits, report_rework_rate;")


def test_a_value_out_of_range_is_rejected(client: TestClient) -> None:
    answer = client.post("/v1/events", json=event(value=11))
    assert answer.status_code == 422
    [error] = answer.json()["rejects"][0]["errors"]
    assert error == {
        "field": "value",
        "message": "value 11 is outside the range of report_rework_rate: from 0 to 1 (ratio); "
        "see GET /v1/metrics/report_rework_rate",
        "hint": "check the unit: a ratio is a fraction, e.g. 0.11 for 11%",
    }


def test_labels_not_catalogued_are_rejected(client: TestClient) -> None:
    answer = client.post(
        "/v1/events", json=visit(labels={"regoin": "north", "channel": "fax", "region": "x"})
    )
    assert answer.status_code == 422
    errors = answer.json()["rejects"][0]["errors"]
    assert errors[0]["hint"] == (
        "leave the label out, or have it added to the metric's labels in "
        "catalogue/metrics.yaml in the goalwatch repository"
    )
    assert [(e["field"], e["message"]) for e in errors] == [
        (
            "labels.regoin",
            "label 'regoin' is not catalogued for customer_visits — did you mean 'region'? "
            "(its labels: region, channel); see GET /v1/metrics/customer_visits",
        ),
        (
            "labels.channel",
            "channel 'fax' is not an allowed value for customer_visits (allowed: phone, "
            "visit); see GET /v1/metrics/customer_visits",
        ),
    ]


def test_a_cloudevent_names_the_fields_inside_data(client: TestClient) -> None:
    cloudevent = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "crm",
        "type": "goalwatch.metric.recorded.v1",
        "subject": "li-na",
        "time": "2026-11-20T18:00:00+08:00",
        "data": {"metric": "customer_visitz", "value": 1},
    }
    answer = client.post(
        "/v1/events",
        content=json.dumps(cloudevent),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert answer.status_code == 422
    assert answer.json()["rejects"][0]["errors"][0]["field"] == "data.metric"


# --- onboarding sources -------------------------------------------------------------------


def test_an_onboarding_source_may_send_uncatalogued_metrics_and_labels(
    publisher: FakePublisher, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(publisher, ingest_onboarding_sources="lms, erp")
    metric_before = uncatalogued("lms", "course_completions", "metric")
    label_before = uncatalogued("lms", "customer_visits", "label")
    events = [
        visit(id="u1", metric="course_completions", source="lms"),
        visit(id="u2", metric="course_completions", source="lms"),
        visit(id="u3", source="lms", labels={"campus": "east", "channel": "fax"}),
        visit(id="u4", source="lms", value=-1),  # out of range: rejected from any source
        visit(id="u5", metric="course_completions"),  # crm is not onboarding
    ]
    with caplog.at_level(logging.WARNING, logger="services.ingestion.intake"):
        body = client.post("/v1/events", json=events).json()
        client.post("/v1/events", json=[visit(id="u6", metric="course_completions", source="lms")])
    assert (body["accepted"], [r["index"] for r in body["rejects"]]) == (3, [3, 4])
    assert [e.id for e in publisher.stored] == ["u1", "u2", "u3", "u6"]
    # Counted per event (u1, u2, u6), per label (campus, channel).
    assert uncatalogued("lms", "course_completions", "metric") == metric_before + 3
    assert uncatalogued("lms", "customer_visits", "label") == label_before + 2
    # Logged once per metric or label, however often it comes.
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        "accepted uncatalogued metric 'course_completions' from onboarding source 'lms'; "
        "catalogue it, then take the source out of GOALWATCH_INGEST_ONBOARDING_SOURCES",
        "accepted uncatalogued label 'campus' (or its value) of metric 'customer_visits' from "
        "onboarding source 'lms'; catalogue it, then take the source out of "
        "GOALWATCH_INGEST_ONBOARDING_SOURCES",
        "accepted uncatalogued label 'channel' (or its value) of metric 'customer_visits' from "
        "onboarding source 'lms'; catalogue it, then take the source out of "
        "GOALWATCH_INGEST_ONBOARDING_SOURCES",
    ]


def test_onboarding_sources_come_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOALWATCH_INGEST_ONBOARDING_SOURCES", "crm,his")
    monkeypatch.setenv("GOALWATCH_CATALOGUE_FILE", "/etc/goalwatch/metrics.yaml")
    settings = IngestionSettings()
    assert settings.ingest_onboarding_sources == ["crm", "his"]
    assert settings.catalogue_file == Path("/etc/goalwatch/metrics.yaml")
    assert IngestionSettings.model_fields["ingest_onboarding_sources"].default_factory is list


# --- enforced on the NATS intake ----------------------------------------------------------


def intake(publisher: FakePublisher, *onboarding: str) -> MessageIntake:
    from services.ingestion.app import CONSUMER

    limits = EventLimits(catalogue=CATALOGUE, onboarding_sources=frozenset(onboarding))
    return MessageIntake(
        publisher=publisher,
        max_batch=10,
        policy=CONSUMER.policy,
        limits=limits,
        uncatalogued=UncataloguedLog(),
    )


async def test_a_nats_message_with_an_unknown_metric_is_dead_lettered_naming_it(
    publisher: FakePublisher,
) -> None:
    body = json.dumps([visit(id="a"), visit(id="b", metric="customer_visitz")]).encode()
    verdict = await intake(publisher).handle(body, nats_message())
    assert [e.id for e in publisher.stored] == ["a"]
    assert isinstance(verdict, Reject)
    assert verdict.errors == (
        ErrorDetail(
            loc="[1].metric",
            msg="unknown metric 'customer_visitz' — did you mean 'customer_visits'? see GET "
            "/v1/metrics (catalogued: customer_visits, report_rework_rate; a new metric is "
            "added to catalogue/metrics.yaml in the goalwatch repository)",
            event_id="b",
        ),
    )


async def test_a_nats_message_from_an_onboarding_source_is_stored(
    publisher: FakePublisher,
) -> None:
    body = json.dumps(visit(id="n1", metric="course_completions", source="erp")).encode()
    assert await intake(publisher, "erp").handle(body, nats_message()) == Ack()
    assert [e.id for e in publisher.stored] == ["n1"]
