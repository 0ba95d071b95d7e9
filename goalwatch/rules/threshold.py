"""The threshold kind: ``consecutive`` breaching observations in a row, by event time.

A rule with ``consecutive: N`` holds when the latest N observations *by event time* all
breach, so late and backfilled events are put in their place instead of being counted as the
newest. Whether one observation breaches is the rules engine's verdict
(:class:`goalwatch.rules.engine.RuleEngine`); what the run of verdicts means is decided here,
by pure functions (:func:`observe` for an observation, :func:`due` for a fired timer):

- **hysteresis** (``resolve_at``): once firing, an observation that only *holds* (between the
  threshold and ``resolve_at``) counts as breaching; only one past ``resolve_at`` clears;
- **for**: a condition that holds waits (pending) until it has held for the duration, by
  event time from the observation that made it hold; it fires when an observation shows that
  much time has passed, or when the timer armed for that moment fires, whichever is first;
- **escalate**: a firing alert rises in severity as its breach lasts (from the first
  breaching observation), at an observation or a timer, announced as a firing transition
  with ``escalated_from``: the same alert, louder.

**A rule that changed.** The state remembers the rule's revision
(:func:`goalwatch.rules.revision.revision`) its verdicts were judged under. An input that
meets a state of another revision first has the state judged again under the rule as it is
now (:func:`revise`: the kept observations' verdicts, the periods or the window, whether a
``for`` is pending), then is applied as usual. So a firing alert that still holds under
the new condition goes on (no second firing, the same ``started_at``), one that no longer
holds resolves, and a rule asking for more observations in a row needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from goalwatch.contracts import AlertState, MetricRecorded, Severity
from goalwatch.rules import aggregation
from goalwatch.rules.revision import revision
from goalwatch.rules.spec import SEVERITY_ORDER, RuleSpec
from goalwatch.rules.transitions import Point, Transition, Verdict

# Observations kept per key beyond what the rule needs, for context and late arrivals.
MIN_KEPT: Final = 10
UTC_ZONE: Final = ZoneInfo("UTC")
TIMER: Final = "threshold"
"""Name of the timers of threshold rules (``for`` and ``escalate``), one per alert key."""
TIMER_SOURCE: Final = "goalwatch-evaluator"
"""Source of the event an alert fired by a timer is built from (it is never published)."""


@dataclass(frozen=True)
class Policy:
    """What a threshold rule asks of its keys' decisions."""

    consecutive: int = 1
    for_: timedelta | None = None
    severity: Severity = Severity.WARNING
    # (after the breach began, severity), in order of time and rising.
    escalate: tuple[tuple[timedelta, Severity], ...] = ()
    # Periods (``per``) or a window: what is compared is their value, not each observation.
    per: str | None = None
    window: timedelta | None = None
    aggregate: str = "last"
    compare: bool = False
    missing: str = "breaks"
    zone: ZoneInfo = UTC_ZONE
    # The rule's revision: a state judged under another one is judged again (``revise``).
    revision: str = ""

    @classmethod
    def of(cls, rule: RuleSpec, *, zone: str | None = None) -> Policy:
        """The policy of a threshold ``rule``; ``zone``: the subject's time zone, for a rule
        with periods and no time zone of its own (else UTC)."""
        condition = rule.threshold
        return cls(
            consecutive=condition.consecutive,
            for_=condition.for_,
            severity=rule.severity,
            escalate=tuple((step.after, step.severity) for step in rule.escalate),
            per=condition.per,
            window=condition.window,
            aggregate=condition.aggregate or "last",
            compare=condition.compare == "previous",
            missing=condition.missing or "breaks",
            zone=ZoneInfo(condition.time_zone or zone or "UTC"),
            revision=revision(rule),
        )

    @property
    def aggregated(self) -> bool:
        """Whether a period's or a window's value is compared, not each observation's."""
        return self.per is not None or self.window is not None

    @property
    def measure(self) -> str | None:
        """What a window rule's evaluations measure (the window, its aggregate, compared or
        not), so that a rule change that keeps it can judge them again by their values;
        None for a rule without a window."""
        if self.window is None:
            return None
        compared = " previous" if self.compare else ""
        return f"{self.window.total_seconds():g}s {self.aggregate}{compared}"

    def severity_at(self, started_at: datetime, clock: datetime) -> Severity:
        """The alert's severity once its breach, begun at ``started_at``, reaches ``clock``."""
        severity = self.severity
        for after, step in self.escalate:
            if clock >= started_at + after:
                severity = step
        return severity

    def next_escalation(self, started_at: datetime, clock: datetime) -> datetime | None:
        """When the alert rises next after ``clock``; None when it is as loud as it gets."""
        for after, _ in self.escalate:
            if started_at + after > clock:
                return started_at + after
        return None


