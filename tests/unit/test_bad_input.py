"""Hostile and malformed input gets a 4xx naming what was wrong, never a 5xx or a lost message."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis.aioredis
import pytest
from fastapi.testclient import TestClient

from goalwatch.consumers import Received, RedeliveryPolicy, Reject, dead_letter
from goalwatch.contracts import DeadLetter, ErrorDetail
from goalwatch.guards import BodyLimits, allowed_hosts, host_of
from goalwatch.settings import ServiceSettings
from services.goals.app import GoalsSettings
from services.goals.app import create_app as goals_app
from services.ingestion.app import IngestionSettings
from services.ingestion.app import create_app as ingestion_app
from services.ingestion.intake import MessageIntake
from services.ingestion.validation import EventLimits
from tests.unit.signed_in import signed_in
from tests.unit.test_evaluator import REPO
from tests.unit.test_evaluator import client as rules_client
from tests.unit.test_ingestion_service import FakePublisher, event

LOCAL = "http://127.0.0.1"
REPO_RULES = REPO / "rules"
JSON = {"content-type": "application/json"}
LONE = "x-\ud800"


def raw(document: Any) -> bytes:
    """JSON as a sender would write it: json.dumps escapes a lone surrogate as \\ud800."""
    return json.dumps(document).encode()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def ingestion(publisher: FakePublisher) -> TestClient:
    return TestClient(
        signed_in(ingestion_app(IngestionSettings(), publisher=publisher)),
        base_url=LOCAL,
        raise_server_exceptions=False,
    )


class AlwaysCaughtUp:
    """No NATS here: the store counts as caught up with its streams (the integration tests
    run the real recovery)."""

    confirmed = ""

    async def ready(self) -> None:
        return None


@pytest.fixture
def goals() -> TestClient:
    settings = GoalsSettings(goals_max_batch=3, http_max_body_bytes=20_000)
    return TestClient(
        signed_in(
            goals_app(settings, redis=fakeredis.aioredis.FakeRedis(), caught_up=AlwaysCaughtUp())
        ),
        base_url=LOCAL,
        raise_server_exceptions=False,
    )


def only_reject(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    (reject,) = response.json()["rejects"]
    return dict(reject)


# --- ingestion: lone surrogates and huge integers ---------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"id": LONE}, "id"),
        ({"subject": LONE}, "subject"),
        ({"source": LONE}, "source"),
        ({"labels": {"floor": LONE}}, "labels.floor"),
        ({"labels": {LONE: "3"}}, "labels.x-\\ud800"),
    ],
)
def test_a_lone_surrogate_is_rejected_naming_the_field(
    ingestion: TestClient, publisher: FakePublisher, overrides: dict[str, Any], field: str
) -> None:
    response = ingestion.post("/v1/events", content=raw(event(**overrides)), headers=JSON)
    (error, *_) = only_reject(response)["errors"]
    assert error["field"] == field
    assert "lone surrogate" in error["message"]
    assert publisher.stored == []


def test_a_huge_integer_rejects_its_event_and_not_the_others(
    ingestion: TestClient, publisher: FakePublisher
) -> None:
    body = (
        b"["
        + raw(event(id="ok"))
        + b',{"id":"big","metric":"m","value":'
        + b"7" * 5000
        + b',"time":"2026-11-20T18:00:00Z","subject":"s","source":"his"}]'
    )
    response = ingestion.post("/v1/events", content=body, headers=JSON)
    assert response.status_code == 200, response.text
    (reject,) = response.json()["rejects"]
    assert (reject["index"], reject["errors"][0]["field"]) == (1, "value")
    assert "5000 digits" in reject["errors"][0]["message"]
    assert [e.id for e in publisher.stored] == ["ok"]


def test_a_huge_integer_as_the_whole_body_is_a_reject(ingestion: TestClient) -> None:
    response = ingestion.post("/v1/events", content=b"9" * 5000, headers=JSON)
    assert response.status_code == 400
    assert "a JSON object" in response.json()["detail"]


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1"])
def test_deep_nesting_is_a_400(ingestion: TestClient, body: bytes) -> None:
    response = ingestion.post("/v1/events", content=body, headers=JSON)
    assert response.status_code == 400, response.text


# --- ingestion: size, time, content type ------------------------------------------------------


def test_an_event_too_large_for_nats_is_rejected_not_retried(
    ingestion: TestClient, publisher: FakePublisher
) -> None:
    big = event(labels={"note": "x" * 2_000_000})
    response = ingestion.post("/v1/events", content=raw([big, event(id="small")]), headers=JSON)
    assert response.status_code == 200, response.text
    (reject,) = response.json()["rejects"]
    assert "GOALWATCH_INGEST_MAX_EVENT_BYTES" in reject["errors"][0]["hint"]
    assert [e.id for e in publisher.stored] == ["small"]


def test_an_event_from_the_far_future_is_rejected(
    ingestion: TestClient, publisher: FakePublisher
) -> None:
    response = ingestion.post("/v1/events", json=event(time="2099-01-01T00:00:00Z"))
    (error,) = only_reject(response)["errors"]
    assert error["field"] == "time"
    assert "ahead of the ingestion clock" in error["message"]
    assert "GOALWATCH_INGEST_MAX_FUTURE" in error["hint"]
    assert publisher.stored == []


def test_the_future_bound_is_a_setting(publisher: FakePublisher) -> None:
    settings = IngestionSettings.model_validate({"ingest_max_future": "PT2H"})
    client = TestClient(signed_in(ingestion_app(settings, publisher=publisher)), base_url=LOCAL)
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    late = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    response = client.post("/v1/events", json=[event(id="soon", time=soon), event(time=late)])
    assert response.status_code == 200
    assert [r["index"] for r in response.json()["rejects"]] == [1]
    assert [e.id for e in publisher.stored] == ["soon"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_events_need_a_json_content_type(ingestion: TestClient, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = ingestion.post("/v1/events", content=raw(event()), headers=headers)
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"


def test_the_503_answer_carries_no_exception_text() -> None:
    publisher = FakePublisher(failing={"evt-1"})
    client = TestClient(
        signed_in(ingestion_app(IngestionSettings(), publisher=publisher)), base_url=LOCAL
    )
    response = client.post("/v1/events", json=event())
    assert response.status_code == 503
    assert "TimeoutError" not in response.text and "no PubAck" not in response.text


# --- bounded answers --------------------------------------------------------------------------


def test_answers_do_not_echo_megabytes(ingestion: TestClient) -> None:
    huge = "k" * 400_000
    batch = [event(id=huge, metric=huge, value=huge, **{huge + str(i): 1}) for i in range(5)]
    response = ingestion.post("/v1/events", content=raw(batch), headers=JSON)
    assert response.status_code == 422
    assert len(response.content) < 20_000
    assert len(response.json()["rejects"][0]["id"]) <= 200


def test_an_event_lists_a_bounded_number_of_errors(ingestion: TestClient) -> None:
    response = ingestion.post("/v1/events", json=event(labels={str(i): i for i in range(5000)}))
    errors = only_reject(response)["errors"]
    assert len(errors) == 20
    assert errors[-1]["message"].startswith("and 4981 more")


def test_goals_validation_errors_are_bounded(goals: TestClient) -> None:
    people = [{"id": "p", "name": "n", "x" * 5_000: 1}] * 3
    response = goals.post("/v1/people", json=people)
    assert response.status_code == 422
    assert len(response.content) < 2_000


# --- NATS: what HTTP refuses is dead-lettered, never raised -----------------------------------


@pytest.mark.parametrize(
    "body",
    [
        raw(event(id=LONE)),
        raw(event(labels={LONE: LONE})),
        b'{"id":"big","value":' + b"1" * 5000 + b"}",
        raw(event(time="2099-01-01T00:00:00Z")),
    ],
)
async def test_nats_bad_input_becomes_a_dead_letter(body: bytes) -> None:
    intake = MessageIntake(
        publisher=FakePublisher(),
        max_batch=10,
        policy=RedeliveryPolicy(max_deliver=5, first_delay=1, max_delay=1),
        limits=EventLimits(max_event_bytes=65536, max_future=timedelta(minutes=10)),
    )
    verdict = await intake.handle(body, Received("ingestion", 7))
    assert isinstance(verdict, Reject), verdict
    letter = dead_letter(
        origin_subject="goalwatch.metrics.in.v1",
        reason=verdict.reason,
        errors=verdict.errors,
        payload=body,
    )
    # The dead letter can be written as the JSON it is published as.
    assert DeadLetter.model_validate_json(letter.model_dump_json()).errors


def test_a_dead_letter_keeps_a_lone_surrogate_as_its_escape() -> None:
    letter = dead_letter(
        origin_subject="s",
        reason=f"bad {LONE}",
        errors=[ErrorDetail(loc=LONE, msg=LONE, event_id=LONE)],
        payload=b"{}",
    )
    assert "\\ud800" in letter.model_dump_json()


# --- goals: people ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "name", "email", "manager_id", "department"])
def test_a_lone_surrogate_in_a_person_is_a_422(goals: TestClient, field: str) -> None:
    person = {"id": "li-na", "name": "Li Na", field: "a\ud800@b"}
    response = goals.post("/v1/people", content=raw(person), headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == f"body.person.{field}"


@pytest.mark.parametrize("person_id", ["a/b", "..", ".", ".hidden", "li na", "x" * 129, "é", ""])
def test_a_person_id_outside_the_alphabet_is_refused(goals: TestClient, person_id: str) -> None:
    for person in (
        {"id": person_id, "name": "n"},
        {"id": "ok", "name": "n", "manager_id": person_id},
    ):
        response = goals.post("/v1/people", json=person)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"].startswith("body.person.")


def test_a_person_id_error_says_what_the_alphabet_is(goals: TestClient) -> None:
    response = goals.post("/v1/people", json={"id": "a/b", "name": "n"})
    assert "A-Z a-z 0-9 . _ @ -" in response.json()["detail"]


def test_a_huge_integer_in_a_person_is_a_400_saying_so(goals: TestClient) -> None:
    body = b'{"id":"p","name":"n","email":' + b"1" * 5000 + b"}"
    response = goals.post("/v1/people", content=body, headers=JSON)
    assert response.status_code == 400
    assert "4300 digits" in response.json()["detail"]


def test_goals_batches_and_bodies_are_bounded(goals: TestClient) -> None:
    people = [{"id": f"p{i}", "name": "n"} for i in range(4)]
    too_many = goals.post("/v1/people", json=people)
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["loc"] == "body.people"
    assert goals.post("/v1/people", json=[]).status_code == 422
    too_big = goals.post("/v1/people", json={"id": "p", "name": "n" * 30_000})
    assert too_big.status_code == 413
    assert "at most 20000 bytes" in too_big.json()["detail"]


def test_goals_documents_its_limits(goals: TestClient) -> None:
    document = goals.get("/openapi.json").json()
    person = document["components"]["schemas"]["PersonUpsert"]["properties"]
    assert person["id"]["maxLength"] == 128 and "pattern" in person["id"]
    assert person["email"]["anyOf"][0]["maxLength"] == 254
    operation = document["paths"]["/v1/people"]["post"]
    assert "1 to 3" in operation["description"]
    assert {"408", "413"} <= set(operation["responses"])


# --- hosts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/events", "/healthz"])
def test_a_foreign_host_is_refused(ingestion: TestClient, path: str) -> None:
    response = ingestion.post(path, json=event(), headers={"host": "evil.example"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "GOALWATCH_ALLOWED_HOSTS" in response.json()["detail"]


def test_allowed_hosts_come_from_the_setting(publisher: FakePublisher) -> None:
    settings = IngestionSettings.model_validate({"allowed_hosts": "ingest.example, *.corp.example"})
    client = TestClient(signed_in(ingestion_app(settings, publisher=publisher)), base_url=LOCAL)
    for host in ("ingest.example", "a.corp.example:8001", "localhost:8001", "[::1]:8001"):
        assert client.get("/healthz", headers={"host": host}).status_code == 200, host
    assert client.get("/healthz", headers={"host": "corp.example.evil"}).status_code == 400


def test_host_parsing() -> None:
    assert [host_of(h) for h in ("LocalHost:80", "[::1]:8001", "::1", "a.b")] == [
        "localhost",
        "::1",
        "::1",
        "a.b",
    ]
    assert allowed_hosts([], listen_host="0.0.0.0")[-1] == "0.0.0.0"
    assert ServiceSettings.model_validate({"allowed_hosts": "a, b"}).allowed_hosts == ["a", "b"]


# --- a body that stops arriving ---------------------------------------------------------------


async def test_a_body_that_stops_arriving_is_answered_408() -> None:
    sent: list[dict[str, Any]] = []
    never = asyncio.Event()
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"[1,", "more_body": True}
        await never.wait()  # the rest of the body never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    settings = IngestionSettings(http_body_timeout=0.2)
    app = signed_in(ingestion_app(settings, publisher=FakePublisher()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", b"1000"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8001),
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 408
    assert "3 bytes of the 1000" in json.loads(body)["detail"]


async def test_the_body_limit_counts_what_arrives_without_a_content_length() -> None:
    chunks = [b"x" * 600, b"x" * 600]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass

    guarded = BodyLimits(app, max_bytes=1000, timeout=5)
    with pytest.raises(Exception, match="request body too large") as caught:
        await guarded({"type": "http", "headers": []}, receive, lambda _: asyncio.sleep(0))
    assert getattr(caught.value, "status_code", None) == 413


# --- paths and rules --------------------------------------------------------------------------


def test_rules_answers_show_no_file_system_paths() -> None:
    client = rules_client(REPO_RULES)
    listed = client.get("/v1/rules")
    missing = client.get("/v1/rules/nope")
    assert listed.status_code == 200 and missing.status_code == 404
    for text in (listed.text, missing.text):
        assert str(REPO_RULES) not in text and "/" + REPO_RULES.name + "/" not in text
    assert all("/" not in rule["file"] for rule in listed.json())


def test_an_unknown_query_parameter_is_refused_naming_the_ones_the_route_takes(
    goals: TestClient, ingestion: TestClient
) -> None:
    answer = goals.get("/v1/goals", params={"ownr": "li-na"})
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert detail.startswith("unknown query parameter 'ownr'; /v1/goals takes: ")
    assert "owner" in detail
    posted = ingestion.post("/v1/events?dry_run=1", content=b"[]", headers=JSON)
    assert posted.status_code == 400
    assert "/v1/events takes: no query parameters" in posted.json()["detail"]
    # A long name is cut in the answer, as any text taken from a request.
    long = goals.get("/v1/goals", params={"x" * 5000: "1"}).json()["detail"]
    assert len(long) < 1000
