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


# --- consecutive periods -----------------------------------------------------------------


def at(text: str, value: float, subject: str = "emp-1", n: int = 0) -> MetricRecorded:
    return MetricRecorded(
        id=f"{subject}-{text}-{n}",
        metric="report_rework_rate",
        value=value,
        time=datetime.fromisoformat(text),
        subject=subject,
        source="his",
    )


def test_three_calendar_days_in_the_rules_time_zone_one_value_per_day() -> None:
    spec = rule(
        {"op": ">", "value": 0.08, "consecutive": 3, "per": "day", "time_zone": "Asia/Shanghai"}
    )
    events = [
        at("2026-11-02T10:00:00+08:00", 0.09),
        at("2026-11-02T18:00:00+08:00", 0.02),  # the day's last value counts: day 1 is fine
        at("2026-11-03T10:00:00+08:00", 0.09),
        # 23:30 UTC on Nov 3 is Nov 4 in Shanghai: a day of its own.
        at("2026-11-03T23:30:00+00:00", 0.10),
        at("2026-11-05T09:00:00+08:00", 0.12),
    ]
    alerts = evaluate([spec], events)
    assert summary(alerts) == [("fired", "warning", "emp-1-2026-11-05T09:00:00+08:00-0")]
    fired = alerts[0]
    assert isinstance(fired, AlertFired)
    assert [o.event_id for o in fired.history] == ["2026-11-03", "2026-11-04", "2026-11-05"]
    assert fired.started_at == datetime.fromisoformat("2026-11-03T00:00:00+08:00")
    assert fired.value == 0.12


def test_a_day_without_data_breaks_the_run_unless_missing_days_are_skipped() -> None:
    days = ["2026-11-02", "2026-11-03", "2026-11-05"]  # nothing on the 4th
    events = [at(f"{d}T10:00:00+00:00", 0.09) for d in days]
    breaks = rule({"op": ">", "value": 0.08, "consecutive": 3, "per": "day"})
    assert evaluate([breaks], events) == []
    skipped = rule({"op": ">", "value": 0.08, "consecutive": 3, "per": "day", "missing": "skipped"})
    assert [a[0] for a in summary(evaluate([skipped], events))] == ["fired"]


def test_weekly_average_below_for_two_weeks_then_a_better_week_resolves() -> None:
    spec = rule({"op": "<", "value": 3.5, "consecutive": 2, "per": "week", "aggregate": "avg"})
    scores = {
        "2026-11-02": [3.0, 4.0],  # week 45: avg 3.5, not below
        "2026-11-09": [3.0, 3.2],  # week 46: 3.1
        "2026-11-16": [3.4, 3.0],  # week 47: 3.4 so far fires; 3.2 then keeps it firing
        "2026-11-23": [3.9, 4.1],  # week 48: 4.0: resolves
    }
    events = [
        at(f"{monday}T09:00:00+00:00", score, n=n)
        for monday, values in scores.items()
        for n, score in enumerate(values)
    ]
    alerts = evaluate([spec], events)
    assert [a[0] for a in summary(alerts)] == ["fired", "resolved"]
    fired = alerts[0]
    assert isinstance(fired, AlertFired)
    assert [(o.event_id, round(o.value, 2)) for o in fired.history] == [
        ("2026-W46", 3.1),
        ("2026-W47", 3.4),  # the week so far: its value when the alert fired
    ]


def test_monthly_periods() -> None:
    spec = rule({"op": "<", "value": 0.9, "consecutive": 2, "per": "month", "aggregate": "min"})
    events = [
        at("2026-09-30T12:00:00+00:00", 0.85),  # September's minimum: below
        at("2026-10-01T12:00:00+00:00", 0.95),  # October so far: not below
        at("2026-10-31T12:00:00+00:00", 0.88),  # October's minimum now below: fires
        at("2026-11-15T12:00:00+00:00", 0.80),
    ]
    alerts = evaluate([spec], events)
    assert summary(alerts) == [("fired", "warning", events[2].id)]
    assert isinstance(alerts[0], AlertFired)
    assert [o.event_id for o in alerts[0].history] == ["2026-09", "2026-10"]


