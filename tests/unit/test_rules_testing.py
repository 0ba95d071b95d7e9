"""Rule test files with goals: parsing, the goal events they stand for, the runner's goal
paths, and errors that name the file, the line and the field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from goalwatch.contracts import AlertFired
from goalwatch.contracts.goal_events import GoalCreated, GoalEvent, GoalLinkAdded, GoalStatusChanged
from goalwatch.rules import evaluate, load_rules
from goalwatch.rules.given_goals import CheckIn, GivenGoal, GoalChange, MemoryGoals
from goalwatch.rules.goal_overdue_spec import GoalOverdueRuleSpec
from goalwatch.rules.impact_spec import ImpactRuleSpec
from goalwatch.rules.testing import Rule, run_test, run_test_text

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 2, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    return [rule.spec for rule in load_rules(REPO / "rules")]


def only(rules: list[Rule], rule_type: type[Rule], rule_id: str) -> list[Rule]:
    return [rule for rule in rules if isinstance(rule, rule_type) and rule.id == rule_id]


def given(goal_id: str, **fields: object) -> GivenGoal:
    return GivenGoal.model_validate(
        {"id": goal_id, "title": f"Goal {goal_id}", "type": "key_result",
         "owner_id": f"o-{goal_id}", **fields}
    )  # fmt: skip


def test_the_graph_is_stored_in_one_batch_then_published_goal_by_goal() -> None:
    graph = MemoryGoals()
    events = graph.store(
        [given("kr", contributes_to=[{"goal_id": "obj"}]), given("obj", type="objective")], at=T0
    )
    assert [type(e) for e in events] == [
        GoalCreated, GoalLinkAdded, GoalStatusChanged, GoalCreated, GoalStatusChanged
    ]  # fmt: skip
    assert {e.version for e in events} == {1} and {e.occurred_at for e in events} == {T0}
    impact = graph.impact("kr")
    assert impact is not None and [a.goal_id for a in impact.affected] == ["obj"]


def test_a_change_replaces_the_fields_given_and_a_check_in_keeps_the_rest() -> None:
    graph = MemoryGoals()
    graph.store([given("kr", start_value=0, target_value=10, current_value=2)], at=T0)
    assert graph.change(GoalChange(goal="kr", title="Goal kr", time=T0)) == []  # identical
    [updated, status] = graph.change(
        GoalChange(goal="kr", status="invalid", time=T0 + timedelta(hours=1))
    )
    assert isinstance(status, GoalStatusChanged) and status.previous_status == "on_track"
    assert updated.version == 2 and graph.goals["kr"].current_value == 2
    events = graph.check_in(CheckIn(check_in="kr", value=5, time=T0 + timedelta(days=1)))
    goal = graph.goals["kr"]
    assert (goal.version, goal.progress, goal.status) == (3, 50.0, "invalid")
    assert goal.last_check_in_at == T0 + timedelta(days=1)
    assert events[0].event_id == "kr:3:checked_in"


def test_impact_rules_alert_each_owner_from_the_graph_as_it_stands(rules: list[Rule]) -> None:
    graph = MemoryGoals()
    initial = graph.store(
        [
            given("obj", type="objective"),
            given("kr", contributes_to=[{"goal_id": "obj"}]),
            given("ops", depends_on=["kr"]),
        ],
        at=T0,
    )

    def inputs() -> Iterator[GoalEvent]:
        yield from initial
        # Linked after the start: the walk sees the graph at the time of the failure.
        yield from graph.change(GoalChange(goal="late", title="Late", type="objective",
                                           owner_id="o-late", time=T0, depends_on=["kr"]))  # fmt: skip
        yield from graph.change(GoalChange(goal="kr", status="off_track", time=T0))
        yield from graph.change(GoalChange(goal="kr", status="on_track", time=T0))

    alerts = evaluate(
        only(rules, ImpactRuleSpec, "goal-failing-impact"), inputs(), impacts=graph.impact
    )
    assert [(type(a).__name__, a.subject) for a in alerts] == [
        ("AlertFired", "o-late"), ("AlertFired", "o-obj"), ("AlertFired", "o-ops"),
        ("AlertResolved", "o-late"), ("AlertResolved", "o-obj"), ("AlertResolved", "o-ops"),
    ]  # fmt: skip
    assert alerts[1].message.startswith("Goal kr is off_track. Your goals resting on it (1)")


def test_a_moved_due_date_fires_once_at_the_new_time(rules: list[Rule]) -> None:
    graph = MemoryGoals()
    due = T0 + timedelta(days=3)

    def inputs() -> Iterator[GoalEvent]:
        yield from graph.store([given("kr", due=due)], at=T0)
        yield from graph.change(GoalChange(goal="kr", due=due + timedelta(days=2), time=T0))
        yield from graph.change(GoalChange(goal="kr", due=due, time=T0 + timedelta(days=1)))

    alerts = evaluate(
        only(rules, GoalOverdueRuleSpec, "key-result-past-due"),
        inputs(),
        until=T0 + timedelta(days=10),
    )
    # Armed for day 3, moved to day 5, moved back to day 3: one timer, one alert.
    assert [(type(a), a.started_at) for a in alerts] == [(AlertFired, due)]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "case.yaml"
    path.write_text(text, encoding="utf-8")
    return path


CASE = """\
name: impact
rules: [goal-failing-impact]
goals:
  - {id: obj, title: Objective, type: objective, owner_id: wang-fang}
  - {id: kr, title: KR, type: key_result, owner_id: zhou-min, contributes_to: [{goal_id: obj}]}
