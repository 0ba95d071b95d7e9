"""The console service: its page under a strict Content-Security-Policy, its built files, and
the configuration that tells the page where to sign in and which APIs to call."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.console.app import ConsoleSettings, create_app

LOCAL = "http://127.0.0.1"
ISSUER = "http://127.0.0.1:8005"
PAGE = '<!doctype html><script type="module" src="/assets/index-abc.js"></script>'


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "assets" / "index-abc.js").write_text("console.log(1)", encoding="utf-8")
    (tmp_path.parent / "secret.txt").write_text("not for browsers", encoding="utf-8")
    return tmp_path


def client(files: Path, **settings: object) -> TestClient:
    config = ConsoleSettings(console_files=files, oidc_issuer=ISSUER, role_grants=False, **settings)  # type: ignore[arg-type]
    return TestClient(create_app(config), base_url=LOCAL)


def test_the_page_is_served_at_the_root_and_the_callback_under_its_own_policy(built: Path) -> None:
    with client(built) as http:
        for path in ("/", "/callback"):
            answer = http.get(path)
            assert answer.status_code == 200
            assert answer.text == PAGE
            assert answer.headers["content-type"].startswith("text/html")
            assert answer.headers["cache-control"] == "no-cache"
            policy = answer.headers["content-security-policy"]
            directives = dict(d.split(" ", 1) for d in policy.split("; "))
            assert directives["script-src"] == "'self'"
            assert directives["style-src"] == "'self'"
            assert directives["frame-ancestors"] == "'none'"
            assert directives["connect-src"] == (
                f"'self' {ISSUER} http://127.0.0.1:8001 http://127.0.0.1:8002 "
                "http://127.0.0.1:8003 http://127.0.0.1:8004"
            )
            assert answer.headers["x-frame-options"] == "DENY"


def test_built_files_are_kept_by_browsers_and_nothing_outside_them_is_served(built: Path) -> None:
    with client(built) as http:
        script = http.get("/assets/index-abc.js")
        assert script.status_code == 200
        assert script.text == "console.log(1)"
        assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert http.get("/assets/missing.js").status_code == 404
        for sneaky in ("/assets/../index.html", "/assets/%2e%2e/%2e%2e/secret.txt"):
            answer = http.get(sneaky)
            assert answer.status_code == 404 or "not for browsers" not in answer.text


def test_config_names_the_provider_the_client_and_the_apis_as_browsers_reach_them(
    built: Path,
) -> None:
    with client(
        built,
        console_notifier_url="https://notifier.example.org/",
        console_oidc_issuer="https://sso.example.org/realms/hr",
    ) as http:
        answer = http.get("/config.json")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-cache"
    assert answer.json() == {
        "issuer": "https://sso.example.org/realms/hr",
        "client_id": "goalwatch-console",
        "person_claim": "preferred_username",
        "services": {
            "ingestion": "http://127.0.0.1:8001",
            "goals": "http://127.0.0.1:8002",
            "evaluator": "http://127.0.0.1:8003",
            "notifier": "https://notifier.example.org",
        },
    }


def test_without_built_files_it_says_how_to_build_them(tmp_path: Path) -> None:
    with client(tmp_path / "nothing") as http:
        page = http.get("/")
        ready = http.get("/readyz")
    assert page.status_code == 503
    assert "make console" in page.json()["detail"]
    assert ready.status_code == 503
    assert "make console" in ready.json()["checks"]["files"]
