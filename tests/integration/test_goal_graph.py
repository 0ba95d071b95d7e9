"""The goal graph on the real servers: cycles refused (also when two writes race), roll-up,
check-in history, impact through diamonds and cross links, one event per change."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from goalwatch.checkpoints import server_run_id
from goalwatch.contracts import PersonUpsert, subjects
from goalwatch.contracts.goals import GoalUpsert
from goalwatch.dev.stack import Stack
from goalwatch.goal_graph import goal_impact
from services.goals.goal_store import GoalStore, GraphError
from tests.integration.helpers import goal_events, unique

pytestmark = pytest.mark.integration


def goal(goal_id: str, **fields: Any) -> dict[str, Any]:
    """A goal body with defaults for what a test does not care about."""
    return {"id": goal_id, "title": f"Goal {goal_id}", "type": "key_result",
            "owner_id": f"owner-{goal_id}", **fields}  # fmt: skip


def post_goals(http: httpx.Client, url: str, body: Any) -> httpx.Response:
    return http.post(f"{url}/v1/goals", json=body)


def test_a_link_closing_a_cycle_is_refused_with_the_cycle_spelled_out(stack: Stack) -> None:
    url = stack.settings.url("goals")
    a, b, c = unique("a"), unique("b"), unique("c")
    with stack.client(timeout=10) as http:
        chain = [
            goal(a, contributes_to=[{"goal_id": b}]),
            goal(b, contributes_to=[{"goal_id": c}]),
            goal(c, type="objective"),
        ]
        assert post_goals(http, url, chain).json() == {"created": 3, "replaced": 0, "unchanged": 0}
        refused = post_goals(http, url, [goal(c, contributes_to=[{"goal_id": a}])])
        assert refused.status_code == 422
        assert f"{c} → {a} → {b} → {c}" in refused.json()["detail"]
        assert refused.json()["errors"][0]["loc"] == "body.goals.0.contributes_to"
        # Nothing of a refused batch is written: c still has no parent.
        assert http.get(f"{url}/v1/goals/{c}").json()["contributes_to"] == []

        dependency = post_goals(http, url, goal(a, depends_on=[a]))
        assert dependency.status_code == 422
        assert "depends_on" in dependency.text


async def test_two_concurrent_writes_cannot_close_a_cycle(stack: Stack) -> None:
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    store = GoalStore(redis)
    try:
        for _ in range(20):
            a, b = unique("a"), unique("b")
            both = [
                store.upsert(goals=[GoalUpsert.model_validate(goal(a, contributes_to=[{"goal_id": b}]))]),
                store.upsert(goals=[GoalUpsert.model_validate(goal(b, contributes_to=[{"goal_id": a}]))]),
            ]  # fmt: skip
            outcomes = await asyncio.gather(*both, return_exceptions=True)
            refused = [o for o in outcomes if isinstance(o, GraphError)]
            assert len(refused) == 1, outcomes
            assert "would close a cycle" in str(refused[0])
    finally:
        await redis.aclose()


async def test_two_concurrent_posts_cannot_close_a_cycle(stack: Stack) -> None:
    url = stack.settings.url("goals")
    async with stack.async_client(timeout=10) as http:
        for _ in range(10):
            a, b, c = unique("a"), unique("b"), unique("c")
            base = await http.post(
                f"{url}/v1/goals", json=[goal(c, contributes_to=[{"goal_id": a}])]
            )
            assert base.status_code == 200
            # a → b and b → c race; with c → a stored, together they would close a → b → c → a.
            answers = await asyncio.gather(
                http.post(f"{url}/v1/goals", json=goal(a, contributes_to=[{"goal_id": b}])),
                http.post(f"{url}/v1/goals", json=goal(b, contributes_to=[{"goal_id": c}])),
            )  # fmt: skip
            assert sorted(r.status_code for r in answers) == [200, 422], [r.text for r in answers]


def test_progress_rolls_up_by_weight_and_check_ins_are_kept(stack: Stack) -> None:
    url = stack.settings.url("goals")
    objective, kr1, kr2, task = unique("obj"), unique("kr1"), unique("kr2"), unique("task")
    with stack.client(timeout=10) as http:
        body = [
            goal(objective, type="objective"),
            goal(kr1, contributes_to=[{"goal_id": objective, "weight": 3}],
                 start_value=0, target_value=100, current_value=50),
            goal(kr2, contributes_to=[{"goal_id": objective, "weight": 1}]),
            goal(task, contributes_to=[{"goal_id": kr2}], start_value=10, target_value=20,
                 current_value=30),
        ]  # fmt: skip
        assert post_goals(http, url, body).status_code == 200
        # kr1 50 % (weight 3), kr2 from its one task, clamped to 100 % (weight 1).
        assert http.get(f"{url}/v1/goals/{objective}").json()["progress"] == 62.5

        first = http.post(
            f"{url}/v1/goals/{kr1}/check-ins",
            json={"value": 90, "note": "big week", "by": "li-na", "id": "w1"},
        )
        assert first.status_code == 201 and first.json()["progress"] == 90
        again = http.post(
            f"{url}/v1/goals/{kr1}/check-ins", json={"value": 90, "by": "li-na", "id": "w1"}
        )
        assert again.json()["note"] == "big week"  # the resend is the first check-in
        http.post(
            f"{url}/v1/goals/{kr1}/check-ins",
            json={"status": "at_risk", "confidence": 0.4, "by": "li-na"},
        ).raise_for_status()
        assert http.get(f"{url}/v1/goals/{objective}").json()["progress"] == 92.5

        history = http.get(f"{url}/v1/goals/{kr1}/check-ins").json()["check_ins"]
        assert [(c["value"], c["status"], c["confidence"]) for c in history] == [
            (None, "at_risk", 0.4),
            (90, None, None),
        ]
        stored = http.get(f"{url}/v1/goals/{kr1}").json()
        assert (stored["current_value"], stored["status"], stored["version"]) == (90, "at_risk", 3)
        # The goal tool re-sends the definition: the owner's check-in is not undone.
        renamed = {**body[1], "title": "Renamed"}
        del renamed["current_value"]
        post_goals(http, url, renamed).raise_for_status()
        stored = http.get(f"{url}/v1/goals/{kr1}").json()
        assert (stored["title"], stored["current_value"], stored["status"]) == (
            "Renamed",
            90,
            "at_risk",
        )

        tree = http.get(f"{url}/v1/goals/{task}/tree").json()
        assert [(n["goal"]["id"], n["depth"]) for n in tree["ancestors"]] == [
            (kr2, 1),
            (objective, 2),
        ]
        below = http.get(f"{url}/v1/goals/{objective}/tree").json()["descendants"]
        assert {n["goal"]["id"] for n in below} == {kr1, kr2, task}
        near = http.get(f"{url}/v1/goals/{objective}/tree", params={"depth": 1}).json()
        assert {n["goal"]["id"] for n in near["descendants"]} == {kr1, kr2}

        missing = http.post(
            f"{url}/v1/goals/{unique('none')}/check-ins", json={"value": 1, "by": "x"}
        )
        assert missing.status_code == 404


def test_impact_follows_diamonds_and_dependencies_to_every_owner(stack: Stack) -> None:
    url = stack.settings.url("goals")
    ids = {name: unique(name) for name in ("company", "dept1", "dept2", "kr", "other", "ops")}
    boss, owner = unique("boss"), unique("owner")
    with stack.client(timeout=10) as http:
        http.post(f"{url}/v1/people", json=[
            {"id": boss, "name": "Boss"},
            {"id": owner, "name": "Owner", "manager_id": boss},
        ]).raise_for_status()  # fmt: skip
        i = ids
        body = [
            goal(i["company"], type="objective"),
            # A diamond: kr counts towards both departments, which both count towards company.
            goal(i["dept1"], type="objective", contributes_to=[{"goal_id": i["company"]}]),
            goal(i["dept2"], type="objective", contributes_to=[{"goal_id": i["company"]}]),
            goal(i["kr"], owner_id=owner, contributes_to=[
                {"goal_id": i["dept1"], "weight": 1}, {"goal_id": i["dept2"], "weight": 1}]),
            goal(i["other"], contributes_to=[{"goal_id": i["dept1"], "weight": 3}]),
            # A cross-team dependency: ops depends on kr.
            goal(i["ops"], owner_id=owner, depends_on=[i["kr"]]),
        ]  # fmt: skip
        assert post_goals(http, url, body).status_code == 200
        impact = http.get(f"{url}/v1/goals/{i['kr']}/impact").json()
        affected = {a["goal_id"]: a for a in impact["affected"]}
        assert set(affected) == {i["dept1"], i["dept2"], i["company"], i["ops"]}
        assert affected[i["dept1"]]["weight"] == 0.25  # 1 of 1 + 3
        assert affected[i["dept2"]]["weight"] == 1.0
        company = affected[i["company"]]
        assert company["depth"] == 2 and len(company["path"]) == 2
        assert company["path"][0]["from_goal"] == i["kr"]
        assert company["path"][-1]["to_goal"] == i["company"]
        ops = affected[i["ops"]]
        assert (ops["depth"], ops["path"][0]["link"]) == (1, "depends_on")
        assert (ops["owner_id"], ops["owner_manager_id"]) == (owner, boss)


def test_the_walk_in_memory_gives_the_goals_service_answer(stack: Stack) -> None:
    """goalwatch.goal_graph.goal_impact (what rule tests use) against GET /v1/goals/{id}/impact
    on the same graph: a diamond, uneven weights, a goal linked to but not stored, and cross
    links, two dependents of one goal among them."""
    url = stack.settings.url("goals")
    i = {name: unique(name) for name in
         ("company", "dept1", "dept2", "kr", "other", "ops", "team", "support", "plan")}  # fmt: skip
    boss, owner = unique("boss"), unique("owner")
    people = [{"id": boss, "name": "Boss"}, {"id": owner, "name": "Owner", "manager_id": boss}]
    body = [
        goal(i["company"], type="objective"),
        goal(i["dept1"], type="objective", contributes_to=[{"goal_id": i["company"], "weight": 2}]),
        goal(i["dept2"], type="objective", contributes_to=[{"goal_id": i["company"], "weight": 0.5}]),
        goal(i["kr"], owner_id=owner, contributes_to=[
            {"goal_id": i["dept2"], "weight": 1}, {"goal_id": i["dept1"], "weight": 1}]),
        goal(i["other"], contributes_to=[{"goal_id": i["dept1"], "weight": 3}]),
        goal(i["ops"], owner_id=owner, depends_on=[i["kr"]],
             contributes_to=[{"goal_id": i["plan"], "weight": 0.3}]),
        goal(i["team"], depends_on=[i["ops"]], contributes_to=[{"goal_id": i["company"]}]),
        goal(i["support"], depends_on=[i["ops"]], contributes_to=[{"goal_id": i["company"]}]),
    ]  # fmt: skip
    with stack.client(timeout=10) as http:
        http.post(f"{url}/v1/people", json=people).raise_for_status()
        assert post_goals(http, url, body).status_code == 200
        served = {g: http.get(f"{url}/v1/goals/{g}/impact").json() for g in (i["kr"], i["ops"])}
    goals = {g["id"]: GoalUpsert.model_validate(g) for g in body}
    stored_people = {p["id"]: PersonUpsert.model_validate(p) for p in people}
    for goal_id, answer in served.items():
        in_memory = goal_impact(goals, goal_id, people=stored_people)
        assert in_memory is not None
        assert in_memory.model_dump(mode="json") == answer
    assert len(served[i["kr"]]["affected"]) == 7


def test_every_change_is_published_once(stack: Stack) -> None:
    url = stack.settings.url("goals")
    parent, child = unique("parent"), unique("child")
    with stack.client(timeout=10) as http:
        post_goals(http, url, [goal(parent, type="objective"), goal(child)]).raise_for_status()
        linked = goal(child, contributes_to=[{"goal_id": parent, "weight": 2}])
        post_goals(http, url, linked).raise_for_status()
        post_goals(http, url, linked).raise_for_status()  # the same again: nothing changes
        http.post(
            f"{url}/v1/goals/{child}/check-ins", json={"status": "invalid", "by": "li-na"}
        ).raise_for_status()
        post_goals(http, url, goal(child, status="invalid")).raise_for_status()  # link removed
    expected = [
        (subjects.GOAL_CREATED, 1),
        (subjects.GOAL_STATUS_CHANGED, 1),
        (subjects.GOAL_UPDATED, 2),
        (subjects.GOAL_LINK_ADDED, 2),
        (subjects.GOAL_CHECKED_IN, 3),
        (subjects.GOAL_STATUS_CHANGED, 3),
        (subjects.GOAL_UPDATED, 4),
        (subjects.GOAL_LINK_REMOVED, 4),
    ]
    events = asyncio.run(goal_events(stack.settings.nats_url, child, count=len(expected)))
    assert [(subject, e["version"]) for subject, e in events] == expected
    status = events[5][1]
    assert (status["previous_status"], status["status"]) == ("on_track", "invalid")
    assert events[2][1]["changed"] == ["contributes_to"]


def test_bad_input_is_answered_4xx_naming_the_field(stack: Stack) -> None:
    url = stack.settings.url("goals")
    with stack.client(timeout=10) as http:
        cases = {
            "body.goals.1.type": [goal(unique("ok")), goal(unique("bad"), type="mission")],
            "body.goal.contributes_to.0.weight": goal(unique("w"), contributes_to=[{"goal_id": "p", "weight": -1}]),
            "body.goal.period": goal(unique("p"), period="last year"),
            "body.goal.due": goal(unique("d"), due="2026-12-01T00:00:00"),
        }  # fmt: skip
        for loc, body in cases.items():
            answer = post_goals(http, url, body)
            assert answer.status_code == 422, answer.text
            assert loc in [e["loc"] for e in answer.json()["errors"]], answer.text
        check_in = http.post(f"{url}/v1/goals/{unique('g')}/check-ins", json={"by": "x"})
        assert check_in.status_code == 422 and "value, status or confidence" in check_in.text
        unit = http.post(
            f"{url}/v1/org-units", json={"id": unique("team"), "name": "T", "kind": "team"}
        )
        assert unit.status_code == 422 and "parent_id" in unit.json()["detail"]
        listing = http.get(f"{url}/v1/goals", params={"status": "sleeping"})
        assert listing.status_code == 422 and "query.status" in listing.text


def test_org_units_people_and_goal_listings(stack: Stack) -> None:
    url = stack.settings.url("goals")
    company, dept = unique("co"), unique("dept")
    owner = unique("owner")
    with stack.client(timeout=10) as http:
        units = [
            {"id": company, "name": "Co", "kind": "company"},
            {"id": dept, "name": "Dept", "kind": "department", "parent_id": company,
             "head_id": owner, "hrbp_id": owner},
        ]  # fmt: skip
        assert http.post(f"{url}/v1/org-units", json=units).json()["created"] == 2
        assert http.post(f"{url}/v1/org-units", json=units[0]).json()["replaced"] == 1
        person = {"id": owner, "name": "Owner", "org_unit_id": dept, "language": "en",
                  "time_zone": "Asia/Shanghai", "channels": ["wecom", "email"]}  # fmt: skip
        http.post(f"{url}/v1/people", json=person).raise_for_status()
        assert http.get(f"{url}/v1/people/{owner}").json()["channels"] == ["wecom", "email"]
        goals = [goal(unique("g"), owner_id=owner, org_unit_id=dept, period="2026-Q4",
                      due=f"2026-12-{day:02d}T00:00:00+08:00") for day in (1, 2, 3)]  # fmt: skip
        post_goals(http, url, goals).raise_for_status()
        first = http.get(f"{url}/v1/goals", params={"owner_id": owner, "limit": 2}).json()
        assert [g["id"] for g in first["goals"]] == sorted(g["id"] for g in goals)[:2]
        rest = http.get(
            f"{url}/v1/goals",
            params={"owner_id": owner, "limit": 2, "cursor": first["next_cursor"]},
        ).json()
        assert len(rest["goals"]) == 1 and rest["next_cursor"] is None
        due = http.get(
            f"{url}/v1/goals",
            params={"org_unit_id": dept, "period": "2026-Q4", "due_before": "2026-12-02T00:00:00+08:00"},
        ).json()["goals"]  # fmt: skip
        assert [g["id"] for g in due] == [goals[0]["id"]]


def test_csv_import_reports_bad_cells_by_row_and_column(stack: Stack) -> None:
    url = stack.settings.url("goals")
    parent, child = unique("obj"), unique("kr")
    good = (
        "id,title,type,owner_id,contributes_to,target_value,current_value\n"
        f"{parent},Parent,objective,li-na,,,\n"
        f"{child},Child,key_result,li-na,{parent}:2,10,5\n"
    )
    csv_type = {"content-type": "text/csv"}
    with stack.client(timeout=10) as http:
        answer = http.post(f"{url}/v1/goals/import", content=good, headers=csv_type)
        assert answer.json() == {"created": 2, "replaced": 0, "unchanged": 0}, answer.text
        assert http.get(f"{url}/v1/goals/{parent}").json()["progress"] == 50
        bad = "id,title,type,owner_id\nok-1,Fine,kpi,li-na\nbad 2,Not fine,mission,li-na\n"
        refused = http.post(f"{url}/v1/goals/import", content=bad, headers=csv_type)
        assert refused.status_code == 422
        locs = [e["loc"] for e in refused.json()["errors"]]
        assert locs == ["row 2 (line 3), column id", "row 2 (line 3), column type"]
        assert http.get(f"{url}/v1/goals/ok-1").status_code == 404  # all or nothing
        wrong = http.post(f"{url}/v1/goals/import", content=good)
        assert wrong.status_code == 415


def test_moving_a_contributor_moves_both_parents_progress(stack: Stack) -> None:
    url = stack.settings.url("goals")
    p, q, x, y, z = (unique(n) for n in "pqxyz")
    values = {"start_value": 0, "target_value": 10}
    with stack.client(timeout=10) as http:
        post_goals(http, url, [
            goal(p, type="objective"), goal(q, type="objective"),
            goal(x, contributes_to=[{"goal_id": p}], current_value=5, **values),
            goal(y, contributes_to=[{"goal_id": p}], current_value=10, **values),
            goal(z, contributes_to=[{"goal_id": p}]),  # no values: not counted as 0 %
        ]).raise_for_status()  # fmt: skip
        assert http.get(f"{url}/v1/goals/{p}").json()["progress"] == 75
        assert http.get(f"{url}/v1/goals/{q}").json()["progress"] is None
        post_goals(http, url, goal(y, contributes_to=[{"goal_id": q}], **values)).raise_for_status()
        listed = http.get(f"{url}/v1/goals", params={"owner_id": f"owner-{p}"}).json()["goals"]
        assert [g["progress"] for g in listed] == [50]
        assert http.get(f"{url}/v1/goals/{q}").json()["progress"] == 100


class _CaughtUpAfterOneReplay:
    """Stands in for the service's Recovery: caught up with a Redis that is gone until
    :meth:`ready` is called, then with the one that answers."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.confirmed: str | None = "a-redis-that-restarted"
        self.calls = 0

    async def ready(self) -> None:
        self.calls += 1
        self.confirmed = await server_run_id(self._redis)


async def test_a_write_after_a_redis_restart_waits_for_the_store_to_catch_up(
    stack: Stack,
) -> None:
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    caught_up = _CaughtUpAfterOneReplay(redis)
    store = GoalStore(redis, caught_up=caught_up)
    try:
        a = unique("a")
        # The script itself refuses a store not caught up with this server (no race between
        # a check and the write): the store catches up, then writes.
        result = await store.upsert(goals=[GoalUpsert.model_validate(goal(a))])
        assert (result.created, caught_up.calls) == (1, 1)
        await store.upsert(goals=[GoalUpsert.model_validate(goal(a, title="again"))])
        assert caught_up.calls == 1
        assert (await store.load(ids=[a]))[a].version == 2
    finally:
        await redis.aclose()
