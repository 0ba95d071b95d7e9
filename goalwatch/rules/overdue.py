"""The overdue kind, absence form: a metric a subject is expected to report has not arrived.

A rule with ``condition: {absent_for: 2d}`` watches every subject that reported its metric:
each report (by event time) sets the deadline ``last_seen + absent_for`` and arms a durable
timer for it; the timer falling due while that is still the deadline fires the alert; the next
report resolves it. :func:`decide` is pure — the state, the current time and one input in; the
new state, at most one transition and the deadline to arm out — and never reads a clock.

The goal forms of ``overdue`` (past due, no check-in, behind plan) have the same shape in
:mod:`goalwatch.rules.goal_overdue`: their input is a goal event instead of a report, their
key ``(rule, goal)``, and a goal that is done cancels its timer instead of arming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from goalwatch.contracts import AlertState, MetricRecorded
from goalwatch.rules.scope import in_scope
from goalwatch.rules.spec import RuleSpec, labels_match
from goalwatch.rules.transitions import Point, Transition

# The name of the absence timer (TimerKey.name); its key is the alert fingerprint.
TIMER: Final = "absence"


@dataclass(frozen=True)
class Seen:
    """One report of the metric by the subject."""

    event_id: str
    time: datetime
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, event: MetricRecorded) -> Seen:
        """The report that ``event`` is."""
        return cls(event.id, event.time, event.value, dict(event.labels))


@dataclass(frozen=True)
class Due:
    """The timer armed for ``due_at`` fell due."""

    due_at: datetime


@dataclass(frozen=True)
class AbsenceState:
    """What is remembered about one (rule, subject, metric) between inputs."""

    last: Seen | None = None  # the newest report by event time
    deadline: datetime | None = None  # last.time + absent_for: what the timer is armed for
    firing: bool = False
    started_at: datetime | None = None  # the deadline the firing episode missed


@dataclass(frozen=True)
class Decision:
    """What one input does: the new state, the transition if any, the deadline to arm."""

    state: AbsenceState
    transition: Transition | None = None
    arm: datetime | None = None
    # The input was handled before (a redelivery): the state is unchanged, and a transition
    # it caused may still have to be published.
    repeat: bool = False


def applies(rule: RuleSpec, event: MetricRecorded, *, org_units: Sequence[str] = ()) -> bool:
    """Whether ``event`` is a report ``rule`` watches: its metric, labels matching ``where``,
    and, for a rule scoped by ``org_unit``, a subject in one of its units (``org_units``: the
    subject's unit and its ancestors)."""
    return (
        event.metric == rule.metric
        and labels_match(rule.where, event.labels)
        and in_scope(rule.scope, org_units)
    )


def decide(
    state: AbsenceState, now: datetime, change: Seen | Due, *, absent_for: timedelta
) -> Decision:
    """Apply one report or one timer to ``state`` at time ``now``.

    - A report newer than the last (by event time) moves the deadline to its time plus
      ``absent_for`` and arms it, or, if the alert fires, resolves it — unless that new
      deadline has passed too (a late report of an old day): the alert then goes on firing.
      A deadline in the past is armed all the same and fires at once through the timer,
      so a backfill of many old reports fires nothing once its newest one is in.
    - An older report changes nothing; the newest one again (a redelivery) re-arms.
    - The timer of the current deadline fires the alert, started at that deadline. Any
      other is stale (the deadline moved since) and changes nothing.
    - The deadline is the last report's time plus ``absent_for`` as the rule says it *now*:
      a timer armed under a shorter ``absent_for`` (the rule changed since) moves to the
      later deadline instead of firing, and that one's timer counts too. A timer armed under
      a longer one fires when it falls due (the next report sets the shorter deadline).
    """
    if isinstance(change, Due):
        if state.firing:
            return Decision(state, repeat=change.due_at == state.started_at)
        if state.deadline is None or state.last is None:
            return Decision(state)
        # The two differ only when the rule's absent_for changed since the deadline was set.
        deadline = state.last.time + absent_for
        if change.due_at not in (state.deadline, deadline):
            return Decision(state)
        if deadline > change.due_at:
            # Not overdue by the rule as it is now. The state keeps the deadline it had: a
            # redelivered timer moves it again, so the arm cannot be lost between the two.
            return Decision(state, arm=deadline)
        before = state.last
        transition = Transition(
            AlertState.FIRING,
            change.due_at,
            (Point(before.event_id, before.time, before.value, breach=True),),
        )
        return Decision(
            AbsenceState(before, state.deadline, firing=True, started_at=change.due_at),
            transition,
        )
    previous = state.last
    if previous is not None and change.event_id == previous.event_id:
        return Decision(state, arm=None if state.firing else state.deadline, repeat=True)
    if previous is not None and change.time <= previous.time:
        return Decision(state)
    deadline = change.time + absent_for
    if state.firing and deadline <= now:
        return Decision(AbsenceState(change, deadline, firing=True, started_at=state.started_at))
    new = AbsenceState(change, deadline, firing=False, started_at=state.started_at)
    if state.firing:
        started = state.started_at or deadline
        return Decision(new, Transition(AlertState.RESOLVED, started), arm=deadline)
    return Decision(new, arm=deadline)
