"""Run rules over a list of events in memory: the alerts the evaluator would publish.

No NATS, no Redis, no service: the same engine verdicts, the same per-kind decision and the
same alert building as the evaluator, with the state kept in a dict instead of Redis. The
basis of ``goalwatch rules run`` and ``goalwatch rules test``.

Events are metric events (``MetricRecorded``, for threshold and overdue rules on a metric)
and goal events (``GoalCreated``, ``GoalUpdated``, ``GoalCheckedIn``, ``GoalStatusChanged``
..., for the goal forms of overdue and for dependency_impact rules). A dependency-impact
episode asks ``impacts`` what the failing goal reaches, as the evaluator asks the goals
service.

Time is the events' own: the clock is the latest event time (or goal change time) seen so
far. Timers (overdue deadlines) wait in a heap and fire as that clock passes them — before
the next event whose time is at or after them, and at the end up to ``until`` — so "no
report for two days" fires at last report + two days without anyone waiting two days.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from goalwatch.contracts import (
    AlertFired,
    AlertResolved,
    GoalCheckedIn,
    GoalStatusChanged,
    MetricRecorded,
    RuleKind,
)
from goalwatch.contracts.goal_events import GoalEvent
from goalwatch.contracts.goals import GoalImpact, GoalRead
from goalwatch.rules import fraud, impact, overdue, threshold
from goalwatch.rules.announce import build_absence_alert, build_alert, build_fraud_alert
from goalwatch.rules.check_ins import progress_record
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.fraud_spec import OutlierCondition
from goalwatch.rules.goal_overdue import Decision as GoalDecision
from goalwatch.rules.goal_overdue import (
    GoalOverdueState,
    build_goal_alert,
    decide_goal,
    decide_timer,
)
from goalwatch.rules.goal_overdue import published as goal_published
from goalwatch.rules.goal_overdue_spec import GoalOverdueRuleSpec
from goalwatch.rules.impact_spec import ImpactRuleSpec
from goalwatch.rules.overdue import AbsenceState, Due, Seen
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.threshold import Decision, Judge, Policy, StreakState, TimerJudge
from goalwatch.rules.transitions import Point, Verdict, fingerprint


class MemoryStreaks:
    """Threshold state per alert key in a dict: the evaluator's store, in memory."""

    def __init__(self) -> None:
        self.states: dict[str, StreakState] = {}

    def observe(
        self,
        fp: str,
        point: Point,
        policy: Policy,
        *,
        labels: Mapping[str, str],
        judge: Judge | None = None,
    ) -> Decision:
        """Record the observation ``point`` for the key ``fp``."""
        decision = threshold.observe(
            self.states.get(fp, StreakState()), point, policy, labels=labels, judge=judge
        )
        self.states[fp] = decision.state
        return decision

    def due(
        self, fp: str, at: datetime, policy: Policy, *, judge: TimerJudge | None = None
    ) -> Decision:
        """The key's timer armed for ``at`` fired; ``judge`` judges the key's state again if
        its rule changed since its last input."""
        state = self.states.get(fp, StreakState())
        decision = threshold.due(state, at, policy, judge=None if judge is None else judge(state))
        self.states[fp] = decision.state
        return decision


class _Timers:
    """Timers of every kind in one heap, fired in the order they fall due."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, Callable[[datetime, datetime], None]]] = []
        self._order = itertools.count()
        self.clock: datetime | None = None

    def arm(self, at: datetime, fire: Callable[[datetime, datetime], None]) -> None:
        """Call ``fire(due_at, now)`` when the clock passes ``at``."""
        heapq.heappush(self._heap, (at, next(self._order), fire))

    def advance(self, to: datetime) -> None:
        """Fire every timer due by ``to``, in the order they fall due; one already past
        when it was armed fires at the clock's time."""
        while self._heap and self._heap[0][0] <= to:
            due_at, _, fire = heapq.heappop(self._heap)
            fire(due_at, max(due_at, self.clock or due_at))


