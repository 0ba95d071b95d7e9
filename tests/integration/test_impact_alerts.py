"""Dependency-impact alerts through the running services: a goal graph with a diamond and a
cross-team dependency loaded over goals' HTTP API, a key result marked invalid, one webhook
delivery per affected owner (with their manager), nothing more for a redelivered change or a
restarted evaluator, and one resolution each when the key result is back on track."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import DeliverPolicy

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookCall, WebhookReceiver
from tests.integration.helpers import alerts_about, await_drained, unique

pytestmark = pytest.mark.integration

RULE_ID = "goal-failing-impact"


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10.0) as client:
        yield client


def _post(http: httpx.Client, url: str, body: Any) -> None:
    response = http.post(url, json=body)
    assert response.status_code in (200, 201), response.text


def _impact_calls(webhook: WebhookReceiver, owners: set[str]) -> list[dict[str, Any]]:
    return [
        d.json
        for d in webhook.deliveries
        if d.json["rule_id"] == RULE_ID and d.json["subject"]["id"] in owners
    ]


def _states(owners: set[str], state: str) -> Any:
    def predicate(deliveries: list[WebhookCall]) -> bool:
        seen = {
            d.json["subject"]["id"]
            for d in deliveries
            if d.json["rule_id"] == RULE_ID and d.json["state"] == state
        }
        return owners <= seen

    return predicate


async def _status_change(nats_url: str, goal_id: str, status: str) -> dict[str, Any]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(
            subjects.GOAL_STATUS_CHANGED,
            stream=subjects.STREAM_GOALS,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        try:
            while True:
                msg = await sub.next_msg(timeout=10)
                event: dict[str, Any] = json.loads(msg.data)
                if event["goal_id"] == goal_id and event["status"] == status:
                    return event
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()


async def _publish_again(nats_url: str, event: dict[str, Any]) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(
            subjects.GOAL_STATUS_CHANGED,
            json.dumps(event).encode(),
            stream=subjects.STREAM_GOALS,
            headers={"Nats-Msg-Id": unique("republished")},
        )
    finally:
        await nc.close()


def test_an_invalid_key_result_alerts_each_affected_owner_once_and_resolves_once(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    goals_url = stack.settings.url("goals")
    nats_url = stack.settings.nats_url
    p = {role: unique(role) for role in ("kr", "a", "top", "x", "m-a", "m-top", "m-x", "kr2")}
    people = [
        {"id": p["m-a"], "name": "Manager A"},
        {"id": p["m-top"], "name": "Manager Top"},
        {"id": p["m-x"], "name": "Manager X"},
        {"id": p["kr"], "name": "KR Owner", "manager_id": p["m-a"]},
        {"id": p["kr2"], "name": "KR2 Owner", "manager_id": p["m-a"]},
        {"id": p["a"], "name": "Owner A", "manager_id": p["m-a"]},
        {"id": p["top"], "name": "Owner Top", "manager_id": p["m-top"]},
        {"id": p["x"], "name": "Owner X", "manager_id": p["m-x"]},
    ]
    _post(http, f"{goals_url}/v1/people", people)
    g = {name: unique(name) for name in ("kr", "kr2", "o1", "o2", "top", "krx")}

    def goal(key: str, owner: str, kind: str = "key_result", **fields: Any) -> dict[str, Any]:
        return {"id": g[key], "title": f"Goal {key}", "type": kind, "owner_id": p[owner], **fields}

    # The diamond: kr counts towards o1 and o2, both towards top. o1 also rests on kr2, so kr
    # carries half of it. Across teams, krx (team X) depends on kr.
    _post(
        http,
        f"{goals_url}/v1/goals",
        [
            goal("top", "top", "objective"),
            goal("o1", "a", "objective", contributes_to=[{"goal_id": g["top"]}]),
            goal("o2", "a", "objective", contributes_to=[{"goal_id": g["top"]}]),
            goal("kr", "kr", contributes_to=[{"goal_id": g["o1"]}, {"goal_id": g["o2"]}]),
            goal("kr2", "kr2", contributes_to=[{"goal_id": g["o1"]}]),
            goal("krx", "x", depends_on=[g["kr"]]),
        ],
    )
    owners = {p["a"], p["top"], p["x"]}

    # The key result is paused: marked invalid by a check-in.
    _post(http, f"{goals_url}/v1/goals/{g['kr']}/check-ins", {"status": "invalid", "by": p["kr"]})
    webhook.wait_for(_states(owners, "firing"))
    await_drained(nats_url)

    fired = _impact_calls(webhook, owners)
    assert sorted(d["subject"]["id"] for d in fired) == sorted(owners)  # one POST per owner
    by_owner = {d["subject"]["id"]: d for d in fired}
    managers = {p["a"]: p["m-a"], p["top"]: p["m-top"], p["x"]: p["m-x"]}
    for owner, delivery in by_owner.items():
        assert delivery["state"] == "firing" and delivery["kind"] == "dependency_impact"
        recipients = {(r["id"], r["role"]) for r in delivery["recipients"]}
        assert recipients == {(owner, "subject"), (managers[owner], "manager")}
        impact = delivery["impact"]
        assert impact["failing_goal"]["goal_id"] == g["kr"]
        assert impact["failing_goal"]["status"] == "invalid"
        assert (impact["affected_total"], impact["owners_total"]) == (4, 3)

    a_goals = {x["goal_id"]: x for x in by_owner[p["a"]]["impact"]["affected"]}
    assert set(a_goals) == {g["o1"], g["o2"]}
    assert a_goals[g["o1"]]["weight"] == 0.5 and a_goals[g["o2"]]["weight"] == 1.0
    assert [(s["from_goal"], s["to_goal"]) for s in a_goals[g["o1"]]["path"]] == [
        (g["kr"], g["o1"])
    ]
    assert "Your goals resting on it (2)" in by_owner[p["a"]]["message"]
    # Owners are named by the impact answer itself (no lookup per owner).
    assert {x["owner_name"] for x in a_goals.values()} == {"Owner A"}
    assert alerts_about(nats_url, p["a"])[0][1]["subject_name"] == "Owner A"

    (top,) = by_owner[p["top"]]["impact"]["affected"]
    assert top["goal_id"] == g["top"] and top["depth"] == 2
    steps = top["path"]
    assert steps[0]["from_goal"] == g["kr"] and steps[-1]["to_goal"] == g["top"]
    assert steps[0]["to_goal"] == steps[1]["from_goal"] in (g["o1"], g["o2"])
    assert top["weight"] == pytest.approx(steps[0]["share"] * steps[1]["share"])

    (krx,) = by_owner[p["x"]]["impact"]["affected"]
    assert krx["goal_id"] == g["krx"] and krx["weight"] == 1.0
    assert krx["path"] == [
        {"from_goal": g["kr"], "to_goal": g["krx"], "link": "depends_on", "share": 1.0}
    ]

    # The same change published again under a new Nats-Msg-Id, and the evaluator restarted:
    # nothing new is sent.
    change = asyncio.run(_status_change(nats_url, g["kr"], "invalid"))
    asyncio.run(_publish_again(nats_url, change))
    await_drained(nats_url)
    stack.restart("evaluator")
    asyncio.run(_publish_again(nats_url, change))
    await_drained(nats_url)
    assert len(_impact_calls(webhook, owners)) == 3

    # invalid -> off_track is the same episode; back on track resolves it, once per owner.
    _post(http, f"{goals_url}/v1/goals/{g['kr']}/check-ins", {"status": "off_track", "by": p["kr"]})
    _post(http, f"{goals_url}/v1/goals/{g['kr']}/check-ins", {"status": "on_track", "by": p["kr"]})
    webhook.wait_for(_states(owners, "resolved"))
    await_drained(nats_url)
    calls = _impact_calls(webhook, owners)
    assert sorted((d["subject"]["id"], d["state"]) for d in calls) == sorted(
        [(o, "firing") for o in owners] + [(o, "resolved") for o in owners]
    )
    resolved = [d for d in calls if d["state"] == "resolved"]
    assert all(d["impact"]["failing_goal"]["status"] == "on_track" for d in resolved)
    assert {d["fingerprint"] for d in resolved} == {d["fingerprint"] for d in fired}
