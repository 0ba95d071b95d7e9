"""Goal changes and their events on the real Redis: a failed publish leaves the change owed,
and the next flush publishes it with the same event ids."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from goalwatch.contracts.goals import GoalUpsert
from goalwatch.dev.stack import Stack
from services.goals import keys
from services.goals.events import ChangeRecord, events_of
from services.goals.goal_store import GoalStore
from services.goals.outbox import Outbox
from tests.integration.helpers import unique

pytestmark = pytest.mark.integration


class FlakySink:
    """Refuses the first ``failures`` publishes, then records every event id."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.published: list[str] = []

    async def publish(self, records: Sequence[ChangeRecord]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("NATS is down")
        self.published.extend(e.event_id for r in records for e in events_of(r))


async def test_a_change_whose_publish_failed_is_published_by_the_next_flush(stack: Stack) -> None:
    # Database 1: the running goals service relays database 0's outbox, not this one.
    redis = Redis.from_url(stack.settings.redis_url.rsplit("/", 1)[0] + "/1", decode_responses=True)
    sink = FlakySink(failures=1)
    outbox = Outbox(redis, sink)
    goal_id = unique("kr")
    try:
        await redis.delete(keys.OUTBOX)
        goal = {"id": goal_id, "title": "T", "type": "kpi", "owner_id": "o"}
        await GoalStore(redis).upsert(goals=[GoalUpsert.model_validate(goal)])
        assert await outbox.flush() is False  # stored, its events still owed
        assert await redis.llen(keys.OUTBOX) == 1
        # While the relay retries, a write does not wait for NATS as well.
        assert await outbox.after_write() is False
        assert await redis.llen(keys.OUTBOX) == 1
        assert await outbox.flush() is True
        assert sink.published == [f"{goal_id}:1:created", f"{goal_id}:1:status_changed"]
        assert await redis.llen(keys.OUTBOX) == 0
    finally:
        await redis.flushdb()
        await redis.aclose()
