"""Fraud rules through the running services: findings judged by the engine on measures
kept in Redis, the alert's lifecycle, and its resolution from a timer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack
from tests.integration.helpers import (
    add_doctor,
    alerts_about,
    await_alerts,
    await_drained,
    post_events,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10.0) as client:
        yield client


def record(
    subject: str, n: int, metric: str, value: float, at: datetime, **labels: str
) -> dict[str, Any]:
    return {
        "id": f"{subject}-{metric}-{n}",
        "metric": metric,
        "value": value,
        "time": at.isoformat(),
        "subject": subject,
        "source": "crm",
        "labels": labels,
    }


def test_a_burst_of_visit_records_fires_the_shipped_rule_once(
    stack: Stack, http: httpx.Client
) -> None:
    rep, _ = add_doctor(http, stack.settings.url("goals"))
    start = datetime.now(UTC) - timedelta(minutes=5)
    # rules/visit-records-burst.yaml: 30 within 2 minutes. 35 records, one a second.
    visits = [
        record(rep, n, "crm.visit_logged", 1, start + timedelta(seconds=n)) for n in range(35)
    ]
    post_events(http, stack.settings.url("ingestion"), visits)
    await_drained(stack.settings.nats_url)
    [(on, fired)] = alerts_about(stack.settings.nats_url, rep)
    assert on == subjects.ALERTS_FIRED
    assert fired["kind"] == "fraud" and fired["rule_id"] == "visit-records-burst"
    assert fired["event_id"] == f"{rep}-crm.visit_logged-29"
    assert len(fired["history"]) == 30
    assert fired["message"].startswith(f"Dr {rep}: 30 customer visits logged within 2m")


def test_a_duplicate_claim_fires_and_resolves_from_its_timer_when_quiet(
    stack: Stack, http: httpx.Client
) -> None:
    clerk, _ = add_doctor(http, stack.settings.url("goals"))
    now = datetime.now(UTC)
    claims = [
        record(clerk, 0, "claim_filed", 120, now, patient="p-1"),
        record(clerk, 1, "claim_filed", 120, now + timedelta(milliseconds=1), patient="p-2"),
        record(clerk, 2, "claim_filed", 120, now + timedelta(milliseconds=2), patient="p-1"),
    ]
    post_events(http, stack.settings.url("ingestion"), claims)
    (fired_on, fired), (resolved_on, resolved) = await_alerts(
        stack.settings.nats_url, clerk, count=2
    )
    assert (fired_on, resolved_on) == (subjects.ALERTS_FIRED, subjects.ALERTS_RESOLVED)
    assert fired["event_id"] == f"{clerk}-claim_filed-2"
    assert [o["event_id"] for o in fired["history"]] == [
        f"{clerk}-claim_filed-0",
        f"{clerk}-claim_filed-2",
    ]
    assert fired["message"] == f"Dr {clerk}: claim of 120 filed again (1 copy)"
    # Quiet for 2 s after the last finding: resolved by the timer, not before.
    assert datetime.fromisoformat(resolved["resolved_at"]) >= now + timedelta(seconds=2)
    assert resolved["started_at"] == fired["started_at"]


def test_a_value_far_from_the_wards_peers_is_an_outlier(stack: Stack, http: httpx.Client) -> None:
    goals = stack.settings.url("goals")
    ward = f"ward-{datetime.now(UTC).timestamp():.0f}"
    peers = [add_doctor(http, goals)[0] for _ in range(5)]
    far, _ = add_doctor(http, goals)
    now = datetime.now(UTC)
    # Any four of these are within 3 standard deviations of each other's mean.
    values = [8, 12, 9, 11, 10]
    post_events(
        http,
        stack.settings.url("ingestion"),
        [
            record(peer, 0, "claims_per_day", value, now, ward=ward)
            for peer, value in zip(peers, values, strict=True)
        ],
    )
    await_drained(stack.settings.nats_url)  # the peers' values are in before the outlier's
    outlier = record(far, 0, "claims_per_day", 30, now + timedelta(seconds=1), ward=ward)
    post_events(http, stack.settings.url("ingestion"), [outlier])
    await_drained(stack.settings.nats_url)
    assert all(alerts_about(stack.settings.nats_url, peer) == [] for peer in peers)
    [(on, fired)] = alerts_about(stack.settings.nats_url, far)
    assert on == subjects.ALERTS_FIRED and fired["rule_id"] == "claims-outlier"
    assert fired["message"].startswith(f"Dr {far}: 30 claims a day, ")


def test_working_hours_are_each_subjects_own_from_the_directory(
    stack: Stack, http: httpx.Client
) -> None:
    goals = stack.settings.url("goals")
    tag = f"{datetime.now(UTC).timestamp():.0f}"
    people = [
        {"id": f"sh-{tag}", "name": "Dr Shanghai", "time_zone": "Asia/Shanghai"},
        {"id": f"utc-{tag}", "name": "Dr UTC"},
    ]
    assert http.post(f"{goals}/v1/people", json=people).status_code == 200
    await_drained(stack.settings.nats_url)  # the evaluator's directory has them
    # Monday 13:00 and 13:30 UTC: 21:00 and 21:30 in Shanghai, after working hours there.
    monday = datetime(2026, 11, 2, 13, tzinfo=UTC)
    signed = [
        record(person["id"], n, "record_signed", 1, monday + timedelta(minutes=30 * n))
        for person in people
        for n in range(2)
    ]
    post_events(http, stack.settings.url("ingestion"), signed)
    await_drained(stack.settings.nats_url)
    [(on, fired)] = alerts_about(stack.settings.nats_url, f"sh-{tag}")
    assert on == subjects.ALERTS_FIRED
    assert fired["message"] == "Dr Shanghai: 2 records signed outside working hours"
    assert alerts_about(stack.settings.nats_url, f"utc-{tag}") == []


def test_a_key_result_jumping_in_one_check_in_fires_for_that_key_result(
    stack: Stack, http: httpx.Client
) -> None:
    goals = stack.settings.url("goals")
    owner, _ = add_doctor(http, goals)
    tag = f"{datetime.now(UTC).timestamp():.0f}"
    results = {
        name: {
            "id": f"kr-{name}-{tag}",
            "title": f"Open 10 {name}",
            "type": "key_result",
            "owner_id": owner,
            "start_value": 0,
            "target_value": 10,
            "current_value": 1,
        }
        for name in ("stores", "hubs")
    }
    response = http.post(f"{goals}/v1/goals", json=list(results.values()))
    assert response.status_code == 200, response.text

    def check_in(name: str, value: float) -> None:
        goal_id = results[name]["id"]
        answer = http.post(
            f"{goals}/v1/goals/{goal_id}/check-ins", json={"value": value, "by": owner}
        )
        assert answer.status_code == 201, answer.text

    # rules/key-result-progress-jump.yaml: more than 50 points in one check-in, per key result.
    check_in("stores", 2)  # 20%
    check_in("hubs", 6)  # 60%: 40 points above the stores, but another key result
    check_in("stores", 10)  # 100%: 80 points in one check-in
    await_drained(stack.settings.nats_url)
    [(on, fired)] = alerts_about(stack.settings.nats_url, owner)
    assert on == subjects.ALERTS_FIRED and fired["rule_id"] == "key-result-progress-jump"
    assert fired["labels"]["goal_id"] == results["stores"]["id"]
    assert fired["message"].startswith(
        f"Dr {owner}: key result {results['stores']['id']} reported at 100%, a move of 80 points"
    )
    assert [o["value"] for o in fired["history"]] == [20.0, 100.0]
