"""``goalwatch rules backtest``: what a rule would have fired over the stored event history.

The metric events ingestion stored (``GOALWATCH_METRICS``, kept 30 days) are read again from a
start time, by JetStream's own start-time delivery on a consumer of the backtest's own (an
ordered consumer: nothing is acknowledged, no service's consumer moves), up to the last event
stored when the backtest began, and run through the rule in memory with
:func:`goalwatch.rules.evaluate`, as ``goalwatch rules run`` does. Nothing is published.

What a backtest cannot know, it does without: subjects are named by their ids, and a rule
scoped by org unit sees no units (the evaluator takes them from the people directory), so it
fires for nobody here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded, subjects
from goalwatch.rules.runner import evaluate
from goalwatch.rules.spec import RuleSpec

FETCH_TIMEOUT_SECONDS = 2.0
"""How long one read of the history may wait for the server before the backtest gives up."""


@dataclass(frozen=True)
class Backtest:
    """What a rule would have sent over the history read."""

    since: datetime
    events: int  # metric events of the rule's metric read
    skipped: int  # stored messages that are not metric events any more (older contracts)
    alerts: list[AlertFired | AlertResolved]

    def fired_per_day(self) -> dict[str, int]:
        """Firings per UTC day of their event time, oldest first."""
        days = Counter(
            alert.fired_at.astimezone(UTC).date().isoformat()
            for alert in self.alerts
            if isinstance(alert, AlertFired)
        )
        return dict(sorted(days.items()))


def backtest(rule: RuleSpec, nats_url: str, *, since: timedelta) -> Backtest:
    """Run ``rule`` over the metric events stored in the last ``since``."""
    start = datetime.now(UTC) - since
    events, skipped = asyncio.run(_stored_events(nats_url, rule.metric, start))
    alerts = evaluate([rule], events, until=datetime.now(UTC))
    return Backtest(since=start, events=len(events), skipped=skipped, alerts=alerts)


async def _stored_events(
    nats_url: str, metric: str, start: datetime
) -> tuple[list[MetricRecorded], int]:
    """The events of ``metric`` stored since ``start``, in stream order, and how many stored
    messages did not decode."""
    # One attempt more, not none: nats-py 2.14 waits for ever on a server that refuses the
    # first connection when max_reconnect_attempts is 0. Errors are reported by the caller.
    nc = await nats.connect(
        nats_url,
        connect_timeout=5,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.2,
        error_cb=_quiet,
    )
    try:
        js = nc.jetstream()
        last = (await js.stream_info(subjects.STREAM_METRICS)).state.last_seq
        events: list[MetricRecorded] = []
        skipped = 0
        if last == 0:
            return events, skipped
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def take(msg: Msg) -> None:
            await queue.put(msg)

        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start)
        subscription = await js.subscribe(
            subjects.METRICS_RECORDED,
            stream=subjects.STREAM_METRICS,
            ordered_consumer=True,
            config=config,
            cb=take,
        )
        try:
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), FETCH_TIMEOUT_SECONDS)
                except TimeoutError:
                    break  # nothing stored since ``start`` beyond what came
                try:
                    event = MetricRecorded.model_validate_json(msg.data)
                except ValidationError:
                    skipped += 1
                else:
                    if event.metric == metric:
                        events.append(event)
                if msg.metadata.sequence.stream >= last:
                    break
        finally:
            await subscription.unsubscribe()
        return events, skipped
    finally:
        await nc.close()


async def _quiet(_error: Exception) -> None:
    """nats-py's error callback: the backtest reports the connection error itself."""
