"""The goal graph's pure parts, shared by the goals service and the rule tests.

- :func:`own_progress`: how far along a goal is from its own values;
- :class:`ChangeRecord` and :func:`events_of`: the goal events one change stands for, as the
  goals service publishes them;
- :func:`impact_steps` and :func:`assemble_impact`: what a goal's failure reaches, walked over
  goals held in memory. The goals service walks the same graph inside Redis
  (``services.goals.scripts.IMPACT``) and assembles its answer with :func:`assemble_impact`;
  both walks go breadth-first, up ``contributes_to`` links (share: the link's weight over the
  sum of the parent's contributor weights) and across ``depends_on`` links to the dependents
  (share 1), each goal once by a shortest path. Where two shortest paths tie, both take a
  goal's parents in the order of its ``contributes_to`` and its dependents in id order, so
  they pick the same one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import Field

from goalwatch.contracts.base import Contract
from goalwatch.contracts.goal_events import (
    GoalCheckedIn,
    GoalCreated,
    GoalEvent,
    GoalLinkAdded,
    GoalLinkRemoved,
    GoalStatusChanged,
    GoalUpdated,
)
from goalwatch.contracts.goals import (
    CheckInRead,
    GoalImpact,
    GoalRead,
    GoalStatus,
    GoalUpsert,
    ImpactedGoal,
    LinkKind,
    PathStep,
)
from goalwatch.contracts.people import PersonUpsert

# Fields that change with every write and are not a change of the goal itself.
BOOKKEEPING: Final = frozenset({"version", "updated_at"})

Step = tuple[str, str, LinkKind, float, int]
"""One goal an impact walk reached: ``(goal, reached from, link, share, depth)``."""


def own_progress(
    *, start: float | None, target: float | None, current: float | None
) -> float | None:
    """Percent of the way from ``start`` (0 when unset) to ``target``, clamped to 0-100.

    Works for targets below the start (a rate to bring down) too; ``None`` when the target or
    the current value is unknown.
    """
    if target is None or current is None:
        return None
    origin = 0.0 if start is None else start
    if target == origin:
        return 100.0 if current == target else 0.0
    return _clamp((current - origin) / (target - origin) * 100.0)


def _clamp(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 4)


def checked_in(
    old: GoalRead,
    *,
    value: float | None,
    status: GoalStatus | None,
    confidence: float | None,
    at: datetime,
    stored_at: datetime,
) -> GoalRead:
    """``old`` after a check-in made at ``at`` and stored at ``stored_at``: the values it
    gives, the next version, its own progress again. A back-dated check-in (``at`` before
    the last one) leaves the last check-in time alone."""
    changes: dict[str, Any] = {"version": old.version + 1, "updated_at": stored_at}
    if value is not None:
        changes["current_value"] = value
    if status is not None:
        changes["status"] = status
    if confidence is not None:
        changes["confidence"] = confidence
    if old.last_check_in_at is None or at >= old.last_check_in_at:
        changes["last_check_in_at"] = at
    new = GoalRead.model_validate({**old.model_dump(), **changes})
    progress = own_progress(
        start=new.start_value, target=new.target_value, current=new.current_value
    )
    return new.model_copy(update={"progress": progress})


class ChangeRecord(Contract):
    """One change of one goal, as the goals service's outbox holds it."""

    goal_id: str = Field(description="The goal.")
    before: GoalRead | None = Field(description="The goal before the change.")
    after: GoalRead = Field(description="The goal after the change.")
    check_in: CheckInRead | None = Field(default=None, description="The check-in, if any.")


def changed_fields(before: GoalRead, after: GoalRead) -> list[str]:
    """Names of the fields of ``after`` that differ from ``before``, bookkeeping aside."""
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    return sorted(k for k in new if k not in BOOKKEEPING and old.get(k) != new[k])


def events_of(record: ChangeRecord) -> list[GoalEvent]:
    """The events of ``record``, in the order a consumer should see them."""
    before, after = record.before, record.after
    base = {"goal_id": after.id, "version": after.version, "occurred_at": after.updated_at}
    prefix = f"{after.id}:{after.version}"
    events: list[GoalEvent] = []
    if before is None:
        events.append(GoalCreated(event_id=f"{prefix}:created", goal=after, **base))
    elif record.check_in is not None:
        events.append(
            GoalCheckedIn(
                event_id=f"{prefix}:checked_in", check_in=record.check_in, goal=after, **base
            )
        )
    else:
        events.append(
            GoalUpdated(
                event_id=f"{prefix}:updated",
                goal=after,
                changed=changed_fields(before, after),
                **base,
            )
        )
    old_links = _links(before) if before else {}
    new_links = _links(after)
    for (kind, target), weight in new_links.items():
        if old_links.get((kind, target)) != weight:
            events.append(
                GoalLinkAdded(
                    event_id=f"{prefix}:link_added:{kind.value}:{target}",
                    link=kind,
                    target_id=target,
                    weight=weight,
                    **base,
                )
            )
    for kind, target in sorted(old_links.keys() - new_links.keys()):
        events.append(
            GoalLinkRemoved(
                event_id=f"{prefix}:link_removed:{kind.value}:{target}",
                link=kind,
                target_id=target,
                **base,
            )
        )
    if before is None or before.status != after.status:
        events.append(
            GoalStatusChanged(
                event_id=f"{prefix}:status_changed",
                previous_status=before.status if before else None,
                status=after.status,
                owner_id=after.owner_id,
                goal=after,
                **base,
            )
        )
    return events


