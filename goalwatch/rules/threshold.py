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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from goalwatch.contracts import AlertState, MetricRecorded, Severity
from goalwatch.rules import aggregation
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
        )

    @property
    def aggregated(self) -> bool:
        """Whether a period's or a window's value is compared, not each observation's."""
        return self.per is not None or self.window is not None

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


def newest_event(rule: RuleSpec, subject: str, state: StreakState) -> MetricRecorded:
    """The newest observation ``state`` keeps, as the event an alert fired by a timer speaks
    of (a key's timer is armed only once the key has observations)."""
    point = state.kept[-1]
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
"""The rules engine's verdict on a value of a rule with periods or a window."""


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
    values, which ``judge`` (the rules engine) gives verdicts.
    """
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
        if not _holding(latest, policy.consecutive, firing=True):
            transition = Transition(
                AlertState.RESOLVED,
                state.started_at or arrived,
                severity=state.severity,
            )
            return Decision(
                state=_with(state, firing=False, pending_since=None, severity=None),
                transition=transition,
            )
        return _escalate(state, clock, policy, latest)
    if not _holding(latest, policy.consecutive, firing=False):
        return Decision(state=_with(state, pending_since=None))
    since = state.pending_since or _completed_at(points, policy.consecutive)
    if policy.for_ is not None and clock < since + policy.for_:
        return _armed(_with(state, pending_since=since), since + policy.for_, previous=state)
    return _fire(state, _streak_start(points), clock, policy, latest)


def due(state: StreakState, at: datetime, policy: Policy) -> Decision:
    """The key's timer, armed for ``at``, fired: a pending alert whose ``for`` has run out
    fires, a firing one escalates if it is time. A timer that is stale (the alert resolved,
    the condition ended, the time moved) changes nothing but the record of what is armed."""
    armed = state.armed if state.armed is not None and state.armed > at else None
    state = _with(state, armed=armed)
    latest = tuple(state.kept[-policy.consecutive :])
    if state.firing:
        return _escalate(state, at, policy, latest)
    since = state.pending_since
    if since is None or policy.for_ is None or at < since + policy.for_:
        return Decision(state=state)
    clock = max(at, state.kept[-1].time) if state.kept else at
    return _fire(state, _streak_start(state.kept), clock, policy, latest)


def _holding(latest: Sequence[Point], consecutive: int, *, firing: bool) -> bool:
    if len(latest) < consecutive:
        return False
    if firing:
        return all(point.verdict is not Verdict.CLEAR for point in latest)
    return all(point.breach for point in latest)


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


def _streak_start(points: Sequence[Point]) -> datetime:
    """Event time of the first observation of the breaching run that ends the sequence."""
    start = points[-1].time
    for point in reversed(points):
        if not point.breach:
            break
        start = point.time
    return start
