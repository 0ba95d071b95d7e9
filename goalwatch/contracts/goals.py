"""The goal graph as the goals service serves it: org units, goals, links, check-ins, impact.

Write models (``*Upsert``, ``CheckInCreate``) are what clients send; read models (``*Read``)
are what the API answers and what goal events carry. Ids share the person id alphabet (1-128
of A-Z a-z 0-9 . _ @ -, not starting with a dot), so every one fits a URL path as it is.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Final

from pydantic import AwareDatetime, Field, StringConstraints, field_validator, model_validator

from goalwatch.contracts.base import Contract
from goalwatch.contracts.metrics import PERSON_ID_MAX_LENGTH, PERSON_ID_PATTERN, Name, PersonId

GoalId = Annotated[
    str,
    StringConstraints(pattern=PERSON_ID_PATTERN, min_length=1, max_length=PERSON_ID_MAX_LENGTH),
]
"""A goal id: 1-128 of A-Z a-z 0-9 . _ @ -, not starting with a dot."""
OrgUnitId = GoalId
"""An org unit id, in the same alphabet as goal and person ids."""
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
# A period names a planning cycle: 2026, 2026-H1, 2026-Q3, 2026-11.
PERIOD_PATTERN: Final = r"^[0-9]{4}(-(H[12]|Q[1-4]|[0-9]{2}))?$"
Period = Annotated[str, StringConstraints(pattern=PERIOD_PATTERN)]
Unit = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]

MAX_LINKS: Final = 50
"""Most ``contributes_to`` or ``depends_on`` links one goal may have."""


class OrgUnitKind(StrEnum):
    """Level of an org unit in the company → department → team tree."""

    COMPANY = "company"
    DEPARTMENT = "department"
    TEAM = "team"


class GoalType(StrEnum):
    """What a goal is: an objective, a measurable key result of one, or a standing KPI."""

    OBJECTIVE = "objective"
    KEY_RESULT = "key_result"
    KPI = "kpi"


class GoalStatus(StrEnum):
    """Where a goal stands. ``done`` and ``cancelled`` are closed; ``invalid`` means paused or
    void (e.g. its premise no longer holds), which the goals that rely on it must hear about."""

    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    OFF_TRACK = "off_track"
    INVALID = "invalid"
    DONE = "done"
    CANCELLED = "cancelled"


class Cadence(StrEnum):
    """How often the owner is expected to check in."""

    WEEKLY = "weekly"
    BIWEEKLY = "biweekly"
    MONTHLY = "monthly"


class LinkKind(StrEnum):
    """The two kinds of link between goals."""

    CONTRIBUTES_TO = "contributes_to"
    DEPENDS_ON = "depends_on"


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or infinity)")
    return value


class OrgUnitUpsert(Contract):
    """Create or replace an org unit: the company, a department or a team."""

    id: OrgUnitId = Field(description="Org unit id (1-128 of A-Z a-z 0-9 . _ @ -).",
                          examples=["radiology"])  # fmt: skip
    name: Name = Field(description="Display name (1-200 characters).", examples=["Radiology"])
    kind: OrgUnitKind = Field(description="company, department or team.")
    parent_id: OrgUnitId | None = Field(
        default=None,
        description="The unit this one belongs to (a department's company, a team's "
        "department); none for the company.",
    )
    head_id: PersonId | None = Field(default=None, description="Person id of the unit's head.")
    hrbp_id: PersonId | None = Field(
        default=None, description="Person id of the unit's HR business partner."
    )


class OrgUnitRead(OrgUnitUpsert):
    """An org unit as stored."""


class Contribution(Contract):
    """A ``contributes_to`` link: this goal counts towards ``goal_id`` with ``weight``."""

    goal_id: GoalId = Field(description="The parent goal this one contributes to.")
    weight: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="Relative weight among the parent's contributors (its share is the weight "
        "divided by the sum of the weights of all the parent's contributors).",
    )


class GoalUpsert(Contract):
    """Create or replace a goal, with its outgoing links (which replace the stored ones).

    ``status`` and ``current_value`` left out of the body keep what is stored (check-ins
    change them); every other field left out takes its default.
    """

    id: GoalId = Field(description="Goal id (1-128 of A-Z a-z 0-9 . _ @ -).",
                       examples=["kr-store-expansion"])  # fmt: skip
    title: Name = Field(description="What the goal is (1-200 characters).")
    type: GoalType = Field(description="objective, key_result or kpi.")
    owner_id: PersonId = Field(description="Person id of the goal's owner.")
    org_unit_id: OrgUnitId | None = Field(default=None, description="Org unit the goal belongs to.")
    period: Period | None = Field(
        default=None, description="Planning period: YYYY, YYYY-H1/H2, YYYY-Q1..Q4 or YYYY-MM."
    )
    due: AwareDatetime | None = Field(
        default=None, description="When the goal is due: ISO 8601 with a UTC offset."
    )
    start_value: float | None = Field(default=None, description="Value at the start.")
    target_value: float | None = Field(default=None, description="Value that means done.")
    current_value: float | None = Field(
        default=None, description="Latest value (left out: the stored one is kept)."
    )
    unit: Unit | None = Field(default=None, description="Unit of the values, e.g. %, CNY, stores.")
    status: GoalStatus = Field(
        default=GoalStatus.ON_TRACK,
        description="Where the goal stands (left out: the stored one is kept; on_track when new).",
    )
    cadence: Cadence = Field(default=Cadence.WEEKLY, description="Expected check-in cadence.")
    contributes_to: list[Contribution] = Field(
        default_factory=list,
        max_length=MAX_LINKS,
        description=f"Parent goals this one counts towards (at most {MAX_LINKS}).",
    )
    depends_on: list[GoalId] = Field(
        default_factory=list,
        max_length=MAX_LINKS,
        description=f"Goals (usually of other teams) this one cannot succeed without "
        f"(at most {MAX_LINKS}).",
    )

    _finite_values = field_validator("start_value", "target_value", "current_value")(_finite)

    @model_validator(mode="after")
    def _links_are_sound(self) -> GoalUpsert:
        parents = [c.goal_id for c in self.contributes_to]
        for field, ids in (("contributes_to", parents), ("depends_on", self.depends_on)):
            if self.id in ids:
                raise ValueError(f"{field}: a goal cannot link to itself ({self.id} → {self.id})")
            if len(set(ids)) != len(ids):
                raise ValueError(f"{field}: a goal is listed twice")
        return self


class GoalRead(GoalUpsert):
    """A goal as stored, with what the service derives from it."""

    progress: float | None = Field(
        default=None,
        description="Percent done, 0-100: from start/target/current, or for a goal with "
        "contributors the weighted mean of theirs; none when neither is known.",
    )
    last_check_in_at: AwareDatetime | None = Field(
        default=None, description="When the latest check-in happened."
    )
    confidence: float | None = Field(
        default=None, description="Owner's confidence at the latest check-in, 0-1."
    )
    version: int = Field(description="Counts the goal's changes, from 1 at creation.")
    updated_at: AwareDatetime = Field(description="When the goal last changed.")


class GoalPage(Contract):
    """One page of a goal listing."""

    goals: list[GoalRead] = Field(description="Goals in id order.")
    next_cursor: str | None = Field(
        default=None, description="Pass as cursor for the next page; none on the last page."
    )


class CheckInCreate(Contract):
    """A check-in: the owner (or someone for them) reports where a goal stands."""

    id: GoalId | None = Field(
        default=None,
        description="Optional id chosen by the sender: a check-in resent with the same id is "
        "recorded once.",
    )
    value: float | None = Field(default=None, description="New current value.")
    status: GoalStatus | None = Field(default=None, description="New status.")
    confidence: float | None = Field(
        default=None, ge=0, le=1, description="Confidence the goal will be met, 0-1."
    )
    note: Note | None = Field(default=None, description="What happened (at most 2000 characters).")
    by: PersonId = Field(description="Person id of who checks in.")
    at: AwareDatetime | None = Field(
        default=None, description="When the check-in happened (default: when it is received)."
    )

    _finite_value = field_validator("value")(_finite)

    @model_validator(mode="after")
    def _says_something(self) -> CheckInCreate:
        if self.value is None and self.status is None and self.confidence is None:
            raise ValueError("a check-in needs at least one of value, status or confidence")
        return self


class CheckInRead(Contract):
    """A check-in as recorded."""

    id: str = Field(description="Check-in id.")
    goal_id: str = Field(description="The goal checked in on.")
    value: float | None = Field(default=None, description="Current value reported.")
    status: GoalStatus | None = Field(default=None, description="Status reported.")
    confidence: float | None = Field(default=None, description="Confidence reported, 0-1.")
    note: str | None = Field(default=None, description="What happened.")
    by: str = Field(description="Who checked in.")
    at: AwareDatetime = Field(description="When it happened.")
    progress: float | None = Field(default=None, description="The goal's own progress after it.")


class CheckInHistory(Contract):
    """A goal's check-ins, newest first."""

    goal_id: str = Field(description="The goal.")
    check_ins: list[CheckInRead] = Field(description="Check-ins, newest first.")


