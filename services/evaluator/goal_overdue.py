"""Goal-based overdue rules in the evaluator: goal events in, one durable timer per (rule,
goal) armed, moved or cancelled, alerts out when a timer falls due or a check-in decides.

What an input means is :mod:`goalwatch.rules.goal_overdue` (pure); this module adds the Redis
state, the timers, the owner's name and publishing. For each input and rule:

1. a transition still pending in the state (an earlier input failed after storing it) is
   published first, under its own ``Nats-Msg-Id``;
2. the decision is taken; its timer is armed (or cancelled) **before** the state is stored,
   so a failure in between is retried and arms again, never leaves a deadline without its
   timer;
3. the new state is stored with its transition pending, the transition is published, and
   the pending mark cleared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from goalwatch.contracts import AlertFired, AlertResolved, GoalRead, TimerFired, subjects
from goalwatch.contracts.goals import CheckInRead
from goalwatch.rules import goal_overdue
from goalwatch.rules.goal_overdue import (
    Decision,
    GoalOverdueState,
    build_goal_alert,
    decide_goal,
    decide_timer,
    goal_fingerprint,
    message_id,
    published,
)
from goalwatch.rules.goal_overdue_spec import GoalOverdueRuleSpec
from goalwatch.timers import TimerKey
from services.evaluator.evaluation import OWNER, ArmTimer
from services.evaluator.goal_overdue_store import GoalOverdueStore
from services.evaluator.metrics import ALERTS_FIRED, ALERTS_RESOLVED
from services.evaluator.names import Names

logger = logging.getLogger(__name__)

PublishAlert = Callable[[AlertFired | AlertResolved, str, str], Awaitable[None]]
CancelTimer = Callable[[TimerKey], Awaitable[bool]]
# Goals of one batch handled at once.
GOAL_CONCURRENCY = 16


class GoalChange(BaseModel):
    """Any event of ``GOALWATCH_GOALS`` as the goal overdue rules read it: the goal as
    stored after the change. Link events carry no goal and change nothing here."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str = Field(description="Id of the change (its Nats-Msg-Id).")
    goal_id: str = Field(description="The goal that changed.")
    version: int = Field(description="The goal's version after the change.")
    occurred_at: datetime = Field(description="When the goals service made the change.")
    goal: GoalRead | None = Field(
        default=None,
        description="The goal as stored after the change (created, updated, status changed, "
        "checked in); none on link events.",
    )
    check_in: CheckInRead | None = Field(
        default=None, description="The check-in, on a check-in event (GoalCheckedIn)."
    )


@dataclass(frozen=True)
class GoalFailure:
    """The change a goal's handling stopped at, and why."""

    event: GoalChange
    error: Exception


class GoalOverdueEvaluator:
    """Applies goal changes and fired goal timers to the goal-based overdue rules."""

    def __init__(
        self,
        *,
        rules: Sequence[GoalOverdueRuleSpec],
        store: GoalOverdueStore,
        arm: ArmTimer,
        cancel: CancelTimer,
        names: Names,
        publish: PublishAlert,
    ) -> None:
        self._rules = {rule.id: rule for rule in rules}
        self._store = store
        self._arm = arm
        self._cancel = cancel
        self._names = names
        self._publish = publish
        self._goals = asyncio.Semaphore(GOAL_CONCURRENCY)

    @property
    def active(self) -> bool:
        """Whether any goal-based overdue rule is loaded."""
        return bool(self._rules)

    async def handle_batch(self, events: Sequence[GoalChange]) -> dict[str, GoalFailure]:
        """Apply ``events``, each goal's in stream order, different goals concurrently; the
        goals that failed, each with the change it stopped at."""
        by_goal: dict[str, list[GoalChange]] = {}
        for event in events:
            by_goal.setdefault(event.goal_id, []).append(event)
        results = await asyncio.gather(*map(self._in_order, by_goal.values()))
        return {failure.event.goal_id: failure for failure in results if failure is not None}

    async def _in_order(self, events: Sequence[GoalChange]) -> GoalFailure | None:
        async with self._goals:
            for event in events:
                try:
                    await self.handle(event)
                except Exception as exc:
                    return GoalFailure(event=event, error=exc)
        return None

    async def handle(self, event: GoalChange) -> None:
        """Apply one change to every rule; safe to call again for the same change."""
        goal = event.goal
        if goal is None:
            return
        for rule in self._rules.values():
            state = await self._flush(rule, goal.id)
            decision = decide_goal(state, rule, goal, occurred_at=event.occurred_at)
            if decision is not None:
                await self._apply(rule, goal.id, decision)

    async def handle_timer(self, fired: TimerFired) -> None:
        """A goal deadline's timer fell due; safe to call again for the same timer."""
        rule = self._rules.get(fired.data.get("rule_id", ""))
        goal_id = fired.data.get("goal_id")
        if rule is None or goal_id is None:
            logger.warning(
                "timer %s/%s for rule %r dropped: no such goal overdue rule is loaded",
                fired.name,
                fired.key,
                fired.data.get("rule_id"),
            )
            return
        state = await self._flush(rule, goal_id)
        decision = decide_timer(state, rule, fired.due_at)
        if decision is None:
            logger.debug("%s: timer for %s at %s is stale", rule.id, goal_id, fired.due_at)
            return
        await self._apply(rule, goal_id, decision)

    async def _flush(self, rule: GoalOverdueRuleSpec, goal_id: str) -> GoalOverdueState:
        """The state, with a transition an earlier input left pending published first."""
        state = await self._store.get(rule_id=rule.id, goal_id=goal_id)
        if state.pending is None:
            return state
        await self._announce(rule, state, replayed=True)
        state = published(state)
        await self._store.put(rule_id=rule.id, goal_id=goal_id, state=state)
        return state

    async def _apply(self, rule: GoalOverdueRuleSpec, goal_id: str, decision: Decision) -> None:
        key = TimerKey(owner=OWNER, name=goal_overdue.TIMER, key=goal_fingerprint(rule, goal_id))
        if decision.arm is not None:
            await self._arm(key, decision.arm, data={"rule_id": rule.id, "goal_id": goal_id})
        elif decision.cancel:
            await self._cancel(key)
        await self._store.put(rule_id=rule.id, goal_id=goal_id, state=decision.state)
        if decision.transition is None:
            return
        await self._announce(rule, decision.state, replayed=False)
        await self._store.put(rule_id=rule.id, goal_id=goal_id, state=published(decision.state))

    async def _announce(
        self, rule: GoalOverdueRuleSpec, state: GoalOverdueState, *, replayed: bool
    ) -> None:
        pending = state.pending
        assert pending is not None and state.since is not None
        owner = pending.facts.owner_id
        alert = build_goal_alert(
            rule,
            pending,
            owner_name=await self._names.name_of(subject=owner),
            since=state.since,
            now=datetime.now(UTC),
        )
        if isinstance(alert, AlertFired):
            on, verb = subjects.ALERTS_FIRED, "fired"
            counter = ALERTS_FIRED.labels(
                rule=rule.id, kind=rule.kind.value, severity=rule.severity.value
            )
        else:
            on, verb = subjects.ALERTS_RESOLVED, "resolved"
            counter = ALERTS_RESOLVED.labels(rule=rule.id, kind=rule.kind.value)
        await self._publish(alert, on, message_id(alert.fingerprint, pending))
        if not replayed:
            counter.inc()
        logger.info(
            "goal overdue alert %s%s: %s",
            verb,
            " (published again)" if replayed else "",
            alert.message,
            extra={"fingerprint": alert.fingerprint, "rule_id": rule.id},
        )
