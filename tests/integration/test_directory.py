"""The evaluator's view of the people directory on the real servers: its Redis scripts,
rules scoped by org unit from goals' writes to the alerts, names without asking goals, and
the view replayed from GOALWATCH_PEOPLE after Redis lost its last writes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.asyncio import Redis

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack, StackSettings
from goalwatch.rules.scope import MAX_DEPTH
from services.evaluator.directory_store import DirectoryStore, PersonView, Record, key_of
from tests.integration.conftest import REPO, WEBHOOK_SECRET, WebhookReceiver
from tests.integration.helpers import alerts_about, await_drained, post_events, unique

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
# rules/radiology-turnaround-slow.yaml: above 48 hours on 2 days running, org_unit: radiology.
RULE = "radiology-turnaround-slow"


# ---------------------------------------------------------------- the Redis scripts


async def test_records_apply_over_older_versions_only_and_people_read_with_their_units(
    stack: Stack,
) -> None:
    client = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    store = DirectoryStore(client)
    company, dept, team, person = (unique(p) for p in ("company", "dept", "team", "person"))
    try:
        applied = await store.apply(
            [
                Record("org_unit", company, 1, {}),
                Record("org_unit", dept, 2, {"parent": company}),
                Record("org_unit", team, 1, {"parent": dept}),
                Record(
                    "person",
                    person,
                    3,
                    {"name": "Dr Li", "org_unit": team, "time_zone": "Asia/Shanghai"},
                ),
            ]
        )
        assert applied == 4
        # Older and equal versions change nothing (a late or redelivered change).
        stale = [Record("person", person, 2, {"name": "Old"}), Record("org_unit", dept, 2, {})]
        assert await store.apply(stale) == 0
        found = await store.people([person, "nobody-" + person])
        assert found == {
            person: PersonView(
                id=person,
                name="Dr Li",
                org_units=(team, dept, company),
                time_zone="Asia/Shanghai",
                manager_id=None,
            ),
            "nobody-" + person: None,
        }

        # A newer version replaces the record whole: the time zone it no longer has goes.
        assert await store.apply([Record("person", person, 4, {"name": "Dr Li Na"})]) == 1
        assert await store.people([person]) == {
            person: PersonView(person, "Dr Li Na", (), time_zone=None, manager_id=None)
        }

        # A unit moved under another parent moves everyone in it; a loop ends the walk.
        await store.apply(
            [
                Record("person", person, 5, {"name": "Dr Li Na", "org_unit": team}),
                Record("org_unit", team, 2, {"parent": company}),
                Record("org_unit", company, 2, {"parent": team}),
            ]
        )
        [view] = (await store.people([person])).values()
        assert view is not None and view.org_units == (team, company)
        # A unit without a record of its own is listed, and ends the chain.
        await store.apply([Record("person", person, 6, {"name": "x", "org_unit": "ghost"})])
        [view] = (await store.people([person])).values()
        assert view is not None and view.org_units == ("ghost",)
    finally:
        await client.aclose()


async def test_a_deep_chart_is_cut_at_the_depth_limit(stack: Stack) -> None:
    client = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    store = DirectoryStore(client)
    units = [unique("u") for _ in range(MAX_DEPTH + 5)]
    person = unique("person")
    try:
        await store.apply(
            [Record("org_unit", unit, 1, {"parent": parent}) for unit, parent in pairwise(units)]
            + [Record("person", person, 1, {"name": "p", "org_unit": units[0]})]
        )
        [view] = (await store.people([person])).values()
        assert view is not None and view.org_units == tuple(units[:MAX_DEPTH])
    finally:
        await client.aclose()


# ---------------------------------------------------------------- end to end


def turnaround(subject: str, day: int, hours: float) -> dict[str, Any]:
    return {
        "id": f"{subject}-t{day}",
        "metric": "report_turnaround_hours",
        "value": hours,
        "time": (DAY0 + timedelta(days=day - 1)).isoformat(),
        "subject": subject,
        "source": "his",
    }


def names_from(evaluator_url: str, client: httpx.Client) -> dict[str, float]:
    """``goalwatch_evaluator_subject_names_total`` by source, from the evaluator's /metrics."""
    prefix = "goalwatch_evaluator_subject_names_total{"
    counts = {"directory": 0.0, "goals": 0.0}
    for line in client.get(f"{evaluator_url}/metrics").text.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix) :].split("} ")
            counts[labels.split('"')[1]] = float(value)
    return counts


def add_chart(client: httpx.Client, goals_url: str) -> dict[str, str]:
    """A hospital with radiology (the shipped rule's unit) and its CT team, and cardiology
    beside it; the ids of the hospital, the CT team and cardiology."""
    ids = {"hospital": unique("hospital"), "ct": unique("ct"), "cardiology": unique("cardio")}
    units = [
        {"id": ids["hospital"], "name": "Riverside", "kind": "company"},
        {"id": "radiology", "name": "Radiology", "kind": "department",
         "parent_id": ids["hospital"]},
        {"id": ids["ct"], "name": "CT", "kind": "team", "parent_id": "radiology"},
        {"id": ids["cardiology"], "name": "Cardiology", "kind": "department",
         "parent_id": ids["hospital"]},
    ]  # fmt: skip
    response = client.post(f"{goals_url}/v1/org-units", json=units)
    assert response.status_code == 200, response.text
    return ids


def add_person(client: httpx.Client, goals_url: str, person_id: str, unit: str) -> None:
    person = {"id": person_id, "name": f"Dr {person_id}", "org_unit_id": unit}
    response = client.post(f"{goals_url}/v1/people", json=[person])
    assert response.status_code == 200, response.text


def fired(nats_url: str, subject: str) -> list[dict[str, Any]]:
    return [
        alert
        for on, alert in alerts_about(nats_url, subject)
        if on == subjects.ALERTS_FIRED and alert["rule_id"] == RULE
    ]