@dataclass(frozen=True)
class StreakState:
    """What is remembered about one (rule, subject, metric) between inputs."""

    # The newest observations, ordered by event time (ties by event id).
    kept: tuple[Point, ...] = ()
    firing: bool = False
    # Event time the firing alert's breaching run began; kept after it resolves.
    started_at: datetime | None = None
    # ``for``: event time the condition began to hold, while the alert waits to fire.
    pending_since: datetime | None = None
    # Severity of the firing alert (the rule's, or what it escalated to).
    severity: Severity | None = None
    # When the key's timer is armed for (``for`` or the next escalation), if it is.
    armed: datetime | None = None
    # Labels of the newest observation by event time, for an alert a timer fires.
    labels: Mapping[str, str] = field(default_factory=dict)
    # Rules with periods or a window: the observations their values are made of (``kept``
    # then holds one point per period, or per window evaluated, with its verdict).
    raw: tuple[Point, ...] = ()
    # The rule's revision the verdicts of ``kept`` were judged under. None: unknown (a
    # state written before revisions were recorded, or a new one), taken to be the current
    # rule's: judging every state again once at an upgrade would change nothing for rules
    # that did not change, and cannot be done right for those that did (their old
    # condition is gone).
    revision: str | None = None
    # Window rules: what ``kept``'s evaluations measured (``Policy.measure``).
    measure: str | None = None


_STATE_FIELDS: Final = frozenset(f.name for f in fields(StreakState))


def _with(state: StreakState, **changes: Any) -> StreakState:
    """``dataclasses.replace(state, **changes)`` without its introspection of the fields on
    every call: 1.3 µs instead of 5.5, three or four times per observation."""
    if not changes.keys() <= _STATE_FIELDS:
        raise TypeError(f"StreakState has no field {sorted(changes.keys() - _STATE_FIELDS)}")
    new = object.__new__(StreakState)
    new.__dict__.update(state.__dict__, **changes)  # frozen: written past __setattr__
    return new


@dataclass(frozen=True)
class Decision:
    """What one input does to a key: its new state, the alert transition if any, and the
    time to arm the key's timer for, if it must be (re)armed."""

    state: StreakState
    transition: Transition | None = None
    duplicate: bool = False  # the event id was seen before: the state is unchanged
    arm: datetime | None = None
    # The state had been judged under another revision of the rule, and was judged again.
    revised: bool = False


def newest_event(rule: RuleSpec, subject: str, state: StreakState) -> MetricRecorded:
    """The newest observation ``state`` keeps, as the event an alert fired by a timer speaks
    of (a key's timer is armed only once the key has observations; a window rule's, judged
    again under a new window, may have no evaluation yet: then its newest observation)."""
    point = state.kept[-1] if state.kept else state.raw[-1]
    return MetricRecorded(
        id=point.event_id,
        metric=rule.metric,
        value=point.value,
        time=point.time,
        subject=subject,
        source=TIMER_SOURCE,
        labels=dict(state.labels),
    )


def _order(point: Point) -> tuple[datetime, str]:
    return point.time, point.event_id


def decide(state: StreakState, new: Point, *, consecutive: int) -> Decision:
    """:func:`observe` for a rule with only ``consecutive`` (no for, escalation)."""
    return observe(state, new, Policy(consecutive=consecutive))


Judge = Callable[[float], Verdict]
"""The rules engine's verdict on a value of a rule with periods or a window, or on a kept
observation's value when the state is judged again under a rule that changed."""
TimerJudge = Callable[[StreakState], Judge]
"""The rules engine's verdict for a key whose timer fired, given the key's state: no event
came with the timer, so the values are judged as standing for its newest observation's."""


def observe(
    state: StreakState,
    new: Point,
    policy: Policy,
    *,
    labels: Mapping[str, str] | None = None,
    judge: Judge | None = None,
) -> Decision:
    """Add the observation ``new`` (with its event's ``labels``) to ``state``.

    Holding iff the latest ``consecutive`` observations by event time all breach (once
    firing: none of them clears). Not firing to holding fires (after ``for``, if set);
    firing to not holding resolves. An event id already kept changes nothing, even with other
    content, and asks for the armed timer again (its arming may have been lost). The newest
    ``max(consecutive, MIN_KEPT)`` observations are kept.

    With periods or a window the observations counted are the periods' (or each window's)
    values, which ``judge`` (the rules engine) gives verdicts. A state judged under another
    revision of the rule is first judged again (:func:`revise`), which needs ``judge`` for
    every rule.
    """
    if state.revision != policy.revision:
        changed = state.revision is not None
        decision = _observe(revise(state, policy, judge), new, policy, labels, judge)
        return replace(decision, revised=True) if changed else decision
    return _observe(state, new, policy, labels, judge)