class _Absences:
    """Overdue (absence) state per key, in memory; its timers in ``timers``."""

    def __init__(
        self, names: Mapping[str, str], alerts: list[AlertFired | AlertResolved], timers: _Timers
    ):
        self._states: dict[str, AbsenceState] = {}
        self._timers = timers
        self._names = names
        self._alerts = alerts

    def seen(self, rule: RuleSpec, event: MetricRecorded) -> None:
        assert self._timers.clock is not None
        self._apply(rule, event.subject, Seen.of(event), now=self._timers.clock)

    def _apply(self, rule: RuleSpec, subject: str, change: Seen | Due, *, now: datetime) -> None:
        fp = fingerprint(rule.id, subject, rule.metric)
        decision = overdue.decide(
            self._states.get(fp, AbsenceState()),
            now,
            change,
            absent_for=rule.overdue.absent_for,
        )
        self._states[fp] = decision.state
        if decision.arm is not None:
            self._timers.arm(
                decision.arm,
                lambda due_at, now: self._apply(rule, subject, Due(due_at), now=now),
            )
        last = change if isinstance(change, Seen) else decision.state.last
        if decision.transition is not None and not decision.repeat and last is not None:
            self._alerts.append(
                build_absence_alert(
                    rule=rule,
                    subject=subject,
                    subject_name=self._names.get(subject, subject),
                    last=last,
                    transition=decision.transition,
                    now=now,
                )
            )


class _GoalOverdue:
    """Goal-based overdue state per (rule, goal), in memory, with one timer per (rule, goal):
    arming again replaces it and cancelling drops it, as a JetStream message schedule does."""

    def __init__(
        self,
        rules: Sequence[GoalOverdueRuleSpec],
        names: Mapping[str, str],
        alerts: list[AlertFired | AlertResolved],
        timers: _Timers,
    ):
        self._rules = rules
        self._states: dict[tuple[str, str], GoalOverdueState] = {}
        self._armed: dict[tuple[str, str], datetime] = {}
        self._timers = timers
        self._names = names
        self._alerts = alerts

    def changed(self, goal: GoalRead, occurred_at: datetime) -> None:
        for rule in self._rules:
            state = self._states.get((rule.id, goal.id), GoalOverdueState())
            decision = decide_goal(state, rule, goal, occurred_at=occurred_at)
            if decision is not None:
                self._apply(rule, goal.id, decision, now=occurred_at)

    def _fire(
        self, rule: GoalOverdueRuleSpec, goal_id: str, due_at: datetime, now: datetime
    ) -> None:
        key = (rule.id, goal_id)
        if self._armed.get(key) != due_at:
            return  # moved or cancelled since
        del self._armed[key]
        state = self._states.get(key, GoalOverdueState())
        decision = decide_timer(state, rule, due_at)
        if decision is not None:
            self._apply(rule, goal_id, decision, now=now)

    def _apply(
        self, rule: GoalOverdueRuleSpec, goal_id: str, decision: GoalDecision, *, now: datetime
    ) -> None:
        key = (rule.id, goal_id)
        if decision.arm is not None:
            self._armed[key] = decision.arm
            self._timers.arm(
                decision.arm, lambda due_at, now: self._fire(rule, goal_id, due_at, now)
            )
        elif decision.cancel:
            self._armed.pop(key, None)
        state = decision.state
        pending = decision.transition
        if pending is not None:
            assert state.since is not None
            owner = pending.facts.owner_id
            self._alerts.append(
                build_goal_alert(
                    rule,
                    pending,
                    owner_name=self._names.get(owner, owner),
                    since=state.since,
                    now=now,
                )
            )
            state = goal_published(state)
        self._states[key] = state


Impacts = Callable[[str], GoalImpact | None]
"""What a goal's failure reaches (``GET /v1/goals/{id}/impact``); None for a goal unknown."""