class TreeNode(Contract):
    """A goal met while walking the alignment tree from another."""

    goal: GoalRead = Field(description="The goal.")
    depth: int = Field(description="Links between it and the goal the tree is of (1 = direct).")
    via: str = Field(description="Id of the goal it was reached from.")
    weight: float = Field(description="Weight of the contributes_to link it was reached by.")


class GoalTree(Contract):
    """A goal with everything above and below it through ``contributes_to`` links."""

    goal: GoalRead = Field(description="The goal.")
    ancestors: list[TreeNode] = Field(description="Goals it counts towards, nearest first.")
    descendants: list[TreeNode] = Field(description="Goals that count towards it, nearest first.")
    depends_on: list[str] = Field(description="Ids of the goals it depends on.")
    dependents: list[str] = Field(description="Ids of the goals that depend on it.")


class PathStep(Contract):
    """One link on the way from a failing goal to an affected one."""

    from_goal: str = Field(description="Goal the impact comes from.")
    to_goal: str = Field(description="Goal the impact reaches.")
    link: LinkKind = Field(
        description="contributes_to: from_goal counts towards to_goal; depends_on: to_goal "
        "depends on from_goal."
    )
    share: float = Field(
        description="Share of to_goal carried by from_goal: the link weight over the sum of "
        "to_goal's contributor weights, or 1 for a dependency."
    )


