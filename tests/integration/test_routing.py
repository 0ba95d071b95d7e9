"""Routing through the running services: a routing file chooses receivers by the alert's
labels, with ``continue``; the API and ``goalwatch routes`` show and try it; a reload puts a
changed file in force and refuses a broken one, keeping the routing in force.

The receivers are real: the signed-webhook receiver and chat-vendor receivers that check the
request as the vendor does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from goalwatch.dev.stack import Stack
from tests.integration.conftest import WEBHOOK_SECRET, WebhookReceiver, stack_of_its_own
from tests.integration.helpers import add_doctor, await_drained, post_events, rework_event
from tests.integration.test_chat_channels import WECOM_KEY, VendorReceiver

pytestmark = pytest.mark.integration

ROUTES = """\
receivers:
  - name: everyone-room
    slack: {url: "${ROUTING_SLACK_URL}"}
  - name: cardiology-room
    wecom: {url: "${ROUTING_WECOM_URL}", language: en}
  - name: audit
    webhook: {url: "${GOALWATCH_WEBHOOK_URL}", secret: "${GOALWATCH_WEBHOOK_SECRET}"}
route:
  receiver: everyone-room
  routes:
    - matchers: [rule=report-rework-rate-high]
      receiver: audit
      continue: true
    - matchers: ['department=~"cardiology|oncology"']
      receiver: %(cardiology)s