class _Impact:
    """Dependency-impact state per (rule, goal), in memory."""

    def __init__(
        self,
        rules: Sequence[ImpactRuleSpec],
        impacts: Impacts,
        names: Mapping[str, str],
        alerts: list[AlertFired | AlertResolved],
    ):
        self._rules = rules
        self._impacts = impacts
        self._states: dict[tuple[str, str], impact.ImpactState] = {}
        self._names = names
        self._alerts = alerts

    def changed(self, event: GoalStatusChanged) -> None:
        for rule in self._rules:
            key = (rule.id, event.goal_id)
            decision = impact.decide(self._states.get(key, impact.ImpactState()), event, rule)
            match decision:
                case impact.Skip() | impact.Republish():
                    continue  # every change here is new and published at once
                case impact.Wait(reason):
                    # Changes arrive here in the order they were made: a gap is a bug.
                    raise RuntimeError(reason)
                case impact.Advance(new):
                    self._states[key] = new
                    continue
                case impact.Resolve(new):
                    pass
                case impact.Fire():
                    reached = self._impacts(event.goal_id) or GoalImpact(
                        goal_id=event.goal_id, affected=[]
                    )
                    owners = impact.group_by_owner(reached, min_weight=rule.min_weight)
                    new = impact.start(
                        rule=rule,
                        event=event,
                        impact=reached,
                        names={owner: self._names.get(owner, owner) for owner in owners},
                    )
            for item in impact.announcements(rule=rule, state=new, now=event.occurred_at):
                self._alerts.append(item.alert)
            self._states[key] = impact.published(new)


def _no_impacts(goal_id: str) -> GoalImpact | None:
    return None


def evaluate(
    rules: Sequence[RuleSpec | GoalOverdueRuleSpec | ImpactRuleSpec],
    events: Iterable[MetricRecorded | GoalEvent],
    *,
    names: Mapping[str, str] | None = None,
    until: datetime | None = None,
    impacts: Impacts | None = None,
    org_units: Mapping[str, Sequence[str]] | None = None,
    time_zones: Mapping[str, str] | None = None,
) -> list[AlertFired | AlertResolved]:
    """The alerts ``rules`` fire and resolve for ``events``, in the order they would be sent.

    Events are taken in the order given, as they would arrive on the streams: each subject's
    (or goal's) in that order, a late metric event put in its place by its event time, a
    repeated event id ignored. ``names`` maps person ids to display names; one without is
    named by their id, as when the people directory does not know them. With no arrival
    clock in memory, an alert is stamped as fired (or resolved) at the time of the event (or
    goal change) that caused it, and a timer's alert at the time it fell due, so the same
    input gives the same output. ``until`` lets time run on after the last event: timers due
    by then fire. ``impacts`` answers what a failing goal reaches (none: nothing, so a
    dependency-impact rule alerts nobody). ``events`` may be a generator: each event is
    handled before the next is asked for, so ``impacts`` can answer from a graph that moves
    with the events. ``org_units`` maps a person id to their org unit and its ancestors,
    nearest first (:func:`goalwatch.rules.scope.ancestry`), for rules scoped by ``org_unit``;
    a subject without is in no unit, as when the people directory does not know them.
    ``time_zones`` maps a person id to their time zone, the clock of rules that count
    periods or working hours without a time zone of their own (UTC for a person without).
    """
    zones = time_zones or {}
    units = org_units or {}
    metric = [rule for rule in rules if isinstance(rule, RuleSpec)]
    engine = RuleEngine(metric)
    known = names or {}
    alerts: list[AlertFired | AlertResolved] = []
    timers = _Timers()
    thresholds = _Thresholds(engine, known, alerts, timers)
    frauds = _Frauds(engine, known, alerts, timers)
    absences = _Absences(known, alerts, timers)
    goal_overdue = _GoalOverdue(
        [rule for rule in rules if isinstance(rule, GoalOverdueRuleSpec)], known, alerts, timers
    )
    impact_rules = [rule for rule in rules if isinstance(rule, ImpactRuleSpec)]
    impacted = _Impact(impact_rules, impacts or _no_impacts, known, alerts)
    watching = [rule for rule in metric if rule.kind is RuleKind.OVERDUE]

    def record(event: MetricRecorded) -> None:
        scope = units.get(event.subject, ())
        zone = zones.get(event.subject)
        for rule, verdict in engine.evaluate(event, org_units=scope):
            thresholds.observed(rule, verdict, event, scope, zone)
        for rule in engine.fraud_rules(event.metric):
            frauds.observed(rule, event, scope, zone)
        for rule in watching:
            if overdue.applies(rule, event, org_units=scope):
                absences.seen(rule, event)

    for event in events:
        at = event.time if isinstance(event, MetricRecorded) else event.occurred_at
        timers.advance(at)
        timers.clock = at if timers.clock is None else max(timers.clock, at)
        if isinstance(event, MetricRecorded):
            record(event)
        else:
            goal = getattr(event, "goal", None)
            if isinstance(goal, GoalRead):
                goal_overdue.changed(goal, event.occurred_at)
            if isinstance(event, GoalStatusChanged):
                impacted.changed(event)
            if isinstance(event, GoalCheckedIn):
                progress = progress_record(event.event_id, event.goal, event.check_in)
                if progress is not None:
                    record(progress)
        # A deadline already past when it was armed fires at once, before the next event.
        timers.advance(timers.clock)
    if until is not None:
        timers.advance(until)
    return alerts


