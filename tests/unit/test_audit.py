"""What the audit log records of a request, and what it never does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import nats.errors
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry

from goalwatch.audit import AuditTrail, act_as, stream_recorder
from goalwatch.auth.policy import Caller, Public, authenticate, policy
from goalwatch.auth.principal import Kind, Principal
from goalwatch.auth.roles import Role
from goalwatch.contracts import AuditRecorded
from services.goals.audit_api import AuditLog, AuditQuery, audit_router
from tests.unit.signed_in import signed_in as signed_in_app

LOCAL = "http://127.0.0.1"
RULES_WRITE = policy("change rules", Role.HR_ADMIN)
EVENTS = policy("publish metric events", Role.PUBLISHER, audited=False)
LINK = Public("a signed link")
HR = Principal(
    subject="s-1", kind=Kind.PERSON, roles=frozenset({Role.HR_ADMIN}), person_id="wang-fang"
)
EMPLOYEE = Principal(subject="s-2", kind=Kind.PERSON, person_id="li-lei")


def app_for(
    records: list[AuditRecorded],
    *,
    principal: Principal | None = None,
    prefix: str = "",
    trust_forwarded: bool = False,
) -> TestClient:
    """A service's routes behind the audit trail; signed in as ``principal`` (None: nobody,
    the real sign-in check answers 401)."""
    app = FastAPI()
    router = APIRouter()

    @router.post("/v1/rules/{rule_id}/rollback")
    async def rollback(
        rule_id: str, body: dict[str, str], caller: Annotated[Caller, Depends(RULES_WRITE)]
    ) -> dict[str, str]:
        return {"rule_id": rule_id}

    @router.get("/v1/rules/{rule_id}", dependencies=[Depends(RULES_WRITE)])
    async def read(rule_id: str) -> dict[str, str]:
        return {"rule_id": rule_id}

    @router.post("/v1/events", dependencies=[Depends(EVENTS)])
    async def events() -> dict[str, int]:
        return {"accepted": 1}

    @router.post("/v1/ack/{token}", dependencies=[Depends(LINK)])
    async def ack(token: str, request: Request) -> dict[str, str]:
        if token == "for-li-lei":
            act_as(request, person_id="li-lei")
        return {}

    @router.post("/v1/broken", dependencies=[Depends(RULES_WRITE)])
    async def broken() -> None:
        raise RuntimeError("a bug")

    app.include_router(router, prefix=prefix)
    if principal is not None:

        async def signed_in(request: Request) -> Principal:
            request.state.principal = principal  # as the real sign-in leaves it
            return principal

        app.dependency_overrides[authenticate] = signed_in

    async def record(entry: AuditRecorded) -> None:
        records.append(entry)

    app.add_middleware(
        AuditTrail, service="evaluator", record=record, trust_forwarded=trust_forwarded
    )
    return TestClient(app, base_url=LOCAL, raise_server_exceptions=False)


def test_a_change_is_recorded_with_who_what_when_where_but_not_its_body() -> None:
    records: list[AuditRecorded] = []
    before = datetime.now(UTC)
    answer = app_for(records, principal=HR).post(
        "/v1/rules/late-reports/rollback",
        json={"comment": "password=hunter2, salary 12000"},
        headers={"Authorization": "Bearer secret-token-value"},
    )
    assert answer.status_code == 200
    [record] = records
    assert record.service == "evaluator"
    assert (record.who, record.person_id, record.client_id) == (
        "person:wang-fang",
        "wang-fang",
        None,
    )
    assert record.action == "POST /v1/rules/{rule_id}/rollback"
    assert record.target == {"rule_id": "late-reports"}
    assert record.outcome == 200
    assert record.address == "testclient"
    assert before <= record.at <= datetime.now(UTC)
    assert answer.headers["X-Request-Id"] == record.request_id
    stored = record.model_dump_json()
    for secret in ("hunter2", "12000", "secret-token-value", "Bearer"):
        assert secret not in stored


def test_the_template_is_recorded_under_the_prefix_the_router_was_included_with() -> None:
    records: list[AuditRecorded] = []
    app_for(records, principal=HR, prefix="/api").post("/api/v1/rules/r-1/rollback", json={})
    assert [r.action for r in records] == ["POST /api/v1/rules/{rule_id}/rollback"]


def test_a_caller_without_a_token_is_recorded_as_anonymous_even_when_reading() -> None:
    records: list[AuditRecorded] = []
    client = app_for(records)
    assert client.post("/v1/rules/r-1/rollback", json={}).status_code == 401
    assert client.get("/v1/rules/r-1").status_code == 401
    assert [(r.who, r.person_id, r.action, r.outcome) for r in records] == [
        ("anonymous", None, "POST /v1/rules/{rule_id}/rollback", 401),
        ("anonymous", None, "GET /v1/rules/{rule_id}", 401),
    ]


def test_reads_are_not_recorded_refusals_are() -> None:
    records: list[AuditRecorded] = []
    assert app_for(records, principal=HR).get("/v1/rules/r-1").status_code == 200
    assert records == []
    assert app_for(records, principal=EMPLOYEE).get("/v1/rules/r-1").status_code == 403
    [refused] = records
    assert (refused.who, refused.outcome) == ("person:li-lei", 403)


def test_metric_events_are_not_recorded_but_a_refused_publisher_is() -> None:
    records: list[AuditRecorded] = []
    publisher = Principal(
        subject="his", kind=Kind.SYSTEM, roles=frozenset({Role.PUBLISHER}), client_id="his"
    )
    assert app_for(records, principal=publisher).post("/v1/events").status_code == 200
    assert records == []
    assert app_for(records, principal=HR).post("/v1/events").status_code == 403
    assert [r.outcome for r in records] == [403]


def test_a_link_is_recorded_without_its_token_as_its_person_when_known() -> None:
    records: list[AuditRecorded] = []
    client = app_for(records)
    client.post("/v1/ack/for-li-lei")
    client.post("/v1/ack/shared-link")
    assert [(r.who, r.person_id, r.target) for r in records] == [
        ("person:li-lei", "li-lei", {"token": "[redacted]"}),
        ("link", None, {"token": "[redacted]"}),
    ]
    assert all("for-li-lei" not in r.model_dump_json() for r in records)


def test_a_request_id_is_kept_when_given_plainly_and_made_otherwise() -> None:
    records: list[AuditRecorded] = []
    client = app_for(records, principal=HR)
    kept = client.post("/v1/rules/r/rollback", json={}, headers={"X-Request-Id": "req-42"})
    forged = client.post(
        "/v1/rules/r/rollback", json={}, headers={"X-Request-Id": "x\tforged line"}
    )
    assert kept.headers["X-Request-Id"] == records[0].request_id == "req-42"
    assert forged.headers["X-Request-Id"] == records[1].request_id != "x\tforged line"


def test_forwarded_for_counts_only_when_the_proxy_is_trusted() -> None:
    records: list[AuditRecorded] = []
    headers = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
    for trusted in (False, True):
        app_for(records, principal=HR, trust_forwarded=trusted).post(
            "/v1/rules/r/rollback", json={}, headers=headers
        )
    assert [r.address for r in records] == ["testclient", "203.0.113.7"]


def test_a_request_that_fails_is_recorded_as_500() -> None:
    records: list[AuditRecorded] = []
    assert app_for(records, principal=HR).post("/v1/broken").status_code == 500
    assert [(r.action, r.outcome) for r in records] == [("POST /v1/broken", 500)]


def test_a_record_nats_does_not_take_is_counted_lost_and_the_caller_never_knows() -> None:
    registry = CollectorRegistry()
    record = stream_recorder(
        NatsBroker("nats://127.0.0.1:1"), service="goals", timeout=0.2, registry=registry
    )
    entry = AuditRecorded(
        id="a1", at=datetime.now(UTC), service="goals", who="anonymous", person_id=None,
        client_id=None, action="POST /v1/goals", target={}, outcome=401, address=None,
        request_id="r1",
    )  # fmt: skip
    asyncio.run(record(entry))
    lost = registry.get_sample_value("goalwatch_audit_records_total", {"outcome": "lost"})
    assert lost == 1.0


def test_the_log_answers_503_while_nats_does_not() -> None:
    class Silent:
        async def stream_info(self, name: str) -> None:
            raise nats.errors.TimeoutError

    class Connection:
        def jetstream(self) -> Silent:
            return Silent()

    app = FastAPI()
    app.include_router(audit_router(AuditLog(lambda: Connection())))  # type: ignore[arg-type,return-value]
    signed_in_app(app, HR)
    answer = TestClient(app, base_url=LOCAL).get("/v1/audit")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]


def test_a_query_matches_who_exactly_and_action_by_any_case_text() -> None:
    record = AuditRecorded(
        id="a", at=datetime.now(UTC), service="evaluator", who="person:wang-fang",
        person_id="wang-fang", client_id=None, action="DELETE /v1/rules/{rule_id}",
        target={"rule_id": "r"}, outcome=200, address=None, request_id="r",
    )  # fmt: skip
    assert AuditQuery(who="person:wang-fang", action="delete /v1/RULES").matches(record)
    assert not AuditQuery(who="person:wang").matches(record)
    assert not AuditQuery(service="goals").matches(record)
    assert not AuditQuery(action="/v1/goals").matches(record)
