"""Run rules over a list of events in memory: the alerts the evaluator would publish.

No NATS, no Redis, no service: the same engine verdicts, the same per-kind decision and the
same alert building as the evaluator, with the state kept in a dict instead of Redis. The
basis of ``goalwatch rules run`` (and of rule tests and backtests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded
from goalwatch.rules.announce import build_alert
from goalwatch.rules.engine import RuleEngine
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


def evaluate(
    rules: Sequence[RuleSpec],
    events: Iterable[MetricRecorded],
    *,
    names: Mapping[str, str] | None = None,
) -> list[AlertFired | AlertResolved]:
    """The alerts ``rules`` fire and resolve for ``events``, in the order they would be sent.

    Events are taken in the order given, as they would arrive on the stream: each subject's in
    that order (subjects are independent), a late event put in its place by its event time, a
    repeated event id ignored. ``names`` maps subject ids to display names; a subject without
    one is named by its id, as when the people directory does not know it. With no arrival
    clock in memory, an alert is stamped as fired (or resolved) at the event time of the event
    that caused it, so the same input gives the same output.
    """
    engine = RuleEngine(rules)
    streaks = MemoryStreaks()
    known = names or {}
    alerts: list[AlertFired | AlertResolved] = []
    for event in events:
        for rule, breach in engine.evaluate(event):
            transition = streaks.record(
                rule_id=rule.id,
                subject=event.subject,
                metric=event.metric,
                consecutive=rule.condition.consecutive,
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
    return alerts
