"""The goals service's people API on real Redis: chains, cycles, repeated ids, clear 404s."""

from __future__ import annotations

import asyncio

import pytest

from goalwatch.contracts import subjects
from goalwatch.dev.demo import load_demo
from goalwatch.dev.stack import Stack
from tests.integration.helpers import directory_events, unique

pytestmark = pytest.mark.integration


def test_people_chains_cycles_and_repeats(stack: Stack) -> None:
    goals = stack.settings.url("goals")
    ceo, vp, lead = unique("ceo"), unique("vp"), unique("lead")
    with stack.client(timeout=10) as http:
        # A report may arrive before their manager; an id given twice counts once, last wins.
        batch = [
            {"id": lead, "name": "Lead (old name)", "manager_id": vp},
            {"id": vp, "name": "VP", "manager_id": ceo},
            {"id": ceo, "name": "CEO"},
            {"id": lead, "name": "Lead", "manager_id": vp},
        ]
        assert http.post(f"{goals}/v1/people", json=batch).json() == {
            "upserted": 3,
            "created": 3,
            "replaced": 0,
            "unchanged": 0,
        }
        person = http.get(f"{goals}/v1/people/{lead}").json()
        assert (person["name"], person["managers"]) == ("Lead", [vp, ceo])

        cycle = http.post(f"{goals}/v1/people", json={"id": ceo, "name": "CEO", "manager_id": lead})
        assert cycle.status_code == 422
        assert "cycle" in cycle.json()["detail"]

        missing = http.get(f"{goals}/v1/people/{unique('nobody')}")
        assert missing.status_code == 404
        assert "POST /v1/people" in missing.json()["detail"]

        invalid = http.post(f"{goals}/v1/people", json=[{"id": "x"}])
        assert invalid.status_code == 422
        assert "name" in invalid.text


def test_the_demo_never_overwrites_what_a_user_stored(stack: Stack) -> None:
    goals = stack.settings.url("goals")
    mine = {"id": "chen-jie", "name": "Chen Jie (a user's, not the demo's)"}
    with stack.client(timeout=10) as http:
        http.post(f"{goals}/v1/people", json=mine).raise_for_status()
        loaded = load_demo(
            goals_url=goals,
            ingestion_url=stack.settings.url("ingestion"),
            headers=stack.auth_headers(),
        )
        assert loaded is None
        assert http.get(f"{goals}/v1/people/chen-jie").json()["name"] == mine["name"]
        assert http.get(f"{goals}/v1/goals/kr-store-expansion").status_code == 404


def test_listing_people_reads_their_chains_in_bulk(stack: Stack) -> None:
    goals = stack.settings.url("goals")
    prefix = unique("bulk")
    people = [{"id": f"{prefix}-{n:03d}", "name": f"P{n}",
               "manager_id": f"{prefix}-{n - 1:03d}" if n else None} for n in range(30)]  # fmt: skip
    with stack.client(timeout=10) as http:
        answer = http.post(f"{goals}/v1/people", json=people).json()
        assert (answer["created"], answer["replaced"]) == (30, 0)
        assert http.post(f"{goals}/v1/people", json=people[:2]).json()["replaced"] == 2
        page = http.get(f"{goals}/v1/people", params={"limit": 5, "after": f"{prefix}-024"}).json()
        assert [p["id"] for p in page][:5] == [f"{prefix}-{n:03d}" for n in range(25, 30)]
        assert page[-1]["managers"][:3] == [f"{prefix}-{n:03d}" for n in (28, 27, 26)]
        assert len(page[-1]["managers"]) == 29


def test_every_id_of_the_alphabet_can_be_looked_up(stack: Stack) -> None:
    url = stack.settings.url("goals")
    tag = unique("")
    ids = [f"a.b{tag}", f"x@y.org{tag}", f"_-.{tag}", f"A9{tag}"]
    with stack.client(timeout=10) as http:
        batch = [{"id": i, "name": i} for i in ids[:3]]
        assert http.post(f"{url}/v1/people", json=batch).status_code == 200
        assert http.post(f"{url}/v1/people", json={"id": ids[3], "name": "n"}).status_code == 200
        for person_id in ids:
            assert http.get(f"{url}/v1/people/{person_id}").json()["id"] == person_id


def test_people_and_org_units_are_published_once_per_change(stack: Stack) -> None:
    url, nats_url = stack.settings.url("goals"), stack.settings.nats_url
    person, unit = unique("person"), unique("company")
    with stack.client(timeout=10) as http:
        body = {"id": person, "name": "Li Na", "time_zone": "Asia/Shanghai"}
        first = http.post(f"{url}/v1/people", json=body).json()
        again = http.post(f"{url}/v1/people", json=body).json()
        moved = http.post(f"{url}/v1/people", json={**body, "manager_id": "wang-fang"}).json()
        assert (first["created"], again["unchanged"], moved["unchanged"]) == (1, 1, 0)
        company = {"id": unit, "name": "Riverside", "kind": "company"}
        assert http.post(f"{url}/v1/org-units", json=company).json()["created"] == 1
        assert http.post(f"{url}/v1/org-units", json=company).json()["unchanged"] == 1

    events = asyncio.run(directory_events(nats_url, {person, unit}))
    assert [(s, e["event_id"]) for s, e in events] == [
        (subjects.PERSON_CHANGED, f"person:{person}:1"),
        (subjects.PERSON_CHANGED, f"person:{person}:2"),
        (subjects.ORG_UNIT_CHANGED, f"org_unit:{unit}:1"),
    ]
    assert events[1][1]["person"]["manager_id"] == "wang-fang"
