"""Threshold options over time through the running services: hysteresis, for, escalation.

The rules are OVER_TIME_RULES in tests/integration/conftest.py, with durations of seconds so
that their timers (JetStream message schedules) fall due while the test waits for them.
"""

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


def reading(subject: str, n: int, metric: str, value: float, at: datetime) -> dict[str, Any]:
    return {
        "id": f"{subject}-{metric}-{n}",
        "metric": metric,
        "value": value,
        "time": at.isoformat(),
        "subject": subject,
        "source": "his",
    }


def test_an_alert_with_hysteresis_escalates_from_its_timer_and_resolves_only_below(
    stack: Stack, http: httpx.Client
) -> None:
    ward, _ = add_doctor(http, stack.settings.url("goals"))
    ingestion = stack.settings.url("ingestion")
    start = datetime.now(UTC)
    # Above 8%: fires at warning; critical 3 s into the breach, from the timer alone.
    post_events(http, ingestion, [reading(ward, 0, "ward_wait_share", 0.09, start)])
    (fired_on, fired), (escalated_on, escalated) = await_alerts(
        stack.settings.nats_url, ward, count=2
    )
    assert fired_on == escalated_on == subjects.ALERTS_FIRED
    assert fired["severity"] == "warning" and fired["escalated_from"] is None
    assert escalated["severity"] == "critical" and escalated["escalated_from"] == "warning"
    assert escalated["fingerprint"] == fired["fingerprint"]
    assert escalated["started_at"] == fired["started_at"]
    assert escalated["message"] == f"Dr {ward}: waiting share 9.0% (critical)"
    # Not before its time: the escalation is due 3 s after the breach began.
    assert datetime.fromisoformat(escalated["fired_at"]) >= start + timedelta(seconds=3)

    # 7.5% and 7.0% are not above 8% but not below 7% either: the alert holds.
    later = [(1, 0.075), (2, 0.07), (3, 0.069)]
    post_events(
        http,
        ingestion,
        [
            reading(ward, n, "ward_wait_share", value, start + timedelta(seconds=5 + n))
            for n, value in later
        ],
    )
    await_drained(stack.settings.nats_url)
    found = alerts_about(stack.settings.nats_url, ward)
    assert [on for on, _ in found] == [
        subjects.ALERTS_FIRED,
        subjects.ALERTS_FIRED,
        subjects.ALERTS_RESOLVED,
    ]
    resolved = found[2][1]
    assert resolved["value"] == 0.069 and resolved["severity"] == "critical"


def test_for_fires_from_the_timer_and_not_when_the_condition_ended_first(
    stack: Stack, http: httpx.Client
) -> None:
    goals = stack.settings.url("goals")
    ingestion = stack.settings.url("ingestion")
    brief, _ = add_doctor(http, goals)
    held, _ = add_doctor(http, goals)
    start = datetime.now(UTC)
    post_events(
        http,
        ingestion,
        [
            # Long for a second only: its timer falls due first, and finds nothing to fire.
            reading(brief, 0, "ward_queue_length", 14, start - timedelta(seconds=1)),
            reading(brief, 1, "ward_queue_length", 4, start),
            reading(held, 0, "ward_queue_length", 12, start),
        ],
    )
    [(on, fired)] = await_alerts(stack.settings.nats_url, held, count=1)
    assert on == subjects.ALERTS_FIRED
    assert datetime.fromisoformat(fired["started_at"]) == start
    assert datetime.fromisoformat(fired["fired_at"]) >= start + timedelta(seconds=3)
    await_drained(stack.settings.nats_url)
    assert alerts_about(stack.settings.nats_url, brief) == []


def test_periods_and_windows_are_judged_by_the_engine_in_the_running_evaluator(
    stack: Stack, http: httpx.Client
) -> None:
    goals = stack.settings.url("goals")
    ingestion = stack.settings.url("ingestion")
    ward, _ = add_doctor(http, goals)
    shanghai = "+08:00"
    scores = [
        # Nov 2 (Shanghai): 3.0 and 3.8, average 3.4.
        ("2026-11-02T09:00:00" + shanghai, 3.0),
        ("2026-11-02T17:00:00" + shanghai, 3.8),
        # 20:00 UTC on Nov 2 is 04:00 on Nov 3 in Shanghai: the second day, 3.2. Fires.
        ("2026-11-02T20:00:00+00:00", 3.2),
    ]
    admissions = [  # 10 a day for a week, then 6 a day: down 40% on day 13
        (f"2026-11-{1 + n:02d}T12:00:00+00:00", 10.0 if n < 7 else 6.0) for n in range(14)
    ]
    events = [
        {"id": f"{ward}-s{n}", "metric": "ward_satisfaction", "value": value, "time": time,
         "subject": ward, "source": "his"}
        for n, (time, value) in enumerate(scores)
    ] + [
        {"id": f"{ward}-a{n}", "metric": "ward_admissions", "value": value, "time": time,
         "subject": ward, "source": "his"}
        for n, (time, value) in enumerate(admissions)
    ]  # fmt: skip
    post_events(http, ingestion, events)
    await_drained(stack.settings.nats_url)
    found = {alert["rule_id"]: alert for _, alert in alerts_about(stack.settings.nats_url, ward)}
    assert set(found) == {"ward-satisfaction-low", "ward-admissions-down"}
    low = found["ward-satisfaction-low"]
    assert [o["event_id"] for o in low["history"]] == ["2026-11-02", "2026-11-03"]
    assert low["event_id"] == f"{ward}-s2"
    assert low["message"] == f"Dr {ward}: satisfaction 3.20"
    down = found["ward-admissions-down"]
    assert down["event_id"] == f"{ward}-a13" and down["message"].endswith("-40% on the week before")
