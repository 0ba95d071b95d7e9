"""The goal forms of ``overdue``: pure decisions, no I/O, no clock.

State is kept per (rule, goal) by the caller (Redis in the evaluator): the goal as last seen
(``facts``, at ``version``), when it was first seen (``since``: the baseline of a goal never
checked in on, and the start of its expected line when it has no period), the one deadline a
durable timer is armed for, and the open episode. Two inputs change it:

- a goal snapshot (every goal event but a link's carries the goal as stored after the
  change): one at a version applied before changes nothing, so a redelivered or replayed
  event, or the status event of a change whose update was applied, is recognised. A check-in
  is a snapshot whose ``last_check_in_at`` moved forward;
- a fired timer: only one for the deadline the state holds counts; any other is stale (the
  deadline moved, or the goal closed, after it was armed).

Deadlines per form: ``past_due`` — the due date (or the moment a closed goal reopened, if
that is later); ``no_check_in`` — the last check-in (or ``since``) plus the cadence plus the
grace; ``behind_plan`` — the next cadence boundary from the line's start before the due
date (from the due date on, a goal not done is past due, which is ``past_due``'s to say; a
behind-plan alert already firing goes on until the goal catches up or closes). A goal done, cancelled, or no longer matching the rule's filters has no deadline:
its timer is cancelled and a firing alert resolves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict

from goalwatch.contracts import AlertFired, AlertResolved, AlertState, GoalRead, RuleKind
from goalwatch.contracts.goals import Cadence, GoalStatus, GoalType
from goalwatch.contracts.overdue import OverdueForm, OverdueGoal
from goalwatch.durations import duration_text
from goalwatch.rules.goal_overdue_spec import GoalOverdueRuleSpec
from goalwatch.rules.template import render_fields
from goalwatch.rules.transitions import fingerprint

TIMER: Final = "goal"
"""The name of a goal deadline's timer (TimerKey.name); its key is the alert fingerprint."""

METRICS: Final[dict[OverdueForm, str]] = {
    OverdueForm.PAST_DUE: "goal_due",
    OverdueForm.NO_CHECK_IN: "goal_check_in",
    OverdueForm.BEHIND_PLAN: "goal_progress",
}
"""What goal-based overdue alerts name as their metric, by form."""

CLOSED: Final = frozenset({GoalStatus.DONE, GoalStatus.CANCELLED})


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GoalFacts(_State):
    """What a rule remembers of a goal."""

    goal_id: str
    title: str
    type: GoalType
    owner_id: str
    org_unit_id: str | None = None
    period: str | None = None
    status: GoalStatus
    due: datetime | None = None
    progress: float | None = None
    cadence: Cadence
    last_check_in_at: datetime | None = None
    version: int

    @classmethod
    def of(cls, goal: GoalRead) -> GoalFacts:
        """The facts of ``goal`` as an event carries it."""
        return cls(
            goal_id=goal.id,
            title=goal.title,
            type=goal.type,
            owner_id=goal.owner_id,
            org_unit_id=goal.org_unit_id,
            period=goal.period,
            status=goal.status,
            due=goal.due,
            progress=goal.progress,
            cadence=goal.cadence,
            last_check_in_at=goal.last_check_in_at,
            version=goal.version,
        )


class Pending(_State):
    """A transition stored before it is published: published again until it is out."""

    state: AlertState
    started_at: datetime
    at: datetime  # when the condition was judged (a deadline, a check-in, a change)
    expected: float | None = None  # behind_plan: the line's value then
    facts: GoalFacts


class GoalOverdueState(_State):
    """A rule's state for one goal (see the module's docstring)."""

    version: int = 0
    facts: GoalFacts | None = None
    since: datetime | None = None
    deadline: datetime | None = None
    firing: bool = False
    started_at: datetime | None = None
    expected: float | None = None
    pending: Pending | None = None


@dataclass(frozen=True)
class Decision:
    """The new state (its ``pending`` set when there is a transition to publish), the time
    to arm the timer for, or whether to cancel it."""

    state: GoalOverdueState
    arm: datetime | None = None
    cancel: bool = False

    @property
    def transition(self) -> Pending | None:
        """The transition to publish, if any."""
        return self.state.pending


def period_start(period: str | None) -> datetime | None:
    """The first moment (UTC) of a period: 2026, 2026-H2, 2026-Q3, 2026-11."""
    if period is None:
        return None
    year, _, part = period.partition("-")
    month = 1
    if part.startswith("H"):
        month = 1 + 6 * (int(part[1:]) - 1)
    elif part.startswith("Q"):
        month = 1 + 3 * (int(part[1:]) - 1)
    elif part:
        month = int(part)
    return datetime(int(year), month, 1, tzinfo=UTC)


