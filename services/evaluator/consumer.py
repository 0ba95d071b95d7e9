"""The evaluator's handler of ``MetricRecorded`` batches: per-subject order, per-subject retry."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from goalwatch.consumers import ACK, Received, RedeliveryPolicy, Verdict
from goalwatch.contracts import MetricRecorded
from services.evaluator.evaluation import Evaluator

logger = logging.getLogger(__name__)


class MetricsHandler:
    """Evaluates a fetched batch and gives each event its verdict.

    A subject whose evaluation failed (Redis, NATS or goals trouble) has the event it failed
    on and every later event of it in the batch retried, in order, by the consumer's policy;
    after the last delivery they are dead-lettered (replaying them is safe: evaluation is
    idempotent per event id). Other subjects' events are acknowledged.
    """

    def __init__(self, *, evaluator: Evaluator, policy: RedeliveryPolicy) -> None:
        self._evaluator = evaluator
        self._policy = policy

    async def handle_batch(
        self, messages: Sequence[MetricRecorded], received: Sequence[Received]
    ) -> list[Verdict]:
        """One verdict per event, in order."""
        failures = await self._evaluator.handle_batch(messages)
        verdicts: list[Verdict] = []
        stopped: set[str] = set()  # subjects whose remaining events must be retried
        for event, facts in zip(messages, received, strict=True):
            failure = failures.get(event.subject)
            if failure is None or (event.id != failure.event.id and event.subject not in stopped):
                verdicts.append(ACK)
                continue
            stopped.add(event.subject)
            verdicts.append(
                self._policy.on_failure(
                    deliveries=facts.deliveries,
                    reason=f"evaluating {event.subject!r} failed at event "
                    f"{failure.event.id!r}: {failure.error!r}",
                )
            )
        return verdicts
