"""The notifier's inbox caught up with the alerts stream after Redis lost writes (in memory)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from goalwatch.checkpoints import Recovery, Replay
from goalwatch.consumers import ACK, Received, Retry
from goalwatch.contracts import (
    AlertFired,
    AlertNotification,
    AlertResolved,
    AlertState,
    Severity,
)
from services.notifier.inbox import InboxAlert, holds, merge, resolved_by_hand
from services.notifier.metrics import INBOX_REPLAYED
from services.notifier.recovery import InboxHandler, inbox_replay
from tests.unit.test_inbox import T0, escalation, firing, resolved
from tests.unit.test_notifier_pipeline import POLICY, World, fired, resolved_of


class FakeCheckpoint:
    """The alert consumer's checkpoint over an in-memory stream; ``restart()`` is a Redis
    restart."""

    def __init__(self, stream: list[AlertFired | AlertResolved]) -> None:
        self.stream = stream
        self.server = "redis-1"
        self.committed_to: str | None = None
        self.pending: Replay | None = None
        self.begun = 0
        self.commits = 0
        self.run_ids = 0

    def restart(self, replay: Replay) -> None:
        self.server = "redis-2"
        self.pending = replay

    @property
    def confirmed(self) -> str | None:
        return self.committed_to

    async def run_id(self) -> str:
        self.run_ids += 1
        return self.server

    async def begin(self) -> Replay | None:
        self.begun += 1
        replay, self.pending = self.pending, None
        return replay

    async def commit(self) -> bool:
        self.commits += 1
        self.committed_to = self.server
        return True

    async def messages(self, replay: Replay) -> AsyncIterator[list[tuple[int, bytes]]]:
        yield [(0, b"not json: dead-lettered when first delivered")]
        yield [
            (sequence, alert.model_dump_json().encode())
            for sequence, alert in enumerate(self.stream, start=1)
            if replay.first <= sequence <= replay.last
        ]


def _recovering(
    world: World, stream: list[AlertFired | AlertResolved]
) -> tuple[InboxHandler, FakeCheckpoint]:
    checkpoint = FakeCheckpoint(stream)
    recovery = Recovery(views=[(checkpoint, inbox_replay(world.notifier))], what="inbox")
    handler = InboxHandler(notifier=world.notifier, recovery=recovery, policy=POLICY)
    return handler, checkpoint


def _received(sequence: int) -> Received:
    return Received("notifier-alerts", sequence, 1)


def _replayed(outcome: str) -> float:
    return INBOX_REPLAYED.labels(outcome)._value.get()


# --- holds: the merge is idempotent per transition ----------------------------------------

_FIRE = firing(severity=Severity.INFO)
_LATER = firing(at=T0 + timedelta(days=5))
# Two episodes: the first rises twice (info, warning, critical), the second once.
TRANSITIONS: list[AlertNotification] = [
    _FIRE,
    escalation(_FIRE, at=T0 + timedelta(hours=1), to=Severity.WARNING),
    escalation(_FIRE, at=T0 + timedelta(hours=2), source=Severity.WARNING),
    resolved(_FIRE, at=T0 + timedelta(hours=3)),
    _LATER,
    escalation(_LATER, at=T0 + timedelta(days=5, hours=1)),
    resolved(_LATER, at=T0 + timedelta(days=5, hours=3)),
]


def _name(transition: AlertNotification) -> str:
    kind = "e" if transition.escalated_from is not None else transition.state.value[0]
    return f"{kind}{TRANSITIONS.index(transition)}"


def _entry(order: tuple[AlertNotification, ...], episode: AlertNotification) -> InboxAlert | None:
    """The entry of ``episode``'s episode after the transitions of ``order`` that are its."""
    entry: InboxAlert | None = None
    for transition in order:
        if transition.started_at == episode.started_at:
            entry = merge(entry, transition).alert
    return entry


@pytest.mark.parametrize("by_hand", [False, True], ids=["", "by-hand"])
@pytest.mark.parametrize(
    "order",
    [order for n in range(4) for order in itertools.permutations(TRANSITIONS, n)],
    ids=lambda order: "+".join(_name(t) for t in order),
)
def test_holds_is_true_exactly_when_merging_again_changes_nothing(
    order: tuple[AlertNotification, ...], by_hand: bool
) -> None:
    for transition in TRANSITIONS:
        entry = _entry(order, transition)
        if by_hand and entry is not None and entry.state is AlertState.FIRING:
            entry = resolved_by_hand(entry, by="mgr-1", comment="", at=T0 + timedelta(hours=9))
        merged = merge(entry, transition).alert
        rise = transition.severity if transition.escalated_from is not None else None
        same = holds(
            entry, state=transition.state, started_at=transition.started_at, escalated_to=rise
        )
        assert same == (merged == entry), _name(transition)
        # Whatever it held, merging the same transition a second time changes nothing.
        assert merge(merged, transition).alert == merged
        # Another episode's entry holds none of this one's transitions.
        other = _entry(order, _LATER if transition.started_at != _LATER.started_at else _FIRE)
        if other is not None:
            assert not holds(
                other, state=transition.state, started_at=transition.started_at, escalated_to=rise
            )


# --- the replay goes to the inbox only ----------------------------------------------------


