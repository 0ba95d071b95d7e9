"""API keys through the running services: an operator makes a publisher key with the CLI,
ingestion honours its grant event by event, the key can do nothing a publisher cannot, and
once revoked every service refuses it within the cache TTL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest

from goalwatch.dev.stack import Stack
from tests.integration.conftest import API_KEY_CACHE_TTL
from tests.integration.helpers import rework_event, unique

pytestmark = pytest.mark.integration


def goalwatch_keys(*args: str, goals: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goalwatch.cli", "keys", *args, "--goals", goals],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GOALWATCH_TOKEN": token},
    )


def crm_event(subject: str) -> dict[str, object]:
    return {"id": unique("e"), "metric": "crm.visit_logged", "value": 1, "subject": subject,
            "source": "crm", "time": datetime.now(UTC).isoformat()}  # fmt: skip


def test_a_publisher_key_works_within_its_grant_until_it_is_revoked(stack: Stack) -> None:
    goals, ingestion = stack.settings.url("goals"), stack.settings.url("ingestion")
    evaluator = stack.settings.url("evaluator")
    operator = stack.token("ops")
    made = goalwatch_keys(
        "create", "--name", "crm feed", "--role", "publisher", "--metric", "crm.visit_logged",
        "--metric", "crm.renewal_rate", "--source", "crm", "--expires", "1d",
        goals=goals, token=operator,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert key.startswith("gw_") and "will not be shown again" in made.stderr
    key_id, secret = key.split("_", 2)[1:]
    subject = unique("keyed")

    with httpx.Client(timeout=15.0) as http:
        as_bearer = {"Authorization": f"Bearer {key}"}
        # Its own metric is accepted, another system's is rejected on its own, as for a token.
        answer = http.post(f"{ingestion}/v1/events", headers=as_bearer,
                           json=[crm_event(subject), rework_event(subject, 1, 0.1, id=unique("e"))])  # fmt: skip
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert (result["accepted"], result["rejected"]) == (1, 1)
        [reject] = result["rejects"]
        assert reject["index"] == 1
        assert (
            f"system:api-key:{key_id} may not publish metric 'report_rework_rate'"
            in (reject["errors"][0]["message"])
        )
        as_header = http.post(
            f"{ingestion}/v1/events", headers={"X-API-Key": key}, json=crm_event(subject)
        )
        assert as_header.status_code == 200, as_header.text

        # Lists name the key and never show its secret or its hash.
        listed = http.get(f"{goals}/v1/api-keys", headers=stack.auth_headers("ops"))
        assert listed.status_code == 200
        [mine] = [k for k in listed.json() if k["id"] == key_id]
        assert mine["created_by"] == "person:ops" and mine["state"] == "active"
        assert mine["metrics"] == ["crm.renewal_rate", "crm.visit_logged"]
        assert secret not in listed.text and "sha256" not in listed.text
        shown = goalwatch_keys("list", goals=goals, token=operator)
        assert shown.returncode == 0 and key_id in shown.stdout and secret not in shown.stdout

        # A key can do nothing a publisher cannot: goals checks it itself, the evaluator asks.
        person = {"id": subject, "name": "x", "email": "x@example.org"}
        hr_route = http.post(f"{goals}/v1/people", headers=as_bearer, json=person)
        assert hr_route.status_code == 403, hr_route.text
        assert f"system:api-key:{key_id} may not change people" in hr_route.json()["detail"]
        assert http.get(f"{evaluator}/v1/rules", headers=as_bearer).status_code == 403
        assert http.get(f"{goals}/v1/api-keys", headers=as_bearer).status_code == 403

        revoked = goalwatch_keys("revoke", key_id, goals=goals, token=operator)
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked" in revoked.stdout

        # At once on goals, which owns the keys; within the cache TTL on the others.
        refused = http.post(f"{goals}/v1/people", headers=as_bearer, json=person)
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
        started, deadline = time.monotonic(), time.monotonic() + API_KEY_CACHE_TTL + 10
        while True:
            sent = http.post(f"{ingestion}/v1/events", headers=as_bearer, json=crm_event(subject))
            if sent.status_code == 401:
                break
            assert sent.status_code == 200, sent.text
            assert time.monotonic() < deadline, "ingestion still takes the revoked key"
            time.sleep(0.1)
        assert time.monotonic() - started <= API_KEY_CACHE_TTL + 10
        assert "revoked" in sent.json()["detail"] and secret not in sent.text
        assert sent.headers["www-authenticate"].startswith("Bearer")


def test_a_key_cannot_be_made_with_an_hr_role(stack: Stack) -> None:
    goals = stack.settings.url("goals")
    with httpx.Client(timeout=15.0, headers=stack.auth_headers("wang-fang")) as http:
        answer = http.post(
            f"{goals}/v1/api-keys", json={"name": "escalation", "roles": ["hr_admin"]}
        )
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "publisher, goals_writer, directory_writer" in answer.json()["detail"]


def test_a_made_up_key_is_refused_everywhere(stack: Stack) -> None:
    made_up = {"X-API-Key": f"gw_0123456789ab_{'x' * 43}"}
    with httpx.Client(timeout=15.0) as http:
        for service in ("goals", "ingestion", "evaluator", "notifier"):
            path = "/v1/alerts" if service == "notifier" else "/v1/metrics"
            path = {"goals": "/v1/people", "evaluator": "/v1/rules"}.get(service, path)
            answer = http.get(f"{stack.settings.url(service)}{path}", headers=made_up)
            assert answer.status_code == 401, (service, answer.text)
            assert "with this secret" in answer.json()["detail"]
