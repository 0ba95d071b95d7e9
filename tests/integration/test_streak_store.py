"""The evaluator's streak state on the real Redis: idempotent, replayable until published."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from goalwatch.contracts import AlertState
from goalwatch.dev.stack import Stack
from goalwatch.rules.transitions import Point
from services.evaluator.streaks import StreakStore
from tests.integration.helpers import unique

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)


async def test_a_transition_is_replayed_until_it_is_marked_published(stack: Stack) -> None:
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    store = StreakStore(redis)
    subject = unique("emp")
    key = {"rule_id": "r", "subject": subject, "metric": "m", "consecutive": 2}
    points = [Point(f"{subject}-{d}", DAY0 + timedelta(days=d), 0.5, True) for d in range(2)]
    try:
        assert await store.record(**key, point=points[0]) is None
        fired = await store.record(**key, point=points[1])
        assert fired is not None and fired.state is AlertState.FIRING and not fired.replayed

        again = await store.record(**key, point=points[1])  # a redelivery before publishing
        assert again is not None and again.replayed and again.started_at == fired.started_at

        await store.mark_published(
            rule_id="r", subject=subject, metric="m", event_id=points[1].event_id
        )
        assert await store.record(**key, point=points[1]) is None  # a resend after it went out
    finally:
        await redis.aclose()


async def test_concurrent_writers_of_one_key_fire_once(stack: Stack) -> None:
    # As two evaluator replicas would: separate connections, same key, at the same time.
    clients = [Redis.from_url(stack.settings.redis_url, decode_responses=True) for _ in range(6)]
    subject = unique("emp")
    points = [Point(f"{subject}-{d}", DAY0 + timedelta(days=d), 0.5, True) for d in range(6)]
    try:
        transitions = await asyncio.gather(
            *(
                StreakStore(client).record(
                    rule_id="r", subject=subject, metric="m", consecutive=3, point=point
                )
                for client, point in zip(clients, points, strict=True)
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    assert [t.state for t in transitions if t is not None] == [AlertState.FIRING]
