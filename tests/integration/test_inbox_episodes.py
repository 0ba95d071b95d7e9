"""Inbox episodes, acknowledgement links and resolving by hand, through the running services:
real nats-server, redis-server, services and HTTP, and a real webhook receiver."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from goalwatch.dev.stack import Stack
from services.notifier.inbox import episode_id
from services.notifier.links import AckLinks
from tests.integration.conftest import LINK_SECRET, WebhookCall, WebhookReceiver
from tests.integration.helpers import await_drained, inbox, post_events, rework_event, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10.0) as client:
        yield client


def _doctor_in_a_unit(http: httpx.Client, stack: Stack) -> tuple[str, str, str, str]:
    """A hospital, its radiology department, a head and a doctor in it; returns (doctor,
    head, department, hospital)."""
    goals = stack.settings.url("goals")
    hospital, department = unique("hospital"), unique("radiology")
    units = [
        {"id": hospital, "name": "Hospital", "kind": "company"},
        {"id": department, "name": "Radiology", "kind": "department", "parent_id": hospital},
    ]
    assert http.post(f"{goals}/v1/org-units", json=units).status_code == 200
    head, doctor = unique("head"), unique("doctor")
    people = [
        {"id": head, "name": f"Head {head}", "language": "en", "org_unit_id": department},
        {"id": doctor, "name": f"Dr {doctor}", "manager_id": head, "org_unit_id": department},
    ]
    answer = http.post(f"{goals}/v1/people", json=people)
    assert answer.status_code == 200, answer.text
    return doctor, head, department, hospital


def _calls(doctor: str, state: str, count: int) -> Callable[[list[WebhookCall]], bool]:
    def arrived(calls: list[WebhookCall]) -> bool:
        about = [a for c in calls for a in c.alerts if a["subject"]["id"] == doctor]
        return sum(1 for a in about if a["state"] == state) >= count

    return arrived


def _days(http: httpx.Client, stack: Stack, doctor: str, days: dict[int, float]) -> None:
    events = [rework_event(doctor, day, value) for day, value in days.items()]
    post_events(http, stack.settings.url("ingestion"), events)


def _entry(http: httpx.Client, stack: Stack, alert: str) -> dict[str, Any]:
    answer = http.get(f"{stack.settings.url('notifier')}/v1/alerts/{alert}")
    assert answer.status_code == 200, answer.text
    entry: dict[str, Any] = answer.json()
    return entry


def test_an_alert_that_fires_twice_has_two_entries_each_with_its_deliveries(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    notifier = stack.settings.url("notifier")
    doctor, head, department, hospital = _doctor_in_a_unit(http, stack)
    _days(http, stack, doctor, {1: 0.11, 2: 0.09, 3: 0.12})
    webhook.wait_for(_calls(doctor, "firing", 1))
    _days(http, stack, doctor, {4: 0.02})
    webhook.wait_for(_calls(doctor, "resolved", 1))
    _days(http, stack, doctor, {5: 0.10, 6: 0.14, 7: 0.13})
    webhook.wait_for(_calls(doctor, "firing", 2))
    await_drained(stack.settings.nats_url)

    first_call, _, second_call = (c.json for c in webhook.about(doctor))
    fingerprint = first_call["fingerprint"]
    newest, earlier = inbox(http, notifier, fingerprint=fingerprint)
    assert (newest["state"], earlier["state"]) == ("firing", "resolved")
    assert newest["id"] != earlier["id"]
    assert [t["what"] for t in earlier["timeline"]] == ["fired", "resolved"]
    assert [t["what"] for t in newest["timeline"]] == ["fired"]
    assert [o["value"] for o in newest["history"]] == [0.10, 0.14, 0.13]
    # Filed under the doctor's department and every unit above it.
    for unit in (department, hospital):
        found = inbox(http, notifier, org_unit=unit)
        assert [a["id"] for a in found] == [newest["id"], earlier["id"]]
    assert inbox(http, notifier, org_unit=unique("elsewhere")) == []
    assert [a["id"] for a in inbox(http, notifier, recipient=head, state="resolved")] == [
        earlier["id"]
    ]

    # Each episode answers with what was delivered of it, on each channel.
    def delivered(entry: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {(d["channel"], d["state"], d["status"]) for d in entry["deliveries"]}

    assert delivered(_entry(http, stack, earlier["id"])) == {
        ("inbox", "firing", "sent"),
        ("webhook", "firing", "sent"),
        ("inbox", "resolved", "sent"),
        ("webhook", "resolved", "sent"),
    }
    assert delivered(_entry(http, stack, newest["id"])) == {
        ("inbox", "firing", "sent"),
        ("webhook", "firing", "sent"),
    }
    # The fingerprint still answers, with the newest episode.
    assert _entry(http, stack, fingerprint)["id"] == newest["id"]
    # Each firing's message carried a link to its own episode.
    assert first_call["ack_url"] != second_call["ack_url"]


def test_the_link_in_a_message_shows_a_page_and_only_its_button_acknowledges(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    notifier = stack.settings.url("notifier")
    doctor, head, _, _ = _doctor_in_a_unit(http, stack)
    _days(http, stack, doctor, {1: 0.11, 2: 0.09, 3: 0.12})
    [call] = [
        c
        for c in webhook.wait_for(_calls(doctor, "firing", 1))
        if not c.digest and c.json["subject"]["id"] == doctor
    ]
    ack_url: str = call.json["ack_url"]
    assert ack_url.startswith(f"{notifier}/v1/ack/")
    fingerprint = call.json["fingerprint"]

    page = http.get(ack_url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Acknowledge this alert?" in page.text
    # Sent to the doctor and the head in one message: the page asks which of them it is.
    assert f"Head {head}" in page.text and f"Dr {doctor}" in page.text
    entry = _entry(http, stack, fingerprint)
    assert entry["acked_at"] is None and entry["acknowledgements"] == []

    # Changed, or past its expiry (signed as the notifier would, a week and a day ago).
    changed = ack_url[:-1] + ("A" if ack_url[-1] != "A" else "B")
    assert http.post(changed, data={"recipient": head}).status_code == 403
    links = AckLinks(base_url=notifier, secret=SecretStr(LINK_SECRET), lifetime=timedelta(days=7))
    old = links.url(episode=entry["id"], recipient=head, now=datetime.now(UTC) - timedelta(days=8))
    expired = http.post(old)
    assert expired.status_code == 410 and "expired" in expired.text
    assert _entry(http, stack, fingerprint)["acknowledgements"] == []

    done = http.post(ack_url, data={"recipient": head, "comment": "calling her"})
    assert done.status_code == 200, done.text
    assert "Acknowledged" in done.text and f"Head {head}" in done.text
    entry = _entry(http, stack, fingerprint)
    assert (entry["acked_by"], entry["ack_comment"]) == (head, "calling her")
    assert [(a["by"], a["via"]) for a in entry["acknowledgements"]] == [(head, "shared_link")]
    assert entry["timeline"][-1]["what"] == "acknowledged"
    # An acknowledgement is the inbox's: no channel is told.
    await_drained(stack.settings.nats_url)
    assert len(webhook.about(doctor)) == 1


def test_resolved_by_hand_then_by_the_rule(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    notifier = stack.settings.url("notifier")
    doctor, head, _, _ = _doctor_in_a_unit(http, stack)
    _days(http, stack, doctor, {1: 0.11, 2: 0.09, 3: 0.12})
    webhook.wait_for(_calls(doctor, "firing", 1))
    await_drained(stack.settings.nats_url)
    [entry] = inbox(http, notifier, recipient=head)

    done = http.post(
        f"{notifier}/v1/alerts/{entry['id']}/resolve",
        json={"comment": "entered twice by the ward"},
        headers=stack.auth_headers(head),
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["state"], body["resolved_by"], body["resolve_comment"]) == (
        "resolved",
        head,
        "entered twice by the ward",
    )
    again = http.post(f"{notifier}/v1/alerts/{entry['id']}/resolve")
    assert again.status_code == 409 and "resolved already" in again.json()["detail"]
    [call] = webhook.about(doctor)
    link = http.post(call.json["ack_url"], data={"recipient": head})
    assert link.status_code == 409 and "resolved" in link.text
    # The channels were not told of the hand; the rule's resolution reaches them.
    await_drained(stack.settings.nats_url)
    assert [c.json["state"] for c in webhook.about(doctor)] == ["firing"]
    _days(http, stack, doctor, {4: 0.02})
    webhook.wait_for(_calls(doctor, "resolved", 1))
    await_drained(stack.settings.nats_url)
    entry = _entry(http, stack, entry["id"])
    assert [t["what"] for t in entry["timeline"]] == ["fired", "resolved_by_hand", "resolved"]
    assert entry["resolved_by"] == head and entry["state"] == "resolved"


def test_entries_of_the_earlier_layout_are_moved_when_the_notifier_starts(
    stack: Stack, http: httpx.Client
) -> None:
    fingerprint, head = unique("fp-earlier"), unique("head")
    started = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
    entry = {
        "version": "1",
        "state": "firing",
        "fingerprint": fingerprint,
        "rule_id": "report-rework-rate-high",
        "rule_name": "Report rework rate above 8% on 3 consecutive days",
        "kind": "threshold",
        "severity": "warning",
        "subject": {"id": "zhou-min", "name": "Dr. Zhou Min"},
        "metric": "report_rework_rate",
        "value": 0.13,
        "message": "Dr. Zhou Min: report rework rate 13% is above 8% for 3 consecutive days",
        "started_at": started.isoformat(),
        "fired_at": "2026-11-20T10:00:05Z",
        "recipients": [{"id": head, "name": "Head", "role": "manager"}],
        "updated_at": "2026-11-20T10:00:05Z",
        "acked_at": "2026-11-20T11:00:00Z",
        "acked_by": head,
        "ack_comment": "on it",
    }
    score = datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC).timestamp()
    prefix = "goalwatch:notifier:"
    old_indexes = (f"{prefix}index:all", f"{prefix}index:recipient:{head}")
    with redis.Redis.from_url(stack.settings.redis_url, decode_responses=True) as store:
        store.set(f"{prefix}alert:{fingerprint}", json.dumps(entry))
        for index in old_indexes:
            store.zadd(index, {fingerprint: score})

        stack.restart("notifier")  # the move happens before the notifier takes any alert

        assert store.exists(f"{prefix}alert:{fingerprint}") == 0
        assert all(store.zscore(index, fingerprint) is None for index in old_indexes)
    moved = _entry(http, stack, fingerprint)
    assert moved["id"] == episode_id(fingerprint, started)
    assert (moved["state"], moved["acked_by"], moved["ack_comment"]) == ("firing", head, "on it")
    assert [t["what"] for t in moved["timeline"]] == ["fired", "acknowledged"]
    listed = inbox(http, stack.settings.url("notifier"), recipient=head)
    assert [a["id"] for a in listed] == [moved["id"]]
