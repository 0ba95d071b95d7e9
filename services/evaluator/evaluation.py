"""One metric event through the rules: engine verdicts, streak state, alerts published.

What a rule means (verdicts, decisions, the alert built from a transition) is the kernel's,
:mod:`goalwatch.rules`, shared with :func:`goalwatch.rules.evaluate`; this module adds what a
service needs around it: the Redis state, the subject's name, publishing, counters and logs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from prometheus_client import Counter

from goalwatch.contracts import (
    AlertFired,
    AlertResolved,
    AlertState,
    MetricRecorded,
    RuleKind,
    TimerFired,
    subjects,
)
from goalwatch.rules import fraud, overdue, threshold
from goalwatch.rules.announce import (
    build_absence_alert,
    build_alert,
    build_fraud_alert,
    message_id,
)
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.fraud_spec import OutlierCondition
from goalwatch.rules.overdue import Due, Seen
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.threshold import Judge, Policy, StreakState, TimerJudge
from goalwatch.rules.transitions import Point, Transition, Verdict, fingerprint
from goalwatch.timers import TimerKey
from services.evaluator.absences import Applied as AbsenceApplied
from services.evaluator.directory import NoScopes, Scopes
from services.evaluator.fraud_store import Applied as FraudApplied
from services.evaluator.fraud_store import FraudStore, PeerGroups
from services.evaluator.metrics import (
    ALERTS_FIRED,
    ALERTS_RESOLVED,
    RULE_EVALUATIONS,
    STATES_REVISED,
)
from services.evaluator.names import Names
from services.evaluator.streaks import Applied, Observation

logger = logging.getLogger(__name__)

# Subjects of one batch evaluated at once: well inside the Redis client's pool of 100
# connections (a whole batch of 100 subjects at once exhausted it) and goals' capacity.
SUBJECT_CONCURRENCY = 32

PublishAlert = Callable[[AlertFired | AlertResolved, str, str], Awaitable[None]]
"""``publish(alert, subject, msg_id)``: publish to JetStream and wait for the ack."""


class Streaks(Protocol):
    """Where threshold state is kept (:class:`StreakStore` in production): per subject's
    metric, every rule of it an event reaches at once."""

    async def observe(
        self,
        subject: str,
        metric: str,
        observations: Sequence[Observation],
        *,
        labels: Mapping[str, str],
    ) -> list[Applied]:
        """Record one event (with ``labels``) for each of its ``observations`` (one per
        alert key of ``subject``'s ``metric``): what each did, in their order. Idempotent per
        event id."""

    async def due(
        self,
        subject: str,
        metric: str,
        fp: str,
        at: datetime,
        policy: Policy,
        *,
        judge: TimerJudge | None = None,
    ) -> Applied:
        """The timer of the alert key ``fp`` armed for ``at`` fired; idempotent per timer.
        ``judge`` judges the key's state again if its rule changed since its last input."""

    async def mark_published(self, subject: str, metric: str, published: Sequence[Applied]) -> None:
        """Note that the transitions of ``published`` are in the alerts stream."""


class Absences(Protocol):
    """Where overdue (absence) state is kept (:class:`AbsenceStore` in production)."""

    async def apply(
        self, fp: str, change: Seen | Due, *, now: datetime, absent_for: timedelta
    ) -> AbsenceApplied:
        """Apply a report or a fired timer; idempotent per input."""

    async def mark_published(self, fp: str) -> None:
        """Note that the key's last transition was published."""


class ArmTimer(Protocol):
    """Arms (or moves) a durable timer (:meth:`goalwatch.timers.Timers.arm`)."""

    async def __call__(self, key: TimerKey, at: datetime, *, data: dict[str, str]) -> int:
        """Arm ``key`` for ``at``; the stream sequence of the arm."""


OWNER: Final = "evaluator"
"""The evaluator's timers fire on ``goalwatch.timers.v1.fired.evaluator``."""


@dataclass(frozen=True)
class Failure:
    """The event a subject's evaluation stopped at, and why."""

    event: MetricRecorded
    error: Exception


class Evaluator:
    """Evaluates each metric event against every rule and publishes alert transitions."""

    def __init__(
        self,
        *,
        engine: RuleEngine,
        streaks: Streaks,
        publish: PublishAlert,
        names: Names,
        rules: Sequence[RuleSpec] = (),
        absences: Absences | None = None,
        arm: ArmTimer | None = None,
        concurrency: int = SUBJECT_CONCURRENCY,
        scopes: Scopes | None = None,
        frauds: FraudStore | None = None,
        peers: PeerGroups | None = None,
    ) -> None:
        """``concurrency`` bounds the subjects evaluated at once (each holds a Redis connection
        and may call goals). ``rules`` with ``absences`` and ``arm`` evaluate overdue rules.
        ``scopes`` gives subjects' org units to rules scoped by ``org_unit`` (without it, no
        subject is in any unit). ``frauds`` and ``peers`` (and ``arm``) keep the state of the
        fraud rules the engine was given."""
        self._scopes = scopes or NoScopes()
        self._frauds = frauds
        self._peers = peers
        self._overdue = {rule.id: rule for rule in rules if rule.kind is RuleKind.OVERDUE}
        if self._overdue and (absences is None or arm is None):
            raise ValueError("overdue rules need an absence store and timers")
        self._threshold = {r.id: r for r in rules if r.kind is RuleKind.THRESHOLD}
        self._policies: dict[tuple[str, str | None], Policy] = {}
        self._evaluations: dict[tuple[str, Verdict], Counter] = {}
        self._absences = absences
        self._arm = arm
        self._engine = engine
        self._streaks = streaks
        self._publish = publish
        self._names = names
        self._concurrency = asyncio.Semaphore(concurrency)

    async def handle_batch(self, events: Sequence[MetricRecorded]) -> dict[str, Failure]:
        """Evaluate a batch in stream order per subject, different subjects concurrently.

        Order matters within a subject: handled out of order, "2 over, 1 under, 2 over" can
        look like three in a row for a moment (the under day not yet recorded) and fire.
        One subject's failure does not hold back the others: the result maps each subject
        that failed to the event it failed on; that event and the subject's later ones in
        the batch were not evaluated.
        """
        by_subject: dict[str, list[MetricRecorded]] = {}
        for event in events:
            by_subject.setdefault(event.subject, []).append(event)
        async with self._scopes.batch(by_subject):  # one directory lookup for the batch
            results = await asyncio.gather(*map(self._handle_bounded, by_subject.values()))
        return {failure.event.subject: failure for failure in results if failure is not None}

    async def _handle_bounded(self, events: Sequence[MetricRecorded]) -> Failure | None:
        async with self._concurrency:
            return await self._handle_in_order(events)

    async def _handle_in_order(self, events: Sequence[MetricRecorded]) -> Failure | None:
        for event in events:
            try:
                await self.handle(event)
            except Exception as exc:
                return Failure(event=event, error=exc)
        return None

    async def handle(self, event: MetricRecorded) -> None:
        """Evaluate ``event``; safe to call again for the same event (JetStream redelivery).

        Publishing is awaited before returning, so the caller acks the event only once every
        alert it caused is stored in the alerts stream.
        """
        org_units = await self._scopes.of(event.subject)
        zone = await self._scopes.zone_of(event.subject)
        verdicts = self._engine.evaluate(event, org_units=org_units)
        if verdicts:
            await self._thresholds(event, verdicts, org_units, zone)
        for rule in self._engine.fraud_rules(event.metric):
            if overdue.applies(rule, event, org_units=org_units):
                await self._fraud(rule, event, org_units, zone)
        for rule in self._overdue.values():
            if overdue.applies(rule, event, org_units=org_units):
                await self._absence(rule, event.subject, Seen.of(event))

    async def _fraud(
        self, rule: RuleSpec, event: MetricRecorded, org_units: Sequence[str], zone: str | None
    ) -> None:
        """One record of a fraud rule: its finding (the engine's), the alert, the timer."""
        if self._frauds is None:
            raise RuntimeError(f"fraud rule {rule.id!r} needs a fraud store")
        condition = rule.fraud
        record = fraud.record_of(event, condition, zone=zone)
        peers: list[float] | None = None
        if isinstance(condition, OutlierCondition):
            assert self._peers is not None, "outlier rules need the peer groups"
            group = fraud.peer_group(condition, event, org_units)
            peers = (
                []
                if group is None
                else await self._peers.others(rule.id, group, condition, record, event.subject)
            )

        def judge(measures: Mapping[str, float]) -> bool:
            return bool(self._engine.finds(rule, event, measures, org_units=org_units))

        fp = rule.fingerprint_of(event.subject, event.labels)
        applied = await self._frauds.observe(
            fp, record, condition, judge=judge, peers=peers, labels=event.labels
        )
        await self._fraud_applied(rule, event.subject, fp, applied, event)

    async def _fraud_applied(
        self,
        rule: RuleSpec,
        subject: str,
        fp: str,
        applied: FraudApplied,
        event: MetricRecorded | None,
    ) -> None:
        assert self._frauds is not None
        if applied.arm is not None:
            await self._arm_key(fraud.TIMER, rule, subject, fp, applied.arm)
        transition = applied.transition
        if transition is None:
            return
        if event is None or transition.state is AlertState.RESOLVED:
            event = fraud.newest_event(rule, subject, applied.state)
        alert = build_fraud_alert(
            rule=rule,
            event=event,
            subject_name=await self._names.name_of(subject=subject),
            transition=transition,
            measures=applied.measures,
            findings=applied.findings,
            now=datetime.now(UTC),
        )
        await self._announce(rule, alert, transition, fp)
        await self._frauds.mark_published(fp, applied.cause)

    async def _arm_key(
        self, name: str, rule: RuleSpec, subject: str, fp: str, at: datetime
    ) -> None:
        """Arm the timer ``name`` of the alert key ``fp`` for ``at``: before the input is
        acked, so a redelivery arms the same time again."""
        if self._arm is None:
            raise RuntimeError(f"rule {rule.id!r} needs timers")
        await self._arm(
            TimerKey(owner=OWNER, name=name, key=fp),
            at,
            data={"rule_id": rule.id, "subject": subject},
        )

    async def _announce(
        self,
        rule: RuleSpec,
        alert: AlertFired | AlertResolved,
        transition: Transition,
        fp: str,
    ) -> None:
        """Publish ``alert`` (awaiting the stream's ack), count and log it."""
        if isinstance(alert, AlertFired):
            on = subjects.ALERTS_FIRED
            verb = "fired" if transition.escalated_from is None else "escalated"
            counter = ALERTS_FIRED.labels(
                rule=rule.id, kind=rule.kind.value, severity=alert.severity.value
            )
        else:
            on, verb = subjects.ALERTS_RESOLVED, "resolved"
            counter = ALERTS_RESOLVED.labels(rule=rule.id, kind=rule.kind.value)
        # Counted once per transition: a replay is the same alert, published again.
        if not transition.replayed:
            counter.inc()
        await self._publish(alert, on, message_id(fp, transition))
        logger.info(
            "%s: %s",
            _verb(verb, transition),
            alert.message,
            extra={
                "event_id": alert.event_id,
                "fingerprint": fp,
                "rule_id": rule.id,
                "replayed": transition.replayed,
            },
        )

    def _judge(self, rule: RuleSpec, event: MetricRecorded, org_units: Sequence[str]) -> Judge:
        """The engine's verdict on a value standing for ``event``'s: a period's or window's
        value that ``event`` is part of, or, if ``rule`` changed since the key's last input,
        a kept observation's (judged again under the rule as it is now)."""
        return lambda value: self._engine.judge(rule, event, value, org_units=org_units)

    def _timer_judge(self, rule: RuleSpec, subject: str, org_units: Sequence[str]) -> TimerJudge:
        """The engine's verdict for a key whose timer fired, asked only if its rule changed
        since the key's last input: for the key's newest observation (its labels), with the
        subject's ``org_units`` now. A key the rule no longer watches (its labels fail the
        new ``where``, its subject is out of the new ``org_unit``) has nothing breaching."""

        def judge_of(state: StreakState) -> Judge:
            @functools.cache
            def judge() -> Judge:
                event = threshold.newest_event(rule, subject, state)
                if not overdue.applies(rule, event, org_units=org_units):
                    return lambda value: Verdict.CLEAR
                return self._judge(rule, event, org_units)

            return lambda value: judge()(value)

        return judge_of

    def _policy(self, rule: RuleSpec, zone: str | None = None) -> Policy:
        """``rule``'s policy, on ``zone``'s clock (the subject's time zone) where it counts
        periods without a time zone of its own."""
        condition = rule.threshold
        if condition.per is None or condition.time_zone is not None:
            zone = None  # one policy for every subject
        key = (rule.id, zone)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = Policy.of(rule, zone=zone)
        return policy

    async def _thresholds(
        self,
        event: MetricRecorded,
        verdicts: Sequence[tuple[RuleSpec, Verdict]],
        org_units: Sequence[str],
        zone: str | None,
    ) -> None:
        """Every threshold rule ``event`` reaches: one read and one write of the state of
        the subject's metric, then the timers and alerts, in the rules' order."""
        by_metric: dict[str, list[tuple[RuleSpec, Observation]]] = {}
        for rule, verdict in verdicts:
            counter = self._evaluations.get((rule.id, verdict))
            if counter is None:
                # Looked up once per rule and outcome: ``labels`` costs more than ``inc``.
                counter = RULE_EVALUATIONS.labels(rule=rule.id, outcome=verdict.value)
                self._evaluations[rule.id, verdict] = counter
            counter.inc()
            observation = Observation(
                rule.fingerprint_of(event.subject, event.labels),
                Point.of(event.id, event.time, event.value, verdict),
                self._policy(rule, zone),
                self._judge(rule, event, org_units),
            )
            # The engine asks only the event's metric's rules: one group (timers find the
            # state by the rule's metric, so that is what names it).
            by_metric.setdefault(rule.metric, []).append((rule, observation))
        for metric, pairs in by_metric.items():
            applied = await self._streaks.observe(
                event.subject, metric, [o for _, o in pairs], labels=event.labels
            )
            rules = [rule for rule, _ in pairs]
            await self._threshold_applied(event.subject, metric, rules, applied, event)

    async def _threshold_applied(
        self,
        subject: str,
        metric: str,
        rules: Sequence[RuleSpec],
        applied: Sequence[Applied],
        event: MetricRecorded | None,
    ) -> None:
        """Arm the keys' timers and publish the transitions an input caused, if they must
        be, in order; then confirm what was published, with one command.

        ``event`` is the event observed; None for a timer, whose alert speaks of the newest
        observation kept. If a publish fails, those before it are still confirmed, so the
        redelivered input does not publish them again.
        """
        published: list[Applied] = []
        try:
            for rule, one in zip(rules, applied, strict=True):
                if await self._threshold_one(rule, subject, one, event):
                    published.append(one)
        except Exception:
            await self._streaks.mark_published(subject, metric, published)
            raise
        await self._streaks.mark_published(subject, metric, published)

    async def _threshold_one(
        self, rule: RuleSpec, subject: str, applied: Applied, event: MetricRecorded | None
    ) -> bool:
        """Arm ``applied``'s timer and publish its transition; whether there was one."""
        if applied.revised:
            STATES_REVISED.labels(rule=rule.id).inc()
        if applied.arm is not None:
            await self._arm_key(threshold.TIMER, rule, subject, applied.fp, applied.arm)
        transition = applied.transition
        if transition is None:
            return False
        if event is None:
            event = threshold.newest_event(rule, subject, applied.state)
        alert = build_alert(
            rule=rule,
            event=event,
            subject_name=await self._names.name_of(subject=event.subject),
            transition=transition,
            now=datetime.now(UTC),
        )
        await self._announce(rule, alert, transition, applied.fp)
        return True

    async def handle_timer(self, fired: TimerFired) -> None:
        """A timer of an overdue or threshold rule fell due; safe to call again for the same
        timer.

        A timer of a rule no longer loaded is dropped (logged): its rule cannot fire.
        """
        if fired.name == threshold.TIMER:
            await self._threshold_timer(fired)
            return
        if fired.name == fraud.TIMER:
            await self._fraud_timer(fired)
            return
        rule = self._overdue.get(fired.data.get("rule_id", ""))
        subject = fired.data.get("subject")
        if rule is None or subject is None or fired.name != overdue.TIMER:
            logger.warning(
                "timer %s/%s for rule %r dropped: no such overdue rule is loaded",
                fired.name,
                fired.key,
                fired.data.get("rule_id"),
            )
            return
        await self._absence(rule, subject, Due(fired.due_at))

    async def _threshold_timer(self, fired: TimerFired) -> None:
        rule = self._threshold.get(fired.data.get("rule_id", ""))
        subject = fired.data.get("subject")
        if rule is None or subject is None:
            logger.warning(
                "timer %s/%s for rule %r dropped: no such threshold rule is loaded",
                fired.name,
                fired.key,
                fired.data.get("rule_id"),
            )
            return
        fp = fired.key  # the key's fingerprint: it was armed under it
        # Read only for a rule that needs them: for judging the key again if the rule
        # changed, on the subject's clock and in their units as they are now.
        org_units = await self._scopes.of(subject) if rule.scope else ()
        condition = rule.threshold
        on_own_clock = condition.per is not None and condition.time_zone is None
        zone = await self._scopes.zone_of(subject) if on_own_clock else None
        # The key's state is in its subject's metric's hash, as every rule of that metric's.
        applied = await self._streaks.due(
            subject,
            rule.metric,
            fp,
            fired.due_at,
            self._policy(rule, zone),
            judge=self._timer_judge(rule, subject, org_units),
        )
        await self._threshold_applied(subject, rule.metric, [rule], [applied], None)

    async def _fraud_timer(self, fired: TimerFired) -> None:
        rule = next(
            (r for r in self._engine.fraud_rules_by_id() if r.id == fired.data.get("rule_id")),
            None,
        )
        subject = fired.data.get("subject")
        if rule is None or subject is None or self._frauds is None:
            logger.warning(
                "timer %s/%s for rule %r dropped: no such fraud rule is loaded",
                fired.name,
                fired.key,
                fired.data.get("rule_id"),
            )
            return
        fp = fired.key  # the key's fingerprint: it was armed under it
        applied = await self._frauds.due(fp, fired.due_at, rule.fraud)
        await self._fraud_applied(rule, subject, fp, applied, None)

    async def _absence(self, rule: RuleSpec, subject: str, change: Seen | Due) -> None:
        assert self._absences is not None and self._arm is not None
        fp = fingerprint(rule.id, subject, rule.metric)
        applied = await self._absences.apply(
            fp, change, now=datetime.now(UTC), absent_for=rule.overdue.absent_for
        )
        if applied.arm is not None:
            # Armed before the input is acked; a redelivery arms the same time again.
            await self._arm(
                TimerKey(owner=OWNER, name=overdue.TIMER, key=fp),
                applied.arm,
                data={"rule_id": rule.id, "subject": subject, "metric": rule.metric},
            )
        transition = applied.transition
        if transition is None or applied.last is None:
            return
        alert = build_absence_alert(
            rule=rule,
            subject=subject,
            subject_name=await self._names.name_of(subject=subject),
            last=applied.last,
            transition=transition,
            now=datetime.now(UTC),
        )
        if isinstance(alert, AlertFired):
            on, verb = subjects.ALERTS_FIRED, "fired"
            if not transition.replayed:
                ALERTS_FIRED.labels(
                    rule=rule.id, kind=rule.kind.value, severity=rule.severity.value
                ).inc()
        else:
            on, verb = subjects.ALERTS_RESOLVED, "resolved"
            if not transition.replayed:
                ALERTS_RESOLVED.labels(rule=rule.id, kind=rule.kind.value).inc()
        await self._publish(alert, on, message_id(fp, transition))
        logger.info(
            "%s: %s",
            _verb(verb, transition),
            alert.message,
            extra={"fingerprint": fp, "rule_id": rule.id, "replayed": transition.replayed},
        )
        await self._absences.mark_published(fp)


def _verb(verb: str, transition: Transition) -> str:
    if transition.replayed:
        # The first publish may have been lost; the stream drops it if it was not.
        return f"alert {verb} (published again for a redelivered event)"
    return f"alert {verb}"
