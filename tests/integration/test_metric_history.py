"""A person's metric history through the running services: ingestion reads the subject's
partition of the metrics stream, keeps their values of one metric in the time range, and
answers only callers who may see the person (as for the alerts about them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from goalwatch.dev.stack import Stack
from tests.integration.helpers import DAY0, post_events, rework_event, unique

pytestmark = pytest.mark.integration

SINCE = "2026-10-25T00:00:00Z"


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10.0) as client:
        yield client


def _team(http: httpx.Client, stack: Stack) -> tuple[str, str]:
    """A company, a head and a doctor reporting to them; (doctor, head)."""
    goals = stack.settings.url("goals")
    unit = unique("co")
    made = http.post(f"{goals}/v1/org-units", json=[{"id": unit, "name": unit, "kind": "company"}])
    assert made.status_code == 200, made.text
    head, doctor = unique("head"), unique("doctor")
    people = [
        {"id": head, "name": f"Head {head}", "org_unit_id": unit},
        {"id": doctor, "name": f"Dr {doctor}", "manager_id": head, "org_unit_id": unit},
    ]
    assert http.post(f"{goals}/v1/people", json=people).status_code == 200
    return doctor, head


def _history(
    http: httpx.Client, stack: Stack, subject: str, as_: str | None = None, **query: Any
) -> httpx.Response:
    headers = stack.auth_headers(as_) if as_ else {}
    return http.get(
        f"{stack.settings.url('ingestion')}/v1/metrics/report_rework_rate/history/{subject}",
        params={"since": SINCE, **query},
        headers=headers,
    )


def test_a_manager_reads_their_reports_values_of_one_metric_in_order(
    stack: Stack, http: httpx.Client
) -> None:
    doctor, head = _team(http, stack)
    colleague, _ = _team(http, stack)
    values = {1: 0.05, 2: 0.07, 3: 0.12, 4: 0.09, 5: 0.11}
    turnaround = {
        **rework_event(doctor, 3, 0.0, id=unique("ta")),
        "metric": "report_turnaround_hours",
        "value": 30.0,
    }
    # Stored out of order, with another metric and another person's values beside them.
    events = [rework_event(doctor, day, values[day]) for day in (4, 1, 5, 2, 3)]
    events += [turnaround, rework_event(colleague, 2, 0.5)]
    post_events(http, stack.settings.url("ingestion"), events)

    answer = _history(http, stack, doctor, as_=head)
    assert answer.status_code == 200, answer.text
    history = answer.json()
    assert [p["value"] for p in history["points"]] == [values[d] for d in sorted(values)]
    assert [p["event_id"] for p in history["points"]] == [f"{doctor}-d{d}" for d in sorted(values)]
    assert history["complete"] is True and history["scanned"] >= len(values)
    assert (history["subject"], history["metric"]) == (doctor, "report_rework_rate")

    # A time range and a limit (the newest values).
    day = DAY0.replace(tzinfo=None).isoformat()
    narrowed = _history(
        http,
        stack,
        doctor,
        as_=head,
        since=f"{day[:8]}02T00:00:00Z",
        until=f"{day[:8]}04T00:00:00Z",
    ).json()
    assert [p["value"] for p in narrowed["points"]] == [values[2], values[3]]
    newest = _history(http, stack, doctor, as_=head, limit=2).json()
    assert [p["value"] for p in newest["points"]] == [values[4], values[5]]


def test_only_those_who_may_see_the_person_read_their_history(
    stack: Stack, http: httpx.Client
) -> None:
    doctor, head = _team(http, stack)
    _, other_head = _team(http, stack)
    post_events(http, stack.settings.url("ingestion"), [rework_event(doctor, 1, 0.2)])
    for reader in (head, doctor, "wang-fang"):
        answer = _history(http, stack, doctor, as_=reader)
        assert answer.status_code == 200, (reader, answer.text)
        assert [p["value"] for p in answer.json()["points"]] == [0.2]
    hidden = _history(http, stack, doctor, as_=other_head)
    assert hidden.status_code == 404
    assert doctor in hidden.json()["detail"]
    assert _history(http, stack, doctor, as_="ops").status_code == 404
    backwards = _history(http, stack, doctor, as_=head, until="2026-10-01T00:00:00Z")
    assert backwards.status_code == 422
