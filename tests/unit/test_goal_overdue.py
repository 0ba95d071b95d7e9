"""The goal forms of overdue rules: spec errors by line, and the pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from goalwatch.contracts import AlertFired, AlertResolved, AlertState, GoalRead
from goalwatch.contracts.goals import Cadence
from goalwatch.rules import GoalOverdueRuleSpec, RuleLoadError, load_rules
from goalwatch.rules.goal_overdue import (
    GoalOverdueState,
    after_cadence,
    build_goal_alert,
    decide_goal,
    decide_timer,
    message_id,
    next_boundary,
    period_start,
    published,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def rule(condition: dict[str, Any], **extra: Any) -> GoalOverdueRuleSpec:
    return GoalOverdueRuleSpec.model_validate(
        {
            "id": "kr-late",
            "name": "Late",
            "kind": "overdue",
            "condition": condition,
            "severity": "warning",
            "notify": ["owner", "manager"],
            "message": "{goal_title} due {due:%Y-%m-%d}, {progress:.0f}%",
            **extra,
        }
    )


def goal(version: int, **extra: Any) -> GoalRead:
    body: dict[str, Any] = {
        "id": "kr-1",
        "title": "Open 40 stores",
        "type": "key_result",
        "owner_id": "wu-hao",
        "due": (T0 + timedelta(days=10)).isoformat(),
        "start_value": 0,
        "target_value": 10,
        "current_value": 2,
        "progress": 20.0,
        "version": version,
        "updated_at": T0.isoformat(),
    }
    return GoalRead.model_validate({**body, **extra})


def apply(
    state: GoalOverdueState, r: GoalOverdueRuleSpec, g: GoalRead, at: datetime
) -> GoalOverdueState:
    decision = decide_goal(state, r, g, occurred_at=at)
    assert decision is not None
    return decision.state


PAST_DUE = rule({"past_due": True})


def test_past_due_arms_the_due_date_and_the_timer_fires_once() -> None:
    decision = decide_goal(GoalOverdueState(), PAST_DUE, goal(1), occurred_at=T0)
    assert decision is not None and decision.arm == T0 + timedelta(days=10)
    assert decision.transition is None
    fired = decide_timer(decision.state, PAST_DUE, T0 + timedelta(days=10))
    assert fired is not None and fired.transition is not None
    assert fired.transition.state is AlertState.FIRING
    assert fired.transition.started_at == T0 + timedelta(days=10)
    # The same timer again (a redelivery) fires nothing more.
    assert decide_timer(published(fired.state), PAST_DUE, T0 + timedelta(days=10)) is None


def test_a_moved_due_date_moves_the_timer_and_the_old_one_is_stale() -> None:
    state = apply(GoalOverdueState(), PAST_DUE, goal(1), T0)
    moved = decide_goal(
        state, PAST_DUE, goal(2, due=(T0 + timedelta(days=20)).isoformat()), occurred_at=T0
    )
    assert moved is not None and moved.arm == T0 + timedelta(days=20)
    assert decide_timer(moved.state, PAST_DUE, T0 + timedelta(days=10)) is None


def test_done_cancels_the_timer_and_resolves_a_firing_alert() -> None:
    state = apply(GoalOverdueState(), PAST_DUE, goal(1), T0)
    fired = decide_timer(state, PAST_DUE, T0 + timedelta(days=10))
    assert fired is not None
    done = decide_goal(
        published(fired.state), PAST_DUE, goal(2, status="done"), occurred_at=T0 + timedelta(11)
    )
    assert done is not None and done.cancel and done.arm is None
    assert done.transition is not None and done.transition.state is AlertState.RESOLVED
    assert done.transition.started_at == T0 + timedelta(days=10)


def test_an_event_applied_before_changes_nothing() -> None:
    state = apply(GoalOverdueState(), PAST_DUE, goal(2), T0)
    assert decide_goal(state, PAST_DUE, goal(2), occurred_at=T0) is None
    assert decide_goal(state, PAST_DUE, goal(1), occurred_at=T0) is None


def test_filters_leave_other_goals_unwatched() -> None:
    only_kpis = rule({"past_due": True}, goals={"type": "kpi", "period": 2026})
    decision = decide_goal(GoalOverdueState(), only_kpis, goal(1), occurred_at=T0)
    assert decision is not None and decision.arm is None and decision.transition is None


def test_no_check_in_is_due_a_cadence_and_the_grace_after_the_last() -> None:
    r = rule({"no_check_in": {"grace": "2d"}})
    first = decide_goal(GoalOverdueState(), r, goal(1, cadence="weekly"), occurred_at=T0)
    assert first is not None and first.arm == T0 + timedelta(days=9)
    fired = decide_timer(first.state, r, T0 + timedelta(days=9))
    assert fired is not None and fired.transition is not None
    checked = T0 + timedelta(days=10)
    after = decide_goal(
        published(fired.state),
        r,
        goal(2, last_check_in_at=checked.isoformat()),
        occurred_at=checked,
    )
    assert after is not None and after.arm == checked + timedelta(days=9)
    assert after.transition is not None and after.transition.state is AlertState.RESOLVED


def test_behind_plan_is_judged_at_a_check_in_and_at_cadence_boundaries() -> None:
    r = rule({"behind_plan": {"points": 10}})
    created = apply(GoalOverdueState(), r, goal(1, progress=0.0), T0)
    assert created.deadline == T0 + timedelta(days=7)  # the first weekly boundary
    checked = T0 + timedelta(days=5)  # the line expects 50%
    at_check_in = decide_goal(
        created,
        r,
        goal(2, progress=30.0, last_check_in_at=checked.isoformat()),
        occurred_at=checked,
    )
    assert at_check_in is not None and at_check_in.transition is not None
    assert at_check_in.transition.expected == pytest.approx(50.0)
    # At the boundary it is still behind: nothing new; no boundary is left before the due
    # date (day 10), which is past_due's to judge.
    boundary = decide_timer(published(at_check_in.state), r, T0 + timedelta(days=7))
    assert boundary is not None and boundary.transition is None
    assert boundary.arm is None and boundary.state.firing


def test_behind_plan_says_nothing_new_from_the_due_date_on() -> None:
    r = rule({"behind_plan": {"points": 10}})
    created = apply(GoalOverdueState(), r, goal(1, progress=80.0), T0)
    # On plan at the only boundary before the due date (day 7): no timer at the due date.
    on_plan = decide_timer(created, r, T0 + timedelta(days=7))
    assert on_plan is not None and on_plan.transition is None and on_plan.arm is None
    # A check-in after the due date, far behind: late is past_due's to say, not a new alert.
    late = T0 + timedelta(days=11)
    after_due = decide_goal(
        on_plan.state,
        r,
        goal(2, progress=40.0, last_check_in_at=late.isoformat()),
        occurred_at=late,
    )
    assert after_due is not None and after_due.transition is None
    assert not after_due.state.firing


def test_an_alert_names_the_goal_and_its_message_ids_are_stable() -> None:
    state = apply(GoalOverdueState(), PAST_DUE, goal(1), T0)
    fired = decide_timer(state, PAST_DUE, T0 + timedelta(days=10))
    assert fired is not None and fired.transition is not None
    alert = build_goal_alert(
        PAST_DUE, fired.transition, owner_name="Wu Hao", since=T0, now=T0 + timedelta(days=10)
    )
    assert isinstance(alert, AlertFired) and not isinstance(alert, AlertResolved)
    assert alert.subject == "wu-hao" and alert.goal is not None
    assert (alert.goal.goal_id, alert.goal.title, alert.goal.progress) == (
        "kr-1",
        "Open 40 stores",
        20.0,
    )
    assert alert.message == "Open 40 stores due 2026-03-12, 20%"
    assert message_id(alert.fingerprint, fired.transition).endswith(
        f":fired:{(T0 + timedelta(days=10)).isoformat()}"
    )


def test_periods_cadences_and_boundaries() -> None:
    assert period_start("2026-Q3") == datetime(2026, 7, 1, tzinfo=UTC)
    assert period_start("2026-H2") == datetime(2026, 7, 1, tzinfo=UTC)
    assert period_start("2026-11") == datetime(2026, 11, 1, tzinfo=UTC)
    assert after_cadence(datetime(2026, 1, 31, tzinfo=UTC), Cadence.MONTHLY) == datetime(
        2026, 2, 28, tzinfo=UTC
    )
    state = apply(GoalOverdueState(), rule({"behind_plan": {"points": 5}}), goal(1), T0)
    assert state.facts is not None
    assert next_boundary(state.facts, T0, T0 + timedelta(days=6)) == T0 + timedelta(days=7)
    # The due date (day 10) is not a boundary: none is left after day 7.
    assert next_boundary(state.facts, T0, T0 + timedelta(days=7)) is None
    assert next_boundary(state.facts, T0, T0 + timedelta(days=10)) is None


def test_rule_errors_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "late.yaml").write_text(
        "id: late\nname: Late\nkind: overdue\ngoals: {type: key_resul}\n"
        "condition: {past_due: true, no_check_in: {grace: 1d}}\nseverity: warning\n"
        "notify: [owner]\nmessage: '{goal_titel}'\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleLoadError) as caught:
        load_rules(tmp_path)
    errors = [str(error) for error in caught.value.errors]
    assert any(":4: goals.type[0]: 'key_resul' is not a goal type" in e for e in errors)
    assert any(":8: message: unknown field {goal_titel}" in e for e in errors)


def test_two_forms_in_one_condition_are_refused(tmp_path: Path) -> None:
    (tmp_path / "late.yaml").write_text(
        "id: late\nname: Late\nkind: overdue\ngoals: {type: key_result}\n"
        "condition: {past_due: true, no_check_in: {grace: 1d}}\nseverity: warning\n"
        "notify: [owner]\nmessage: '{goal_title}'\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleLoadError) as caught:
        load_rules(tmp_path)
    [error] = [str(error) for error in caught.value.errors]
    assert ":5: condition: names past_due and no_check_in: write exactly one of" in error


def test_a_goal_closed_while_behind_plan_resolves_as_closed_not_as_caught_up() -> None:
    r = rule({"behind_plan": {"points": 10}})
    created = apply(GoalOverdueState(), r, goal(1, progress=0.0), T0)
    checked = T0 + timedelta(days=5)
    behind = decide_goal(
        created,
        r,
        goal(2, progress=30.0, last_check_in_at=checked.isoformat()),
        occurred_at=checked,
    )
    assert behind is not None
    done = decide_goal(
        published(behind.state), r, goal(3, progress=30.0, status="done"), occurred_at=checked
    )
    assert done is not None and done.transition is not None
    resolved = build_goal_alert(r, done.transition, owner_name="Wu Hao", since=T0, now=checked)
    assert isinstance(resolved, AlertResolved)
    assert resolved.message == "Resolved: Late — Open 40 stores is done now"
