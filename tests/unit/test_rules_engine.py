"""RuleEngine, the durable_rules adapter: which rules an event reaches, and their verdicts.

Some of these pin down what the adapter relies on in durable_rules itself (no threads, every
matched action taken during the call, a fact seen by every rule it matches, at most 64 matches
a fact): they fail if a new release behaves otherwise.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import pytest

from goalwatch.contracts import MetricRecorded
from goalwatch.rules import engine as engine_module
from goalwatch.rules.compiler import compile_metric, metric_message
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


def test_an_engine_error_is_raised_and_the_next_event_is_judged_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = RuleEngine([rule("only", "feedback_score", "<", 4.5)])
    complete = engine_module.native.complete_and_start_action
    # The pack's post fails, then the rule's own: the pack is asked rule by rule from then.
    failures = [engine_module.native.error("boom"), engine_module.native.error("boom")]

    def failing_once(*args: Any) -> Any:
        if failures:
            raise failures.pop()
        return complete(*args)

    monkeypatch.setattr(engine_module.native, "complete_and_start_action", failing_once)
    with pytest.raises(RuntimeError, match=r"rule 'only' failed on event 'e\d+': boom"):
        engine.evaluate(event("feedback_score", 1.0))
    # Nothing of the failed fact is left: the next one gets its own verdict, once.
    assert verdicts(engine, event("feedback_score", 4.9)) == [("only", False)]
    assert verdicts(engine, event("feedback_score", 1.0)) == [("only", True)]


def test_every_rule_of_a_metric_gets_its_verdict_from_one_fact() -> None:
    # More rules than one ruleset holds, all matching each event: 100 verdicts, in load
    # order, where an event (consumed by its first match) would give one.
    rules = [rule(f"r{n:03}", "visits", ">", n) for n in range(100)]
    engine = RuleEngine(rules)
    assert verdicts(engine, event("visits", 49.5)) == [(f"r{n:03}", n < 49.5) for n in range(100)]
    again = event("visits", 150.0)
    assert verdicts(engine, again) == [(f"r{n:03}", True) for n in range(100)]
    assert verdicts(engine, again) == [(f"r{n:03}", True) for n in range(100)]  # redelivered


def _stack_ruleset(rules: list[RuleSpec]) -> Any:
    return engine_module._Ruleset("stack", compile_metric(rules), facts=True)


def _listed_rules(count: int) -> list[RuleSpec]:
    return [rule(f"r{n}", "visits", ">", 1.0, where={"ward": ["icu", "er"]}) for n in range(count)]


def _overflow_probe(answers: Connection) -> None:
    """In a process of its own: what durable_rules answers a fact that 33 list-filtering
    rules would match. The process ends at once after, its engine left as it is: cleaning up
    after error 303 has been seen to abort the whole process (a native double free)."""
    engine_module.native.delete_state = lambda *_: None  # no clean-up: the process ends now
    listed = _listed_rules(33)
    try:
        _stack_ruleset(listed).matches(
            metric_message(listed, event("visits", 2.0, ward="icu"), sid=engine_module.SID)
        )
        answers.send("matched")
    except engine_module.native.error as exc:
        answers.send(f"error: {exc}")
    os._exit(0)


def test_durable_rules_match_stack_is_what_rules_are_packed_by() -> None:
    # Why a ruleset holds rules of weight 32: a fact may match 64 plain rules, while 33
    # rules each filtering on a list of labels are refused (error 303), matched or not.
    plain = _stack_ruleset([rule(f"r{n}", "visits", ">", 1.0) for n in range(64)])
    assert len(plain.matches(metric_message([], event("visits", 2.0), sid=engine_module.SID))) == 64
    context = multiprocessing.get_context("spawn")
    answers, child_end = context.Pipe(duplex=False)
    probe = context.Process(target=_overflow_probe, args=(child_end,))
    probe.start()
    try:
        assert answers.poll(60), f"the probe said nothing (exit code {probe.exitcode})"
        assert "303" in str(answers.recv())
    finally:
        probe.join(timeout=10)
    listed = _listed_rules(33)
    message = metric_message(listed, event("visits", 2.0, ward="icu"), sid=engine_module.SID)
    assert len(_stack_ruleset(listed[:16]).matches(message)) == 16


def test_a_pack_that_overflows_anyway_is_asked_rule_by_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "WEIGHT_PER_RULESET", 1000)
    where = {"ward": ["icu", "er"]}
    engine = RuleEngine([rule(f"r{n:02}", "visits", ">", n, where=where) for n in range(40)])
    expected = [(f"r{n:02}", n < 20.5) for n in range(40)]
    assert verdicts(engine, event("visits", 20.5, ward="er")) == expected
    assert verdicts(engine, event("visits", 20.5, ward="er")) == expected
    assert verdicts(engine, event("visits", 20.5, ward="ward-3")) == []


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


def test_a_rule_matched_through_two_alternatives_gives_one_verdict() -> None:
    # A subject in both units a rule is scoped to matches both alternatives of its $or.
    engine = RuleEngine([rule("scoped", "visits", ">", 1.0, org_unit=["north", "sales"])])
    judged = engine.evaluate(event("visits", 2.0), org_units=["north", "sales", "company"])
    assert [(spec.id, verdict) for spec, verdict in judged] == [("scoped", Verdict.BREACH)]


def test_rules_scoped_to_many_units_are_packed_apart() -> None:
    units = [f"unit-{n}" for n in range(20)]
    rules = [rule(f"r{n}", "visits", ">", 1.0, org_unit=units) for n in range(10)]
    engine = RuleEngine(rules)
    # Each rule weighs 20 (a subject may match all 20 units): one to a ruleset.
    judged = engine.evaluate(event("visits", 2.0), org_units=units)
    assert [spec.id for spec, _ in judged] == [f"r{n}" for n in range(10)]
    assert {verdict for _, verdict in judged} == {Verdict.BREACH}
