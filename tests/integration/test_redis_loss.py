"""A power cut that costs Redis its last writes loses no alert and fires none twice.

Redis runs with AOF ``everysec``: a power cut can lose up to a second of writes that Redis had
already confirmed. The test reproduces that exactly — ``kill -9`` of redis-server, its AOF cut
back to the size it had before the writes, a restart on the shortened file — while JetStream
still holds every event, acknowledged long before.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack, StackSettings
from tests.integration.conftest import REPO
from tests.integration.helpers import (
    add_doctor,
    alerts_about,
    await_drained,
    post_events,
    rework_event,
    unique,
)

pytestmark = pytest.mark.integration


def _aof(redis_dir: Path) -> Path:
    """The file Redis appends to: ``appendonly.aof`` (Redis 6) or the newest incremental
    file of ``appendonlydir`` (Redis 7)."""
    single = redis_dir / "appendonly.aof"
    if single.exists():
        return single
    return max((redis_dir / "appendonlydir").glob("*.incr.aof"), key=lambda p: p.stat().st_mtime)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    running = Stack(
        settings=StackSettings.on_free_ports(tmp_path, REPO / "rules"),
        env={"GOALWATCH_LOG_LEVEL": "DEBUG"},
    )
    running.start()
    yield running  # type: ignore[misc]
    running.stop()


def test_rule_state_lost_by_redis_is_replayed_from_the_stream(stack: Stack) -> None:
    urls = {name: stack.settings.url(name) for name in ("goals", "ingestion")}
    nats_url = stack.settings.nats_url
    with httpx.Client(timeout=10) as client:
        # Two days breaching before the cut, the third after: fires only if the first two
        # are remembered. Three days before the cut: fired already, must not fire again.
        pending = [add_doctor(client, urls["goals"])[0] for _ in range(4)]
        fired = [add_doctor(client, urls["goals"])[0] for _ in range(2)]
        # State committed once before the cut, as in any running installation.
        post_events(client, urls["ingestion"], [rework_event(unique("warm-up"), 1, 2.0)])
        await_drained(nats_url)

        aof = _aof(stack.settings.state_dir / "redis")
        cut = aof.stat().st_size
        post_events(
            client,
            urls["ingestion"],
            [rework_event(d, day, 12.0) for d in pending for day in (1, 2)]
            + [rework_event(d, day, 12.0) for d in fired for day in (1, 2, 3)],
        )
        await_drained(nats_url)
        assert [on for on, _ in alerts_about(nats_url, fired[0])] == [subjects.ALERTS_FIRED]
        assert aof.stat().st_size > cut  # the evaluator wrote what the cut takes away

        stack.kill("redis")
        with aof.open("r+b") as file:
            file.truncate(cut)
        stack.restart("redis")

        post_events(client, urls["ingestion"], [rework_event(d, 3, 12.0) for d in pending])
        await_drained(nats_url)

    for doctor in pending + fired:
        assert [on for on, _ in alerts_about(nats_url, doctor)] == [subjects.ALERTS_FIRED], doctor