class ImpactedGoal(Contract):
    """A goal affected if another one fails."""

    goal_id: str = Field(description="The affected goal.")
    title: str | None = Field(default=None, description="Its title (none if not stored yet).")
    type: GoalType | None = Field(default=None, description="Its type.")
    status: GoalStatus | None = Field(default=None, description="Its status.")
    owner_id: str | None = Field(default=None, description="Its owner.")
    owner_name: str | None = Field(
        default=None, description="The owner's name (none if goals knows no such person)."
    )
    owner_manager_id: str | None = Field(default=None, description="The owner's manager.")
    org_unit_id: str | None = Field(default=None, description="Its org unit.")
    depth: int = Field(description="Links on the path (1 = a direct parent or dependent).")
    path: list[PathStep] = Field(description="The shortest path that reaches it, in order.")
    weight: float = Field(
        description="Product of the shares along the path: how much of this goal rests on "
        "the failing one (1 = all of it)."
    )


class GoalImpact(Contract):
    """Every goal affected if ``goal_id`` fails: upward through contributes_to, across
    through depends_on, at any depth; each reached once, by its shortest path."""

    goal_id: str = Field(description="The failing goal.")
    affected: list[ImpactedGoal] = Field(description="Affected goals, nearest first.")


class UpsertReport(Contract):
    """What a batch upsert did."""

    created: int = Field(description="Items that were new.")
    replaced: int = Field(description="Items that replaced a stored one (unchanged included).")
    unchanged: int = Field(default=0, description="Replaced items identical to what was stored.")