def after_cadence(moment: datetime, cadence: Cadence, times: int = 1) -> datetime:
    """``moment`` plus ``times`` cadences: 7 or 14 days, or calendar months (the day
    clamped to the month's length)."""
    if cadence is Cadence.WEEKLY:
        return moment + timedelta(days=7 * times)
    if cadence is Cadence.BIWEEKLY:
        return moment + timedelta(days=14 * times)
    months = moment.month - 1 + times
    year, month = moment.year + months // 12, months % 12 + 1
    following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=moment.tzinfo)
    last_day = (following - timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def line_start(facts: GoalFacts, since: datetime) -> datetime | None:
    """Where the goal's expected line starts: its period's start, or when it was first seen;
    none when that is not before the due date (no line to be behind)."""
    if facts.due is None:
        return None
    start = period_start(facts.period)
    if start is None or start >= facts.due:
        start = since
    return start if start < facts.due else None


def expected_at(facts: GoalFacts, since: datetime, moment: datetime) -> float | None:
    """The line's value at ``moment``, 0-100; none without a line."""
    start = line_start(facts, since)
    if start is None or facts.due is None:
        return None
    share = (moment - start) / (facts.due - start)
    return max(0.0, min(100.0, share * 100.0))


def next_boundary(facts: GoalFacts, since: datetime, after: datetime) -> datetime | None:
    """The first cadence boundary from the line's start later than ``after`` and before the
    due date. None when there is none left, or without a line."""
    start = line_start(facts, since)
    if start is None or facts.due is None or after >= facts.due:
        return None
    # Skip whole cadences at once: a goal first seen late in a long period.
    step = after_cadence(start, facts.cadence) - start
    times = max(1, int((after - start) / step))
    while (boundary := after_cadence(start, facts.cadence, times)) <= after:
        times += 1
    while times > 1 and after_cadence(start, facts.cadence, times - 1) > after:
        times -= 1
        boundary = after_cadence(start, facts.cadence, times)
    return boundary if boundary < facts.due else None


def _open(rule: GoalOverdueRuleSpec, facts: GoalFacts) -> bool:
    return facts.status not in CLOSED and rule.watches(
        type=facts.type.value, org_unit=facts.org_unit_id, period=facts.period
    )


def _deadline(
    rule: GoalOverdueRuleSpec, facts: GoalFacts, since: datetime, *, now: datetime
) -> datetime | None:
    condition = rule.condition
    if condition.past_due:
        return facts.due
    if condition.no_check_in is not None:
        last = facts.last_check_in_at or since
        return after_cadence(last, facts.cadence) + condition.no_check_in.grace
    return next_boundary(facts, since, now)


def _behind(rule: GoalOverdueRuleSpec, expected: float | None, progress: float | None) -> bool:
    plan = rule.condition.behind_plan
    assert plan is not None
    return expected is not None and progress is not None and expected - progress > plan.points


def decide_goal(
    state: GoalOverdueState, rule: GoalOverdueRuleSpec, goal: GoalRead, *, occurred_at: datetime
) -> Decision | None:
    """What a snapshot of the goal at ``goal.version`` (its change made at ``occurred_at``)
    does; None when that version was applied already. ``state`` has nothing pending."""
    if goal.version <= state.version:
        return None
    facts = GoalFacts.of(goal)
    since = state.since or goal.updated_at
    now = occurred_at
    base = GoalOverdueState(
        version=goal.version,
        facts=facts,
        since=since,
        deadline=state.deadline,
        firing=state.firing,
        started_at=state.started_at,
        expected=state.expected,
    )
    if not _open(rule, facts):
        resolved = _resolve(base, facts, at=now) if state.firing else base
        return Decision(
            resolved.model_copy(update={"deadline": None}), cancel=state.deadline is not None
        )
    if rule.condition.behind_plan is not None:
        return _goal_behind_plan(state, base, rule, facts, since, now=now)
    deadline = _deadline(rule, facts, since, now=now)
    was_closed = state.facts is not None and not _open(rule, state.facts)
    if rule.condition.past_due and was_closed and deadline is not None and deadline < now:
        deadline = now  # reopened after its due date: overdue from now, a new episode
    if state.firing:
        if deadline is not None and deadline <= now:
            return Decision(base)  # still overdue: the episode goes on
        resolved = _resolve(base, facts, at=now).model_copy(update={"deadline": deadline})
        return Decision(resolved, arm=deadline)
    moved = base.model_copy(update={"deadline": deadline})
    if deadline is None:
        return Decision(moved, cancel=state.deadline is not None)
    return Decision(moved, arm=deadline if deadline != state.deadline else None)


def _goal_behind_plan(
    state: GoalOverdueState,
    base: GoalOverdueState,
    rule: GoalOverdueRuleSpec,
    facts: GoalFacts,
    since: datetime,
    *,
    now: datetime,
) -> Decision:
    new = base
    checked = facts.last_check_in_at
    previous = state.facts.last_check_in_at if state.facts is not None else None
    if checked is not None and (previous is None or checked > previous):
        # A check-in from the due date on can show the goal caught up, not newly behind: by
        # then being late is past_due's to say, and saying it twice is noise.
        may_fire = facts.due is None or checked < facts.due
        new = _judge(new, rule, facts, since, at=checked, may_fire=may_fire)
    deadline = next_boundary(facts, since, max(now, checked or now))
    new = new.model_copy(update={"deadline": deadline})
    if deadline is None:
        return Decision(new, cancel=state.deadline is not None)
    return Decision(new, arm=deadline if deadline != state.deadline else None)


def _judge(
    state: GoalOverdueState,
    rule: GoalOverdueRuleSpec,
    facts: GoalFacts,
    since: datetime,
    *,
    at: datetime,
    may_fire: bool = True,
) -> GoalOverdueState:
    expected = expected_at(facts, since, at)
    if _behind(rule, expected, facts.progress):
        if state.firing or not may_fire:
            return state
        return state.model_copy(
            update={
                "firing": True,
                "started_at": at,
                "expected": expected,
                "pending": Pending(
                    state=AlertState.FIRING,
                    started_at=at,
                    at=at,
                    expected=expected,
                    facts=facts,
                ),
            }
        )
    if state.firing:
        return _resolve(state, facts, at=at, expected=expected)
    return state


def _resolve(
    state: GoalOverdueState, facts: GoalFacts, *, at: datetime, expected: float | None = None
) -> GoalOverdueState:
    started = state.started_at or at
    return state.model_copy(
        update={
            "firing": False,
            "started_at": None,
            "expected": None,
            "pending": Pending(
                state=AlertState.RESOLVED,
                started_at=started,
                at=at,
                expected=expected,
                facts=facts,
            ),
        }
    )


def decide_timer(
    state: GoalOverdueState, rule: GoalOverdueRuleSpec, due_at: datetime
) -> Decision | None:
    """What the timer armed for ``due_at`` falling due does; None when it is stale (the
    deadline moved, the goal closed, or it fired and was handled). ``state`` has nothing
    pending. A missed check-in's deadline armed under a shorter ``grace`` than the rule's
    now moves to the later one instead of firing."""
    facts, since = state.facts, state.since
    if facts is None or since is None or state.deadline != due_at or not _open(rule, facts):
        return None
    if rule.condition.behind_plan is not None:
        judged = _judge(state, rule, facts, since, at=due_at)
        deadline = next_boundary(facts, since, due_at)
        return Decision(judged.model_copy(update={"deadline": deadline}), arm=deadline)
    if state.firing:
        return None
    if rule.condition.no_check_in is not None:
        # The only deadline a rule's condition moves (grace): armed under a shorter grace
        # than the rule's now, it is not overdue yet. Armed before the state is stored, so
        # a redelivered timer finds the old deadline and moves it again.
        deadline = _deadline(rule, facts, since, now=due_at)
        if deadline is not None and deadline > due_at:
            return Decision(state.model_copy(update={"deadline": deadline}), arm=deadline)
    fired = state.model_copy(
        update={
            "firing": True,
            "started_at": due_at,
            "pending": Pending(state=AlertState.FIRING, started_at=due_at, at=due_at, facts=facts),
        }
    )
    return Decision(fired)


def published(state: GoalOverdueState) -> GoalOverdueState:
    """``state`` once its pending transition is in the alerts stream."""
    return state.model_copy(update={"pending": None})


def overdue_goal(rule: GoalOverdueRuleSpec, pending: Pending) -> OverdueGoal:
    """The goal as the alert announcing ``pending`` names it."""
    facts = pending.facts
    return OverdueGoal(
        form=rule.condition.form,
        goal_id=facts.goal_id,
        title=facts.title,
        type=facts.type,
        owner_id=facts.owner_id,
        org_unit_id=facts.org_unit_id,
        period=facts.period,
        status=facts.status,
        due=facts.due,
        progress=facts.progress,
        expected_progress=pending.expected,
        cadence=facts.cadence,
        last_check_in_at=facts.last_check_in_at,
        deadline=pending.started_at,
        version=facts.version,
    )


def goal_fingerprint(rule: GoalOverdueRuleSpec, goal_id: str) -> str:
    """Stable id of ``rule``'s alert about ``goal_id`` (also its timer's key)."""
    return fingerprint(rule.id, goal_id, METRICS[rule.condition.form])


def message_id(fp: str, pending: Pending) -> str:
    """``<fingerprint>:fired|resolved:<started_at>``: the same for a transition published
    again, so the alerts stream stores it once."""
    verb = "fired" if pending.state is AlertState.FIRING else "resolved"
    return f"{fp}:{verb}:{pending.started_at.isoformat()}"


def message_fields(
    rule: GoalOverdueRuleSpec, pending: Pending, *, owner_name: str, since: datetime
) -> dict[str, object]:
    """The values of the template fields (:data:`goalwatch.rules.goal_overdue_spec.SAMPLES`)."""
    facts = pending.facts
    progress = facts.progress if facts.progress is not None else 0.0
    expected = pending.expected if pending.expected is not None else progress
    no_check_in = rule.condition.no_check_in
    plan = rule.condition.behind_plan
    return {
        "owner": facts.owner_id,
        "owner_name": owner_name,
        "goal_id": facts.goal_id,
        "goal_title": facts.title,
        "goal_type": facts.type.value,
        "org_unit": facts.org_unit_id or "-",
        "period": facts.period or "-",
        "status": facts.status.value,
        "due": facts.due or pending.started_at,
        "progress": progress,
        "expected": expected,
        "behind_by": max(0.0, expected - progress),
        "points": plan.points if plan is not None else 0.0,
        "last_check_in": facts.last_check_in_at or since,
        "deadline": pending.started_at,
        "cadence": facts.cadence.value,
        "grace": duration_text(no_check_in.grace) if no_check_in is not None else "0s",
        "rule_id": rule.id,
        "rule_name": rule.name,
        "severity": rule.severity.value,
    }


_RESOLVED: Final[dict[OverdueForm, str]] = {
    OverdueForm.PAST_DUE: "{goal_title} is {status} now",
    OverdueForm.NO_CHECK_IN: "{goal_title} was checked in on",
    OverdueForm.BEHIND_PLAN: "{goal_title} is back within {points:g} points of its plan "
    "({progress:.0f}% done)",
}
_CLOSED_RESOLUTION: Final = "{goal_title} is {status} now"


def build_goal_alert(
    rule: GoalOverdueRuleSpec,
    pending: Pending,
    *,
    owner_name: str,
    since: datetime,
    now: datetime,
) -> AlertFired | AlertResolved:
    """The message announcing ``pending``: to the goal's owner (the subject), naming the goal."""
    facts = pending.facts
    fp = goal_fingerprint(rule, facts.goal_id)
    fields = message_fields(rule, pending, owner_name=owner_name, since=since)
    labels = {"goal_id": facts.goal_id, "goal_type": facts.type.value}
    if facts.org_unit_id is not None:
        labels["org_unit"] = facts.org_unit_id
    value = facts.progress if facts.progress is not None else 0.0
    event_id = f"{facts.goal_id}:{facts.version}"
    common = {
        "fingerprint": fp,
        "rule_id": rule.id,
        "rule_name": rule.name,
        "severity": rule.severity,
        "subject": facts.owner_id,
        "subject_name": owner_name,
        "metric": METRICS[rule.condition.form],
        "value": value,
        "notify": list(rule.notify),
        "started_at": pending.started_at,
        "event_id": event_id,
        "goal": overdue_goal(rule, pending),
    }
    if pending.state is AlertState.FIRING:
        return AlertFired(
            **common,
            kind=RuleKind.OVERDUE,
            message=render_fields(rule.message, fields),
            labels=labels,
            fired_at=now,
        )
    # A goal closed (done, cancelled) ends every form's episode, whatever its progress says.
    reason = _CLOSED_RESOLUTION if facts.status in CLOSED else _RESOLVED[rule.condition.form]
    template = rule.resolved_message or f"Resolved: {rule.name} — {reason}"
    return AlertResolved(**common, message=render_fields(template, fields), resolved_at=now)
