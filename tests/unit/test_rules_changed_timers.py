"""Rules whose state holds raw inputs (fraud, absence, goal overdue) need nothing judged
again when they change: the condition is applied afresh at every input. What must follow a
change is a timer armed under the old condition: one for a time the rule no longer says
moves on to the new time instead of firing early."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from goalwatch.contracts import AlertState
from goalwatch.rules import fraud
from goalwatch.rules.fraud_spec import BurstCondition
from goalwatch.rules.goal_overdue import GoalOverdueState, decide_goal, decide_timer, published
from goalwatch.rules.overdue import AbsenceState, Due, Seen, decide
from tests.unit.test_goal_overdue import goal
from tests.unit.test_goal_overdue import rule as goal_rule

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


# --- absence (overdue on a metric) ---------------------------------------------------------


def reported() -> AbsenceState:
    """Reported at T0 under ``absent_for: 2d``: its deadline armed for T0 + 2d."""
    first = decide(AbsenceState(), T0, Seen("r-0", T0, 0.04), absent_for=2 * DAY)
    assert first.arm == T0 + 2 * DAY
    return first.state


def test_absent_for_made_longer_the_old_deadline_moves_instead_of_firing() -> None:
    state = reported()
    moved = decide(state, T0 + 2 * DAY, Due(T0 + 2 * DAY), absent_for=3 * DAY)
    assert moved.transition is None and moved.arm == T0 + 3 * DAY
    # Redelivered, the old timer moves it again: an arm lost in between is armed again.
    again = decide(moved.state, T0 + 2 * DAY, Due(T0 + 2 * DAY), absent_for=3 * DAY)
    assert again.transition is None and again.arm == T0 + 3 * DAY
    fired = decide(moved.state, T0 + 3 * DAY, Due(T0 + 3 * DAY), absent_for=3 * DAY)
    assert fired.transition is not None
    assert fired.transition.state is AlertState.FIRING
    assert fired.transition.started_at == T0 + 3 * DAY
    # The old timer once more, after it fired: nothing new.
    late = decide(fired.state, T0 + 3 * DAY, Due(T0 + 2 * DAY), absent_for=3 * DAY)
    assert late.transition is None and not late.repeat


def test_absent_for_made_shorter_the_deadline_set_falls_due_as_set() -> None:
    state = reported()
    fired = decide(state, T0 + 2 * DAY, Due(T0 + 2 * DAY), absent_for=DAY)
    assert fired.transition is not None and fired.transition.started_at == T0 + 2 * DAY


def test_an_unchanged_absent_for_leaves_a_stale_timer_stale() -> None:
    state = reported()
    moved = decide(state, T0 + DAY, Seen("r-1", T0 + DAY, 0.05), absent_for=2 * DAY)
    stale = decide(moved.state, T0 + 2 * DAY, Due(T0 + 2 * DAY), absent_for=2 * DAY)
    assert stale.transition is None and stale.arm is None and stale.state == moved.state


# --- fraud ---------------------------------------------------------------------------------


def burst(quiet: str) -> BurstCondition:
    return BurstCondition.model_validate(
        {"pattern": "burst", "count": 2, "within": "2m", "quiet": quiet}
    )


def test_quiet_made_longer_a_firing_fraud_alert_waits_for_the_new_end() -> None:
    state = fraud.FraudState()
    short = burst("30m")
    for n in range(2):
        record = fraud.Record(f"v-{n}", T0 + timedelta(seconds=n), 1.0)
        decision = fraud.observe(state, record, short, judge=lambda m: m["measure"] >= 2)
        state = decision.state
    assert state.firing and state.armed == T0 + timedelta(seconds=1, minutes=30)
    longer = burst("1h")
    waited = fraud.due(state, T0 + timedelta(seconds=1, minutes=30), longer)
    assert waited.transition is None
    assert waited.arm == T0 + timedelta(seconds=1, hours=1)
    resolved = fraud.due(waited.state, T0 + timedelta(seconds=1, hours=1), longer)
    assert resolved.transition is not None
    assert resolved.transition.state is AlertState.RESOLVED


# --- goal overdue: a missed check-in -------------------------------------------------------


def test_grace_made_longer_a_missed_check_in_moves_to_the_new_deadline() -> None:
    two_days = goal_rule({"no_check_in": {"grace": "2d"}})
    first = decide_goal(GoalOverdueState(), two_days, goal(1, cadence="weekly"), occurred_at=T0)
    assert first is not None and first.arm == T0 + 9 * DAY
    four_days = goal_rule({"no_check_in": {"grace": "4d"}})
    moved = decide_timer(first.state, four_days, T0 + 9 * DAY)
    assert moved is not None and moved.transition is None
    assert moved.arm == T0 + 11 * DAY and moved.state.deadline == T0 + 11 * DAY
    fired = decide_timer(moved.state, four_days, T0 + 11 * DAY)
    assert fired is not None and fired.transition is not None
    assert fired.transition.started_at == T0 + 11 * DAY
    assert decide_timer(published(fired.state), four_days, T0 + 9 * DAY) is None


def test_grace_made_shorter_the_deadline_set_falls_due_as_set() -> None:
    two_days = goal_rule({"no_check_in": {"grace": "2d"}})
    first = decide_goal(GoalOverdueState(), two_days, goal(1, cadence="weekly"), occurred_at=T0)
    assert first is not None
    no_grace = goal_rule({"no_check_in": {"grace": "0s"}})
    fired = decide_timer(first.state, no_grace, T0 + 9 * DAY)
    assert fired is not None and fired.transition is not None
    assert fired.transition.state is AlertState.FIRING
