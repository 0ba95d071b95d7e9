"""What the goals service publishes when the goal graph changes (stream ``GOALWATCH_GOALS``).

Every change to a goal is one or more events, published in the order they happened, each
with ``event_id`` as its ``Nats-Msg-Id``: a write that is retried, or an event relayed again
after a failed publish, is stored once. ``version`` is the goal's version after the change:
events of one goal carry increasing versions, so a consumer can tell an old event from a new
one and ignore what it has seen.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from goalwatch.contracts.base import Contract
from goalwatch.contracts.goals import CheckInRead, GoalRead, GoalStatus, LinkKind


class GoalEvent(Contract):
    """What every goal event carries."""

    event_id: str = Field(
        description="Unique id of the change, also its Nats-Msg-Id: <goal>:<version>:<kind>[:…]."
    )
    goal_id: str = Field(description="The goal that changed.")
    version: int = Field(description="The goal's version after the change (1 at creation).")
    occurred_at: AwareDatetime = Field(description="When the goals service made the change.")


class GoalCreated(GoalEvent):
    """A goal was stored for the first time."""

    goal: GoalRead = Field(
        description="The goal as stored. Its progress is its own (from start/target/current); "
        "a parent's rolled-up progress is read with GET /v1/goals/{id}."
    )


class GoalUpdated(GoalEvent):
    """A stored goal was replaced by a different one (an identical upsert publishes nothing)."""

    goal: GoalRead = Field(description="The goal as stored now (progress as in GoalCreated).")
    changed: list[str] = Field(description="Names of the fields whose value changed, sorted.")


class GoalStatusChanged(GoalEvent):
    """A goal's status changed, by an upsert or a check-in (published after GoalUpdated or
    GoalCheckedIn of the same change). The evaluator's dependency-impact rules start here."""

    previous_status: GoalStatus | None = Field(
        description="Status before the change; none when the goal was just created."
    )
    status: GoalStatus = Field(description="Status now.")
    owner_id: str = Field(description="The goal's owner.")
    goal: GoalRead = Field(description="The goal as stored now.")


class GoalCheckedIn(GoalEvent):
    """Someone checked in on a goal."""

    check_in: CheckInRead = Field(description="The check-in as recorded.")
    goal: GoalRead = Field(description="The goal after the check-in.")


class GoalLinkAdded(GoalEvent):
    """A link from ``goal_id`` to ``target_id`` appeared (or its weight changed)."""

    link: LinkKind = Field(
        description="contributes_to: goal_id counts towards target_id; depends_on: goal_id "
        "depends on target_id."
    )
    target_id: str = Field(description="The goal linked to.")
    weight: float = Field(description="Weight of a contributes_to link; 1 for depends_on.")


class GoalLinkRemoved(GoalEvent):
    """A link from ``goal_id`` to ``target_id`` was removed by an upsert without it."""

    link: LinkKind = Field(description="Kind of the link removed.")
    target_id: str = Field(description="The goal it linked to.")