class _Frauds:
    """Fraud state per key, in memory, the peers' values per group (outlier), and the
    keys' timers (quiet) in ``timers``."""

    def __init__(
        self,
        engine: RuleEngine,
        names: Mapping[str, str],
        alerts: list[AlertFired | AlertResolved],
        timers: _Timers,
    ) -> None:
        self._engine = engine
        self._states: dict[str, fraud.FraudState] = {}
        self._groups: dict[tuple[str, str], dict[str, tuple[datetime, float]]] = {}
        self._names = names
        self._alerts = alerts
        self._timers = timers

    def observed(
        self, rule: RuleSpec, event: MetricRecorded, org_units: Sequence[str], zone: str | None
    ) -> None:
        if not overdue.applies(rule, event, org_units=org_units):
            return  # the engine would not apply it either; no state to read
        condition = rule.fraud
        fp = rule.fingerprint_of(event.subject, event.labels)

        def judge(measures: Mapping[str, float]) -> bool:
            return bool(self._engine.finds(rule, event, measures, org_units=org_units))

        decision = fraud.observe(
            self._states.get(fp, fraud.FraudState()),
            fraud.record_of(event, condition, zone=zone),
            condition,
            judge=judge,
            peers=self._peers(rule, event, org_units),
            labels=event.labels,
        )
        self._apply(rule, event.subject, fp, decision, event, now=event.time)

    def _peers(
        self, rule: RuleSpec, event: MetricRecorded, org_units: Sequence[str]
    ) -> list[float] | None:
        condition = rule.fraud
        if not isinstance(condition, OutlierCondition):
            return None
        group = fraud.peer_group(condition, event, org_units)
        if group is None:
            return []
        members = self._groups.setdefault((rule.id, group), {})
        since = event.time - condition.within
        peers = [v for s, (t, v) in members.items() if s != event.subject and t > since]
        latest = members.get(event.subject)
        if latest is None or latest[0] <= event.time:
            members[event.subject] = (event.time, event.value)
        return peers

    def _due(self, rule: RuleSpec, subject: str, fp: str, due_at: datetime, now: datetime) -> None:
        decision = fraud.due(self._states.get(fp, fraud.FraudState()), due_at, rule.fraud)
        self._apply(rule, subject, fp, decision, None, now=now)

    def _apply(
        self,
        rule: RuleSpec,
        subject: str,
        fp: str,
        decision: fraud.Decision,
        event: MetricRecorded | None,
        *,
        now: datetime,
    ) -> None:
        self._states[fp] = decision.state
        if decision.arm is not None:
            self._timers.arm(
                decision.arm, lambda due_at, now: self._due(rule, subject, fp, due_at, now)
            )
        if decision.transition is None:
            return
        self._alerts.append(
            build_fraud_alert(
                rule=rule,
                event=event or fraud.newest_event(rule, subject, decision.state),
                subject_name=self._names.get(subject, subject),
                transition=decision.transition,
                measures=decision.measures,
                findings=decision.state.findings,
                now=now,
            )
        )


