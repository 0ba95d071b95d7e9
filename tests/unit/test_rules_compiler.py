"""Compiling rules to durable_rules, checked against the real engine for every operator."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime

import pytest

from goalwatch.contracts import MetricRecorded
from goalwatch.rules.compiler import INVERSE, compile_rule, engine_number, event_message
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.spec import OPS, RANGE_OPS, RuleSpec

_ids = itertools.count()


def rule(
    op: str = ">", value: float | list[float] = 0.08, where: dict[str, str] | None = None
) -> RuleSpec:
    return RuleSpec.model_validate(
        {
            "id": "rework-high",
            "name": "Rework",
            "kind": "threshold",
            "metric": "report_rework_rate",
            "where": where or {},
            "condition": {"op": op, "value": value, "consecutive": 3},
            "severity": "warning",
            "notify": ["manager"],
            "message": "{subject}",
        }
    )


def event(value: float, labels: dict[str, str] | None = None) -> MetricRecorded:
    return MetricRecorded(
        id=f"e{next(_ids)}",
        metric="report_rework_rate",
        value=value,
        time=datetime(2026, 11, 20, 10, tzinfo=UTC),
        subject="emp-1",
        source="his",
        labels=labels or {},
    )


def run(spec: RuleSpec, value: float, labels: dict[str, str] | None = None) -> list[str] | None:
    """The rules of ``spec``'s ruleset that match the event, or None if none applies."""
    verdicts = RuleEngine([spec]).evaluate(event(value, labels))
    return [verdict.value for _, verdict in verdicts] or None


def test_compiled_definition() -> None:
    assert compile_rule(rule(">", 0.08, {"department": "radiology"})) == {
        "rework-high": {
            "breach": {
                "all": [
                    {
                        "m": {
                            "$and": [
                                {"metric": "report_rework_rate"},
                                {"label__department": "radiology"},
                                {"$gt": {"value": 0.08}},
                            ]
                        }
                    }
                ],
                "run": "breach",
            },
            "clear": {
                "all": [
                    {
                        "m": {
                            "$and": [
                                {"metric": "report_rework_rate"},
                                {"label__department": "radiology"},
                                {"$lte": {"value": 0.08}},
                            ]
                        }
                    }
                ],
                "run": "clear",
            },
        }
    }


def test_equality_is_a_plain_match_and_its_inverse_is_neq() -> None:
    ruleset = compile_rule(rule("==", 1.0))["rework-high"]
    assert ruleset["breach"]["all"][0]["m"]["$and"][-1] == {"value": 1.0}
    assert ruleset["clear"]["all"][0]["m"]["$and"][-1] == {"$neq": {"value": 1.0}}


def test_every_operator_has_an_inverse_that_is_its_negation() -> None:
    assert set(INVERSE) == set(OPS)
    assert all(INVERSE[INVERSE[op]] == op for op in OPS)


_PYTHON = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@pytest.mark.parametrize("op", [op for op in OPS if op not in RANGE_OPS])
@pytest.mark.parametrize("threshold", [0.08, 0.0, -2.5, 100.0, 0.0001, 123456789.125])
def test_engine_agrees_with_python_at_above_and_below_the_threshold(
    op: str, threshold: float
) -> None:
    spec = rule(op, threshold)
    step = max(abs(threshold) * 1e-3, 1e-3)
    for value in (threshold, threshold + step, threshold - step):
        expected = "breach" if _PYTHON[op](value, threshold) else "clear"
        assert run(spec, value) == [expected], (op, threshold, value)


@pytest.mark.parametrize("op", RANGE_OPS)
@pytest.mark.parametrize("low, high", [(0.05, 0.08), (-2.5, 0.0), (0.0001, 123456789.125)])
def test_between_includes_both_ends_and_outside_is_the_rest(
    op: str, low: float, high: float
) -> None:
    spec = rule(op, [low, high])
    step = max(abs(high - low) * 1e-3, 1e-4)
    for value in (low, high, low - step, low + step, high - step, high + step):
        within = low <= value <= high
        expected = "breach" if within == (op == "between") else "clear"
        assert run(spec, value) == [expected], (op, low, high, value)


@pytest.mark.parametrize("value", [1e-05, -1e-07, 5e-324, 1e16, -3e20, 2.5e-10])
@pytest.mark.parametrize("op", [">", "<=", "!="])
def test_values_python_writes_with_a_bare_exponent_are_compared_correctly(
    op: str, value: float
) -> None:
    for threshold in (0.0, 0.08, -0.08):
        expected = "breach" if _PYTHON[op](value, threshold) else "clear"
        assert run(rule(op, threshold), value) == [expected], (op, threshold, value)


def test_engine_number_only_moves_values_the_engine_cannot_read() -> None:
    assert engine_number(0.11, 0.08) == 0.11
    assert engine_number(1.5e-05, 0.08) == 1.5e-05
    moved = engine_number(1e-05, 0.08)
    assert moved < 1e-05 and "." in repr(moved)
    assert engine_number(1e-05, 0.0) > 1e-05
    assert math.nextafter(engine_number(1e16, 0.08), 0.0) == 1e16


def test_labels_filter_events() -> None:
    spec = rule(">", 0.08, {"department": "radiology"})
    assert run(spec, 0.2, {"department": "radiology", "ward": "3"}) == ["breach"]
    assert run(spec, 0.01, {"department": "radiology"}) == ["clear"]
    assert run(spec, 0.2, {"department": "cardiology"}) is None
    assert run(spec, 0.2, {}) is None


def test_label_values_with_quotes_and_non_ascii() -> None:
    spec = rule(">", 0.08, {"department": '放射科 "A"'})
    assert run(spec, 0.2, {"department": '放射科 "A"'}) == ["breach"]
    assert run(spec, 0.2, {"department": "放射科"}) is None


def test_event_message_posts_only_the_labels_the_rule_filters_on() -> None:
    spec = rule(">", 0.08, {"department": "radiology"})
    message = event_message(spec, event(0.2, {"department": "radiology", "ward": "3"}), sid="s")
    assert message == {
        "id": message["id"],
        "sid": "s",
        "metric": "report_rework_rate",
        "value": 0.2,
        "label__department": "radiology",
    }
