"""One metric event through the rules: engine verdicts, streak state, alerts published.

What a rule means (verdicts, decisions, the alert built from a transition) is the kernel's,
:mod:`goalwatch.rules`, shared with :func:`goalwatch.rules.evaluate`; this module adds what a
service needs around it: the Redis state, the subject's name, publishing, counters and logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded, subjects
from goalwatch.rules.announce import build_alert, message_id
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.transitions import Point, Transition
from services.evaluator.metrics import ALERTS_FIRED, ALERTS_RESOLVED, RULE_EVALUATIONS
from services.evaluator.names import Names

logger = logging.getLogger(__name__)

# Subjects of one batch evaluated at once: well inside the Redis client's pool of 100
# connections (a whole batch of 100 subjects at once exhausted it) and goals' capacity.
SUBJECT_CONCURRENCY = 32

PublishAlert = Callable[[AlertFired | AlertResolved, str, str], Awaitable[None]]
"""``publish(alert, subject, msg_id)``: publish to JetStream and wait for the ack."""


class Streaks(Protocol):
    """Where observations and alert state are kept (:class:`StreakStore` in production)."""

    async def record(
        self, *, rule_id: str, subject: str, metric: str, consecutive: int, point: Point
    ) -> Transition | None:
        """Record ``point``; return the alert transition it causes, if any."""

    async def mark_published(
        self, *, rule_id: str, subject: str, metric: str, event_id: str
    ) -> None:
        """Note that the transition caused by ``event_id`` was published."""


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
        concurrency: int = SUBJECT_CONCURRENCY,
    ) -> None:
        """``concurrency`` bounds the subjects evaluated at once (each holds a Redis connection
        and may call goals)."""
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
        for rule, breach in self._engine.evaluate(event):
            RULE_EVALUATIONS.labels(rule=rule.id, outcome="breach" if breach else "clear").inc()
            transition = await self._streaks.record(
                rule_id=rule.id,
                subject=event.subject,
                metric=event.metric,
                consecutive=rule.threshold.consecutive,
                point=Point(event.id, event.time, event.value, breach),
            )
            if transition is None:
                continue
            subject_name = await self._names.name_of(subject=event.subject)
            alert = build_alert(
                rule=rule,
                event=event,
                subject_name=subject_name,
                transition=transition,
                now=datetime.now(UTC),
            )
            extra = {
                "event_id": event.id,
                "fingerprint": alert.fingerprint,
                "rule_id": rule.id,
                "replayed": transition.replayed,
            }
            if isinstance(alert, AlertFired):
                subject, verb = subjects.ALERTS_FIRED, "fired"
                counter = ALERTS_FIRED.labels(rule=rule.id, severity=rule.severity.value)
            else:
                subject, verb = subjects.ALERTS_RESOLVED, "resolved"
                counter = ALERTS_RESOLVED.labels(rule=rule.id)
            # Counted once per transition: a replay is the same alert, published again.
            if not transition.replayed:
                counter.inc()
            await self._publish(alert, subject, message_id(alert.fingerprint, transition))
            logger.info("%s: %s", _verb(verb, transition), alert.message, extra=extra)
            await self._streaks.mark_published(
                rule_id=rule.id, subject=event.subject, metric=event.metric, event_id=event.id
            )


def _verb(verb: str, transition: Transition) -> str:
    if transition.replayed:
        # The first publish may have been lost; the stream drops it if it was not.
        return f"alert {verb} (published again for a redelivered event)"
    return f"alert {verb}"