events:
  - {goal: kr, status: invalid, time: "2026-03-02T09:00:00+08:00"}
expect:
  - {state: firing, rule: goal-failing-impact, subject: wang-fang,
     at: "2026-03-02T09:00:00+08:00", goals: [obj]}
"""


def test_a_case_passes_and_fails_on_the_affected_goals(tmp_path: Path, rules: list[Rule]) -> None:
    assert run_test(write(tmp_path, CASE), rules).failures == []
    wrong = run_test(write(tmp_path, CASE.replace("goals: [obj]", "goals: [obj, kr]")), rules)
    assert "  firing goal-failing-impact wang-fang at 2026-03-02T09:00:00+08:00 goals obj" in (
        wrong.failures
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("{goal: kr, status: invalid,", "{goal: kr, status: invalidd,"),
         ":7: events[0].status: 'invalidd' is not one of"),
        (("{goal: kr, status: invalid,", "{goal: kr, stauts: invalid,"),
         ":7: events[0].stauts: unknown field 'stauts'; did you mean 'status'?"),
        (("{goal: kr, status: invalid,", "{goal: kr, check_in: kr, status: invalid,"),
         ":7: events[0]: write a metric event"),
        (("{goal: kr, status: invalid,", "{check_in: nope, status: invalid,"),
         ":7: events[0].check_in: no goal 'nope' in the graph"),
        (("{goal: kr, status: invalid,", "{goal: new, status: invalid,"),
         ":7: events[0]: goal 'new' is not in the graph yet, so this change creates it: add "
         "title, type, owner_id"),
        (("{goal: kr, status: invalid,", "{goal: obj, contributes_to: [{goal_id: kr}],"),
         ":7: events[0].contributes_to: would close a cycle (obj → kr → obj)"),
        (('time: "2026-03-02T09:00:00+08:00"}', 'time: "2026-03-02 09:00"}'),
         ":7: events[0].time: '2026-03-02 09:00' is not a time with its UTC offset"),
        (("rules: [goal-failing-impact]", "rules: [goal-failing-impakt]"),
         ":2: rules[0]: no rule has the id 'goal-failing-impakt'; did you mean goal-failing-impact?"),
        (("name: impact\n", "name: impact\ngoals_at: x\ngoals_at: y\n"),
         ":3: goals_at: appears twice (first on line 2)"),
    ],
)  # fmt: skip
def test_errors_name_the_file_the_line_and_the_field(
    tmp_path: Path, rules: list[Rule], change: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, CASE.replace(*change))
    [failure] = run_test(path, rules).failures
    assert failure.startswith(f"{path}:")
    assert expected in failure


def test_goal_changes_must_come_in_time_order(tmp_path: Path, rules: list[Rule]) -> None:
    text = CASE.replace(
        "expect:",
        '  - {goal: kr, status: on_track, time: "2026-03-01T09:00:00+08:00"}\nexpect:',
    )
    path = write(tmp_path, text)
    [failure] = run_test(path, rules).failures
    assert f"{path}:8: events[1].time: 2026-03-01T09:00:00+08:00 is before the goal change" in (
        failure
    )


def test_the_shipped_metric_case_still_reads_as_before(rules: list[Rule]) -> None:
    outcome = run_test(REPO / "rules" / "tests" / "report-rework-rate-missing.yaml", rules)
    assert outcome.failures == []


ESCALATING_RULE = """\
id: rework-escalating
name: Rework above 8%
kind: threshold
metric: report_rework_rate
condition: {op: ">", value: 0.08, consecutive: 3, resolve_at: 0.07}
severity: warning
escalate:
  - {after: 4d, severity: critical}
