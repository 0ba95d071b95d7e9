"""Run rules over a list of events in memory: the alerts the evaluator would publish.

No NATS, no Redis, no service: the same engine verdicts, the same per-kind decision and the
same alert building as the evaluator, with the state kept in a dict instead of Redis. The
basis of ``goalwatch rules run`` and ``goalwatch rules test``.

Time is the events' own: the clock is the latest event time seen so far. Timers (overdue
deadlines) wait in a heap and fire as that clock passes them — before the next event whose
time is at or after them, and at the end up to ``until`` — so "no report for two days"
fires at last report + two days without anyone waiting two days.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded, RuleKind
from goalwatch.rules import overdue
from goalwatch.rules.announce import build_absence_alert, build_alert
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.overdue import AbsenceState, Due, Seen
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.threshold import StreakState, decide
from goalwatch.rules.transitions import Point, Transition, fingerprint


class MemoryStreaks:
    """Threshold state per (rule, subject, metric) in a dict: the evaluator's store, in memory."""

    def __init__(self) -> None:
        self._states: dict[str, StreakState] = {}

    def record(
        self, *, rule_id: str, subject: str, metric: str, consecutive: int, point: Point
    ) -> Transition | None:
        """Record ``point``; return the alert transition it causes, if any."""
        fp = fingerprint(rule_id, subject, metric)
        decision = decide(self._states.get(fp, StreakState()), point, consecutive=consecutive)
        self._states[fp] = decision.state
        return decision.transition


class _Absences:
    """Overdue (absence) state per key and the timers armed, in memory."""

    def __init__(self, names: Mapping[str, str], alerts: list[AlertFired | AlertResolved]):
        self._states: dict[str, AbsenceState] = {}
        self._timers: list[tuple[datetime, int, RuleSpec, str]] = []
        self._order = itertools.count()
        self._names = names
        self._alerts = alerts
        self.clock: datetime | None = None

    def seen(self, rule: RuleSpec, event: MetricRecorded) -> None:
        assert self.clock is not None
        self._apply(rule, event.subject, Seen.of(event), now=self.clock)

    def advance(self, to: datetime) -> None:
        """Fire every timer due by ``to``, in the order they fall due."""
        while self._timers and self._timers[0][0] <= to:
            due_at, _, rule, subject = heapq.heappop(self._timers)
            self._apply(rule, subject, Due(due_at), now=max(due_at, self.clock or due_at))

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
            heapq.heappush(self._timers, (decision.arm, next(self._order), rule, subject))
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


def evaluate(
    rules: Sequence[RuleSpec],
    events: Iterable[MetricRecorded],
    *,
    names: Mapping[str, str] | None = None,
    until: datetime | None = None,
) -> list[AlertFired | AlertResolved]:
    """The alerts ``rules`` fire and resolve for ``events``, in the order they would be sent.

    Events are taken in the order given, as they would arrive on the stream: each subject's in
    that order (subjects are independent), a late event put in its place by its event time, a
    repeated event id ignored. ``names`` maps subject ids to display names; a subject without
    one is named by its id, as when the people directory does not know it. With no arrival
    clock in memory, an alert is stamped as fired (or resolved) at the event time of the event
    that caused it, and a timer's alert at the time it fell due, so the same input gives the
    same output. ``until`` lets time run on after the last event: timers due by then fire.
    """
    engine = RuleEngine(rules)
    streaks = MemoryStreaks()
    known = names or {}
    alerts: list[AlertFired | AlertResolved] = []
    absences = _Absences(known, alerts)
    watching = [rule for rule in rules if rule.kind is RuleKind.OVERDUE]
    for event in events:
        absences.advance(event.time)
        clock = absences.clock
        absences.clock = event.time if clock is None else max(clock, event.time)
        for rule, breach in engine.evaluate(event):
            transition = streaks.record(
                rule_id=rule.id,
                subject=event.subject,
                metric=event.metric,
                consecutive=rule.threshold.consecutive,
                point=Point(event.id, event.time, event.value, breach),
            )
            if transition is not None:
                alerts.append(
                    build_alert(
                        rule=rule,
                        event=event,
                        subject_name=known.get(event.subject, event.subject),
                        transition=transition,
                        now=event.time,
                    )
                )
        for rule in watching:
            if overdue.applies(rule, event):
                absences.seen(rule, event)
        # A deadline already past when it was armed fires at once, before the next event.
        absences.advance(absences.clock)
    if until is not None:
        absences.advance(until)
    return alerts
