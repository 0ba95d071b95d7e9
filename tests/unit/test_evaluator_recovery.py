"""The evaluator's batch handler keeps rule state caught up with the stream (in memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from goalwatch.checkpoints import Replay
from goalwatch.consumers import ACK, Received, RedeliveryPolicy, Retry
from goalwatch.contracts import AlertFired, MetricRecorded, subjects
from goalwatch.rules import load_rules, metric_rules
from goalwatch.rules.engine import RuleEngine
from services.evaluator.consumer import MetricsHandler
from services.evaluator.evaluation import Evaluator
from tests.unit.test_evaluator import MemoryStreaks, Names, Published, rework

REPO = Path(__file__).resolve().parents[2]
POLICY = RedeliveryPolicy(max_deliver=5, first_delay=1.0, max_delay=60.0)


class FakeCheckpoint:
    """Replays the stream it is given when told Redis restarted."""

    def __init__(self, stream: list[MetricRecorded]) -> None:
        self.stream = stream
        self.replay: Replay | None = None
        self.begun = 0
        self.commits = 0
        self.fail_begin: Exception | None = None

    @property
    def confirmed(self) -> str | None:
        return "redis-1" if self.replay is None else None

    async def run_id(self) -> str:
        return "redis-1"

    async def begin(self) -> Replay | None:
        self.begun += 1
        if self.fail_begin is not None:
            raise self.fail_begin
        replay, self.replay = self.replay, None
        return replay

    async def commit(self) -> bool:
        self.commits += 1
        return True

    async def messages(self, replay: Replay) -> AsyncIterator[list[tuple[int, bytes]]]:
        wanted = [
            (sequence, event.model_dump_json().encode())
            for sequence, event in enumerate(self.stream, start=1)
            if replay.first <= sequence <= replay.last
        ]
        yield wanted[:2]
        yield [(0, b"not json: dead-lettered when first delivered"), *wanted[2:]]


def _world(
    stream: list[MetricRecorded],
) -> tuple[MetricsHandler, FakeCheckpoint, MemoryStreaks, Published]:
    streaks, published = MemoryStreaks(), Published()
    evaluator = Evaluator(
        engine=RuleEngine(metric_rules(load_rules(REPO / "rules"))),
        streaks=streaks,
        publish=published,
        names=Names(),
    )
    checkpoint = FakeCheckpoint(stream)
    return (
        MetricsHandler(evaluator=evaluator, policy=POLICY, checkpoint=checkpoint),
        checkpoint,
        streaks,
        published,
    )


def _received(count: int) -> list[Received]:
    return [Received("evaluator", sequence, 1) for sequence in range(1, count + 1)]


async def test_every_batch_begins_and_commits_the_checkpoint() -> None:
    handler, checkpoint, _, _ = _world([])
    assert await handler.handle_batch([rework(0, 0.09)], _received(1)) == [ACK]
    assert (checkpoint.begun, checkpoint.commits) == (1, 1)


async def test_state_lost_by_redis_is_replayed_before_the_batch() -> None:
    stream = [rework(0, 0.09), rework(1, 0.10)]
    handler, checkpoint, streaks, published = _world(stream)
    await handler.handle_batch(stream, _received(2))
    streaks.store = type(streaks.store)()  # Redis lost the two days...
    streaks.caused.clear()
    checkpoint.replay = Replay(first=1, last=2)  # ...and restarted: both are replayed
    assert await handler.handle_batch([rework(2, 0.11)], _received(1)) == [ACK]
    [(alert, subject, _)] = published.messages
    assert subject == subjects.ALERTS_FIRED
    assert isinstance(alert, AlertFired)
    assert [o.event_id for o in alert.history] == ["emp-1042-0", "emp-1042-1", "emp-1042-2"]


async def test_a_replay_of_what_survived_fires_nothing_new() -> None:
    stream = [rework(0, 0.09), rework(1, 0.10), rework(2, 0.11)]
    handler, checkpoint, _, published = _world(stream)
    await handler.handle_batch(stream, _received(3))
    checkpoint.replay = Replay(first=1, last=3)
    await handler.handle_batch([rework(3, 0.12)], _received(1))
    assert [subject for _, subject, _ in published.messages] == [subjects.ALERTS_FIRED]


async def test_a_batch_that_cannot_catch_up_is_retried_whole() -> None:
    handler, checkpoint, _, published = _world([])
    checkpoint.fail_begin = ConnectionError("Redis is down")
    verdicts = await handler.handle_batch([rework(0, 0.09), rework(1, 0.1)], _received(2))
    assert all(isinstance(v, Retry) and "Redis is down" in v.reason for v in verdicts)
    assert len(verdicts) == 2
    assert published.messages == []
    assert checkpoint.commits == 0


async def test_the_idle_check_catches_up_without_a_batch() -> None:
    stream = [rework(0, 0.09), rework(1, 0.10), rework(2, 0.11)]
    handler, checkpoint, _, published = _world(stream)
    checkpoint.replay = Replay(first=1, last=3)
    await handler.check()
    assert [subject for _, subject, _ in published.messages] == [subjects.ALERTS_FIRED]
    assert checkpoint.commits == 1


async def test_a_failed_replay_retries_the_batch() -> None:
    stream = [rework(0, 0.09), rework(1, 0.10), rework(2, 0.11)]
    handler, checkpoint, _, published = _world(stream)
    published.fail_next = True  # the replayed alert cannot be published
    checkpoint.replay = Replay(first=1, last=3)
    [verdict] = await handler.handle_batch([rework(3, 0.12)], _received(1))
    assert isinstance(verdict, Retry)
    assert "could not be brought up to date" in verdict.reason
    assert checkpoint.commits == 0
