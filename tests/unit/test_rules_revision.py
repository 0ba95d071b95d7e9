"""A rule's revision: what decides verdicts and state enters it, how alerts are told does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from goalwatch.rules.goal_overdue_spec import GoalOverdueRuleSpec
from goalwatch.rules.impact_spec import ImpactRuleSpec
from goalwatch.rules.revision import revision
from goalwatch.rules.spec import RuleSpec

THRESHOLD: dict[str, Any] = {
    "id": "report-rework-rate-high",
    "name": "Report rework rate above 8% on 3 consecutive days",
    "kind": "threshold",
    "metric": "report_rework_rate",
    "where": {"department": "radiology", "ward": ["icu", "er"]},
    "condition": {"op": ">", "value": 0.08, "consecutive": 3},
    "severity": "warning",
    "notify": ["subject", "manager"],
    "message": "{subject_name}: {value:.0%}",
}


def threshold(**changes: Any) -> RuleSpec:
    return RuleSpec.model_validate({**THRESHOLD, **changes})


def with_condition(**changes: Any) -> RuleSpec:
    return threshold(condition={**THRESHOLD["condition"], **changes})


def test_a_revision_is_16_hex_digits_and_the_same_in_another_process() -> None:
    # Not Python's hash(), which differs per process: every replica must agree.
    here = revision(threshold())
    code = (
        "from goalwatch.rules.revision import revision\n"
        "from tests.unit.test_rules_revision import threshold\n"
        "print(revision(threshold()))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    ).stdout.strip()
    assert len(here) == 16 and int(here, 16) >= 0
    assert there == here


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "Another name"},
        {"description": "Why the rule exists"},
        {"message": "{subject}: {value}"},
        {"resolved_message": "{subject}: back to {value}"},
        {"severity": "critical"},
        {"notify": ["manager", "wang-fang"]},
        {"escalate": [{"after": "4d", "severity": "critical"}]},
        {"id": "report-rework-rate-high-v2"},
    ],
)
def test_how_an_alert_is_told_does_not_change_the_revision(changes: dict[str, Any]) -> None:
    assert revision(threshold(**changes)) == revision(threshold())


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(lambda: with_condition(value=0.1), id="value"),
        pytest.param(lambda: with_condition(op=">="), id="op"),
        pytest.param(lambda: with_condition(consecutive=4), id="consecutive"),
        pytest.param(lambda: with_condition(resolve_at=0.07), id="resolve_at"),
        pytest.param(lambda: with_condition(**{"for": "2h"}), id="for"),
        pytest.param(lambda: with_condition(per="day"), id="per"),
        pytest.param(lambda: with_condition(per="day", aggregate="avg"), id="aggregate"),
        pytest.param(lambda: with_condition(window="7d", aggregate="avg"), id="window"),
        pytest.param(lambda: threshold(where={"department": "radiology"}), id="where"),
        pytest.param(lambda: threshold(org_unit="radiology"), id="org_unit"),
        pytest.param(lambda: threshold(by=["ward"]), id="by"),
        pytest.param(lambda: threshold(metric="report_rework_ratio"), id="metric"),
    ],
)
def test_what_decides_verdicts_changes_the_revision(rule: Any) -> None:
    assert revision(rule()) != revision(threshold())


def test_the_revision_is_of_the_rule_as_validated_not_as_written() -> None:
    # Defaults written out, keys in another order, a duration written another way.
    written = {
        **THRESHOLD,
        "where": {"ward": ["icu", "er"], "department": "radiology"},
        "condition": {"consecutive": 3, "value": 0.08, "op": ">", "resolve_at": None},
    }
    assert revision(RuleSpec.model_validate(written)) == revision(threshold())
    assert revision(with_condition(**{"for": "48h"})) == revision(with_condition(**{"for": "2d"}))


def test_a_fraud_and_an_overdue_rule_have_revisions_of_their_condition() -> None:
    burst = {
        **THRESHOLD,
        "kind": "fraud",
        "where": {},
        "condition": {"pattern": "burst", "count": 30, "within": "2m"},
        "message": "{subject}",
    }
    absence = {**burst, "kind": "overdue", "condition": {"absent_for": "2d"}}
    for rule, other in [
        (burst, {"pattern": "burst", "count": 31, "within": "2m"}),
        (absence, {"absent_for": "3d"}),
    ]:
        base = revision(RuleSpec.model_validate(rule))
        assert revision(RuleSpec.model_validate({**rule, "severity": "info"})) == base
        assert revision(RuleSpec.model_validate({**rule, "condition": other})) != base


def test_goal_rules_have_revisions_of_their_filters_and_condition() -> None:
    impact = {
        "id": "goal-failing-impact",
        "name": "A goal others build on fails",
        "kind": "dependency_impact",
        "when": {"status": ["invalid", "off_track"]},
        "severity": "warning",
        "notify": ["owner"],
        "message": "{goal_title} is {status}",
    }
    base = revision(ImpactRuleSpec.model_validate(impact))
    assert revision(ImpactRuleSpec.model_validate({**impact, "message": "{goal_id}"})) == base
    assert revision(ImpactRuleSpec.model_validate({**impact, "min_weight": 0.2})) != base
    assert (
        revision(ImpactRuleSpec.model_validate({**impact, "when": {"status": "invalid"}})) != base
    )

    overdue = {
        "id": "goal-check-in-missed",
        "name": "A check-in missed",
        "kind": "overdue",
        "goals": {"type": "key_result"},
        "condition": {"no_check_in": {"grace": "2d"}},
        "severity": "info",
        "notify": ["owner"],
        "message": "{goal_title}",
    }
    base = revision(GoalOverdueRuleSpec.model_validate(overdue))
    assert revision(GoalOverdueRuleSpec.model_validate({**overdue, "notify": ["manager"]})) == base
    changed = {**overdue, "condition": {"no_check_in": {"grace": "3d"}}}
    assert revision(GoalOverdueRuleSpec.model_validate(changed)) != base
    assert revision(GoalOverdueRuleSpec.model_validate({**overdue, "goals": {}})) != base
