"""With Redis unreachable, the HTTP APIs answer 503 with Retry-After, never 500."""

from __future__ import annotations

import socket

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from services.goals.app import GoalsSettings
from services.goals.app import create_app as goals_app
from services.notifier.app import NotifierSettings
from services.notifier.app import create_app as notifier_app
from tests.unit.signed_in import signed_in


def _nowhere() -> Redis:
    """A real client of a Redis that is not there: the port was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)


def _apps() -> dict[str, FastAPI]:
    return {
        "goals": goals_app(GoalsSettings.model_construct(), redis=_nowhere()),
        # A broker is built but never started: TestClient without a context manager runs no
        # lifespan, so nothing connects to NATS.
        "notifier": notifier_app(NotifierSettings.model_construct(), redis=_nowhere()),
    }


@pytest.mark.parametrize(
    ("service", "method", "path", "body"),
    [
        ("goals", "GET", "/v1/people/zhang-wei", None),
        ("goals", "GET", "/v1/people", None),
        ("goals", "POST", "/v1/people", {"id": "zhang-wei", "name": "Zhang Wei"}),
        ("notifier", "GET", "/v1/alerts", None),
    ],
)
def test_redis_down_is_503_with_retry_after(
    service: str, method: str, path: str, body: object
) -> None:
    client = TestClient(
        signed_in(_apps()[service]), base_url="http://127.0.0.1", raise_server_exceptions=False
    )
    response = client.request(method, path, json=body)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 503
    assert "redis" in problem["detail"].lower()