async def test_transitions_redis_lost_are_restored_to_the_inbox_without_a_delivery() -> None:
    world = World()
    first, second = fired(), fired(fingerprint="fp-2", subject="emp-1", event_id="e-4")
    ending = resolved_of(first)
    # Fired and resolved in one stream, as the one consumer reads them.
    handler, checkpoint = _recovering(world, [first, second, ending])
    for sequence, alert in enumerate((first, second, ending), start=1):
        assert await handler.handle(alert, _received(sequence)) == ACK
    assert len(world.channel.delivered) == 3
    outcomes = len(world.published.outcomes())
    await world.redis.flushall()  # the cut took every inbox write and every claim...
    checkpoint.restart(Replay(first=1, last=3))  # ...and Redis came back as another server
    restored = _replayed("restored")

    third = fired(fingerprint="fp-3", event_id="e-5")
    assert await handler.handle(third, _received(4)) == ACK

    assert _replayed("restored") - restored == 3
    one = await world.inbox.get("fp-1")
    assert one is not None and one.state is AlertState.RESOLVED
    assert one.fired_at == first.fired_at and one.history == first.history  # filled in
    two = await world.inbox.get("fp-2")
    assert two is not None and two.state is AlertState.FIRING
    # Only the new alert went out: a replayed transition is not delivered or announced again.
    assert [n.fingerprint for n in world.channel.delivered[3:]] == ["fp-3"]
    assert {o.fingerprint for o in world.published.outcomes()[outcomes:]} == {"fp-3"}
    assert checkpoint.commits == 2  # at the start, after the replay


async def test_a_replay_of_what_redis_kept_changes_nothing_and_asks_nobody() -> None:
    world = World()
    alert = fired()
    handler, checkpoint = _recovering(world, [alert])
    await handler.handle(alert, _received(1))
    [key] = await world.keys("goalwatch:notifier:episode:")
    before = await world.redis.get(key)
    checkpoint.restart(Replay(first=1, last=1))
    world.directory.down = True  # goals is not needed for an entry the inbox still holds
    kept = _replayed("kept")
    await handler.handle(fired(fingerprint="fp-9", event_id="e-9"), _received(2))
    assert _replayed("kept") - kept == 1
    assert await world.redis.get(key) == before


async def test_an_alert_waits_while_the_inbox_cannot_catch_up() -> None:
    world = World()
    alert = fired()
    handler, checkpoint = _recovering(world, [alert])
    await handler.handle(fired(fingerprint="fp-0", event_id="e-0"), _received(1))
    await world.redis.flushall()
    checkpoint.restart(Replay(first=1, last=1))
    world.directory.down = True  # the lost entry's recipients cannot be resolved now
    verdict = await handler.handle(fired(fingerprint="fp-7", event_id="e-7"), _received(2))
    assert isinstance(verdict, Retry)
    assert "inbox could not be brought up to date" in verdict.reason
    assert [n.fingerprint for n in world.channel.delivered] == ["fp-0"]  # fp-7 not handled
    assert checkpoint.committed_to == "redis-1"  # not committed to the new server yet

    world.directory.down = False
    checkpoint.pending = Replay(first=1, last=1)  # the next begin asks again
    assert await handler.handle(fired(fingerprint="fp-7", event_id="e-7"), _received(2)) == ACK
    assert await world.inbox.get("fp-1") is not None
    assert checkpoint.committed_to == "redis-2"


async def test_a_caught_up_inbox_costs_one_run_id_per_alert() -> None:
    world = World()
    handler, checkpoint = _recovering(world, [])
    await handler.handle(fired(), _received(1))  # the first alert of a process catches up
    begun = checkpoint.begun
    for n in range(2, 5):
        await handler.handle(fired(fingerprint=f"fp-{n}", event_id=f"e-{n}"), _received(n))
    assert checkpoint.begun == begun
    assert checkpoint.run_ids == 2 + 3  # twice at the first (before and under the lock)


async def test_both_episodes_of_an_alert_that_fired_twice_are_restored_and_kept() -> None:
    world = World()
    first = fired()
    again = fired(
        started_at=first.started_at + timedelta(days=3),
        fired_at=first.fired_at + timedelta(days=3),
        event_id="e-8",
    )
    ending = resolved_of(first)
    handler, checkpoint = _recovering(world, [first, ending, again])
    for sequence, alert in enumerate((first, ending, again), start=1):
        assert await handler.handle(alert, _received(sequence)) == ACK
    before = await world.inbox.list()
    await world.redis.flushall()
    checkpoint.restart(Replay(first=1, last=3))
    restored = _replayed("restored")
    await handler.handle(fired(fingerprint="fp-3", event_id="e-5"), _received(4))
    assert _replayed("restored") - restored == 3
    newest, earlier = [a for a in await world.inbox.list() if a.fingerprint == "fp-1"]
    assert [(a.id, a.state, a.timeline) for a in (newest, earlier)] == [
        (a.id, a.state, a.timeline) for a in before
    ]
    # The same transitions replayed again: each is held by its episode's entry, nothing
    # changes, and goals is not asked.
    world.directory.down = True
    for alert in (first, ending, again):
        assert not await world.notifier.restore(alert)
    assert [a for a in await world.inbox.list() if a.fingerprint == "fp-1"] == [newest, earlier]
