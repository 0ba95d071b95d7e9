"""Which goal events a change record stands for (:func:`goalwatch.goal_graph.events_of`, pure,
shared with the rule tests), and the subject of each. A record relayed twice gives the
same events under the same ids, and JetStream stores them once.

A change record is what the write script appends to the outbox in the same step as the
change: the goal as it was (``before``, none if new), as it is (``after``) and the check-in
that caused it, if one did.
"""

from __future__ import annotations

from goalwatch.contracts import subjects
from goalwatch.contracts.goal_events import (
    GoalCheckedIn,
    GoalCreated,
    GoalEvent,
    GoalLinkAdded,
    GoalLinkRemoved,
    GoalStatusChanged,
    GoalUpdated,
)
from goalwatch.goal_graph import BOOKKEEPING, ChangeRecord, changed_fields, events_of

__all__ = ["BOOKKEEPING", "SUBJECT_OF", "ChangeRecord", "changed_fields", "events_of"]

SUBJECT_OF: dict[type[GoalEvent], str] = {
    GoalCreated: subjects.GOAL_CREATED,
    GoalUpdated: subjects.GOAL_UPDATED,
    GoalStatusChanged: subjects.GOAL_STATUS_CHANGED,
    GoalCheckedIn: subjects.GOAL_CHECKED_IN,
    GoalLinkAdded: subjects.GOAL_LINK_ADDED,
    GoalLinkRemoved: subjects.GOAL_LINK_REMOVED,
}
"""The subject each event is published on."""