# --- windows -------------------------------------------------------------------------------


def test_a_window_average_fires_and_resolves_as_the_window_moves() -> None:
    spec = rule({"op": ">", "value": 0.08, "window": "3d", "aggregate": "avg"})
    values = [0.05, 0.06, 0.16, 0.05, 0.04, 0.03]
    alerts = evaluate([spec], [day(n, v) for n, v in enumerate(values)])
    # Days 0-2 average 0.09: fires on day 2; days 2-4 average 0.083 still; 3-5 0.04 resolves.
    assert summary(alerts) == [
        ("fired", "warning", "emp-1-2"),
        ("resolved", "warning", "emp-1-5"),
    ]
    assert alerts[0].value == pytest.approx(0.09)


def test_a_window_count_and_rate() -> None:
    counted = rule({"op": ">=", "value": 3, "window": "1h", "aggregate": "count"})
    events = [day(n / 96, 1.0) for n in range(4)]  # every 15 minutes
    assert summary(evaluate([counted], events)) == [("fired", "warning", events[2].id)]
    rate = rule({"op": ">", "value": 10, "window": "2d", "aggregate": "rate"})
    events = [day(0, 12.0), day(1, 12.0)]  # 24 in 2 days: 12 a day
    assert [a[0] for a in summary(evaluate([rate], events))] == ["fired"]


def test_down_30_percent_week_on_week() -> None:
    spec = rule(
        {"op": "<=", "value": -0.3, "window": "7d", "aggregate": "sum", "compare": "previous"}
    )
    week1 = [day(n, 10.0) for n in range(7)]  # 70
    week2 = [day(7 + n, 6.0) for n in range(7)]  # falls to 42 as the window moves
    alerts = evaluate([spec], week1 + week2)
    fired = [a for a in alerts if isinstance(a, AlertFired)]
    assert len(fired) == 1
    # On day 12 the window (days 6-12, 46) is compared with days 0-5 (60): -23%. On day 13,
    # days 7-13 (42) against days 0-6 (70): -40%.
    assert fired[0].event_id == "emp-1-13"
    assert fired[0].value == pytest.approx(-0.4)


def test_the_first_window_has_nothing_to_compare_with() -> None:
    spec = rule(
        {"op": "<=", "value": -0.3, "window": "7d", "aggregate": "sum", "compare": "previous"}
    )
    assert evaluate([spec], [day(0, 10.0), day(1, 0.0)]) == []


def test_days_count_on_the_subjects_clock_when_the_rule_has_no_time_zone() -> None:
    spec = rule({"op": ">", "value": 0.08, "consecutive": 2, "per": "day"})
    # 15:00 and 17:00 UTC on Nov 2: one day in UTC, two in Shanghai (23:00, then 01:00).
    events = [at("2026-11-02T15:00:00+00:00", 0.09), at("2026-11-02T17:00:00+00:00", 0.09)]
    assert evaluate([spec], events) == []
    assert [
        a[0] for a in summary(evaluate([spec], events, time_zones={"emp-1": "Asia/Shanghai"}))
    ] == ["fired"]


def test_an_event_sent_again_after_leaving_the_window_is_still_known() -> None:
    policy = Policy(window=timedelta(hours=1), aggregate="count")
    state = StreakState()

    def judge(value: float) -> Verdict:
        return Verdict.BREACH if value >= 2 else Verdict.CLEAR

    for n in (0, 30, 120):  # minutes: the first two make a window of two; then one alone
        point = Point.of(f"e{n}", DAY0 + timedelta(minutes=n), 1.0, Verdict.CLEAR)
        state = observe(state, point, policy, judge=judge).state
    assert [p.event_id for p in state.raw] == ["e120"]
    again = Point.of("e0", DAY0, 1.0, Verdict.CLEAR)
    assert observe(state, again, policy, judge=judge).duplicate
