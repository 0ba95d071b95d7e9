"""Rules scoped by org unit: the field, what the engine decides, the absence kind, rule tests."""

from __future__ import annotations

import itertools
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from goalwatch.contracts import MetricRecorded
from goalwatch.rules import RuleLoadError, evaluate, load_rules
from goalwatch.rules.compiler import compile_rule
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.overdue import applies
from goalwatch.rules.scope import MAX_DEPTH, ancestry, in_scope
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.testing import run_test
from goalwatch.rules.transitions import Verdict

_ids = itertools.count()
DAY0 = datetime(2026, 11, 2, 10, tzinfo=UTC)


def rule(rule_id: str = "scoped", **extra: Any) -> RuleSpec:
    fields: dict[str, Any] = {
        "id": rule_id,
        "name": rule_id,
        "kind": "threshold",
        "metric": "turnaround",
        "condition": {"op": ">", "value": 48},
        "severity": "info",
        "notify": ["subject"],
        "message": "{subject}",
        **extra,
    }
    return RuleSpec.model_validate(fields)


def event(value: float, subject: str = "li-na", day: int = 0) -> MetricRecorded:
    return MetricRecorded(
        id=f"e{next(_ids)}",
        metric="turnaround",
        value=value,
        time=DAY0 + timedelta(days=day),
        subject=subject,
        source="his",
    )


# ---------------------------------------------------------------- the field


def test_one_unit_or_a_list_of_units() -> None:
    assert rule(org_unit="radiology").scope == ("radiology",)
    assert rule(org_unit=["radiology", "icu"]).scope == ("radiology", "icu")
    assert rule().scope == ()


RULE_FILE = """\
id: scoped
name: Scoped
kind: threshold
metric: turnaround
org_unit: {value}
condition: {{op: ">", value: 48}}
severity: info
notify: [subject]
message: x
"""


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (
            "Radiology Dept",
            "org_unit: 'Radiology Dept' is not an org unit id (1-128 of letters, digits and "
            ". _ @ -, not starting with a dot; not the unit's display name): write the id the "
            "goals service knows the unit by (GET /v1/org-units), e.g. org_unit: radiology, or "
            "a list of ids, e.g. org_unit: [radiology, icu]",
        ),
        ("[]", "org_unit: an empty list scopes the rule to nobody: write the id"),
        ("", "org_unit: is empty: write the id"),
        ("[icu, icu]", "org_unit: lists a unit twice; name each unit once"),
        (
            "[radiology, 42]",
            "org_unit: 42 in the list is not text: quote unit ids that look like numbers, e.g. "
            'org_unit: [radiology, "42"]',
        ),
        ("42", 'org_unit: expected text, got 42; quote it: "42"'),
        ("{id: radiology}", "org_unit: {'id': 'radiology'} is not an org unit id"),
    ],
)
def test_bad_org_units_are_reported_at_their_line(
    tmp_path: Path, written: str, expected: str
) -> None:
    (tmp_path / "scoped.yaml").write_text(RULE_FILE.format(value=written), encoding="utf-8")
    with pytest.raises(RuleLoadError) as raised:
        load_rules(tmp_path)
    [error] = [str(e) for e in raised.value.errors]
    assert error.startswith(f"{tmp_path}/scoped.yaml:5: {expected}"), error


