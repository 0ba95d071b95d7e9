"""Goal check-ins as metric records, so that threshold and fraud rules can watch progress.

Every check-in the goals service records (``GoalCheckedIn`` in ``GOALWATCH_GOALS``) is also a
record of the metric :data:`PROGRESS_METRIC`: the goal's progress after it (percent), about
the goal's owner, labelled with the goal. A fraud rule with ``pattern: jump`` and
``by: [goal_id]`` then finds "a key result from 10% to 100% in one check-in".
"""

from __future__ import annotations

from typing import Final

from goalwatch.contracts import MetricRecorded
from goalwatch.contracts.goals import CheckInRead, GoalRead

PROGRESS_METRIC: Final = "goal.progress"
"""The metric a check-in is a record of: the goal's progress after it, 0-100."""
SOURCE: Final = "goals"


def progress_record(
    event_id: str, goal: GoalRead | None, check_in: CheckInRead | None
) -> MetricRecorded | None:
    """The record of the check-in ``event_id`` (a ``GoalCheckedIn``), or None for another
    change or a goal without progress (no target to measure it against)."""
    if goal is None or check_in is None or goal.progress is None:
        return None
    return MetricRecorded(
        id=event_id,
        metric=PROGRESS_METRIC,
        value=goal.progress,
        time=check_in.at,
        subject=goal.owner_id,
        source=SOURCE,
        labels={"goal_id": goal.id, "goal_type": goal.type.value, "checked_in_by": check_in.by},
    )