class _Thresholds:
    """Threshold state per key, in memory; its timers (for, escalate) in ``timers``."""

    def __init__(
        self,
        engine: RuleEngine,
        names: Mapping[str, str],
        alerts: list[AlertFired | AlertResolved],
        timers: _Timers,
    ) -> None:
        self._engine = engine
        self._streaks = MemoryStreaks()
        self._names = names
        self._alerts = alerts
        self._timers = timers
        # A policy carries its rule's revision, a digest: made once per rule (and clock),
        # as the evaluator does, not once per event.
        self._policies: dict[tuple[str, str | None], Policy] = {}
        self._zones: dict[str, str | None] = {}
        self._units: dict[str, Sequence[str]] = {}

    def _policy(self, rule: RuleSpec, zone: str | None) -> Policy:
        condition = rule.threshold
        if condition.per is None or condition.time_zone is not None:
            zone = None  # one policy for every subject
        policy = self._policies.get((rule.id, zone))
        if policy is None:
            policy = self._policies[rule.id, zone] = Policy.of(rule, zone=zone)
        return policy

    def observed(
        self,
        rule: RuleSpec,
        verdict: Verdict,
        event: MetricRecorded,
        org_units: Sequence[str],
        zone: str | None,
    ) -> None:
        fp = rule.fingerprint_of(event.subject, event.labels)
        # The subject's clock and units, for its timers (the evaluator looks them up then).
        self._zones[event.subject] = zone
        self._units[event.subject] = org_units
        decision = self._streaks.observe(
            fp,
            Point.of(event.id, event.time, event.value, verdict),
            self._policy(rule, zone),
            labels=event.labels,
            judge=lambda value: self._engine.judge(rule, event, value, org_units=org_units),
        )
        self._apply(rule, event.subject, fp, decision, event, now=event.time)

    def _due(self, rule: RuleSpec, subject: str, fp: str, due_at: datetime, now: datetime) -> None:
        org_units = self._units.get(subject, ())

        def judge_of(state: StreakState) -> Judge:
            # As the evaluator's: asked only for a state of another revision of the rule.
            def judge(value: float) -> Verdict:
                event = threshold.newest_event(rule, subject, state)
                if not overdue.applies(rule, event, org_units=org_units):
                    return Verdict.CLEAR
                return self._engine.judge(rule, event, value, org_units=org_units)

            return judge

        policy = self._policy(rule, self._zones.get(subject))
        decision = self._streaks.due(fp, due_at, policy, judge=judge_of)
        self._apply(rule, subject, fp, decision, None, now=now)

    def _apply(
        self,
        rule: RuleSpec,
        subject: str,
        fp: str,
        decision: Decision,
        event: MetricRecorded | None,
        *,
        now: datetime,
    ) -> None:
        if decision.arm is not None:
            self._timers.arm(
                decision.arm, lambda due_at, now: self._due(rule, subject, fp, due_at, now)
            )
        if decision.transition is None:
            return
        event = event or threshold.newest_event(rule, subject, decision.state)
        self._alerts.append(
            build_alert(
                rule=rule,
                event=event,
                subject_name=self._names.get(subject, subject),
                transition=decision.transition,
                now=now,
            )
        )
