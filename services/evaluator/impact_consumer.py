"""The evaluator's handler of ``GoalStatusChanged`` batches: dependency-impact alerts, one per
affected owner, resolved for the same owners when the goal recovers.

For every dependency_impact rule, a change goes through :func:`goalwatch.rules.impact.decide`.
An episode that starts asks goals for the impact (a failure retries the change: no alert goes
out without its analysis; the answer names the owners too), stores whom it alerts, then publishes one
AlertFired per owner and notes that it did; an episode that ends publishes one AlertResolved
to each owner stored. A change redelivered before its messages were all published publishes
them again under the same ``Nats-Msg-Id``, which the alerts stream drops if it has them.

Each batch is bracketed by a :class:`goalwatch.checkpoints.Checkpoint` of this consumer, as
the metrics consumer's is: a Redis that restarted and may have lost writes has the changes
since the last checkpoint applied again, in order, before the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from pydantic import ValidationError

from goalwatch.checkpoints import NotCaughtUp, Recovery, StateCheckpoint
from goalwatch.consumers import Received, RedeliveryPolicy, Verdict
from goalwatch.contracts import AlertFired, AlertResolved, GoalStatusChanged, subjects
from goalwatch.contracts.goals import GoalImpact
from goalwatch.goals_client import GoalImpacts
from goalwatch.rules.impact import (
    Advance,
    Fire,
    ImpactState,
    Republish,
    Resolve,
    Skip,
    Wait,
    announcements,
    decide,
    group_by_owner,
    published,
    start,
)
from goalwatch.rules.impact_spec import ImpactRuleSpec
from services.evaluator.impact_store import ImpactStore
from services.evaluator.metrics import ALERTS_FIRED, ALERTS_RESOLVED, STATE_REPLAYED
from services.evaluator.verdicts import all_wait, in_key_order

logger = logging.getLogger(__name__)

PublishAlert = Callable[[AlertFired | AlertResolved, str, str], Awaitable[None]]
# Goals of one batch handled at once.
GOAL_CONCURRENCY = 16


WAITING_MAX_DELAY: Final = 8.0
"""Longest delay between deliveries of a change waiting for the one before it, seconds."""


class ChangeNotYetDue(Exception):
    """A goal's change arrived before an earlier one of the same goal (redelivered after a
    crash): it is retried once that one was applied."""


@dataclass(frozen=True)
class _Failure:
    event: GoalStatusChanged
    error: Exception


class ImpactEvaluator:
    """Applies goal status changes to the dependency-impact rules and publishes the alerts."""

    def __init__(
        self,
        *,
        rules: Sequence[ImpactRuleSpec],
        store: ImpactStore,
        impacts: GoalImpacts,
        publish: PublishAlert,
    ) -> None:
        self._rules = list(rules)
        self._store = store
        self._impacts = impacts
        self._publish = publish
        self._goals = asyncio.Semaphore(GOAL_CONCURRENCY)

    async def handle_batch(self, events: Sequence[GoalStatusChanged]) -> dict[str, _Failure]:
        """Apply ``events``, each goal's in stream order, different goals concurrently; the
        goals that failed, each with the event it stopped at (later ones were not applied)."""
        by_goal: dict[str, list[GoalStatusChanged]] = {}
        for event in events:
            by_goal.setdefault(event.goal_id, []).append(event)
        results = await asyncio.gather(*map(self._in_order, by_goal.values()))
        return {failure.event.goal_id: failure for failure in results if failure is not None}

    async def _in_order(self, events: Sequence[GoalStatusChanged]) -> _Failure | None:
        async with self._goals:
            for event in events:
                try:
                    await self.handle(event)
                except Exception as exc:
                    return _Failure(event=event, error=exc)
        return None

    async def handle(self, event: GoalStatusChanged) -> None:
        """Apply ``event`` to every rule; safe to call again for the same event."""
        for rule in self._rules:
            await self._apply(rule, event)

    async def _apply(self, rule: ImpactRuleSpec, event: GoalStatusChanged) -> None:
        state = await self._store.get(rule_id=rule.id, goal_id=event.goal_id)
        if state.pending is not None and event.version > state.version:
            # An earlier change's messages may not all be out (it failed and a later change
            # came first): publish them before this change replaces the state.
            await self._announce(rule, event.goal_id, state, replayed=True)
        decision = decide(state, event, rule)
        match decision:
            case Skip(reason):
                logger.debug("%s: %s: %s", rule.id, event.event_id, reason)
                return
            case Wait(reason):
                # Retried by the consumer's policy, after the change it waits for arrives.
                raise ChangeNotYetDue(reason)
            case Advance(new):
                await self._save(rule, event, new)
                return
            case Republish(new):
                await self._announce(rule, event.goal_id, new, replayed=True)
                return
            case Resolve(new):
                await self._save(rule, event, new)
                await self._announce(rule, event.goal_id, new, replayed=False)
                return
            case Fire():
                impact = await self._impacts.get_impact(event.goal_id)
                impact = impact or GoalImpact(goal_id=event.goal_id, affected=[])
                owners = group_by_owner(impact, min_weight=rule.min_weight)
                # Named by the same answer: an owner goals does not know goes by their id.
                names = {owner: goals[0].owner_name or owner for owner, goals in owners.items()}
                new = start(rule=rule, event=event, impact=impact, names=names)
                await self._save(rule, event, new)
                await self._announce(rule, event.goal_id, new, replayed=False)

    async def _save(
        self, rule: ImpactRuleSpec, event: GoalStatusChanged, state: ImpactState
    ) -> None:
        await self._store.put(rule_id=rule.id, goal_id=event.goal_id, state=state)

    async def _announce(
        self, rule: ImpactRuleSpec, goal_id: str, state: ImpactState, *, replayed: bool
    ) -> None:
        """Publish ``state``'s pending messages, then note that they are out."""
        for item in announcements(rule=rule, state=state, now=datetime.now(UTC)):
            alert = item.alert
            if isinstance(alert, AlertFired):
                subject, verb = subjects.ALERTS_FIRED, "fired"
                counter = ALERTS_FIRED.labels(
                    rule=rule.id, kind=rule.kind.value, severity=rule.severity.value
                )
            else:
                subject, verb = subjects.ALERTS_RESOLVED, "resolved"
                counter = ALERTS_RESOLVED.labels(rule=rule.id, kind=rule.kind.value)
            await self._publish(alert, subject, item.msg_id)
            if not replayed:
                counter.inc()
            logger.info(
                "impact alert %s%s: %s",
                verb,
                " (published again)" if replayed else "",
                alert.message,
                extra={"fingerprint": alert.fingerprint, "rule_id": rule.id, "goal_id": goal_id},
            )
        await self._store.put(rule_id=rule.id, goal_id=goal_id, state=published(state))


