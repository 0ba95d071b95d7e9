"""The goal an overdue alert is about: what a goal-based ``overdue`` rule saw when it fired."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from goalwatch.contracts.base import Contract
from goalwatch.contracts.goals import Cadence, GoalStatus, GoalType


class OverdueForm(StrEnum):
    """Which of the goal forms of ``overdue`` fired."""

    PAST_DUE = "past_due"  # past its due date and not done or cancelled
    NO_CHECK_IN = "no_check_in"  # no check-in for longer than its cadence plus a grace period
    BEHIND_PLAN = "behind_plan"  # progress behind the straight line from start to due


class OverdueGoal(Contract):
    """The goal an overdue alert names, as the evaluator knew it at the transition."""

    form: OverdueForm = Field(description="past_due, no_check_in or behind_plan.")
    goal_id: str = Field(description="Id of the goal.")
    title: str = Field(description="Its title.")
    type: GoalType = Field(description="objective, key_result or kpi.")
    owner_id: str = Field(description="Its owner (the alert's subject).")
    org_unit_id: str | None = Field(default=None, description="Its org unit, if it has one.")
    period: str | None = Field(default=None, description="Its planning period, if it has one.")
    status: GoalStatus = Field(description="Its status.")
    due: AwareDatetime | None = Field(default=None, description="When it is due, if it has a date.")
    progress: float | None = Field(
        default=None, description="Its own progress, 0-100, at the transition; none if unknown."
    )
    expected_progress: float | None = Field(
        default=None,
        description="behind_plan only: where the straight line from the goal's start to its due "
        "date stood at the check (0-100).",
    )
    cadence: Cadence = Field(description="Its check-in cadence.")
    last_check_in_at: AwareDatetime | None = Field(
        default=None, description="When its latest check-in happened; none before the first."
    )
    deadline: AwareDatetime | None = Field(
        default=None,
        description="The moment the condition became true: the due date (past_due), the last "
        "check-in (or creation) plus cadence and grace (no_check_in), the check-in or cadence "
        "boundary at which it was behind (behind_plan).",
    )
    version: int = Field(description="The goal version the evaluator had applied.")
