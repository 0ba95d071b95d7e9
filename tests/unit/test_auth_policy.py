"""Every route declares who may call it, and the answer to everyone else is right."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from goalwatch.auth.policies import PEOPLE_READ, RULES_WRITE
from goalwatch.auth.policy import Caller, Public, policy, undeclared_routes
from goalwatch.auth.principal import Kind, Principal
from goalwatch.auth.roles import Role
from goalwatch.service import service_app
from goalwatch.serving import registered_services
from goalwatch.settings import ServiceSettings
from tests.unit.signed_in import signed_in

LOCAL = "http://127.0.0.1"
SERVICES = sorted(registered_services())


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_of_every_service_declares_one_policy(service: str) -> None:
    app = registered_services()[service].document_app()
    assert undeclared_routes(app) == []
    document = app.openapi()
    guarded = False
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("x-goalwatch-access"), f"{method} {path}"
            if not operation["x-goalwatch-access"].startswith("anyone"):
                guarded = True
                # Either credential: a bearer token, or a system's API key.
                assert operation["security"] == [{"bearer": []}, {"apiKey": []}], f"{method} {path}"
                assert {"401", "403"} <= operation["responses"].keys(), f"{method} {path}"
    if not guarded:  # the console: pages and configuration only, no data
        assert "securitySchemes" not in document["components"]
        return
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"


def toy(*routes: APIRouter) -> TestClient:
    app = service_app(
        name="toy", settings=ServiceSettings(), checks={}, registry=CollectorRegistry()
    )
    for router in routes:
        app.include_router(router)
    return TestClient(app, base_url=LOCAL)


def test_a_service_with_a_route_that_declares_no_policy_refuses_to_start() -> None:
    forgotten = APIRouter()

    @forgotten.get("/v1/secrets")
    async def secrets() -> dict[str, str]:
        return {"all": "of them"}

    client = toy(forgotten)
    with pytest.raises(RuntimeError, match="GET /v1/secrets"), client:
        pass


def test_two_policies_on_one_route_are_refused_too() -> None:
    doubled = APIRouter()

    @doubled.get("/v1/both", dependencies=[Depends(RULES_WRITE), Depends(PEOPLE_READ)])
    async def both() -> None:
        return None

    assert undeclared_routes(toy(doubled).app) == ["GET /v1/both"]  # type: ignore[arg-type]


def guarded() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/rules-only")
    async def rules_only(caller: Annotated[Caller, Depends(RULES_WRITE)]) -> dict[str, object]:
        return {"who": caller.who, "org_wide": caller.org_wide}

    @router.get("/v1/people-too")
    async def people_too(caller: Annotated[Caller, Depends(PEOPLE_READ)]) -> dict[str, object]:
        return {"who": caller.who, "org_wide": caller.org_wide}

    @router.get("/v1/open", dependencies=[Depends(Public("a test"))])
    async def open_route() -> dict[str, str]:
        return {"open": "yes"}

    return router


def test_without_a_token_the_answer_is_401_with_a_challenge() -> None:
    client = toy(guarded())
    answer = client.get("/v1/rules-only")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="goalwatch"'
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "Authorization: Bearer" in answer.json()["detail"]
    assert client.get("/v1/open").json() == {"open": "yes"}


def test_a_bad_token_is_401_invalid_token_saying_why() -> None:
    answer = toy(guarded()).get("/v1/rules-only", headers={"Authorization": "Bearer abc"})
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert "GOALWATCH_OIDC_ISSUER" in answer.json()["detail"]


EMPLOYEE = Principal(subject="s-1", kind=Kind.PERSON, person_id="chen-jie")
HR = Principal(
    subject="s-2", kind=Kind.PERSON, person_id="wang-fang", roles=frozenset({Role.HR_ADMIN})
)
PUBLISHER = Principal(
    subject="s-3", kind=Kind.SYSTEM, client_id="his", roles=frozenset({Role.PUBLISHER})
)


def test_a_caller_without_the_role_is_403_naming_what_it_needs() -> None:
    client = toy(guarded())
    signed_in(client.app, EMPLOYEE)  # type: ignore[arg-type]
    refused = client.get("/v1/rules-only")
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith(
        "person:chen-jie may not change rules: it needs role hr_admin."
    )
    assert client.get("/v1/people-too").json() == {"who": "person:chen-jie", "org_wide": False}


def test_a_role_sees_org_wide_and_a_system_is_no_person() -> None:
    client = toy(guarded())
    signed_in(client.app, HR)  # type: ignore[arg-type]
    assert client.get("/v1/people-too").json() == {"who": "person:wang-fang", "org_wide": True}
    signed_in(client.app, PUBLISHER)  # type: ignore[arg-type]
    assert client.get("/v1/people-too").status_code == 403


def test_a_policy_describes_who_may_call_in_words() -> None:
    assert policy("x", Role.HR_ADMIN, Role.OPERATOR, people=True).describe() == (
        "role hr_admin or role operator or a signed-in person, within their own part of the "
        "org chart"
    )
