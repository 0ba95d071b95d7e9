"""A power cut that costs Redis its last writes loses no alert, fires none twice, and leaves
every alert in the notifier's inbox once, delivered once.

Redis runs with AOF ``everysec``: a power cut can lose up to a second of writes that Redis had
already confirmed. The test reproduces that exactly — ``kill -9`` of redis-server, its AOF cut
back to the size it had before the writes, a restart on the shortened file — while JetStream
still holds every event, acknowledged long before.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import redis

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack, StackSettings
from services.goals import keys
from services.notifier.inbox import recipient_index
from tests.integration.conftest import REPO, WEBHOOK_SECRET, WebhookReceiver
from tests.integration.helpers import (
    add_doctor,
    alerts_about,
    await_drained,
    goal_events,
    inbox,
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


def _cut(stack: Stack, size: int) -> None:
    """Power cut: redis-server killed, its AOF back to ``size`` bytes, started again on it."""
    aof = _aof(stack.settings.state_dir / "redis")
    stack.kill("redis")
    with aof.open("r+b") as file:
        file.truncate(size)
    stack.restart("redis")


def _replayed(metrics: str, outcome: str) -> float:
    """``goalwatch_notifier_inbox_replayed_total{outcome=...}`` from a /metrics page."""
    prefix = f'goalwatch_notifier_inbox_replayed_total{{outcome="{outcome}"}} '
    return sum(
        float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix)
    )


@pytest.fixture
def stack(tmp_path: Path, webhook: WebhookReceiver) -> Stack:
    running = Stack(
        settings=StackSettings.on_free_ports(tmp_path, REPO / "rules"),
        env={
            "GOALWATCH_LOG_LEVEL": "DEBUG",
            "GOALWATCH_WEBHOOK_URL": webhook.url,
            "GOALWATCH_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
    )
    running.start()
    yield running  # type: ignore[misc]
    running.stop()


def test_rule_state_lost_by_redis_is_replayed_from_the_stream(stack: Stack) -> None:
    urls = {name: stack.settings.url(name) for name in ("goals", "ingestion")}
    nats_url = stack.settings.nats_url
    with stack.client(timeout=10) as client:
        # Two days breaching before the cut, the third after: fires only if the first two
        # are remembered. Three days before the cut: fired already, must not fire again.
        pending = [add_doctor(client, urls["goals"])[0] for _ in range(4)]
        fired = [add_doctor(client, urls["goals"])[0] for _ in range(2)]
        # State committed once before the cut, as in any running installation.
        post_events(client, urls["ingestion"], [rework_event(unique("warm-up"), 1, 0.2)])
        await_drained(nats_url)

        aof = _aof(stack.settings.state_dir / "redis")
        cut = aof.stat().st_size
        post_events(
            client,
            urls["ingestion"],
            [rework_event(d, day, 0.12) for d in pending for day in (1, 2)]
            + [rework_event(d, day, 0.12) for d in fired for day in (1, 2, 3)],
        )
        await_drained(nats_url)
        assert [on for on, _ in alerts_about(nats_url, fired[0])] == [subjects.ALERTS_FIRED]
        assert aof.stat().st_size > cut  # the evaluator wrote what the cut takes away

        _cut(stack, cut)

        post_events(client, urls["ingestion"], [rework_event(d, 3, 0.12) for d in pending])
        await_drained(nats_url)

    for doctor in pending + fired:
        assert [on for on, _ in alerts_about(nats_url, doctor)] == [subjects.ALERTS_FIRED], doctor


def test_inbox_lost_by_redis_is_replayed_and_nothing_is_delivered_twice(
    stack: Stack, webhook: WebhookReceiver
) -> None:
    urls = {name: stack.settings.url(name) for name in ("goals", "ingestion", "notifier")}
    nats_url = stack.settings.nats_url

    def fire(doctors: list[str]) -> list[dict[str, object]]:
        return [rework_event(d, day, 0.12) for d in doctors for day in (1, 2, 3)]

    def resolve(doctors: list[str]) -> list[dict[str, object]]:
        return [rework_event(d, 4, 0.01) for d in doctors]

    with stack.client(timeout=10) as client:
        # Everyone exists before the cut: goals keeps its people in the same Redis.
        before, cut_firing, cut_resolved, after = (
            [add_doctor(client, urls["goals"])[0] for _ in range(count)] for count in (2, 3, 3, 2)
        )
        # Alerts fired and resolved before the cut: the cut must leave them as they are.
        post_events(client, urls["ingestion"], fire(before))
        await_drained(nats_url)
        post_events(client, urls["ingestion"], resolve(before[:1]))
        await_drained(nats_url)

        aof = _aof(stack.settings.state_dir / "redis")
        cut = aof.stat().st_size
        # The alerts of the last second before the cut: in the inbox and delivered, then gone
        # from Redis (each resolution after its firing was handled, so both are announced).
        post_events(client, urls["ingestion"], fire(cut_firing + cut_resolved))
        await_drained(nats_url)
        post_events(client, urls["ingestion"], resolve(cut_resolved))
        await_drained(nats_url)
        assert len(inbox(client, urls["notifier"], recipient=cut_resolved[0])) == 1
        assert aof.stat().st_size > cut

        _cut(stack, cut)
        with redis.Redis.from_url(stack.settings.redis_url) as store:
            # The cut took their inbox entries (what a replay must bring back).
            assert not store.exists(*(recipient_index(d) for d in cut_firing + cut_resolved))

        # Alerts keep arriving after the restart; the first one makes the notifier catch up.
        post_events(client, urls["ingestion"], fire(after))
        await_drained(nats_url)
        metrics = client.get(f"{urls['notifier']}/metrics").text

        expected = {d: ["firing"] for d in before[1:] + cut_firing + after}
        expected |= {d: ["firing", "resolved"] for d in before[:1] + cut_resolved}
        for doctor, states in expected.items():
            [entry] = inbox(client, urls["notifier"], recipient=doctor)
            assert entry["state"] == states[-1], doctor
            assert entry["fired_at"] is not None and len(entry["history"]) == 3, doctor
            # Recipients resolved again by the replay: the doctor and their head, by name.
            subject, manager = entry["recipients"]
            assert (subject["id"], subject["name"], manager["role"]) == (
                doctor,
                f"Dr {doctor}",
                "manager",
            ), doctor
            # Delivered once per transition: the replay went to the inbox, not the webhook.
            assert [call.json["state"] for call in webhook.about(doctor)] == states, doctor

    # The nine transitions the cut took were restored. The replay reaches the last alert
    # delivered, so the alerts of the fetch that noticed the restart may be merged by it too
    # (then their own handling finds them in the inbox and still delivers them, once).
    lost = len(cut_firing) + 2 * len(cut_resolved)
    assert lost <= _replayed(metrics, "restored") <= lost + len(after)


def test_goal_changes_lost_by_redis_are_replayed_from_the_stream(stack: Stack) -> None:
    """A check-in and an edit published just before the cut are back in the goal store after
    it, and the next change gets a new version: it reaches the stream and the evaluator
    instead of being dropped as a duplicate of the change the cut took away."""
    url, nats_url = stack.settings.url("goals"), stack.settings.nats_url
    with stack.client(timeout=10) as client:
        owner, _ = add_doctor(client, url)
        kr, objective, dependent = unique("kr"), unique("objective"), unique("dependent")
        goals = [
            {"id": objective, "title": "Grow", "type": "objective", "owner_id": owner},
            {"id": kr, "title": "Open 20 stores", "type": "key_result", "owner_id": owner,
             "start_value": 0, "target_value": 20, "current_value": 5,
             "contributes_to": [{"goal_id": objective, "weight": 1}]},
            {"id": dependent, "title": "Staff the stores", "type": "key_result",
             "owner_id": owner, "depends_on": [kr]},
        ]  # fmt: skip
        assert client.post(f"{url}/v1/goals", json=goals).status_code == 200
        await_drained(nats_url)

        aof = _aof(stack.settings.state_dir / "redis")
        cut = aof.stat().st_size
        # Published, then lost by Redis: the owner moves to another manager ...
        moved = {"id": owner, "name": f"Dr {owner}", "manager_id": "new-head"}
        assert client.post(f"{url}/v1/people", json=moved).json()["replaced"] == 1
        # ... the key result goes off track at 10 of 20 ...
        check_in = {
            "id": unique("ci"),
            "value": 10,
            "status": "off_track",
            "note": "paused",
            "by": owner,
        }
        response = client.post(f"{url}/v1/goals/{kr}/check-ins", json=check_in)
        assert response.status_code == 201, response.text
        # ... and is renamed, with a second goal it contributes to.
        other = unique("objective")
        # (Without current_value, which the upsert would set back: the check-in moved it.)
        edited = {k: v for k, v in goals[1].items() if k != "current_value"}
        edited |= {"title": "Open 10 stores",
                   "contributes_to": [{"goal_id": objective, "weight": 1}, {"goal_id": other}]}  # fmt: skip
        assert client.post(f"{url}/v1/goals", json=edited).status_code == 200
        await_drained(nats_url)
        assert [o for o, _ in alerts_about(nats_url, owner)] == [subjects.ALERTS_FIRED]
        assert aof.stat().st_size > cut

        _cut(stack, cut)
        with redis.Redis.from_url(stack.settings.redis_url) as store:
            # The cut took versions 2 and 3 of the key result, and the owner's move.
            assert b'"version":1,' in store.get(keys.goal(kr))
            assert b"new-head" not in store.get(keys.person(owner))

        assert client.get(f"{url}/v1/people/{owner}").json()["manager_id"] == "new-head"
        restored = client.get(f"{url}/v1/goals/{kr}").json()
        assert (restored["version"], restored["status"], restored["title"]) == (
            3,
            "off_track",
            "Open 10 stores",
        )
        assert restored["current_value"] == 10
        history = client.get(f"{url}/v1/goals/{kr}/check-ins").json()["check_ins"]
        assert [(c["id"], c["note"]) for c in history] == [(check_in["id"], "paused")]
        # Links in both directions, and the roll-up: the objective is half done.
        tree = client.get(f"{url}/v1/goals/{objective}/tree").json()
        assert [n["goal"]["id"] for n in tree["descendants"]] == [kr]
        assert client.get(f"{url}/v1/goals/{objective}").json()["progress"] == 50.0
        impact = client.get(f"{url}/v1/goals/{kr}/impact").json()["affected"]
        assert {a["goal_id"] for a in impact} == {objective, other, dependent}

        # The next change is version 4, published, and resolves the impact alert.
        response = client.post(
            f"{url}/v1/goals/{kr}/check-ins", json={"value": 12, "status": "on_track", "by": owner}
        )
        assert response.status_code == 201, response.text
        await_drained(nats_url)
    events = asyncio.run(goal_events(nats_url, kr, count=1))
    assert max(event["version"] for _, event in events) == 4
    assert [o for o, _ in alerts_about(nats_url, owner)] == [
        subjects.ALERTS_FIRED,
        subjects.ALERTS_RESOLVED,
    ]


def test_goals_of_a_redis_that_lost_everything_are_rebuilt_from_the_stream(stack: Stack) -> None:
    url = stack.settings.url("goals")
    with stack.client(timeout=10) as client:
        owner, head = add_doctor(client, url)
        unit = {"id": unique("company"), "name": "Riverside", "kind": "company"}
        assert client.post(f"{url}/v1/org-units", json=unit).status_code == 200
        parent, child = unique("objective"), unique("kr")
        goals = [
            {"id": parent, "title": "Grow", "type": "objective", "owner_id": "someone"},
            {"id": child, "title": "Open stores", "type": "key_result", "owner_id": "someone",
             "start_value": 0, "target_value": 4, "current_value": 1,
             "contributes_to": [{"goal_id": parent, "weight": 2}]},
        ]  # fmt: skip
        assert client.post(f"{url}/v1/goals", json=goals).status_code == 200
        response = client.post(
            f"{url}/v1/goals/{child}/check-ins", json={"value": 3, "by": "someone"}
        )
        assert response.status_code == 201, response.text

        stack.kill("redis")
        shutil.rmtree(stack.settings.state_dir / "redis")
        (stack.settings.state_dir / "redis").mkdir()
        stack.restart("redis")

        rebuilt = client.get(f"{url}/v1/goals/{child}").json()
        assert (rebuilt["version"], rebuilt["current_value"]) == (2, 3.0)
        assert client.get(f"{url}/v1/goals/{parent}").json()["progress"] == 75.0
        history = client.get(f"{url}/v1/goals/{child}/check-ins").json()["check_ins"]
        assert [c["value"] for c in history] == [3.0]
        # People and org units too, with their versions: an identical write changes nothing.
        assert client.get(f"{url}/v1/people/{owner}").json()["managers"] == [head]
        assert client.get(f"{url}/v1/org-units/{unit['id']}").json()["name"] == "Riverside"
        again = client.post(f"{url}/v1/org-units", json=unit).json()
        assert again == {"created": 0, "replaced": 1, "unchanged": 1}
