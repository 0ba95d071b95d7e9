"""The goals service's people API on real Redis: chains, cycles, repeated ids, clear 404s."""

from __future__ import annotations

import httpx
import pytest

from goalwatch.dev.stack import Stack
from tests.integration.helpers import unique

pytestmark = pytest.mark.integration


def test_people_chains_cycles_and_repeats(stack: Stack) -> None:
    goals = stack.settings.url("goals")
    ceo, vp, lead = unique("ceo"), unique("vp"), unique("lead")
    with httpx.Client(timeout=10) as http:
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
