"""Goal changes and their events on the real servers: a failed publish leaves the change
owed, and the next flush publishes it with the same event ids, also after NATS was down."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from goalwatch.contracts import subjects
from goalwatch.contracts.goals import GoalUpsert
from goalwatch.dev.stack import Stack, StackSettings
from services.goals import keys
from services.goals.events import ChangeRecord, events_of
from services.goals.goal_store import GoalStore
from services.goals.outbox import Outbox
from tests.integration.conftest import REPO
from tests.integration.helpers import goal_events, unique

pytestmark = pytest.mark.integration


class FlakySink:
    """Refuses the first ``failures`` publishes, then records every event id."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.published: list[str] = []

    async def publish(self, records: Sequence[str]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("NATS is down")
        changes = [ChangeRecord.model_validate_json(r) for r in records]
        self.published.extend(e.event_id for r in changes for e in events_of(r))


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


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """An installation of this test's own: it stops NATS."""
    running = Stack(settings=StackSettings.on_free_ports(tmp_path, REPO / "rules"))
    running.start()
    yield running
    running.stop()


def test_a_status_change_made_while_nats_is_down_is_published_once_it_is_back(
    own_stack: Stack,
) -> None:
    url = own_stack.settings.url("goals")
    goal_id = unique("kr")
    body = {"id": goal_id, "title": "Store expansion 20%", "type": "key_result", "owner_id": "o"}
    with own_stack.client(timeout=30) as http:
        http.post(f"{url}/v1/goals", json=body).raise_for_status()
        own_stack.kill("nats")
        # Stored and answered although its events cannot be published yet.
        paused = http.post(f"{url}/v1/goals", json={**body, "status": "invalid"})
        assert paused.status_code == 200, paused.text
        assert http.get(f"{url}/v1/goals/{goal_id}").json()["status"] == "invalid"
    own_stack.restart("nats")
    events = asyncio.run(goal_events(own_stack.settings.nats_url, goal_id, count=4))
    assert [(subject, e["version"]) for subject, e in events] == [
        (subjects.GOAL_CREATED, 1),
        (subjects.GOAL_STATUS_CHANGED, 1),
        (subjects.GOAL_UPDATED, 2),
        (subjects.GOAL_STATUS_CHANGED, 2),
    ]
    assert events[-1][1]["status"] == "invalid"
