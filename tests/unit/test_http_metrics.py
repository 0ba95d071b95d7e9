"""HTTP answers counted by route template and code; readiness recorded per dependency."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from goalwatch.telemetry import HttpMetrics, ops_router

REQUESTS = "goalwatch_http_requests_total"


def app_with(registry: CollectorRegistry, redis_up: list[bool]) -> FastAPI:
    async def redis() -> bool:
        return redis_up[0]

    async def nats() -> bool:
        return True

    app = FastAPI()

    @app.get("/v1/goals/{goal_id}")
    async def goal(goal_id: str) -> dict[str, str]:
        if goal_id == "broken":
            raise RuntimeError("bug")
        if goal_id == "missing":
            raise HTTPException(404)
        return {"id": goal_id}

    app.add_middleware(HttpMetrics, registry=registry)
    app.include_router(ops_router({"nats": nats, "redis": redis}, registry=registry))
    return app


def count(registry: CollectorRegistry, **labels: str) -> float | None:
    return registry.get_sample_value(REQUESTS, labels)


def test_answers_are_counted_by_route_template_method_and_code() -> None:
    registry = CollectorRegistry()
    client = TestClient(app_with(registry, [True]), raise_server_exceptions=False)
    for goal in ("g-1", "g-2", "missing", "broken"):
        client.get(f"/v1/goals/{goal}")
    client.get("/nowhere")
    route = "/v1/goals/{goal_id}"
    assert count(registry, method="GET", route=route, code="200") == 2
    assert count(registry, method="GET", route=route, code="404") == 1
    assert count(registry, method="GET", route=route, code="500") == 1
    assert count(registry, method="GET", route="unmatched", code="404") == 1
    assert count(registry, method="GET", route="/v1/goals/g-1", code="200") is None


def test_readiness_records_each_dependency() -> None:
    registry = CollectorRegistry()
    redis_up = [True]
    client = TestClient(app_with(registry, redis_up))
    assert client.get("/readyz").status_code == 200
    up = "goalwatch_dependency_up"
    assert registry.get_sample_value(up, {"dependency": "redis"}) == 1
    redis_up[0] = False
    assert client.get("/readyz").status_code == 503
    assert registry.get_sample_value(up, {"dependency": "redis"}) == 0
    assert registry.get_sample_value(up, {"dependency": "nats"}) == 1
