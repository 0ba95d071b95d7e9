"""``goalwatch rules backtest``: what a rule would have fired over the stored event history.

The metric events ingestion stored (``GOALWATCH_METRICS``, kept 30 days) are read again from a
start time, by JetStream's own start-time delivery on a consumer of the backtest's own (an
ordered consumer: nothing is acknowledged, no service's consumer moves), up to the last event
stored when the backtest began, and run through the rule in memory with
:func:`goalwatch.rules.evaluate`, as ``goalwatch rules run`` does. Nothing is published.

:func:`backtest_async` does it inside a running event loop (the evaluator's
``POST /v1/rules/{id}/backtest``): the events are read asynchronously and the rule, CPU-bound,
runs in a worker thread, which is safe (:class:`goalwatch.rules.engine.RuleEngine`: engines
share no state) and keeps the loop free for the evaluator's live work. :func:`backtest` is
the command's synchronous form.

What a backtest knows of the subjects it meets is what its caller gives (``subjects``):
their names, org units and time zones, so that a rule scoped by org unit fires as it would
live and alerts carry people's names. Without (the command), subjects are named by their
ids and are in no org unit, so a rule scoped by org unit fires for nobody.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from goalwatch.connections import NatsTarget, connect_nats
from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded, subjects
from goalwatch.messaging import start_time
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

    @property
    def fired(self) -> int:
        """How many alerts fired (escalations included)."""
        return sum(isinstance(alert, AlertFired) for alert in self.alerts)

    @property
    def resolved(self) -> int:
        """How many alerts resolved."""
        return len(self.alerts) - self.fired

    def fired_per_day(self) -> dict[str, int]:
        """Firings per UTC day of their event time, oldest first."""
        days = Counter(
            alert.fired_at.astimezone(UTC).date().isoformat()
            for alert in self.alerts
            if isinstance(alert, AlertFired)
        )
        return dict(sorted(days.items()))


@dataclass(frozen=True)
class Subjects:
    """What is known of the subjects a backtest met; a subject missing from a mapping is
    named by their id, in no org unit, on UTC (as for someone the directory does not know)."""

    names: Mapping[str, str] = field(default_factory=dict)
    org_units: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Each subject's org unit and its ancestors, nearest first."""
    time_zones: Mapping[str, str] = field(default_factory=dict)


SubjectsOf = Callable[[Collection[str]], Awaitable[Subjects]]
"""Looks up the subjects met in the events, before the rule runs."""

NamesOf = Callable[[Collection[str]], Awaitable[Mapping[str, str]]]
"""Names of subjects that alerted but :class:`Subjects` did not name; asked after the run."""


class HistoryUnavailable(Exception):
    """The stored events could not be read: no NATS server answered, or it has no metrics
    stream. The message says which, without the server's address (it may hold a password)."""


def backtest(rule: RuleSpec, server: NatsTarget, *, since: timedelta) -> Backtest:
    """Run ``rule`` over the metric events stored in the last ``since`` (not from inside a
    running event loop: see :func:`backtest_async`)."""
    return asyncio.run(backtest_async(rule, server, since=since))


async def backtest_async(
    rule: RuleSpec,
    server: NatsTarget,
    *,
    since: timedelta,
    subjects_of: SubjectsOf | None = None,
    names_of: NamesOf | None = None,
    executor: Executor | None = None,
) -> Backtest:
    """Run ``rule`` over the metric events stored in the last ``since``.

    ``subjects_of`` is asked once, with every subject met in the events, for their names,
    org units and time zones. ``names_of`` is asked only for the subjects that alerted and
    that ``subjects_of`` did not name; if it names any of them, the rule runs again with
    those names, so each alert's message carries them. The rule runs in ``executor`` (default:
    a worker thread). Raises :class:`HistoryUnavailable`.
    """
    start = datetime.now(UTC) - since
    try:
        events, skipped = await _stored_events(server, rule.metric, start)
    except nats.js.errors.NotFoundError:
        raise HistoryUnavailable(
            f"NATS has no stream {subjects.STREAM_METRICS}: it is made when ingestion starts, "
            "and holds the metric events ingestion stored"
        ) from None
    except (OSError, nats.errors.Error) as exc:
        raise HistoryUnavailable(
            f"NATS did not answer ({type(exc).__name__}: {exc or 'no reason given'})"
        ) from exc
    until = datetime.now(UTC)
    known = Subjects()
    if subjects_of is not None and events:
        known = await subjects_of(sorted({event.subject for event in events}))
    alerts = await _run(rule, events, known, until, executor)
    if names_of is not None:
        unnamed = sorted({alert.subject for alert in alerts} - set(known.names))
        found = await names_of(unnamed) if unnamed else {}
        # A subject nobody knows is named by their id either way: no need to run again.
        named = {subject: name for subject, name in found.items() if name != subject}
        if named:
            known = replace(known, names={**known.names, **named})
            alerts = await _run(rule, events, known, until, executor)
    return Backtest(since=start, events=len(events), skipped=skipped, alerts=alerts)


async def _run(
    rule: RuleSpec,
    events: list[MetricRecorded],
    known: Subjects,
    until: datetime,
    executor: Executor | None,
) -> list[AlertFired | AlertResolved]:
    """The alerts ``rule`` gives over ``events``, evaluated in ``executor``: a long history
    is seconds of CPU that the event loop's other work must not wait for."""
    run = partial(
        evaluate,
        [rule],
        events,
        names=known.names,
        org_units=known.org_units,
        time_zones=known.time_zones,
        until=until,
    )
    return await asyncio.get_running_loop().run_in_executor(executor, run)


async def _stored_events(
    server: NatsTarget, metric: str, start: datetime
) -> tuple[list[MetricRecorded], int]:
    """The events of ``metric`` stored since ``start``, in stream order, and how many stored
    messages did not decode."""
    # One attempt more, not none: nats-py 2.14 waits for ever on a server that refuses the
    # first connection when max_reconnect_attempts is 0. Errors are reported by the caller.
    nc = await connect_nats(
        server,
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

        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start_time(start)
        )
        subscription = await js.subscribe(
            # Every partition, and what versions before partitioning stored.
            subjects.METRICS_RECORDED_ALL,
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