def _observe(
    state: StreakState,
    new: Point,
    policy: Policy,
    labels: Mapping[str, str] | None,
    judge: Judge | None,
) -> Decision:
    # A window's evaluations carry the ids of the events they were made at: an event whose
    # observation has left the window is still known by its evaluation.
    seen: tuple[Point, ...] = state.kept
    if policy.window is not None:
        seen = (*state.raw, *state.kept)
    elif policy.per is not None:
        seen = state.raw
    if any(point.event_id == new.event_id for point in seen):
        return Decision(state=state, duplicate=True, arm=state.armed)
    newest = not seen or _order(new) > _order(max(seen, key=_order))
    if newest:
        state = _with(state, labels=dict(labels or {}))
    if not policy.aggregated:
        points = sorted([*state.kept, new], key=_order)
        state = _with(state, kept=tuple(points[-max(policy.consecutive, MIN_KEPT) :]))
        return _judge(state, points, policy, new.time)
    assert judge is not None, "a rule with periods or a window needs the engine's judge"
    raw = sorted([*state.raw, new], key=_order)
    if policy.per is not None:
        points = _period_points(raw, policy, judge)
        keep = policy.consecutive + 1
        state = _with(
            state,
            raw=tuple(aggregation.retained_periods(raw, policy.per, policy.zone, keep)),
            kept=tuple(points[-max(policy.consecutive, MIN_KEPT) :]),
        )
        return _judge(state, points, policy, new.time)
    assert policy.window is not None
    value = aggregation.window_value(raw, policy.window, policy.aggregate, compare=policy.compare)
    state = _with(
        state, raw=tuple(aggregation.retained_window(raw, policy.window, compare=policy.compare))
    )
    if value is None:
        return Decision(state=state)  # nothing to compare with yet
    evaluated = Point.of(new.event_id, raw[-1].time, value, judge(value))
    points = sorted([*state.kept, evaluated], key=_order)
    state = _with(state, kept=tuple(points[-max(policy.consecutive, MIN_KEPT) :]))
    return _judge(state, points, policy, new.time)


def _period_points(raw: Sequence[Point], policy: Policy, judge: Judge) -> list[Point]:
    """One point per period with observations, named by the period, with its verdict; with
    ``missing: breaks`` a clearing point before a period whose previous period has none."""
    assert policy.per is not None
    points: list[Point] = []
    for period in aggregation.periods(raw, policy.per, policy.aggregate, policy.zone):
        start = period.start.astimezone(UTC)
        if points and not period.follows and policy.missing == "breaks":
            gap = start - timedelta(microseconds=1)
            points.append(Point.of(f"no data before {period.label}", gap, 0.0, Verdict.CLEAR))
        points.append(Point.of(period.label, start, period.value, judge(period.value)))
    return points


def _judge(
    state: StreakState, points: Sequence[Point], policy: Policy, arrived: datetime
) -> Decision:
    """What the observations ``points`` (ordered by event time, the newest last) mean for
    the key, whose state already keeps them."""
    clock = points[-1].time
    latest = tuple(points[-policy.consecutive :])
    if state.firing:
        if not _still_holds(state, latest):
            return _resolve(state, arrived)
        return _escalate(state, clock, policy, latest)
    if not _holding(latest, policy.consecutive):
        return Decision(state=_with(state, pending_since=None))
    since = state.pending_since or _completed_at(points, policy.consecutive)
    if policy.for_ is not None and clock < since + policy.for_:
        return _armed(_with(state, pending_since=since), since + policy.for_, previous=state)
    return _fire(state, _episode_start(state, points), clock, policy, latest)


def due(
    state: StreakState, at: datetime, policy: Policy, *, judge: Judge | None = None
) -> Decision:
    """The key's timer, armed for ``at``, fired: a pending alert whose ``for`` has run out
    fires, a firing one escalates if it is time. A timer that is stale (the alert resolved,
    the condition ended, the time moved) changes nothing but the record of what is armed.

    A state judged under another revision of the rule is first judged again (:func:`revise`,
    with ``judge``), and the timer then finds what the rule as it is now says: a firing
    alert that no longer holds resolves; a pending one fires if the new ``for`` has run
    out (or there is none), or waits for it, armed anew.
    """
    if state.revision != policy.revision:
        changed = state.revision is not None
        decision = _due(revise(state, policy, judge), at, policy)
        return replace(decision, revised=True) if changed else decision
    return _due(state, at, policy)


