"""Comments on an alert, through the running services: kept with the episode, announced on
the inbox's stream, in the audit log, and only for whoever may read the alert."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from goalwatch.dev.stack import Stack
from tests.integration.helpers import post_events, rework_event, unique

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10.0) as client:
        yield client


def _alert_about_a_report(http: httpx.Client, stack: Stack) -> tuple[str, str, str]:
    """A head and a doctor reporting to them, and the doctor's alert; (alert id, head, doctor)."""
    goals = stack.settings.url("goals")
    unit = unique("unit")
    made = http.post(f"{goals}/v1/org-units", json=[{"id": unit, "name": unit, "kind": "company"}])
    assert made.status_code == 200, made.text
    head, doctor = unique("head"), unique("doctor")
    people = [
        {"id": head, "name": f"Head {head}", "org_unit_id": unit},
        {"id": doctor, "name": f"Dr {doctor}", "manager_id": head, "org_unit_id": unit},
    ]
    assert http.post(f"{goals}/v1/people", json=people).status_code == 200
    events = [rework_event(doctor, day, 0.12) for day in (1, 2, 3)]
    post_events(http, stack.settings.url("ingestion"), events)
    notifier = stack.settings.url("notifier")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = http.get(f"{notifier}/v1/alerts", params={"recipient": doctor}).json()["alerts"]
        if found:
            return str(found[0]["id"]), head, doctor
        time.sleep(0.1)  # polling the inbox: the alert's own arrival, not a timing threshold
    raise AssertionError(f"no alert about {doctor} reached the inbox in 30 s")


def _audited(stack: Stack, request_id: str) -> dict[str, Any]:
    goals = stack.settings.url("goals")
    deadline = time.monotonic() + 15
    with stack.client(user="wang-fang", timeout=10.0) as http:
        while time.monotonic() < deadline:
            answer = http.get(f"{goals}/v1/audit", params={"service": "notifier", "limit": 1000})
            found = [r for r in answer.json()["records"] if r["request_id"] == request_id]
            if found:
                return dict(found[0])
            time.sleep(0.1)
    raise AssertionError(f"no audit record of request {request_id} in 15 s")


def test_a_comment_is_kept_with_the_alert_in_order_with_its_author(
    stack: Stack, http: httpx.Client
) -> None:
    notifier = stack.settings.url("notifier")
    alert, head, doctor = _alert_about_a_report(http, stack)
    as_head = stack.auth_headers(head)
    request = unique("req-comment")
    first = http.post(
        f"{notifier}/v1/alerts/{alert}/comments",
        json={"text": "calling her"},
        headers={**as_head, "X-Request-Id": request},
    )
    assert first.status_code == 201, first.text
    said: dict[str, Any] = first.json()
    assert (said["by"], said["name"], said["text"]) == (head, f"Head {head}", "calling her")
    second = http.post(
        f"{notifier}/v1/alerts/{alert}/comments",
        json={"text": "short-staffed that week"},
        headers=stack.auth_headers(doctor),
    )
    assert second.status_code == 201, second.text

    listed = http.get(f"{notifier}/v1/alerts/{alert}/comments", headers=as_head).json()
    assert [(c["by"], c["text"]) for c in listed] == [
        (head, "calling her"),
        (doctor, "short-staffed that week"),
    ]
    entry = http.get(f"{notifier}/v1/alerts/{alert}", headers=as_head).json()
    assert entry["comments"] == listed
    # A comment does not move the alert up the inbox.
    assert entry["updated_at"] == entry["fired_at"]

    record = _audited(stack, request)
    assert record["action"] == "POST /v1/alerts/{alert_id}/comments"
    assert (record["outcome"], record["person_id"]) == (201, head)
    assert record["target"] == {"alert_id": alert}
    assert "calling her" not in str(record)  # the body is never recorded


def test_an_empty_comment_or_someone_elses_alert_is_refused(
    stack: Stack, http: httpx.Client
) -> None:
    notifier = stack.settings.url("notifier")
    alert, head, _ = _alert_about_a_report(http, stack)
    empty = http.post(
        f"{notifier}/v1/alerts/{alert}/comments",
        json={"text": ""},
        headers=stack.auth_headers(head),
    )
    assert empty.status_code == 422
    _, stranger, _ = _alert_about_a_report(http, stack)
    hidden = http.post(
        f"{notifier}/v1/alerts/{alert}/comments",
        json={"text": "nosy"},
        headers=stack.auth_headers(stranger),
    )
    assert hidden.status_code == 404
    assert http.get(f"{notifier}/v1/alerts/{alert}/comments").json() == []
