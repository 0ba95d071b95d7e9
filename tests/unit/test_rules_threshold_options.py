"""Threshold options over time: hysteresis (resolve_at), for, and escalation, in memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded, Severity
from goalwatch.rules import evaluate
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.threshold import Policy, StreakState, due, observe
from goalwatch.rules.transitions import Point, Verdict

DAY0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def rule(condition: dict[str, Any], **extra: Any) -> RuleSpec:
    return RuleSpec.model_validate(
        {
            "id": "rework-high",
            "name": "Rework above 8%",
            "kind": "threshold",
            "metric": "report_rework_rate",
            "condition": condition,
            "severity": "warning",
            "notify": ["manager"],
            "message": "{subject_name}: {value:.1%} ({severity})",
            **extra,
        }
    )


def day(n: float, value: float, subject: str = "emp-1") -> MetricRecorded:
    return MetricRecorded(
        id=f"{subject}-{n}",
        metric="report_rework_rate",
        value=value,
        time=DAY0 + timedelta(days=n),
        subject=subject,
        source="his",
        labels={"department": "radiology"},
    )


def summary(alerts: list[AlertFired | AlertResolved]) -> list[tuple[str, str, str]]:
    """(what, severity, event id) per alert: fired / escalated / resolved."""
    out = []
    for alert in alerts:
        if isinstance(alert, AlertResolved):
            out.append(("resolved", alert.severity.value, alert.event_id))
        elif alert.escalated_from is not None:
            out.append(("escalated", alert.severity.value, alert.event_id))
        else:
            out.append(("fired", alert.severity.value, alert.event_id))
    return out


# --- hysteresis ------------------------------------------------------------------------------


def test_without_resolve_at_a_value_just_under_the_threshold_resolves_and_it_flaps() -> None:
    values = [0.09, 0.079, 0.081, 0.079, 0.081]
    alerts = evaluate([rule({"op": ">", "value": 0.08})], [day(n, v) for n, v in enumerate(values)])
    assert [a[0] for a in summary(alerts)] == ["fired", "resolved", "fired", "resolved", "fired"]


def test_with_resolve_at_it_fires_above_and_resolves_only_below() -> None:
    values = [0.09, 0.079, 0.081, 0.075, 0.07, 0.069, 0.075, 0.079]
    alerts = evaluate(
        [rule({"op": ">", "value": 0.08, "resolve_at": 0.07})],
        [day(n, v) for n, v in enumerate(values)],
    )
    # 0.079 and 0.075 hold the alert; 0.07 is not below 0.07; 0.069 resolves; 0.075 and
    # 0.079 afterwards start nothing (they do not breach).
    assert summary(alerts) == [("fired", "warning", "emp-1-0"), ("resolved", "warning", "emp-1-5")]


def test_values_that_only_hold_do_not_start_or_continue_a_streak_before_firing() -> None:
    values = [0.09, 0.075, 0.09, 0.09, 0.075, 0.09, 0.09, 0.09]
    alerts = evaluate(
        [rule({"op": ">", "value": 0.08, "consecutive": 3, "resolve_at": 0.07})],
        [day(n, v) for n, v in enumerate(values)],
    )
    assert summary(alerts) == [("fired", "warning", "emp-1-7")]
    assert alerts[0].started_at == DAY0 + timedelta(days=5)


def test_hysteresis_below_and_for_ranges() -> None:
    below = rule({"op": "<", "value": 0.5, "resolve_at": 0.6})
    alerts = evaluate([below], [day(n, v) for n, v in enumerate([0.4, 0.55, 0.6, 0.61])])
    assert [a[0] for a in summary(alerts)] == ["fired", "resolved"]
    assert alerts[1].event_id == "emp-1-3"

    outside = rule({"op": "outside", "value": [0.05, 0.08], "resolve_at": [0.055, 0.075]})
    values = [0.09, 0.078, 0.06, 0.04, 0.052, 0.055]
    alerts = evaluate([outside], [day(n, v) for n, v in enumerate(values)])
    assert summary(alerts) == [
        ("fired", "warning", "emp-1-0"),
        ("resolved", "warning", "emp-1-2"),
        ("fired", "warning", "emp-1-3"),
        ("resolved", "warning", "emp-1-5"),
    ]


# --- for ---------------------------------------------------------------------------------


def test_for_fires_from_the_timer_when_the_duration_ends_without_another_event() -> None:
    spec = rule({"op": ">", "value": 0.08, "for": "2h"})
    until = DAY0 + timedelta(hours=5)
    alerts = evaluate([spec], [day(0, 0.09)], until=until)
    assert summary(alerts) == [("fired", "warning", "emp-1-0")]
    # Stamped when the timer fell due, two hours after the breach began.
    assert alerts[0].fired_at == DAY0 + timedelta(hours=2)
    assert alerts[0].started_at == DAY0


def test_for_does_not_fire_when_the_condition_ends_first() -> None:
    spec = rule({"op": ">", "value": 0.08, "for": "2h"})
    events = [day(0, 0.09), day(1 / 24, 0.02)]  # cleared an hour later
    assert evaluate([spec], events, until=DAY0 + timedelta(days=1)) == []


def test_for_counts_from_the_observation_that_made_the_condition_hold() -> None:
    spec = rule({"op": ">", "value": 0.08, "consecutive": 3, "for": "1d"})
    events = [day(n, 0.09) for n in range(3)]
    alerts = evaluate([spec], events, until=DAY0 + timedelta(days=2, hours=23))
    assert alerts == []  # held since day 2 only
    alerts = evaluate([spec], events, until=DAY0 + timedelta(days=3))
    assert summary(alerts) == [("fired", "warning", "emp-1-2")]
    assert alerts[0].started_at == DAY0  # the breach itself began on day 0


def test_an_observation_past_the_duration_fires_without_waiting_for_the_timer() -> None:
    policy = Policy(consecutive=1, for_=timedelta(days=1))
    pending = observe(StreakState(), Point.of("a", DAY0, 0.09, Verdict.BREACH), policy)
    assert pending.transition is None
    later = Point.of("b", DAY0 + timedelta(days=2), 0.1, Verdict.BREACH)
    fired = observe(pending.state, later, policy)
    assert fired.transition is not None and fired.transition.started_at == DAY0
    # The timer that was armed finds the alert fired and does nothing.
    assert due(fired.state, DAY0 + timedelta(days=1), policy).transition is None


# --- escalation ----------------------------------------------------------------------------


ESCALATING = {
    "condition": {"op": ">", "value": 0.08, "consecutive": 3},
    "escalate": [{"after": "4d", "severity": "critical"}],
}


def test_warning_after_three_days_critical_after_five_one_alert_rising() -> None:
    spec = rule(ESCALATING["condition"], escalate=ESCALATING["escalate"])
    alerts = evaluate([spec], [day(n, 0.09) for n in range(6)] + [day(6, 0.01)])
    # Critical four days after the breach began: on day 4, before its figure arrives (the
    # timer), so the escalation speaks of the newest figure then, day 3's.
    assert summary(alerts) == [
        ("fired", "warning", "emp-1-2"),
        ("escalated", "critical", "emp-1-3"),
        ("resolved", "critical", "emp-1-6"),
    ]
    fired, escalated, _ = alerts
    assert isinstance(escalated, AlertFired)
    assert escalated.fingerprint == fired.fingerprint
    assert escalated.started_at == fired.started_at
    assert escalated.escalated_from is Severity.WARNING
    assert escalated.message.endswith("(critical)")


def test_escalation_comes_from_the_timer_when_no_event_arrives() -> None:
    spec = rule(ESCALATING["condition"], escalate=ESCALATING["escalate"])
    alerts = evaluate([spec], [day(n, 0.09) for n in range(3)], until=DAY0 + timedelta(days=10))
    assert summary(alerts) == [
        ("fired", "warning", "emp-1-2"),
        ("escalated", "critical", "emp-1-2"),
    ]
    assert alerts[1].fired_at == DAY0 + timedelta(days=4)


def test_an_alert_that_fires_late_fires_at_the_severity_its_breach_has_reached() -> None:
    spec = rule(ESCALATING["condition"], escalate=ESCALATING["escalate"])
    # Backfilled: day 0 arrives last, completing three breaching observations that span
    # five days.
    events = [day(n, 0.09) for n in (5, 4, 0)]
    alerts = evaluate([spec], events)
    assert summary(alerts) == [("fired", "critical", "emp-1-0")]
    assert alerts[0].started_at == DAY0
    assert alerts[0].escalated_from is None


def test_a_stale_timer_changes_nothing() -> None:
    policy = Policy(consecutive=1, for_=timedelta(hours=2))
    point = Point.of("a", DAY0, 0.09, Verdict.BREACH)
    pending = observe(StreakState(), point, policy)
    assert pending.arm == DAY0 + timedelta(hours=2) and pending.transition is None
    cleared = observe(
        pending.state, Point.of("b", DAY0 + timedelta(hours=1), 0.0, Verdict.CLEAR), policy
    )
    fired = due(cleared.state, DAY0 + timedelta(hours=2), policy)
    assert fired.transition is None and not fired.state.firing and fired.state.armed is None


@pytest.mark.parametrize(
    ("escalate", "error"),
    [
        ([{"after": "4d", "severity": "info"}], "does not rise above warning"),
        (
            [{"after": "4d", "severity": "critical"}, {"after": "2d", "severity": "critical"}],
            "does not rise above critical",
        ),
        ([{"after": "4x", "severity": "critical"}], "is not a duration"),
    ],
)
def test_escalation_steps_must_rise(escalate: list[dict[str, str]], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        rule(ESCALATING["condition"], escalate=escalate)
