"""Fraud rules in memory: each pattern's findings, the alert they keep firing, and its
resolution after the quiet time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded
from goalwatch.rules import evaluate
from goalwatch.rules.compiler import compile_fraud
from goalwatch.rules.spec import RuleSpec

T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)  # a Monday


def rule(condition: dict[str, Any], **extra: Any) -> RuleSpec:
    return RuleSpec.model_validate(
        {
            "id": "visits-fraud",
            "name": "Suspicious visit records",
            "kind": "fraud",
            "metric": "crm.visit_logged",
            "condition": condition,
            "severity": "critical",
            "notify": ["manager"],
            "message": "{subject_name}: {pattern} {measure:g} (limit {limit:g})",
            **extra,
        }
    )


def visit(
    seconds: float, subject: str = "rep-1", value: float = 1.0, n: int | None = None, **labels: str
) -> MetricRecorded:
    return MetricRecorded(
        id=f"{subject}-{seconds if n is None else n}",
        metric="crm.visit_logged",
        value=value,
        time=T0 + timedelta(seconds=seconds),
        subject=subject,
        source="crm",
        labels=labels,
    )


def states(alerts: list[AlertFired | AlertResolved]) -> list[str]:
    return ["fired" if isinstance(a, AlertFired) else "resolved" for a in alerts]


def test_a_burst_fires_once_then_resolves_after_the_quiet_time() -> None:
    spec = rule({"pattern": "burst", "count": 5, "within": "2m"})
    burst = [visit(s * 10) for s in range(8)]  # eight visits in 70 s
    alerts = evaluate([spec], burst, until=T0 + timedelta(hours=1))
    assert states(alerts) == ["fired", "resolved"]
    fired, resolved = alerts
    assert fired.event_id == "rep-1-40"  # the fifth within two minutes
    assert isinstance(fired, AlertFired)
    assert [o.event_id for o in fired.history] == [f"rep-1-{s * 10}" for s in range(5)]
    assert fired.message == "rep-1: burst 5 (limit 5)"
    # Resolved two minutes after the last finding (the eighth visit, at 70 s).
    assert resolved.resolved_at == T0 + timedelta(seconds=70 + 120)


def test_records_spread_out_make_no_burst() -> None:
    spec = rule({"pattern": "burst", "count": 5, "within": "2m"})
    assert evaluate([spec], [visit(s * 40) for s in range(10)]) == []


def test_the_same_content_under_another_id_is_a_duplicate() -> None:
    spec = rule({"pattern": "duplicate", "fields": ["value", "labels.customer"], "within": "1h"})
    events = [
        visit(0, value=3, customer="acme"),
        visit(60, value=3, customer="globex"),  # other customer: not a copy
        visit(120, value=3, customer="acme"),  # a copy of the first
    ]
    alerts = evaluate([spec], events)
    assert states(alerts) == ["fired"]
    assert alerts[0].event_id == "rep-1-120"
    assert isinstance(alerts[0], AlertFired)
    assert [o.event_id for o in alerts[0].history] == ["rep-1-0", "rep-1-120"]
    # Resending the same event (same id) is not a duplicate record.
    assert evaluate([spec], [visit(0, customer="acme"), visit(0, customer="acme")]) == []


def test_an_impossible_jump_or_a_value_out_of_range() -> None:
    spec = rule({"pattern": "jump", "max_step": 0.5, "range": [0, 1]})
    progress = [0.1, 0.2, 0.3, 1.0]  # 30% to 100% in one step
    alerts = evaluate([spec], [visit(n * 3600, value=v, n=n) for n, v in enumerate(progress)])
    assert states(alerts) == ["fired"]
    assert alerts[0].message == "rep-1: jump 0.7 (limit 0.5)"
    out_of_range = evaluate([spec], [visit(0, value=1.4)])
    assert out_of_range[0].message == "rep-1: jump 1.4 (limit 1)"


def test_off_hours_bulk_counts_records_outside_working_hours_in_the_time_zone() -> None:
    spec = rule(
        {
            "pattern": "off_hours",
            "count": 3,
            "within": "1d",
            "hours": "08:00-20:00",
            "time_zone": "Asia/Shanghai",
        }
    )
    # 10:00 UTC is 18:00 in Shanghai (at work); 13:00 UTC is 21:00 (after hours).
    at_work = [visit(n * 60) for n in range(5)]
    night = [visit(3 * 3600 + n * 60) for n in range(3)]
    alerts = evaluate([spec], at_work + night)
    assert states(alerts) == ["fired"]
    assert alerts[0].event_id == f"rep-1-{3 * 3600 + 120}"
    # Saturday at 18:00 Shanghai is not a working day.
    saturday = [visit(5 * 86400 + n * 60) for n in range(3)]
    assert states(evaluate([spec], saturday)) == ["fired"]


def test_a_night_shift_wraps_past_midnight() -> None:
    spec = rule({"pattern": "off_hours", "count": 1, "within": "1d", "hours": "20:00-08:00"})
    assert evaluate([spec], [visit(12 * 3600)]) == []  # Monday 22:00: at work
    assert evaluate([spec], [visit(17 * 3600)]) == []  # Tuesday 03:00: Monday's shift
    assert states(evaluate([spec], [visit(-7 * 3600)])) == ["fired"]  # Sunday's shift: off
    assert states(evaluate([spec], [visit(2 * 3600)])) == ["fired"]  # Monday 12:00: off


def test_a_value_far_from_its_peers_is_an_outlier() -> None:
    spec = rule(
        {"pattern": "outlier", "peers": {"label": "region"}, "z": 3, "min_group": 4, "within": "7d"}
    )
    peers = [
        visit(n, subject=f"rep-{n}", value=v, region="north")
        for n, v in enumerate([10, 11, 9, 10, 12, 10])
    ]
    far = visit(100, subject="rep-x", value=40, region="north")
    other_region = visit(101, subject="rep-y", value=40, region="south")
    alerts = evaluate([spec], [*peers, far, other_region])
    assert [(a.subject, states([a])[0]) for a in alerts] == [("rep-x", "fired")]


def test_too_few_peers_judge_nothing() -> None:
    spec = rule(
        {"pattern": "outlier", "peers": {"label": "region"}, "z": 2, "min_group": 5, "within": "7d"}
    )
    few = [visit(n, subject=f"rep-{n}", value=10 + n, region="n") for n in range(3)]
    assert evaluate([spec], [*few, visit(10, subject="rep-x", value=99, region="n")]) == []


def test_a_new_finding_after_the_alert_resolved_is_a_new_episode() -> None:
    spec = rule({"pattern": "burst", "count": 3, "within": "1m"})
    first = [visit(s) for s in (0, 10, 20)]
    later = [visit(3600 + s) for s in (0, 10, 20)]
    alerts = evaluate([spec], first + later)
    assert states(alerts) == ["fired", "resolved", "fired"]
    assert alerts[0].started_at != alerts[2].started_at


def test_finding_and_none_are_exclusive_in_the_compiled_ruleset() -> None:
    spec = rule({"pattern": "jump", "max_step": 0.5, "range": [0, 1]})
    definition = compile_fraud(spec)["visits-fraud"]
    finding = definition["finding"]["all"][0]["m"]["$and"][-1]
    none = definition["none"]["all"][0]["m"]["$and"][-1]
    assert finding == {
        "$or": [
            {"$and": [{"$gt": {"step": 0.5}}]},
            {"$and": [{"$lt": {"value": 0.0}}]},
            {"$and": [{"$gt": {"value": 1.0}}]},
        ]
    }
    assert none == {
        "$and": [
            {"$or": [{"$lte": {"step": 0.5}}]},
            {"$or": [{"$gte": {"value": 0.0}}]},
            {"$or": [{"$lte": {"value": 1.0}}]},
        ]
    }


@pytest.mark.parametrize(
    ("condition", "error"),
    [
        ({"pattern": "bust"}, "'bust' is not a fraud pattern"),
        ({"pattern": "jump"}, "a jump rule needs max_step"),
        ({"pattern": "burst", "count": 1, "within": "1m"}, "greater than or equal to 2"),
        ({"pattern": "duplicate", "within": "1h", "fields": ["customer"]}, "labels.NAME"),
        ({"pattern": "off_hours", "count": 3, "within": "1d", "hours": "8-20"}, "HH:MM-HH:MM"),
        ({"pattern": "off_hours", "count": 3, "within": "1d", "days": ["monday"]}, "not a day"),
        ({"op": ">", "value": 1}, "a fraud rule's condition is written like"),
    ],
)
def test_bad_fraud_conditions_say_what_to_write(condition: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        rule(condition)


def test_off_hours_and_days_follow_each_subjects_own_time_zone() -> None:
    spec = rule({"pattern": "off_hours", "count": 1, "within": "1d"})  # no time zone of its own
    night_in_shanghai = visit(3 * 3600, subject="li-na")  # 13:00 UTC is 21:00 in Shanghai
    assert evaluate([spec], [night_in_shanghai]) == []  # 13:00 UTC: at work on UTC's clock
    found = evaluate([spec], [night_in_shanghai], time_zones={"li-na": "Asia/Shanghai"})
    assert states(found) == ["fired"]
