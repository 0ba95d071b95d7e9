"""The ingestion service's HTTP status codes and NATS ingest path, with a fake publisher."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient
from faststream.nats import JStream, TestNatsBroker

from goalwatch.consumers import Ack, Received, RedeliveryPolicy, Reject, Retry
from goalwatch.contracts import DeadLetter, ErrorDetail, MetricRecorded, subjects
from services.ingestion.app import IngestionSettings, create_app
from services.ingestion.intake import MessageIntake
from services.ingestion.metrics import EVENTS_ACCEPTED, EVENTS_DUPLICATE, EVENTS_REJECTED
from services.ingestion.publisher import PublishOutcome
from tests.unit.signed_in import signed_in


class FakePublisher:
    """Remembers ids like a JetStream stream's duplicate window; can fail on chosen ids."""

    def __init__(self, *, failing: set[str] | None = None) -> None:
        self.stored: list[MetricRecorded] = []
        self.failing = failing or set()
        self._seen: set[str] = set()

    async def publish_events(self, events: Sequence[MetricRecorded]) -> list[PublishOutcome]:
        outcomes = []
        for event in events:
            if event.id in self.failing:
                outcomes.append(PublishOutcome(event=event, error=TimeoutError("no PubAck")))
            elif event.id in self._seen:
                outcomes.append(PublishOutcome(event=event, duplicate=True))
            else:
                self._seen.add(event.id)
                self.stored.append(event)
                outcomes.append(PublishOutcome(event=event))
        return outcomes


LOCAL = "http://127.0.0.1"  # the services answer to loopback names only, by default


def event(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "evt-1",
        "metric": "report_rework_rate",
        "value": 0.11,
        "time": "2026-11-20T18:00:00+08:00",
        "subject": "li-na",
        "source": "his",
        **overrides,
    }


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def client(publisher: FakePublisher) -> TestClient:
    # No `with`: the lifespan (NATS connection) does not run; the fake takes the events.
    settings = IngestionSettings(ingest_max_batch=5, ingest_max_body_bytes=10_000)
    return TestClient(signed_in(create_app(settings, publisher=publisher)), base_url=LOCAL)


def counter(metric: Any, transport: str) -> float:
    value: float = metric.labels(transport=transport)._value.get()
    return value


# --- HTTP ---------------------------------------------------------------------------------


def test_single_event_accepted(client: TestClient, publisher: FakePublisher) -> None:
    before = counter(EVENTS_ACCEPTED, "http")
    response = client.post("/v1/events", json=event())
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicated": 0, "rejected": 0, "rejects": []}
    assert [e.id for e in publisher.stored] == ["evt-1"]
    assert counter(EVENTS_ACCEPTED, "http") == before + 1


def test_resend_is_duplicated(client: TestClient) -> None:
    before = counter(EVENTS_DUPLICATE, "http")
    client.post("/v1/events", json=event())
    response = client.post("/v1/events", json=[event(), event(id="evt-2")])
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert response.json()["duplicated"] == 1
    assert counter(EVENTS_DUPLICATE, "http") == before + 1


def test_partly_invalid_batch_is_200_with_rejects(client: TestClient) -> None:
    before = counter(EVENTS_REJECTED, "http")
    response = client.post(
        "/v1/events", json=[event(id="a"), event(id="b", time="2026-11-20T18:00:00")]
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["rejects"] == [
        {
            "index": 1,
            "id": "b",
            "errors": [
                {
                    "field": "time",
                    "message": "time must include a UTC offset, e.g. 2026-11-20T18:00:00+08:00",
                    "hint": "append Z for UTC, or the sender's offset such as +08:00",
                }
            ],
        }
    ]
    assert counter(EVENTS_REJECTED, "http") == before + 1


def test_all_rejected_is_422(client: TestClient, publisher: FakePublisher) -> None:
    response = client.post("/v1/events", json=[event(value="x"), event(id="b", metric="")])
    assert response.status_code == 422
    assert response.json()["rejected"] == 2
    assert [r["index"] for r in response.json()["rejects"]] == [0, 1]
    assert publisher.stored == []


def test_not_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/v1/events", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body is not valid JSON: ")


def test_empty_array_is_400(client: TestClient) -> None:
    response = client.post("/v1/events", json=[])
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Bad Request",
        "status": 400,
        "detail": "no events: the array is empty",
    }


def test_batch_too_large_is_413(client: TestClient) -> None:
    response = client.post("/v1/events", json=[event(id=str(i)) for i in range(6)])
    assert response.status_code == 413
    assert "at most 5" in response.json()["detail"]


def test_body_too_large_is_413(client: TestClient) -> None:
    response = client.post("/v1/events", json=event(labels={"pad": "x" * 20_000}))
    assert response.status_code == 413
    assert "body too large" in response.json()["detail"]


def test_unsupported_content_type_is_415(client: TestClient) -> None:
    response = client.post("/v1/events", data={"id": "a"})
    assert response.status_code == 415
    assert "application/cloudevents+json" in response.json()["detail"]


def test_cloudevents_content_types(client: TestClient, publisher: FakePublisher) -> None:
    envelope = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "his",
        "type": "goalwatch.metric.recorded.v1",
        "subject": "li-na",
        "time": "2026-11-20T18:00:00Z",
        "data": {"metric": "report_rework_rate", "value": 0.2},
    }
    one = client.post(
        "/v1/events",
        content=json.dumps(envelope),
        headers={"content-type": "application/cloudevents+json"},
    )
    batch = client.post(
        "/v1/events",
        content=json.dumps([{**envelope, "id": "ce-2"}]),
        headers={"content-type": "application/cloudevents-batch+json; charset=utf-8"},
    )
    assert (one.status_code, batch.status_code) == (200, 200)
    assert [e.id for e in publisher.stored] == ["ce-1", "ce-2"]


