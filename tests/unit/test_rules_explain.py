"""goalwatch rules explain: each rule in plain words, built from the rule as validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from goalwatch.cli import main
from goalwatch.rules.explain import LANGUAGES, explain
from goalwatch.rules.loader import load_rules
from goalwatch.rules.spec import RuleSpec

REPO = Path(__file__).resolve().parents[2]


def threshold(**condition: object) -> RuleSpec:
    return RuleSpec.model_validate(
        {
            "id": "visits-low",
            "name": "Visits low",
            "kind": "threshold",
            "metric": "customer_visits",
            "where": {"region": ["north", "east"], "site": {"not_in": ["training"]}},
            "org_unit": "sales",
            "condition": {"op": "<", "value": 3, "consecutive": 2, **condition},
            "severity": "warning",
            "escalate": [{"after": "5d", "severity": "critical"}],
            "notify": ["subject", "manager", "hr-lead"],
            "message": "{subject_name}: {value}",
        }
    )


def test_a_threshold_rule_says_what_it_watches_when_it_fires_and_who_hears() -> None:
    en = explain(threshold(window="7d", aggregate="sum", **{"for": "2h"}), "en")
    assert en[1] == (
        "Watches customer_visits; only where region is north, east; except where site is "
        "training; for people in sales or any unit below."
    )
    assert en[2] == "Fires when the sum over the last 7d is below 3 on 2 observations in a row."
    assert en[3].startswith("It must keep holding for 2h first")
    assert "Rises to critical (red) 5d after the breach began" in en[6]
    assert en[7] == "Tells the person it is about, the person's manager, person hr-lead."


def test_hysteresis_and_periods_are_spelled_out_in_both_languages() -> None:
    rule = threshold(per="week", aggregate="avg", resolve_at=4, time_zone="Asia/Shanghai")
    en, zh = (explain(rule, lang) for lang in LANGUAGES)
    assert "each calendar week's average is below 3 for 2 weeks in a row (Asia/Shanghai" in en[2]
    assert "resolves only when the value is back past 4" in en[3]
    assert "每周的平均值低于 3，连续 2 周（Asia/Shanghai" in zh[2]  # noqa: RUF001
    assert "只有数值回到 4 以外才恢复" in zh[3]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_shipped_rule_can_be_explained(lang: str) -> None:
    for rule in load_rules(REPO / "rules"):
        lines = explain(rule.spec, lang)  # type: ignore[arg-type]
        assert rule.spec.id in lines[0]
        assert len(lines) >= 4


def test_the_command_prints_both_languages_and_names_the_closest_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rules = str(REPO / "rules")
    assert main(["rules", "explain", "visit-records-burst", "--rules", rules]) == 0
    out = capsys.readouterr().out
    assert "30 or more records from one person within 2m" in out
    assert "同一人在 2m 内记录 30 条及以上" in out
    assert main(["rules", "explain", "visit-records", "--rules", rules]) == 2
    assert "did you mean visit-records-burst?" in capsys.readouterr().err


def test_a_ratio_is_said_in_percent_and_one_value_needs_no_run() -> None:
    rule = threshold(value=0.08, consecutive=1, resolve_at=0.09)
    en, zh = (explain(rule, lang, unit="ratio") for lang in LANGUAGES)
    assert en[2] == "Fires when the value is below 8%."
    assert "back past 9%" in en[3]
    assert zh[2] == "当数值低于 8% 时触发。"
    assert explain(threshold(value=45), "en", unit="percent")[2].endswith(
        "below 45% on 2 observations in a row."
    )
    assert explain(threshold(value=3), "en", unit="count")[2].endswith(
        "below 3 on 2 observations in a row."
    )


def test_a_named_group_is_said_as_its_members_in_both_languages() -> None:
    rule = threshold().model_copy(update={"notify": ["manager:2", "group:quality-leads"]})
    en, zh = (explain(rule, lang) for lang in LANGUAGES)
    told = "Tells the manager 2 levels up the person's chain (the manager's manager), "
    assert told + "everyone in the group quality-leads." in en
    assert "通知：当事人往上第 2 级上级（上级的上级）、quality-leads 组的全体成员。" in zh  # noqa: RUF001