def _due(state: StreakState, at: datetime, policy: Policy) -> Decision:
    armed = state.armed if state.armed is not None and state.armed > at else None
    state = _with(state, armed=armed)
    latest = tuple(state.kept[-policy.consecutive :])
    if state.firing:
        # A firing alert holds until an input says otherwise; only a rule that changed
        # since its last input can find it no longer holding here.
        if not _still_holds(state, latest):
            return _resolve(state, at)
        return _escalate(state, at, policy, latest)
    since = state.pending_since
    if since is None:
        return Decision(state=state)
    if policy.for_ is not None and at < since + policy.for_:
        # Stale (the wait was moved later), or armed under a shorter ``for`` than the
        # rule's now: the timer for the end of the wait must be armed (it is, if stale).
        return _armed(state, since + policy.for_, previous=state)
    clock = max(at, state.kept[-1].time) if state.kept else at
    return _fire(state, _episode_start(state, state.kept), clock, policy, latest)


def revise(state: StreakState, policy: Policy, judge: Judge | None) -> StreakState:
    """``state`` judged again under the rule of ``policy``, if it was judged under another
    revision of it: as if the observations it keeps had come under the rule as it is now.

    - Each kept observation gets the verdict ``judge`` (the rules engine) gives its value
      now. The observations are the kept points, or, when the state was a rule's with
      periods or a window, its raw observations (the points were the periods' or windows').
    - Periods are made again from the raw observations (a rule without periods before: from
      its kept ones); a window rule's kept evaluations are judged again by their values if
      they measured what the rule measures now (:attr:`Policy.measure`), else the window
      ending at the newest observation kept is evaluated again and the others are dropped:
      a window's value cannot be rebuilt from observations that have left the state.
    - ``pending_since`` is where the breaching run ending the new verdicts became long
      enough, or none (it is cleared on a firing alert); ``for`` counts from there.
    - Whether it fires is left as it was: the input that follows decides, as usual, that a
      firing alert no longer holding resolves (the same fingerprint and ``started_at``),
      and that one still holding goes on without firing again.

    A state whose revision is unknown (None) is taken to have been judged under ``policy``'s
    and only records it. ``judge`` is needed only when the revisions differ.
    """
    if state.revision == policy.revision:
        return state
    if state.revision is None:
        return _with(state, revision=policy.revision, measure=policy.measure)
    if judge is None:
        raise ValueError(
            f"the state was judged under revision {state.revision} of its rule, now "
            f"{policy.revision}: judging it again needs the rules engine's judge"
        )
    # Only a rule with periods or a window keeps raw observations, and it always keeps the
    # newest: without them, the kept points are the observations.
    observations = state.raw or state.kept
    keep = max(policy.consecutive, MIN_KEPT)
    raw: tuple[Point, ...] = ()
    if not policy.aggregated:
        kept = tuple(_judged(point, judge) for point in observations[-keep:])
    elif policy.per is not None:
        points = _period_points(observations, policy, judge)
        kept = tuple(points[-keep:])
        raw = tuple(
            aggregation.retained_periods(
                observations, policy.per, policy.zone, policy.consecutive + 1
            )
        )
    else:
        assert policy.window is not None
        if observations:
            raw = tuple(
                aggregation.retained_window(observations, policy.window, compare=policy.compare)
            )
        if state.measure == policy.measure:
            kept = tuple(_judged(point, judge) for point in state.kept[-keep:])
        else:
            value = None
            if raw:
                value = aggregation.window_value(
                    raw, policy.window, policy.aggregate, compare=policy.compare
                )
            newest = raw[-1] if raw else None
            kept = ()
            if value is not None and newest is not None:
                kept = (Point.of(newest.event_id, newest.time, value, judge(value)),)
    pending = None
    if not state.firing and _holding(kept[-policy.consecutive :], policy.consecutive):
        pending = _completed_at(kept, policy.consecutive)
    return _with(
        state,
        kept=kept,
        raw=raw,
        pending_since=pending,
        revision=policy.revision,
        measure=policy.measure,
    )


def _judged(point: Point, judge: Judge) -> Point:
    """``point`` with the verdict ``judge`` gives its value."""
    return Point.of(point.event_id, point.time, point.value, judge(point.value))


