"""The evaluator rebuilt with a changed rule over the threshold state it kept: what it
publishes at the next event or timer (the state in memory; on Redis in
``tests/integration/test_streak_store.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from goalwatch.contracts import AlertFired, AlertResolved, TimerFired
from goalwatch.rules import threshold
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.spec import RuleSpec
from goalwatch.timers import TimerKey
from services.evaluator.evaluation import Evaluator
from services.evaluator.metrics import STATES_REVISED
from tests.unit.test_evaluator import DAY0, MemoryStreaks, Names, Published, rework

RULE: dict[str, Any] = {
    "id": "rework-high",
    "name": "Rework above 8% on 3 days",
    "kind": "threshold",
    "metric": "report_rework_rate",
    "where": {"department": "radiology"},
    "condition": {"op": ">", "value": 0.08, "consecutive": 3},
    "severity": "warning",
    "escalate": [{"after": "4d", "severity": "critical"}],
    "notify": ["manager"],
    "message": "{subject_name}: {value:.0%} ({severity})",
}


def rule(**changes: Any) -> RuleSpec:
    return RuleSpec.model_validate({**RULE, **changes})


class Arms:
    """Timers armed, as (key, time)."""

    def __init__(self) -> None:
        self.armed: list[tuple[TimerKey, datetime]] = []

    async def __call__(self, key: TimerKey, at: datetime, *, data: dict[str, str]) -> int:
        self.armed.append((key, at))
        return len(self.armed)


def evaluator(spec: RuleSpec, streaks: MemoryStreaks, published: Published) -> Evaluator:
    """An evaluator of ``spec`` over ``streaks``: rebuilt, as a rule change does."""
    return Evaluator(
        engine=RuleEngine([spec]),
        streaks=streaks,
        publish=published,
        names=Names(),
        rules=[spec],
        arm=Arms(),
    )


def kinds(messages: Sequence[tuple[AlertFired | AlertResolved, str, str]]) -> list[str]:
    return [type(alert).__name__ for alert, _, _ in messages]


async def firing() -> tuple[MemoryStreaks, Published, AlertFired]:
    streaks, published = MemoryStreaks(), Published()
    first = evaluator(rule(), streaks, published)
    for day in range(3):
        await first.handle(rework(day, 0.09))
    [(fired, _, _)] = published.messages
    assert isinstance(fired, AlertFired)
    return streaks, published, fired


def revised_count() -> float:
    return float(STATES_REVISED.labels(rule="rework-high")._value.get())


async def test_a_raised_threshold_resolves_the_open_alert_at_the_next_event() -> None:
    streaks, published, fired = await firing()
    before = revised_count()
    raised = evaluator(
        rule(condition={"op": ">", "value": 0.1, "consecutive": 3}), streaks, published
    )
    await raised.handle(rework(3, 0.12))
    assert kinds(published.messages) == ["AlertFired", "AlertResolved"]
    resolved = published.messages[1][0]
    assert resolved.fingerprint == fired.fingerprint
    assert resolved.started_at == fired.started_at
    assert revised_count() == before + 1


async def test_a_lowered_threshold_keeps_the_open_alert_without_firing_again() -> None:
    streaks, published, _ = await firing()
    lowered = evaluator(
        rule(condition={"op": ">", "value": 0.05, "consecutive": 3}), streaks, published
    )
    await lowered.handle(rework(3, 0.06))  # under the old threshold, over the new
    assert kinds(published.messages) == ["AlertFired"]
    # Day 4 is four days into the breach: the same alert rises, it does not fire anew.
    await lowered.handle(rework(4, 0.06))
    escalated = published.messages[1][0]
    assert isinstance(escalated, AlertFired) and escalated.escalated_from is not None


async def test_a_rule_retold_keeps_its_state_as_it_is() -> None:
    streaks, published, _ = await firing()
    before = revised_count()
    [revision] = {state.revision for state in streaks.store.states.values()}
    retold = evaluator(rule(message="{subject}: {value}", name="Rework"), streaks, published)
    await retold.handle(rework(3, 0.09))
    assert kinds(published.messages) == ["AlertFired"]
    assert revised_count() == before
    assert {state.revision for state in streaks.store.states.values()} == {revision}


async def test_the_timer_of_a_key_the_changed_rule_no_longer_watches_resolves_it() -> None:
    streaks, published, fired = await firing()
    # The rule now watches cardiology only: the key's reports (radiology) no longer count,
    # and its escalation timer, four days after the breach began, finds nothing breaching.
    moved = evaluator(rule(where={"department": "cardiology"}), streaks, published)
    await moved.handle_timer(
        TimerFired(
            owner="evaluator",
            name=threshold.TIMER,
            key=fired.fingerprint,
            due_at=DAY0 + timedelta(days=4),
            armed_at=DAY0 + timedelta(days=2),
            data={"rule_id": "rework-high", "subject": fired.subject},
        )
    )
    assert kinds(published.messages) == ["AlertFired", "AlertResolved"]
    resolved = published.messages[1][0]
    assert resolved.fingerprint == fired.fingerprint
    assert resolved.started_at == fired.started_at
