"""goalwatch.rules.evaluate: the shipped rules over events in memory, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded
from goalwatch.rules import RuleSpec, evaluate, fingerprint, load_rules, metric_rules

REPO = Path(__file__).resolve().parents[2]
NOV = datetime(2026, 11, 1, 18, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> list[RuleSpec]:
    return metric_rules(load_rules(REPO / "rules"))


def rework(day: int, value: float, subject: str = "zhou-min", event_id: str = "") -> MetricRecorded:
    return MetricRecorded(
        id=event_id or f"{subject}-{day}",
        metric="report_rework_rate",
        value=value,
        time=NOV + timedelta(days=day - 1),
        subject=subject,
        source="his",
    )


def kinds(alerts: list[AlertFired | AlertResolved]) -> list[tuple[str, str]]:
    return [
        ("fired" if isinstance(alert, AlertFired) else "resolved", alert.event_id)
        for alert in alerts
    ]


def test_three_breaching_days_fire_once(rules: list[RuleSpec]) -> None:
    alerts = evaluate(rules, [rework(day, 0.13) for day in (18, 19, 20, 21, 22)])
    [fired] = alerts
    assert isinstance(fired, AlertFired)
    assert fired.event_id == "zhou-min-20"
    assert fired.fingerprint == fingerprint(
        "report-rework-rate-high", "zhou-min", "report_rework_rate"
    )
    assert fired.started_at == fired.history[0].time == NOV + timedelta(days=17)
    assert [o.event_id for o in fired.history] == ["zhou-min-18", "zhou-min-19", "zhou-min-20"]
    assert fired.message == "zhou-min: report rework rate 13% is above 8% for 3 consecutive days"
    assert fired.subject_name == "zhou-min"
    # No clock in memory: stamped with the time of the event that made it fire.
    assert fired.fired_at == NOV + timedelta(days=19)


def test_a_clear_day_resolves(rules: list[RuleSpec]) -> None:
    events = [rework(18, 0.1), rework(19, 0.1), rework(20, 0.1), rework(21, 0.04)]
    alerts = evaluate(rules, events, names={"zhou-min": "Dr. Zhou Min"})
    assert kinds(alerts) == [("fired", "zhou-min-20"), ("resolved", "zhou-min-21")]
    resolved = alerts[1]
    assert isinstance(resolved, AlertResolved)
    assert resolved.subject_name == "Dr. Zhou Min"
    assert resolved.message == "Dr. Zhou Min: report rework rate back to 4%, within 8%"
    assert resolved.started_at == alerts[0].started_at


def test_late_and_backfilled_events_are_put_in_their_place(rules: list[RuleSpec]) -> None:
    # The walk-through in docs/rules.md, "How consecutive works", in arrival order.
    events = [
        rework(18, 0.10, event_id="a"),
        rework(19, 0.10, event_id="b"),
        rework(21, 0.10, event_id="d"),
        rework(20, 0.04, event_id="c"),
        rework(22, 0.10, event_id="e"),
        rework(23, 0.10, event_id="f"),
        rework(23, 0.10, event_id="f"),
        rework(10, 0.01, event_id="z"),
    ]
    alerts = evaluate(rules, events)
    assert kinds(alerts) == [("fired", "d"), ("resolved", "c"), ("fired", "f")]
    assert [alert.started_at.day for alert in alerts] == [18, 18, 21]


def test_a_duplicate_event_id_changes_nothing(rules: list[RuleSpec]) -> None:
    events = [rework(1, 0.2), rework(2, 0.2)]
    # The resend of day 2 says "fine" now: it is still the first day-2 event that counts.
    resent = rework(2, 0.01)
    assert evaluate(rules, [*events, resent, rework(3, 0.2)]) == evaluate(
        rules, [*events, rework(3, 0.2)]
    )
    assert kinds(evaluate(rules, [*events, resent, rework(3, 0.2)])) == [("fired", "zhou-min-3")]


def test_subjects_are_separate_and_alerts_come_in_arrival_order(rules: list[RuleSpec]) -> None:
    events = [rework(day, 0.3, subject) for day in (1, 2, 3) for subject in ("b", "a")]
    assert [alert.subject for alert in evaluate(rules, events)] == ["b", "a"]


def test_label_filters_apply(rules: list[RuleSpec]) -> None:
    def feedback(week: int, programme: str) -> MetricRecorded:
        return MetricRecorded(
            id=f"{programme}-{week}",
            metric="teacher_feedback_score",
            value=4.0,
            time=NOV + timedelta(weeks=week),
            subject="wang-fang",
            source="lms",
            labels={"programme": programme},
        )

    assert evaluate(rules, [feedback(w, "adult") for w in range(3)]) == []
    [fired] = evaluate(
        rules, [feedback(w, "k12") for w in range(3)], names={"wang-fang": "Wang Fang"}
    )
    assert (
        fired.message == "Wang Fang: average student feedback 4.00/5, below 4.5 for 2 weeks running"
    )


def test_no_rules_or_no_matching_events_fire_nothing(rules: list[RuleSpec]) -> None:
    assert evaluate([], [rework(day, 0.5) for day in range(5)]) == []
    other = MetricRecorded(
        id="x", metric="calls_per_hour", value=1e6, time=NOV, subject="s", source="crm"
    )
    assert evaluate(rules, [other]) == []
    assert evaluate(rules, []) == []