notify: [manager]
message: "{subject}: {value:.0%} ({severity})"
"""

ESCALATING_TEST = """\
name: yellow on the third day, red on the fifth, resolved only below 7%
events:
{events}
expect:
  - {{state: firing, rule: rework-escalating, subject: zhou-min, at: "2026-11-03T18:00:00+00:00",
     severity: warning}}
  - {{state: escalated, rule: rework-escalating, subject: zhou-min,
     at: "2026-11-05T18:00:00+00:00", severity: {escalated}}}
  - {{state: resolved, rule: rework-escalating, subject: zhou-min, at: "2026-11-07T18:00:00+00:00"}}
"""


def test_a_rule_test_expects_escalations_and_their_severity(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rework.yaml").write_text(ESCALATING_RULE, encoding="utf-8")
    rules = [rule.spec for rule in load_rules(tmp_path / "rules")]
    values = [0.09, 0.09, 0.09, 0.075, 0.09, 0.072, 0.05]  # the 7.x% days hold it
    events = "\n".join(
        f"  - {{id: d{n}, metric: report_rework_rate, value: {v}, subject: zhou-min, "
        f'source: his, time: "2026-11-0{n + 1}T18:00:00+00:00"}}'
        for n, v in enumerate(values)
    )
    path = tmp_path / "test.yaml"
    path.write_text(ESCALATING_TEST.format(events=events, escalated="critical"), encoding="utf-8")
    assert run_test(path, rules).failures == []

    path.write_text(ESCALATING_TEST.format(events=events, escalated="warning"), encoding="utf-8")
    failures = run_test(path, rules).failures
    assert (
        "  escalated rework-escalating zhou-min at 2026-11-05T18:00:00+00:00 severity critical"
        in (failures)
    )


def test_a_test_runs_from_its_text_as_from_its_file(tmp_path: Path, rules: list[Rule]) -> None:
    passed = run_test_text(CASE, rules, file="draft.yaml")
    assert (passed.name, passed.failures, passed.error) == ("impact", [], None)
    wrong = CASE.replace("goals: [obj]", "goals: [obj, kr]")
    failed = run_test_text(wrong, rules)
    assert failed.error is None and failed.failures[0] == "expected:"
    assert failed.failures == run_test(write(tmp_path, wrong), rules).failures


@pytest.mark.parametrize(
    ("change", "lint_line"),
    [
        (("{goal: kr, status: invalid,", "{goal: kr, stauts: invalid,"),
         "draft.yaml:7:16: events[0].stauts: unknown field 'stauts'; did you mean 'status'?"),
        (("rules: [goal-failing-impact]", "rules: [goal-failing-impakt]"),
         "draft.yaml:2:9: rules[0]: no rule has the id 'goal-failing-impakt'"),
        (("name: impact\n", "name: impact\ngoals_at: x\ngoals_at: y\n"),
         "draft.yaml:3:1: goals_at: appears twice (first on line 2)"),
        (("expect:", "expect: ["), "draft.yaml:9:3: not valid YAML: expected the node content"),
    ],
)  # fmt: skip
def test_a_wrong_test_text_gives_its_error_with_line_and_column(
    rules: list[Rule], change: tuple[str, str], lint_line: str
) -> None:
    outcome = run_test_text(CASE.replace(*change), rules, file="draft.yaml")
    assert outcome.error is not None
    assert outcome.error.lint_line().startswith(lint_line)
    # The CLI's line: the same error, without the column.
    assert outcome.failures == [str(outcome.error)]
