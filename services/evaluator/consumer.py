"""The evaluator's handler of ``MetricRecorded`` batches: per-subject order, per-subject retry,
and rule state kept caught up with the stream when Redis loses writes."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from goalwatch.checkpoints import Apply, NotCaughtUp, Recovery, StateCheckpoint
from goalwatch.consumers import ACK, Received, RedeliveryPolicy, Verdict
from goalwatch.contracts import MetricRecorded, TimerFired
from goalwatch.rules import goal_overdue
from goalwatch.rules.check_ins import progress_record
from services.evaluator.evaluation import Evaluator
from services.evaluator.goal_overdue import GoalChange, GoalFailure, GoalOverdueEvaluator
from services.evaluator.metrics import STATE_REPLAYED
from services.evaluator.verdicts import all_wait, in_key_order


class MetricsHandler:
    """Evaluates a fetched batch and gives each event its verdict.

    A subject whose evaluation failed (Redis, NATS or goals trouble) has the event it failed
    on and every later event of it in the batch retried, in order, by the consumer's policy;
    after the last delivery they are dead-lettered (replaying them is safe: evaluation is
    idempotent per event id). Other subjects' events are acknowledged.

    Before each batch the checkpoint says whether Redis restarted since the state was last
    committed; if so, the events since then are evaluated again first (alerts they cause
    again are dropped by the alerts stream's de-duplication), so a Redis that lost its last
    second of writes loses no alert.
    """

    def __init__(
        self,
        *,
        evaluator: Evaluator,
        policy: RedeliveryPolicy,
        checkpoint: StateCheckpoint | None = None,
        timers_checkpoint: StateCheckpoint | None = None,
        goals: GoalOverdueEvaluator | None = None,
        goals_checkpoint: StateCheckpoint | None = None,
        before: Sequence[tuple[StateCheckpoint, Apply]] = (),
    ) -> None:
        """``checkpoint`` is the metric events consumer's, when one consumer reads them all;
        a partitioned evaluator adds each partition's as it takes the partition
        (:meth:`serve`). ``timers_checkpoint`` is the fired-timers consumer's: the rule state
        depends on both streams, so a Redis restart replays both (events first), whichever
        notices.
        ``goals`` with ``goals_checkpoint`` (the goal events consumer's) add the goal-based
        overdue rules, whose state depends on the goal events and the timers: replayed
        after the metric events and before the timers. ``before`` are views the rule state
        reads (the people directory), replayed before all of these."""
        self._evaluator = evaluator
        self._goals = goals
        self._policy = policy
        self._checkpoint = checkpoint
        self._timers_checkpoint = timers_checkpoint
        self._goals_checkpoint = goals_checkpoint
        self._before: list[tuple[StateCheckpoint, Apply]] = list(before)
        self._metrics: list[tuple[StateCheckpoint, Apply]] = (
            [] if checkpoint is None else [(checkpoint, self._replay)]
        )
        self._after: list[tuple[StateCheckpoint, Apply]] = []
        if goals_checkpoint is not None:
            self._after.append((goals_checkpoint, self._replay_goals))
        if timers_checkpoint is not None:
            self._after.append((timers_checkpoint, self._replay_timers))
        # Batches, timers, replays and idle checks take turns: each begins and commits the
        # checkpoints.
        self._recovery = Recovery(views=self._views(), what="rule state")

    def _views(self) -> list[tuple[StateCheckpoint, Apply]]:
        # The directory first, then the metric events, then what depends on them.
        return [*self._before, *self._metrics, *self._after]

    async def serve(self, checkpoint: StateCheckpoint) -> None:
        """Keep the state of a partition this replica took caught up with its consumer."""
        self._metrics = [
            *((view, apply) for view, apply in self._metrics if view is not checkpoint),
            (checkpoint, self._replay),
        ]
        await self._recovery.use(self._views())

    async def leave(self, checkpoint: StateCheckpoint) -> None:
        """Stop following a partition this replica gave back (its new holder does)."""
        self._metrics = [(view, apply) for view, apply in self._metrics if view is not checkpoint]
        await self._recovery.use(self._views())

    def use(self, evaluator: Evaluator, goals: GoalOverdueEvaluator | None) -> None:
        """Judge from now on with ``evaluator`` and ``goals`` (the rules changed); a batch
        under way finishes with those it began with."""
        self._evaluator = evaluator
        self._goals = goals

    @property
    def recovery(self) -> Recovery:
        """The one turn every batch of the evaluator's Redis state takes (and the catch-up)."""
        return self._recovery

    async def handle_batch(
        self, messages: Sequence[MetricRecorded], received: Sequence[Received]
    ) -> list[Verdict]:
        """One verdict per event, in order."""
        return await self.handle_partition(messages, received, checkpoint=self._checkpoint)

    async def handle_partition(
        self,
        messages: Sequence[MetricRecorded],
        received: Sequence[Received],
        *,
        checkpoint: StateCheckpoint | None,
    ) -> list[Verdict]:
        """One verdict per event of a batch of the consumer ``checkpoint`` follows, in order."""
        try:
            failures = await self._recovery.in_turn(
                lambda: self._evaluator.handle_batch(messages), only=checkpoint
            )
        except NotCaughtUp as exc:
            return all_wait(received, str(exc), policy=self._policy)
        return in_key_order(
            [
                (event.subject, event.id, facts)
                for event, facts in zip(messages, received, strict=True)
            ],
            {
                subject: (
                    failure.event.id,
                    f"evaluating {subject!r} failed at event {failure.event.id!r}: "
                    f"{failure.error!r}",
                )
                for subject, failure in failures.items()
            },
            policy=self._policy,
        )

    async def handle_timers(
        self, messages: Sequence[TimerFired], received: Sequence[Received]
    ) -> list[Verdict]:
        """One verdict per fired timer, handled in turn with the event batches."""

        async def each() -> list[Verdict]:
            verdicts: list[Verdict] = []
            for fired, facts in zip(messages, received, strict=True):
                try:
                    await self._timer(fired)
                except Exception as exc:
                    verdicts.append(
                        self._policy.on_failure(
                            deliveries=facts.deliveries,
                            reason=f"timer {fired.name}/{fired.key} failed: {exc!r}",
                        )
                    )
                else:
                    verdicts.append(ACK)
            return verdicts

        try:
            return await self._recovery.in_turn(each, only=self._timers_checkpoint)
        except NotCaughtUp as exc:
            return all_wait(received, str(exc), policy=self._policy)

    async def handle_goals(
        self, messages: Sequence[GoalChange], received: Sequence[Received]
    ) -> list[Verdict]:
        """One verdict per goal event, in order, handled in turn with the other batches."""
        assert self._goals is not None
        try:
            failures = await self._recovery.in_turn(
                lambda: self._goal_changes(messages), only=self._goals_checkpoint
            )
        except NotCaughtUp as exc:
            return all_wait(received, str(exc), policy=self._policy)
        return in_key_order(
            [
                (event.goal_id, event.event_id, facts)
                for event, facts in zip(messages, received, strict=True)
            ],
            {
                goal_id: (
                    failure.event.event_id,
                    f"overdue rules of goal {goal_id!r} failed at change "
                    f"{failure.event.event_id!r}: {failure.error!r}",
                )
                for goal_id, failure in failures.items()
            },
            policy=self._policy,
        )

    async def _goal_changes(self, messages: Sequence[GoalChange]) -> dict[str, GoalFailure]:
        """Apply goal changes to the goal overdue rules, then check-ins, as records of
        ``goal.progress``, to the metric rules; the failures by goal id (a check-in whose
        record was not evaluated fails its goal's change, to be retried)."""
        assert self._goals is not None
        failures = await self._goals.handle_batch(messages)
        records = [
            (change, record)
            for change in messages
            if change.goal_id not in failures
            and (record := progress_record(change.event_id, change.goal, change.check_in))
        ]
        if not records:
            return failures
        stopped = await self._evaluator.handle_batch([record for _, record in records])
        # A subject's evaluation stops at the failing record: it and the subject's later
        # records were not evaluated, so each of their goals' changes is retried from there.
        reached: set[str] = set()
        for change, record in records:
            failure = stopped.get(record.subject)
            if failure is None:
                continue
            if record.id == failure.event.id:
                reached.add(record.subject)
            if record.subject in reached:
                failures.setdefault(change.goal_id, GoalFailure(change, failure.error))
        return failures

    async def _timer(self, fired: TimerFired) -> None:
        if fired.name == goal_overdue.TIMER and self._goals is not None:
            await self._goals.handle_timer(fired)
        else:
            await self._evaluator.handle_timer(fired)

    async def check(self) -> None:
        """Catch up without a batch, so a Redis restart while no events arrive is noticed."""
        await self._recovery.check()

    async def watch(self, *, every: float) -> None:
        """Run :meth:`check` every ``every`` seconds until cancelled."""
        await self._recovery.watch(every=every)

    async def _replay(self, batch: list[tuple[int, bytes]]) -> int:
        events = [event for _, data in batch if (event := _event(data)) is not None]
        failures = await self._evaluator.handle_batch(events)
        if failures:
            failure = next(iter(failures.values()))
            raise RuntimeError(f"replaying event {failure.event.id!r} failed") from failure.error
        STATE_REPLAYED.inc(len(events))
        return len(events)

    async def _replay_timers(self, batch: list[tuple[int, bytes]]) -> int:
        applied = 0
        for _, data in batch:
            try:
                fired = TimerFired.model_validate_json(data)
            except ValidationError:
                continue  # dead-lettered when it was first delivered
            await self._timer(fired)
            applied += 1
        return applied

    async def _replay_goals(self, batch: list[tuple[int, bytes]]) -> int:
        assert self._goals is not None
        events: list[GoalChange] = []
        for _, data in batch:
            try:
                events.append(GoalChange.model_validate_json(data))
            except ValidationError:
                continue  # dead-lettered when it was first delivered
        failures = await self._goal_changes(events)
        if failures:
            failure = next(iter(failures.values()))
            raise RuntimeError(f"replaying change {failure.event.event_id!r} failed") from (
                failure.error
            )
        STATE_REPLAYED.inc(len(events))
        return len(events)


class PartitionHandler:
    """The metric events of one partition, handled in turn with the others by ``metrics``,
    their state kept caught up with the partition's consumer by ``checkpoint``."""

    def __init__(self, metrics: MetricsHandler, checkpoint: StateCheckpoint) -> None:
        self._metrics = metrics
        self.checkpoint = checkpoint

    async def handle_batch(
        self, messages: Sequence[MetricRecorded], received: Sequence[Received]
    ) -> list[Verdict]:
        """One verdict per event, in order."""
        return await self._metrics.handle_partition(messages, received, checkpoint=self.checkpoint)

    async def taken(self) -> None:
        """This replica took the partition: follow its checkpoint."""
        await self._metrics.serve(self.checkpoint)

    async def given_back(self) -> None:
        """This replica gave the partition back."""
        await self._metrics.leave(self.checkpoint)


class TimersHandler:
    """The evaluator's fired timers, handled in turn with event batches by ``metrics``."""

    def __init__(self, metrics: MetricsHandler) -> None:
        self._metrics = metrics

    async def handle_batch(
        self, messages: Sequence[TimerFired], received: Sequence[Received]
    ) -> list[Verdict]:
        """One verdict per fired timer."""
        return await self._metrics.handle_timers(messages, received)


class GoalEventsHandler:
    """Goal events for the goal-based overdue rules, handled in turn with the event batches
    and timers by ``metrics``."""

    def __init__(self, metrics: MetricsHandler) -> None:
        self._metrics = metrics

    async def handle_batch(
        self, messages: Sequence[GoalChange], received: Sequence[Received]
    ) -> list[Verdict]:
        """One verdict per goal event."""
        return await self._metrics.handle_goals(messages, received)


def _event(data: bytes) -> MetricRecorded | None:
    try:
        return MetricRecorded.model_validate_json(data)
    except ValidationError:
        return None  # dead-lettered when it was first delivered
