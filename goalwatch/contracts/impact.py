"""The impact analysis a dependency-impact alert carries: the goal that failed, and what of
one owner's rests on it."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from goalwatch.contracts.base import Contract
from goalwatch.contracts.goals import GoalStatus, GoalType, ImpactedGoal


class FailingGoal(Contract):
    """The goal whose status change started (or ended) the alert."""

    goal_id: str = Field(description="Id of the goal that changed status.")
    title: str = Field(description="Its title.")
    type: GoalType = Field(description="objective, key_result or kpi.")
    owner_id: str = Field(description="Its owner (not necessarily a recipient of the alert).")
    org_unit_id: str | None = Field(default=None, description="Its org unit, if it has one.")
    status: str = Field(
        description="Its status in the change this message announces: one the rule lists "
        "when firing, one it does not when resolved (a GoalStatus value)."
    )
    previous_status: GoalStatus | None = Field(
        default=None, description="Its status before that change; none for a new goal."
    )
    changed_at: AwareDatetime = Field(description="When the goals service made the change.")
    version: int = Field(description="The goal's version after the change.")


class ImpactAnalysis(Contract):
    """What one owner has riding on a failing goal, as the goals service computed it when the
    goal entered the status: upward through contributes_to and across through depends_on."""

    failing_goal: FailingGoal = Field(description="The goal that changed status.")
    affected: list[ImpactedGoal] = Field(
        description="This owner's affected goals, nearest first, each with the shortest path "
        "from the failing goal (path[0].from_goal is the failing goal), its depth and the "
        "weight carried (the product of the shares along the path, 1 = all of it)."
    )
    affected_total: int = Field(
        description="Goals affected across all owners (after the rule's min_weight)."
    )
    owners_total: int = Field(description="Owners alerted for this change, this one included.")
