"""A rule test's goal graph: the goals as given, the changes and check-ins made during the
test, and the goals service's store in memory (:class:`MemoryGoals`), which turns them into
the goal events the service would publish and answers impact walks over the graph."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, Field, ValidationError, model_validator

from goalwatch.contracts import PersonUpsert
from goalwatch.contracts.base import Contract
from goalwatch.contracts.goal_events import GoalEvent
from goalwatch.contracts.goals import (
    Cadence,
    CheckInRead,
    Contribution,
    GoalId,
    GoalImpact,
    GoalRead,
    GoalStatus,
    GoalType,
    GoalUpsert,
    OrgUnitId,
    Period,
    Unit,
)
from goalwatch.contracts.metrics import Name, PersonId
from goalwatch.goal_graph import ChangeRecord, checked_in, events_of, goal_impact, own_progress


class GivenGoal(GoalUpsert):
    """A goal of the graph before the events: a goal as written to the goals service, and
    when it was last checked in on (none: not yet)."""

    last_check_in_at: AwareDatetime | None = Field(
        default=None, description="When the latest check-in happened."
    )


class GoalChange(Contract):
    """A goal written to the goals service during the test: the fields given replace the
    stored ones (a new goal needs title, type and owner_id); ``time`` is when it is stored."""

    goal: GoalId = Field(description="The goal's id.")
    time: AwareDatetime = Field(description="When the goals service stores the change.")
    title: Name | None = None
    type: GoalType | None = None
    owner_id: PersonId | None = None
    org_unit_id: OrgUnitId | None = None
    period: Period | None = None
    due: AwareDatetime | None = None
    start_value: float | None = None
    target_value: float | None = None
    current_value: float | None = None
    unit: Unit | None = None
    status: GoalStatus | None = None
    cadence: Cadence | None = None
    contributes_to: list[Contribution] | None = None
    depends_on: list[GoalId] | None = None


class CheckIn(Contract):
    """A check-in on a goal during the test, as posted to ``/v1/goals/{id}/check-ins``."""

    check_in: GoalId = Field(description="The goal checked in on.")
    time: AwareDatetime = Field(description="When the goals service records it.")
    id: GoalId | None = Field(default=None, description="The check-in's id.")
    value: float | None = Field(default=None, description="New current value.")
    status: GoalStatus | None = Field(default=None, description="New status.")
    confidence: float | None = Field(default=None, ge=0, le=1, description="Confidence, 0-1.")
    note: str | None = Field(default=None, description="What happened.")
    by: PersonId | None = Field(default=None, description="Who checks in (default: the owner).")
    at: AwareDatetime | None = Field(
        default=None, description="When the check-in happened (default: time)."
    )

    @model_validator(mode="after")
    def _says_something(self) -> CheckIn:
        if self.value is None and self.status is None and self.confidence is None:
            raise ValueError("a check-in needs at least one of value, status or confidence")
        return self


class Refused(Exception):
    """A change the goals service would refuse, or one the test file cannot express."""

    def __init__(self, loc: Sequence[int | str], message: str) -> None:
        super().__init__(message)
        self.loc = list(loc)
        self.message = message


class MemoryGoals:
    """The goals service's graph in memory: writes stored as it stores them (versions, kept
    check-in fields, own progress, no cycles) and the events it would publish for them."""

    def __init__(self, people: Sequence[PersonUpsert] = ()) -> None:
        self.goals: dict[str, GoalRead] = {}
        self.people = {person.id: person for person in people}
        self.names = {person.id: person.name for person in people}
        self._check_ins = 0

    def impact(self, goal_id: str) -> GoalImpact | None:
        """What ``goal_id`` failing reaches, as ``GET /v1/goals/{id}/impact`` answers."""
        return goal_impact(self.goals, goal_id, people=self.people)

    def store(self, goals: Sequence[GivenGoal], *, at: datetime) -> list[GoalEvent]:
        """Store ``goals`` in one batch at ``at``: every goal, then every goal's events."""
        records: list[ChangeRecord] = []
        for given in goals:
            fields = given.model_dump(exclude={"last_check_in_at"})
            goal = _stored(GoalUpsert(**fields), None, at=at)
            goal = goal.model_copy(update={"last_check_in_at": given.last_check_in_at})
            self.goals[goal.id] = goal
            records.append(ChangeRecord(goal_id=goal.id, before=None, after=goal))
        for index, given in enumerate(goals):
            try:
                self._no_cycle(given.id)
            except Refused as exc:
                raise Refused([index, *exc.loc], exc.message) from None
        return [event for record in records for event in events_of(record)]

    def change(self, change: GoalChange) -> list[GoalEvent]:
        """Apply a goal change; none when it changes nothing (an identical upsert)."""
        old = self.goals.get(change.goal)
        given = change.model_dump(exclude={"goal", "time"}, include=change.model_fields_set)
        base = {} if old is None else old.model_dump(include=set(GoalUpsert.model_fields))
        if old is None:
            missing = [f for f in ("title", "type", "owner_id") if given.get(f) is None]
            if missing:
                raise Refused(
                    (),
                    f"goal {change.goal!r} is not in the graph yet, so this change creates it: "
                    f"add {', '.join(missing)} (or list the goal under goals:)",
                )
        try:
            upsert = GoalUpsert.model_validate({**base, **given, "id": change.goal})
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise Refused(first["loc"], str(first["msg"])) from None
        new = _stored(upsert, old, at=change.time)
        if old is not None and _same(old, new):
            return []
        self.goals[new.id] = new
        try:
            self._no_cycle(new.id)
        except Refused:
            if old is None:
                del self.goals[new.id]
            else:
                self.goals[new.id] = old
            raise
        return events_of(ChangeRecord(goal_id=new.id, before=old, after=new))

    def check_in(self, check_in: CheckIn) -> list[GoalEvent]:
        """Record a check-in as the goals service does (a back-dated one leaves the last
        check-in time alone)."""
        old = self.goals.get(check_in.check_in)
        if old is None:
            raise Refused(
                ("check_in",), f"no goal {check_in.check_in!r} in the graph; list it under goals:"
            )
        self._check_ins += 1
        at = check_in.at or check_in.time
        new = checked_in(
            old,
            value=check_in.value,
            status=check_in.status,
            confidence=check_in.confidence,
            at=at,
            stored_at=check_in.time,
        )
        record = CheckInRead(
            id=check_in.id or f"check-in-{self._check_ins}",
            goal_id=new.id,
            value=check_in.value,
            status=check_in.status,
            confidence=check_in.confidence,
            note=check_in.note,
            by=check_in.by or new.owner_id,
            at=at,
            progress=new.progress,
        )
        self.goals[new.id] = new
        return events_of(ChangeRecord(goal_id=new.id, before=old, after=new, check_in=record))

    def _no_cycle(self, goal_id: str) -> None:
        for field in ("contributes_to", "depends_on"):
            loop = self._loop(goal_id, field)
            if loop:
                raise Refused(
                    (field,),
                    f"would close a cycle ({' → '.join(loop)}), which the goals service "
                    "refuses; a goal cannot count towards or depend on itself",
                )

    def _loop(self, start: str, field: str) -> list[str] | None:
        def links(goal_id: str) -> list[str]:
            goal = self.goals.get(goal_id)
            if goal is None:
                return []
            if field == "contributes_to":
                return [c.goal_id for c in goal.contributes_to]
            return list(goal.depends_on)

        via: dict[str, str] = {}
        queue = list(links(start))
        for node in queue:
            via.setdefault(node, start)
        while queue:
            node = queue.pop(0)
            for nxt in links(node):
                if nxt == start:
                    back = [node]
                    while back[-1] != start:
                        back.append(via[back[-1]])
                    return [*reversed(back), start]
                if nxt not in via:
                    via[nxt] = node
                    queue.append(nxt)
        return None


def _own(goal: GoalRead) -> float | None:
    return own_progress(
        start=goal.start_value, target=goal.target_value, current=goal.current_value
    )


def _stored(goal: GoalUpsert, old: GoalRead | None, *, at: datetime) -> GoalRead:
    kept: dict[str, Any] = {}
    if old is not None:
        kept = {"last_check_in_at": old.last_check_in_at, "confidence": old.confidence}
    new = GoalRead(
        **goal.model_dump(), **kept, version=(old.version if old else 0) + 1, updated_at=at
    )
    return new.model_copy(update={"progress": _own(new)})


def _same(old: GoalRead, new: GoalRead) -> bool:
    skip = {"version", "updated_at"}
    return old.model_dump(exclude=skip) == new.model_dump(exclude=skip)