def test_a_misspelt_field_names_org_unit(tmp_path: Path) -> None:
    text = RULE_FILE.format(value="radiology").replace("org_unit:", "org_units:")
    (tmp_path / "scoped.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(RuleLoadError) as raised:
        load_rules(tmp_path)
    [error] = [str(e) for e in raised.value.errors]
    assert "unknown field 'org_units'; did you mean 'org_unit'?" in error


# ---------------------------------------------------------------- what the engine decides


def test_the_scope_is_compiled_into_both_engine_rules() -> None:
    compiled = compile_rule(rule(org_unit=["radiology", "icu"]))["scoped"]
    scope = {
        "$or": [
            {"$iany": {"org_units": {"$i": "radiology"}}},
            {"$iany": {"org_units": {"$i": "icu"}}},
        ]
    }
    for action in ("breach", "clear"):
        assert scope in compiled[action]["all"][0]["m"]["$and"]
    unscoped = compile_rule(rule())["scoped"]["breach"]["all"][0]["m"]["$and"]
    assert not any("$or" in term or "$iany" in term for term in unscoped)


@pytest.mark.parametrize(
    ("org_units", "reached"),
    [
        (["radiology", "hospital"], True),  # in the unit itself
        (["radiology-ct", "radiology", "hospital"], True),  # in a team under it
        (["icu", "hospital"], True),  # in the second unit of the list
        (["cardiology", "hospital"], False),  # beside it
        (["radiology-2", "hospital"], False),  # a unit whose id only starts the same
        ([], False),  # unknown to the directory
    ],
)
def test_the_engine_decides_who_is_in_scope(org_units: list[str], reached: bool) -> None:
    engine = RuleEngine([rule(org_unit=["radiology", "icu"])])
    for value, breach in ((60, True), (30, False)):
        verdicts = engine.evaluate(event(value), org_units=org_units)
        assert [(r.id, v is Verdict.BREACH) for r, v in verdicts] == (
            [("scoped", breach)] if reached else []
        )


def test_an_unscoped_rule_ignores_org_units() -> None:
    engine = RuleEngine([rule()])
    assert [v for _, v in engine.evaluate(event(60))] == [Verdict.BREACH]
    assert [v for _, v in engine.evaluate(event(60), org_units=["x"])] == [Verdict.BREACH]


# ---------------------------------------------------------------- absence rules (Python)


def test_an_absence_rule_watches_reports_in_scope_only() -> None:
    overdue = rule(
        kind="overdue", condition={"absent_for": "2d"}, org_unit="radiology", message="{subject}"
    )
    assert applies(overdue, event(1), org_units=["radiology-ct", "radiology"])
    assert not applies(overdue, event(1), org_units=["cardiology"])
    assert not applies(overdue, event(1))
    assert in_scope((), [])  # unscoped: everyone


# ---------------------------------------------------------------- the org chart


def test_ancestry_walks_up_nearest_first() -> None:
    parents = {"ct": "radiology", "radiology": "hospital", "hospital": None}
    assert ancestry("ct", parents) == ["ct", "radiology", "hospital"]
    assert ancestry("unlisted", parents) == ["unlisted"]
    assert ancestry(None, parents) == []


def test_ancestry_stops_at_a_loop_and_at_the_depth_limit() -> None:
    assert ancestry("a", {"a": "b", "b": "a"}) == ["a", "b"]
    deep = {f"u{i}": f"u{i + 1}" for i in range(200)}
    assert len(ancestry("u0", deep)) == MAX_DEPTH


# ---------------------------------------------------------------- in memory and in tests


def test_evaluate_takes_each_subjects_units() -> None:
    scoped = rule(org_unit="radiology")
    events = [event(60, subject, 0) for subject in ("li-na", "chen-jie", "guest")]
    alerts = evaluate(
        [scoped], events, org_units={"li-na": ["radiology"], "chen-jie": ["cardiology"]}
    )
    assert [alert.subject for alert in alerts] == ["li-na"]


def _test_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_a_rule_test_gives_org_units_and_peoples_units(tmp_path: Path) -> None:
    path = _test_file(
        tmp_path,
        """\
        name: moved teams are still inside
        org_units:
          - {id: radiology, name: Radiology, kind: department}
          - {id: ct, name: CT, kind: team, parent_id: radiology}
        people:
          - {id: li-na, name: Li Na, org_unit_id: ct}
          - {id: chen-jie, name: Chen Jie}
        events:
          - {id: a, metric: turnaround, value: 60, time: "2026-11-02T10:00:00Z",
             subject: li-na, source: his}
          - {id: b, metric: turnaround, value: 60, time: "2026-11-02T10:00:00Z",
             subject: chen-jie, source: his}
        expect:
          - {state: firing, rule: scoped, subject: li-na, at: "2026-11-02T10:00:00Z"}
        """,
    )
    assert run_test(path, [rule(org_unit="radiology")]).failures == []


def test_a_unit_listed_twice_in_a_rule_test_is_an_error(tmp_path: Path) -> None:
    path = _test_file(
        tmp_path,
        """\
        name: twice
        org_units:
          - {id: radiology, name: Radiology, kind: department}
          - {id: radiology, name: Radiology again, kind: department}
        events: []
        expect: []
        """,
    )
    [failure] = run_test(path, [rule(org_unit="radiology")]).failures
    assert failure == (
        f"{path}:2: org_units: Value error, lists radiology twice; write each org unit once"
    )
