"""The rule tests shipped beside the rules, found for one rule (services/evaluator/shipped_tests.py)."""

from __future__ import annotations

from pathlib import Path

from services.evaluator.shipped_tests import shipped_tests

RULES = Path(__file__).resolve().parents[2] / "rules"


def test_a_rules_own_tests_are_found_by_rules_or_by_the_alerts_expected(tmp_path: Path) -> None:
    (tmp_path / "named.yaml").write_text("name: named\nrules: [a, b]\nevents: []\nexpect: []\n")
    (tmp_path / "expected.yaml").write_text(
        "name: by its alerts\nevents: []\nexpect:\n  - {state: firing, rule: a, subject: s}\n"
    )
    (tmp_path / "other.yaml").write_text("name: other\nrules: [c]\n")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    found = shipped_tests(tmp_path, "a")
    assert [(t.file, t.name) for t in found] == [
        ("expected.yaml", "by its alerts"),
        ("named.yaml", "named"),
    ]
    assert found[1].text.startswith("name: named\n")
    assert shipped_tests(tmp_path, "c")[0].file == "other.yaml"
    assert shipped_tests(tmp_path / "missing", "a") == []


def test_every_shipped_rule_test_is_offered_for_a_rule_it_tests() -> None:
    rule_ids = {"report-rework-rate-high", "goal-failing-impact", "key-result-past-due"}
    for rule_id in rule_ids:
        assert shipped_tests(RULES / "tests", rule_id), f"no shipped test offered for {rule_id}"