def test_nats_down_is_503_naming_what_was_stored() -> None:
    publisher = FakePublisher(failing={"b"})
    client = TestClient(
        signed_in(create_app(IngestionSettings(), publisher=publisher)), base_url=LOCAL
    )
    response = client.post(
        "/v1/events", json=[event(id="a"), event(id="b"), event(id="c", value="x")]
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert "Resend the request" in body["detail"]
    assert body["published"] == [{"index": 0, "id": "a"}]
    assert body["unpublished"] == [{"index": 1, "id": "b"}]
    assert [r["index"] for r in body["rejects"]] == [2]


def test_readyz_checks_only_nats(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503  # the broker is not connected in unit tests
    assert set(response.json()["checks"]) == {"nats"}


def test_openapi_documents_the_request_body(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert set(body) == {
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    }
    assert {"MetricRecorded", "MetricCloudEvent", "MetricData"} <= set(
        document["components"]["schemas"]
    )


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALWATCH_INGESTION_PORT", "9001")
    monkeypatch.setenv("GOALWATCH_INGEST_MAX_BATCH", "20")
    settings = IngestionSettings()
    assert (settings.ingestion_port, settings.ingest_max_batch) == (9001, 20)


# --- NATS ---------------------------------------------------------------------------------


POLICY = RedeliveryPolicy(max_deliver=3, first_delay=2.0, max_delay=30.0)


def intake(publisher: FakePublisher) -> MessageIntake:
    return MessageIntake(publisher=publisher, max_batch=10, policy=POLICY)


def nats_message(
    *, content_type: str | None = None, deliveries: int = 1, sequence: int | None = 7
) -> Received:
    headers = {} if content_type is None else {"Content-Type": content_type}
    return Received("ingestion", sequence, deliveries, headers)


async def test_nats_valid_events_are_stored(publisher: FakePublisher) -> None:
    body = json.dumps([event(id="a"), event(id="b")]).encode()
    verdict = await intake(publisher).handle(body, nats_message())
    assert verdict == Ack()
    assert [e.id for e in publisher.stored] == ["a", "b"]


async def test_nats_rejects_are_dead_lettered_with_each_error(publisher: FakePublisher) -> None:
    before = counter(EVENTS_REJECTED, "nats")
    body = json.dumps([event(id="a"), event(id="b", value="x")]).encode()
    verdict = await intake(publisher).handle(body, nats_message(content_type="text/plain"))
    assert [e.id for e in publisher.stored] == ["a"]
    assert isinstance(verdict, Reject)
    assert verdict.reason.startswith("1 of 2 events rejected; the other 1 were accepted: [1] ")
    assert verdict.errors == (
        ErrorDetail(
            loc="[1].value",
            msg='value must be a JSON number, not a string "x" (send the number without quotes: x)',
            event_id="b",
        ),
    )
    assert counter(EVENTS_REJECTED, "nats") == before + 1


async def test_nats_unreadable_body_is_dead_lettered(publisher: FakePublisher) -> None:
    verdict = await intake(publisher).handle(b"\xffnot json", nats_message())
    assert isinstance(verdict, Reject)
    assert verdict.reason.startswith("body is not valid UTF-8")
    assert publisher.stored == []


async def test_nats_cloudevent_header_in_any_case(publisher: FakePublisher) -> None:
    envelope = {
        "specversion": "1.0",
        "id": "ce-9",
        "source": "lms",
        "type": "goalwatch.metric.recorded.v1",
        "subject": "t-1",
        "time": "2026-11-20T18:00:00Z",
        "data": {"metric": "feedback_score", "value": 4.2},
    }
    received = Received("ingestion", 1, 1, {"content-TYPE": "application/cloudevents+json"})
    assert await intake(publisher).handle(json.dumps(envelope).encode(), received) == Ack()
    assert [e.id for e in publisher.stored] == ["ce-9"]


async def test_nats_events_not_stored_are_retried_then_dead_lettered() -> None:
    publisher = FakePublisher(failing={"a"})
    body = json.dumps(event(id="a")).encode()
    first = await intake(publisher).handle(body, nats_message(deliveries=1))
    assert first == Retry(delay=2.0, reason="1 of 1 events could not be stored: no PubAck")
    second = await intake(publisher).handle(body, nats_message(deliveries=2))
    assert isinstance(second, Retry) and second.delay == 4.0
    last = await intake(publisher).handle(body, nats_message(deliveries=3))
    assert isinstance(last, Reject)
    assert last.reason == (
        "1 of 1 events could not be stored: no PubAck; gave up after 3 deliveries"
    )
    assert last.cause == "gave-up"


async def test_nats_subscriber_is_wired_and_dead_letters_rejects(publisher: FakePublisher) -> None:
    app = signed_in(create_app(IngestionSettings(), publisher=publisher))
    broker = app.state.broker
    letters: list[DeadLetter] = []

    @broker.subscriber(
        subjects.DEADLETTER_METRICS, stream=JStream(subjects.STREAM_DEADLETTER, declare=False)
    )
    async def keep(letter: DeadLetter) -> None:
        letters.append(letter)

    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(b"{not json", subjects.METRICS_IN)
        await test_broker.publish(
            json.dumps(event(id="n-1")).encode(),
            subjects.METRICS_IN,
            headers={"Content-Type": "application/json"},
        )
    assert [e.id for e in publisher.stored] == ["n-1"]
    assert [d.reason.split(":")[0] for d in letters] == ["body is not valid JSON"]
    assert letters[0].origin_subject == subjects.METRICS_IN
    assert letters[0].payload == "{not json"