def _resolve(state: StreakState, arrived: datetime) -> Decision:
    """The firing alert resolves (at ``arrived``, if its start is unknown)."""
    transition = Transition(
        AlertState.RESOLVED, state.started_at or arrived, severity=state.severity
    )
    return Decision(
        state=_with(state, firing=False, pending_since=None, severity=None),
        transition=transition,
    )


def _holding(latest: Sequence[Point], consecutive: int) -> bool:
    """Whether the latest observations start an alert: ``consecutive`` of them, all
    breaching."""
    return len(latest) >= consecutive and all(point.breach for point in latest)


def _still_holds(state: StreakState, latest: Sequence[Point]) -> bool:
    """Whether the firing alert of ``state`` goes on: none of the latest observations of
    its run (from ``started_at``) clears; with ``resolve_at``, holding ones keep it.

    The latest ``consecutive`` observations of a firing alert are all of its run (it fired
    when its run had that many), unless the rule changed since: a rule asking for more in a
    row reaches back before the run began. Those earlier ones do not count: ``consecutive``
    (like ``for``) decides when an alert starts, and an alert already firing goes on while
    its own observations hold. So it resolves only when one of them clears, and an alert
    firing again starts after that one: a new episode, with a ``started_at`` of its own.
    """
    started = state.started_at
    run = [point for point in latest if started is None or point.time >= started]
    return bool(run) and all(point.verdict is not Verdict.CLEAR for point in run)


def _fire(
    state: StreakState,
    started_at: datetime,
    clock: datetime,
    policy: Policy,
    history: tuple[Point, ...],
) -> Decision:
    """The alert fires: as loud as a breach begun at ``started_at`` is at ``clock``."""
    severity = policy.severity_at(started_at, clock)
    transition = Transition(AlertState.FIRING, started_at, history, severity=severity)
    new = _with(state, firing=True, started_at=started_at, pending_since=None, severity=severity)
    decision = _armed(new, policy.next_escalation(started_at, clock), previous=state)
    return replace(decision, transition=transition)


def _escalate(
    state: StreakState, clock: datetime, policy: Policy, history: tuple[Point, ...]
) -> Decision:
    """A firing alert whose breach has lasted long enough at ``clock`` rises in severity."""
    assert state.started_at is not None
    current = state.severity or policy.severity
    severity = policy.severity_at(state.started_at, clock)
    following = policy.next_escalation(state.started_at, clock)
    if SEVERITY_ORDER.index(severity) <= SEVERITY_ORDER.index(current):
        return _armed(state, following, previous=state)
    transition = Transition(
        AlertState.FIRING,
        state.started_at,
        history,
        severity=severity,
        escalated_from=current,
    )
    decision = _armed(_with(state, severity=severity), following, previous=state)
    return replace(decision, transition=transition)


def _armed(state: StreakState, at: datetime | None, *, previous: StreakState) -> Decision:
    """``state`` with its timer for ``at`` (none: whatever is armed stays, and a stale
    firing of it changes nothing); arm it unless it is armed for that time already."""
    if at is None:
        return Decision(state=state)
    return Decision(state=_with(state, armed=at), arm=None if previous.armed == at else at)


def _completed_at(points: Sequence[Point], consecutive: int) -> datetime:
    """Event time of the observation that made the breaching run ending ``points`` long
    enough: the ``consecutive``-th of the run (as far back as the points go)."""
    run = 0
    for index in range(len(points) - 1, -1, -1):
        if not points[index].breach:
            break
        run += 1
    start = len(points) - run
    return points[min(start + consecutive - 1, len(points) - 1)].time


def _episode_start(state: StreakState, points: Sequence[Point]) -> datetime:
    """``started_at`` of an alert firing now: where the breaching run ending ``points``
    began, after the previous episode's start.

    An episode is known by its start (the alert's message ids, the inbox), so two episodes
    of a key cannot share one. Judged by an unchanged rule, a run that fires again begins
    after the observation that ended the previous episode, so always after its start; but a
    rule that changed can make that observation breach, joining the runs: the new episode
    then starts at the first observation of the run after the previous one's start.
    """
    start = _streak_start(points)
    previous = state.started_at
    if previous is None or start > previous:
        return start
    later = [point.time for point in points if point.time > previous]
    return min(later) if later else previous + timedelta(microseconds=1)


def _streak_start(points: Sequence[Point]) -> datetime:
    """Event time of the first observation of the breaching run that ends the sequence."""
    start = points[-1].time
    for point in reversed(points):
        if not point.breach:
            break
        start = point.time
    return start