def test_a_rule_scoped_to_a_department_alerts_only_inside_it_and_follows_a_move(
    stack: Stack,
) -> None:
    goals_url, ingestion_url = stack.settings.url("goals"), stack.settings.url("ingestion")
    evaluator_url, nats_url = stack.settings.url("evaluator"), stack.settings.nats_url
    with stack.client(timeout=10) as client:
        ids = add_chart(client, goals_url)
        inside, beside, unknown = unique("ct-doctor"), unique("cardio-doctor"), unique("guest")
        add_person(client, goals_url, inside, ids["ct"])
        add_person(client, goals_url, beside, ids["cardiology"])
        await_drained(nats_url)  # the evaluator's directory has them
        before = names_from(evaluator_url, client)

        post_events(
            client,
            ingestion_url,
            [turnaround(s, day, 60) for s in (inside, beside, unknown) for day in (1, 2)],
        )
        await_drained(nats_url)
        [alert] = fired(nats_url, inside)
        assert alert["subject_name"] == f"Dr {inside}"
        assert fired(nats_url, beside) == [] and fired(nats_url, unknown) == []
        # The name came from the evaluator's directory view: goals was not asked.
        after = names_from(evaluator_url, client)
        assert after["goals"] == before["goals"]
        assert after["directory"] >= before["directory"] + 1

        # The two swap departments: the scope follows them.
        add_person(client, goals_url, inside, ids["cardiology"])
        add_person(client, goals_url, beside, ids["ct"])
        await_drained(nats_url)
        post_events(
            client,
            ingestion_url,
            [turnaround(s, day, 70) for s in (inside, beside) for day in (3, 4)],
        )
        await_drained(nats_url)
        [alert] = fired(nats_url, beside)
        assert alert["subject_name"] == f"Dr {beside}"
        assert len(fired(nats_url, inside)) == 1  # nothing new once outside


# ---------------------------------------------------------------- after a Redis loss


@pytest.fixture
def own_stack(tmp_path: Path, webhook: WebhookReceiver) -> Iterator[Stack]:
    running = Stack(
        settings=StackSettings.on_free_ports(tmp_path, REPO / "rules"),
        env={
            "GOALWATCH_LOG_LEVEL": "DEBUG",
            "GOALWATCH_WEBHOOK_URL": webhook.url,
            "GOALWATCH_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _aof(redis_dir: Path) -> Path:
    single = redis_dir / "appendonly.aof"
    if single.exists():
        return single
    return max((redis_dir / "appendonlydir").glob("*.incr.aof"), key=lambda p: p.stat().st_mtime)


def test_the_directory_lost_by_redis_is_replayed_from_the_stream(own_stack: Stack) -> None:
    stack = own_stack
    goals_url, ingestion_url = stack.settings.url("goals"), stack.settings.url("ingestion")
    evaluator_url, nats_url = stack.settings.url("evaluator"), stack.settings.nats_url
    with stack.client(timeout=10) as client:
        # State committed once before the cut, as in any running installation.
        add_person(client, goals_url, unique("warm-up"), "nowhere")
        post_events(client, ingestion_url, [turnaround(unique("warm-up"), 1, 1)])
        await_drained(nats_url)

        aof = _aof(stack.settings.state_dir / "redis")
        cut = aof.stat().st_size
        ids = add_chart(client, goals_url)
        inside = unique("ct-doctor")
        add_person(client, goals_url, inside, ids["ct"])
        await_drained(nats_url)
        with redis.Redis.from_url(stack.settings.redis_url) as store:
            assert store.exists(key_of("person", inside))
        assert aof.stat().st_size > cut  # goals and the evaluator wrote what the cut takes

        stack.kill("redis")
        with aof.open("r+b") as file:
            file.truncate(cut)
        stack.restart("redis")
        with redis.Redis.from_url(stack.settings.redis_url) as store:
            assert not store.exists(key_of("person", inside), key_of("org_unit", ids["ct"]))
        before = names_from(evaluator_url, client)

        # The first batch after the restart replays the directory, then is evaluated.
        post_events(client, ingestion_url, [turnaround(inside, day, 60) for day in (1, 2)])
        await_drained(nats_url)
        [alert] = fired(nats_url, inside)
        assert alert["subject_name"] == f"Dr {inside}"
        assert names_from(evaluator_url, client)["goals"] == before["goals"]
        with redis.Redis.from_url(stack.settings.redis_url) as store:
            assert store.exists(key_of("person", inside), key_of("org_unit", ids["ct"])) == 2
            assert store.hget(key_of("org_unit", "radiology"), "parent") == ids["hospital"].encode()


def test_a_redis_that_lost_everything_gets_the_whole_directory_back(own_stack: Stack) -> None:
    stack = own_stack
    goals_url, nats_url = stack.settings.url("goals"), stack.settings.nats_url
    with stack.client(timeout=10) as client:
        ids = add_chart(client, goals_url)
        inside = unique("ct-doctor")
        add_person(client, goals_url, inside, ids["ct"])
        await_drained(nats_url)

        stack.kill("redis")
        shutil.rmtree(stack.settings.state_dir / "redis")
        (stack.settings.state_dir / "redis").mkdir()
        stack.restart("redis")

        # No checkpoint at all: the idle check replays GOALWATCH_PEOPLE from its start.
        add_person(client, goals_url, unique("after"), "nowhere")  # a batch to wake it
        await_drained(nats_url)
        with redis.Redis.from_url(stack.settings.redis_url) as store:
            assert store.hget(key_of("person", inside), "org_unit") == ids["ct"].encode()
            assert store.hget(key_of("org_unit", ids["ct"]), "parent") == b"radiology"
