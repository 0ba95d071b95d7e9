"""What every answer tells a browser: no sniffing, no framing, no referrer, HSTS over TLS, and
cross-origin calls only from the origins configured."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from goalwatch.service import service_app
from goalwatch.settings import ServiceSettings

LOCAL = "http://127.0.0.1"


def client(**settings: object) -> TestClient:
    app = service_app(
        name="toy",
        settings=ServiceSettings(**settings),  # type: ignore[arg-type]
        checks={},
        registry=CollectorRegistry(),
    )
    return TestClient(app, base_url=LOCAL)


def test_every_answer_carries_the_browser_protections() -> None:
    for answer in (client().get("/healthz"), client().get("/nowhere")):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert "strict-transport-security" not in answer.headers


def test_hsts_only_over_tls() -> None:
    answer = TestClient(client().app, base_url="https://127.0.0.1").get("/healthz")
    assert answer.headers["strict-transport-security"] == "max-age=31536000"


def test_no_origin_may_call_from_a_browser_unless_configured() -> None:
    preflight = {
        "Origin": "https://console.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    closed = client().options("/healthz", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    opened = client(cors_origins="https://console.example.com").options(
        "/healthz", headers=preflight
    )
    assert opened.status_code == 200
    assert opened.headers["access-control-allow-origin"] == "https://console.example.com"
    assert "authorization" in opened.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in opened.headers
    other = client(cors_origins="https://console.example.com").options(
        "/healthz", headers={**preflight, "Origin": "https://evil.example.org"}
    )
    assert "access-control-allow-origin" not in other.headers
