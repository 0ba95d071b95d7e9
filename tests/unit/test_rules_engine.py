"""RuleEngine, the durable_rules adapter: which rules an event reaches, and their verdicts.

Some of these pin down what the adapter relies on in durable_rules itself (no threads, actions
run during the call, swallowed exceptions): they fail if a new release behaves otherwise.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from goalwatch.contracts import MetricRecorded
from goalwatch.rules import engine as engine_module
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.transitions import Verdict

_ids = itertools.count()


def rule(rule_id: str, metric: str, op: str, value: float, **extra: Any) -> RuleSpec:
    return RuleSpec.model_validate(
        {
            "id": rule_id,
            "name": rule_id,
            "kind": "threshold",
            "metric": metric,
            "condition": {"op": op, "value": value},
            "severity": "info",
            "notify": ["subject"],
            "message": "{subject}",
            **extra,
        }
    )


def event(metric: str, value: float, **labels: str) -> MetricRecorded:
    return MetricRecorded(
        id=f"e{next(_ids)}",
        metric=metric,
        value=value,
        time=datetime(2026, 11, 20, tzinfo=UTC),
        subject="emp-1",
        source="test",
        labels=labels,
    )


RULES = [
    rule("rework-all", "report_rework_rate", ">", 0.08),
    rule("rework-radiology", "report_rework_rate", ">=", 0.05, where={"department": "radiology"}),
    rule("feedback-low", "feedback_score", "<", 4.5),
]


def verdicts(engine: RuleEngine, ev: MetricRecorded) -> list[tuple[str, bool]]:
    return [(spec.id, verdict is Verdict.BREACH) for spec, verdict in engine.evaluate(ev)]


def test_event_reaches_only_rules_of_its_metric_and_labels() -> None:
    engine = RuleEngine(RULES)
    assert verdicts(engine, event("report_rework_rate", 0.06, department="radiology")) == [
        ("rework-all", False),
        ("rework-radiology", True),
    ]
    assert verdicts(engine, event("report_rework_rate", 0.06, department="cardiology")) == [
        ("rework-all", False)
    ]
    assert verdicts(engine, event("report_rework_rate", 0.09)) == [("rework-all", True)]
    assert verdicts(engine, event("feedback_score", 4.4)) == [("feedback-low", True)]
    assert verdicts(engine, event("feedback_score", 4.5)) == [("feedback-low", False)]


def test_unrelated_metric_reaches_no_rule() -> None:
    assert RuleEngine(RULES).evaluate(event("calls_per_hour", 1000.0)) == []


def test_no_rules() -> None:
    assert RuleEngine([]).evaluate(event("report_rework_rate", 1.0)) == []


def test_same_event_posted_again_gets_the_same_verdict() -> None:
    engine = RuleEngine(RULES)
    ev = event("report_rework_rate", 0.2)
    assert verdicts(engine, ev) == verdicts(engine, ev) == [("rework-all", True)]


def test_many_events_on_one_sid_do_not_accumulate_state() -> None:
    engine = RuleEngine(RULES)
    for n in range(2000):
        ev = event("report_rework_rate", 0.1 if n % 2 else 0.01, department="radiology")
        assert [v is Verdict.BREACH for _, v in engine.evaluate(ev)] == [n % 2 == 1, n % 2 == 1]


def test_no_thread_is_started() -> None:
    before = set(threading.enumerate())
    engine = RuleEngine(RULES)
    for n in range(50):
        engine.evaluate(event("report_rework_rate", 0.1 if n % 2 else 0.01))
    assert set(threading.enumerate()) == before


def test_the_action_has_run_when_evaluate_returns() -> None:
    # durable_rules could queue actions for a dispatch loop; the adapter runs none.
    engine = RuleEngine([rule("only", "feedback_score", "<", 4.5)])
    assert verdicts(engine, event("feedback_score", 1.0)) == [("only", True)]


def test_an_exception_in_an_action_is_raised_and_the_next_event_is_judged_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing(outcomes: list[str], action: str) -> Callable[[Any], None]:
        def record(_: Any) -> None:
            if not outcomes and action == "breach":
                outcomes.append("failed")
                raise KeyError("boom")
            outcomes.append(action)

        return record

    monkeypatch.setattr(engine_module, "_recorder", failing)
    engine = RuleEngine([rule("only", "feedback_score", "<", 4.5)])
    with pytest.raises(RuntimeError, match=r"rule 'only' failed on event 'e\d+': .*boom"):
        engine.evaluate(event("feedback_score", 1.0))
    assert verdicts(engine, event("feedback_score", 4.9)) == [("only", False)]


def test_two_rules_with_one_id_are_refused() -> None:
    with pytest.raises(ValueError, match="two rules have the id 'feedback-low'"):
        RuleEngine([RULES[2], RULES[2]])


def test_label_filters_in_and_not_in_are_the_engines_verdicts_too() -> None:
    where = {"ward": ["icu", "er"], "site": {"not_in": ["training", "demo"]}}
    engine = RuleEngine([rule("rework-wards", "report_rework_rate", ">", 0.08, where=where)])

    def verdict(value: float, **labels: str) -> list[tuple[str, bool]]:
        return verdicts(engine, event("report_rework_rate", value, **labels))

    assert verdict(0.1, ward="icu", site="main") == [("rework-wards", True)]
    assert verdict(0.01, ward="er", site="main") == [("rework-wards", False)]
    assert verdict(0.1, ward="er") == [("rework-wards", True)]  # no site: not in the list
    assert verdict(0.1, ward="ward-3", site="main") == []  # not one of the wards
    assert verdict(0.1, ward="icu", site="training") == []
    assert verdict(0.1, ward="icu", site="demo") == []
    assert verdict(0.1, site="main") == []  # no ward