def _links(goal: GoalRead) -> dict[tuple[LinkKind, str], float]:
    links = {(LinkKind.CONTRIBUTES_TO, c.goal_id): c.weight for c in goal.contributes_to}
    links.update({(LinkKind.DEPENDS_ON, d): 1.0 for d in goal.depends_on})
    return links


def _lua_number(value: float) -> float:
    """``value`` as the Lua walk hands it over: ``tostring`` keeps 14 significant digits."""
    return float(f"{value:.14g}")


def impact_steps(
    goals: Mapping[str, GoalUpsert], goal_id: str, *, max_nodes: int = 100_000
) -> tuple[list[Step], bool] | None:
    """The walk from ``goal_id`` over ``goals`` (by id): the steps, nearest first, and whether
    it stopped at ``max_nodes``; None if there is no such goal.

    A link may name a goal that is not in ``goals`` (the goals service stores links to goals
    not written yet): it is reached all the same.
    """
    if goal_id not in goals:
        return None
    totals: dict[str, float] = {}
    dependents: dict[str, list[str]] = {}
    for goal in goals.values():
        for link in goal.contributes_to:
            totals[link.goal_id] = totals.get(link.goal_id, 0.0) + link.weight
        for target in goal.depends_on:
            dependents.setdefault(target, []).append(goal.id)
    visited = {goal_id}
    steps: list[Step] = []
    frontier, depth = [goal_id], 0
    while frontier:
        depth += 1
        next_level: list[str] = []
        for node in frontier:
            stored = goals.get(node)
            for link in stored.contributes_to if stored is not None else []:
                if link.goal_id not in visited:
                    visited.add(link.goal_id)
                    total = totals[link.goal_id]
                    share = _lua_number(link.weight / total) if total > 0 else 1.0
                    steps.append((link.goal_id, node, LinkKind.CONTRIBUTES_TO, share, depth))
                    next_level.append(link.goal_id)
            for dependent in sorted(dependents.get(node, [])):
                if dependent not in visited:
                    visited.add(dependent)
                    steps.append((dependent, node, LinkKind.DEPENDS_ON, 1.0, depth))
                    next_level.append(dependent)
            if len(steps) >= max_nodes:
                return steps, True
        frontier = next_level
    return steps, False


def assemble_impact(
    goal_id: str,
    steps: Sequence[Step],
    *,
    goals: Mapping[str, GoalUpsert],
    people: Mapping[str, PersonUpsert],
) -> GoalImpact:
    """The answer for ``goal_id`` from its walk: each goal reached with its path, the product
    of the shares along it, its owner (with their name) and the owner's manager; nearest
    first, then by id. ``goals`` holds the goals reached that are stored (others are listed
    by id alone), ``people`` the owners who are stored."""
    reached = {g: (via, link, share, depth) for g, via, link, share, depth in steps}
    affected: list[ImpactedGoal] = []
    for g in sorted(reached, key=lambda x: (reached[x][3], x)):
        path: list[PathStep] = []
        weight = 1.0
        at = g
        while at != goal_id:
            via, link, share, _ = reached[at]
            path.append(PathStep(from_goal=via, to_goal=at, link=link, share=round(share, 6)))
            weight *= share
            at = via
        path.reverse()
        goal = goals.get(g)
        owner = people.get(goal.owner_id) if goal else None
        affected.append(
            ImpactedGoal(
                goal_id=g,
                title=goal.title if goal else None,
                type=goal.type if goal else None,
                status=goal.status if goal else None,
                owner_id=goal.owner_id if goal else None,
                owner_name=owner.name if owner else None,
                owner_manager_id=owner.manager_id if owner else None,
                org_unit_id=goal.org_unit_id if goal else None,
                depth=reached[g][3],
                path=path,
                weight=round(weight, 6),
            )
        )
    return GoalImpact(goal_id=goal_id, affected=affected)


def goal_impact(
    goals: Mapping[str, GoalUpsert], goal_id: str, *, people: Mapping[str, PersonUpsert]
) -> GoalImpact | None:
    """Every goal affected if ``goal_id`` fails, from ``goals`` in memory (the answer
    ``GET /v1/goals/{id}/impact`` gives for the same graph); None if there is no such goal."""
    walked = impact_steps(goals, goal_id)
    if walked is None:
        return None
    steps, _truncated = walked
    return assemble_impact(goal_id, steps, goals=goals, people=people)
