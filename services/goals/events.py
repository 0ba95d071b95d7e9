"""Which goal events a change record stands for. Pure, so a record relayed twice gives the
same events under the same ids, and JetStream stores them once.

A change record is what the write script appends to the outbox in the same step as the
change: the goal as it was (``before``, none if new), as it is (``after``) and the check-in
that caused it, if one did.
"""

from __future__ import annotations

from pydantic import Field

from goalwatch.contracts import subjects
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
from goalwatch.contracts.goals import CheckInRead, GoalRead, LinkKind

# Fields that change with every write and are not a change of the goal itself.
BOOKKEEPING = frozenset({"version", "updated_at"})

SUBJECT_OF: dict[type[GoalEvent], str] = {
    GoalCreated: subjects.GOAL_CREATED,
    GoalUpdated: subjects.GOAL_UPDATED,
    GoalStatusChanged: subjects.GOAL_STATUS_CHANGED,
    GoalCheckedIn: subjects.GOAL_CHECKED_IN,
    GoalLinkAdded: subjects.GOAL_LINK_ADDED,
    GoalLinkRemoved: subjects.GOAL_LINK_REMOVED,
}
"""The subject each event is published on."""


class ChangeRecord(Contract):
    """One change of one goal, as the outbox holds it."""

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