class ImpactHandler:
    """Gives each goal status change its verdict; keeps the state caught up with the stream.

    A goal whose change failed (goals, Redis or NATS trouble) has that change and its later
    ones in the batch retried by the consumer's policy, in order; other goals' changes are
    acknowledged.
    """

    def __init__(
        self, *, evaluator: ImpactEvaluator, policy: RedeliveryPolicy, checkpoint: StateCheckpoint
    ) -> None:
        self._evaluator = evaluator
        self._policy = policy
        # A change waiting for the one before it: that one comes back at the latest when its
        # ack wait runs out (an evaluator died holding it), so try again every few seconds
        # rather than after a doubling delay that could overshoot it by half a minute; the
        # same number of deliveries still spans more than the ack wait and a restart.
        self._waiting = replace(policy, max_delay=min(policy.max_delay, WAITING_MAX_DELAY))
        # Batches, replays and idle checks take turns: each begins and commits the checkpoint.
        self._recovery = Recovery(views=[(checkpoint, self._replay)], what="impact state")

    def use(self, evaluator: ImpactEvaluator) -> None:
        """Judge from now on with ``evaluator`` (the rules changed)."""
        self._evaluator = evaluator

    async def handle_batch(
        self, messages: Sequence[GoalStatusChanged], received: Sequence[Received]
    ) -> list[Verdict]:
        """One verdict per change, in order."""
        try:
            failures = await self._recovery.in_turn(lambda: self._evaluator.handle_batch(messages))
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
                    f"dependency impact of goal {goal_id!r} failed at change "
                    f"{failure.event.event_id!r}: {failure.error!r}",
                )
                for goal_id, failure in failures.items()
            },
            policy=self._policy,
            policies={
                goal_id: self._waiting
                for goal_id, failure in failures.items()
                if isinstance(failure.error, ChangeNotYetDue)
            },
        )

    async def check(self) -> None:
        """Catch up without a batch, so a Redis restart while no changes arrive is noticed."""
        await self._recovery.check()

    async def watch(self, *, every: float) -> None:
        """Run :meth:`check` every ``every`` seconds until cancelled."""
        await self._recovery.watch(every=every)

    async def _replay(self, batch: list[tuple[int, bytes]]) -> int:
        events = [event for _, data in batch if (event := _event(data)) is not None]
        failures = await self._evaluator.handle_batch(events)
        if failures:
            failure = next(iter(failures.values()))
            raise RuntimeError(f"replaying change {failure.event.event_id!r} failed") from (
                failure.error
            )
        STATE_REPLAYED.inc(len(events))
        return len(events)


def _event(data: bytes) -> GoalStatusChanged | None:
    try:
        return GoalStatusChanged.model_validate_json(data)
    except ValidationError:
        return None  # dead-lettered when it was first delivered