"""


@pytest.fixture(scope="module")
def rooms() -> Iterator[dict[str, VendorReceiver]]:
    receivers = {style: VendorReceiver(style) for style in ("wecom", "slack")}
    yield receivers
    for receiver in receivers.values():
        receiver.close()


@pytest.fixture(scope="module")
def routes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("routing") / "routes.yaml"
    path.write_text(ROUTES % {"cardiology": "cardiology-room"}, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def routed(
    tmp_path_factory: pytest.TempPathFactory,
    webhook: WebhookReceiver,
    rooms: dict[str, VendorReceiver],
    routes_file: Path,
) -> Iterator[Stack]:
    env = {
        "GOALWATCH_ROUTES_FILE": str(routes_file),
        "ROUTING_SLACK_URL": rooms["slack"].url,
        "ROUTING_WECOM_URL": rooms["wecom"].url,
    }
    with stack_of_its_own(tmp_path_factory, webhook, name="routing", env=env) as running:
        yield running


def fire(stack: Stack, http: httpx.Client, department: str) -> str:
    doctor, _head = add_doctor(http, stack.settings.url("goals"))
    events = [
        rework_event(doctor, day, 0.2, labels={"department": department}) for day in (1, 2, 3)
    ]
    post_events(http, stack.settings.url("ingestion"), events)
    await_drained(stack.settings.nats_url)
    return doctor


def delivered(stack: Stack, http: httpx.Client, subject: str) -> set[tuple[str, str | None]]:
    """``(channel, receiver)`` of every firing outcome in the delivery log about ``subject``."""
    log = http.get(f"{stack.settings.url('notifier')}/v1/deliveries", params={"limit": 500})
    assert log.status_code == 200, log.text
    inbox = http.get(f"{stack.settings.url('notifier')}/v1/alerts").json()["alerts"]
    fingerprints = {a["fingerprint"] for a in inbox if a["subject"]["id"] == subject}
    assert len(fingerprints) == 1, inbox
    return {
        (d["channel"], d["receiver"])
        for d in log.json()["deliveries"]
        if d["fingerprint"] in fingerprints and d["status"] == "sent"
    }


def test_routes_choose_receivers_by_label_with_continue(
    routed: Stack, webhook: WebhookReceiver, rooms: dict[str, VendorReceiver]
) -> None:
    with routed.client(timeout=10) as http:
        cardiologist = fire(routed, http, "cardiology")
        radiologist = fire(routed, http, "radiology")
        # The rework rule's route continues: the audit webhook has both, and the cardiologist's
        # department route adds the room. The radiologist's alert was taken by the audit route,
        # so the root's receiver (for alerts no route takes) does not get it either.
        assert len(webhook.about(cardiologist)) == 1
        assert len(webhook.about(radiologist)) == 1
        assert len(rooms["wecom"].about(cardiologist)) == 1
        assert rooms["wecom"].about(radiologist) == []
        assert rooms["slack"].about(radiologist) == []
        assert rooms["slack"].about(cardiologist) == []
        # English, as the receiver fixes it (WeCom is Chinese by default).
        assert "rework" in rooms["wecom"].about(cardiologist)[0].text.lower()
        assert delivered(routed, http, cardiologist) == {
            ("inbox", None),
            ("webhook", "audit"),
            ("wecom", "cardiology-room"),
        }
        assert delivered(routed, http, radiologist) == {("inbox", None), ("webhook", "audit")}


def test_the_api_shows_and_tries_the_routing_without_secrets(routed: Stack) -> None:
    notifier = routed.settings.url("notifier")
    with routed.client(timeout=10) as http:
        shown = http.get(f"{notifier}/v1/routes")
        assert shown.status_code == 200, shown.text
        body = shown.json()
        assert [r["name"] for r in body["receivers"]] == [
            "everyone-room",
            "cardiology-room",
            "audit",
        ]
        assert body["route"]["routes"][0]["continue"] is True
        # The vendors' documented limits, as nothing in the file changes them.
        limits = {
            (r["name"], c["channel"]): c["rate_limits"]
            for r in body["receivers"]
            for c in r["channels"]
        }
        assert limits == {
            ("everyone-room", "slack"): ["5/5s"],
            ("cardiology-room", "wecom"): ["20/1m"],
            ("audit", "webhook"): [],
        }
        # The robot URLs carry tokens: only scheme and host are shown.
        assert WECOM_KEY not in shown.text
        assert "integration-secret" not in shown.text
        assert WEBHOOK_SECRET not in shown.text
        tried = http.post(
            f"{notifier}/v1/routes/test",
            json={"labels": {"rule": "report-rework-rate-high", "department": "oncology"}},
        )
        assert tried.status_code == 200, tried.text
        assert tried.json()["receivers"] == ["audit", "cardiology-room"]
        assert [r["path"] for r in tried.json()["routes"]] == ["route.routes[0]", "route.routes[1]"]
        nothing_else = http.post(f"{notifier}/v1/routes/test", json={"labels": {"kind": "fraud"}})
        assert nothing_else.json()["receivers"] == ["everyone-room"]
        assert nothing_else.json()["routes"] == [
            {"path": "route", "receiver": "everyone-room", "matchers": []}
        ]
        wrong = http.post(f"{notifier}/v1/routes/test", json={"labels": "kind=fraud"})
        assert wrong.status_code == 422


def goalwatch(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goalwatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GOALWATCH_TOKEN": token},
    )


def test_the_cli_tries_and_shows_the_running_routing(routed: Stack) -> None:
    notifier = routed.settings.url("notifier")
    token = routed.token("ops")
    tried = goalwatch(
        "routes", "test", "-l", "department=cardiology", "--notifier", notifier, token=token
    )
    assert tried.returncode == 0, tried.stderr
    assert tried.stdout.splitlines()[-1] == "receivers: cardiology-room"
    shown = goalwatch("routes", "show", "--notifier", notifier, token=token)
    assert shown.returncode == 0, shown.stderr
    assert "cardiology-room" in shown.stdout
    assert WECOM_KEY not in shown.stdout


def reload(notifier: str, http: httpx.Client) -> httpx.Response:
    return http.post(f"{notifier}/v1/routes/reload")


def test_a_reload_puts_a_changed_file_in_force_and_refuses_a_broken_one(
    routed: Stack, routes_file: Path, rooms: dict[str, VendorReceiver]
) -> None:
    notifier = routed.settings.url("notifier")
    with routed.client(timeout=10) as http:
        before: dict[str, Any] = http.get(f"{notifier}/v1/routes").json()
        routes_file.write_text(
            ROUTES.replace("receiver: audit", "receiver: audti") % {"cardiology": "everyone-room"},
            encoding="utf-8",
        )
        refused = reload(notifier, http)
        assert refused.status_code == 422, refused.text
        [problem] = refused.json()["problems"]
        assert problem["text"].startswith(f"{routes_file}:12:")  # the line to fix
        assert "did you mean 'audit'" in problem["message"]
        assert http.get(f"{notifier}/v1/routes").json()["digest"] == before["digest"]

        routes_file.write_text(ROUTES % {"cardiology": "everyone-room"}, encoding="utf-8")
        taken = reload(notifier, http)
        assert taken.status_code == 200, taken.text
        assert taken.json()["digest"] != before["digest"]
        cardiologist = fire(routed, http, "cardiology")
        assert len(rooms["slack"].about(cardiologist)) == 1
        assert rooms["wecom"].about(cardiologist) == []
        assert delivered(routed, http, cardiologist) == {
            ("inbox", None),
            ("webhook", "audit"),
            ("slack", "everyone-room"),
        }
    routes_file.write_text(ROUTES % {"cardiology": "cardiology-room"}, encoding="utf-8")
