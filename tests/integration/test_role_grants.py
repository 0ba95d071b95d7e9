"""Roles granted in goalwatch, through the running services: an HR admin grants hr_admin to a
person whose token carries no role, with the CLI; it counts at once on goals and within the
cache TTL on the evaluator; the grant is listed and audited; taken back, it stops counting.
An operator cannot hand out hr_admin, nor a person a role at all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest

from goalwatch.dev.stack import Stack
from tests.integration.conftest import API_KEY_CACHE_TTL
from tests.integration.helpers import unique

pytestmark = pytest.mark.integration


def goalwatch_roles(*args: str, goals: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goalwatch.cli", "roles", *args, "--goals", goals],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GOALWATCH_TOKEN": token},
    )


def eventually(status: Callable[[], int], expected: int) -> int:
    """Ask until the answer is ``expected``, for as long as a service may keep the old roles."""
    deadline = time.monotonic() + API_KEY_CACHE_TTL + 10
    got = status()
    while got != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        got = status()
    return got


def test_a_role_granted_in_goalwatch_counts_everywhere_until_it_is_revoked(stack: Stack) -> None:
    goals, evaluator = stack.settings.url("goals"), stack.settings.url("evaluator")
    person, other = unique("granted"), unique("colleague")
    hr = stack.token("wang-fang")
    mine = stack.auth_headers(person)
    with httpx.Client(timeout=15.0) as http:

        def audit() -> int:
            return http.get(f"{goals}/v1/audit", params={"limit": 1}, headers=mine).status_code

        def rules() -> int:
            return http.get(f"{evaluator}/v1/rules", headers=mine).status_code

        assert (audit(), rules()) == (403, 403)
        refused = http.put(
            f"{goals}/v1/role-grants/{person}/hr_admin", headers=stack.auth_headers("ops")
        )
        assert refused.status_code == 403
        assert "only someone who holds hr_admin may" in refused.json()["detail"]
        service_role = http.put(
            f"{goals}/v1/role-grants/{person}/service", headers=stack.auth_headers("wang-fang")
        )
        assert service_role.status_code == 422
        assert "only hr_admin, operator can" in service_role.json()["detail"]

        granted = goalwatch_roles("grant", person, "hr_admin", "--note", "HR-1234",
                                  goals=goals, token=hr)  # fmt: skip
        assert granted.returncode == 0, granted.stderr
        assert granted.stdout.strip() == f"{person}: hr_admin granted"
        again = goalwatch_roles("grant", person, "hr_admin", goals=goals, token=hr)
        assert again.stdout.strip() == f"{person}: hr_admin already held"

        # Goals reads its own store: at once. The evaluator asks goals: within the cache TTL.
        assert audit() == 200
        assert eventually(rules, 200) == 200
        # Holding hr_admin, they may hand it on, and read who holds what.
        passed_on = http.put(f"{goals}/v1/role-grants/{other}/hr_admin", headers=mine)
        assert passed_on.status_code == 201, passed_on.text
        listed = goalwatch_roles("list", goals=goals, token=stack.token(person))
        assert listed.returncode == 0, listed.stderr
        lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
        assert "by person:wang-fang" in lines[person] and "(HR-1234)" in lines[person]
        assert f"by person:{person}" in lines[other]
        # Everyone may read their own grants, nobody else's.
        own = http.get(f"{goals}/v1/role-grants/{other}", headers=stack.auth_headers(other))
        assert [grant["role"] for grant in own.json()["grants"]] == ["hr_admin"]
        theirs = stack.auth_headers(unique("nosy"))
        assert http.get(f"{goals}/v1/role-grants/{other}", headers=theirs).status_code == 404

        revoked = goalwatch_roles("revoke", person, "hr_admin", goals=goals, token=hr)
        assert revoked.returncode == 0, revoked.stderr
        assert audit() == 403
        assert eventually(rules, 403) == 403
        shown = goalwatch_roles("show", person, goals=goals, token=hr)
        assert shown.stdout.strip() == f"{person}: no role granted in goalwatch"
        gone = goalwatch_roles("revoke", person, "hr_admin", goals=goals, token=hr)
        assert gone.returncode == 1 and f"{person} holds no hr_admin" in gone.stderr

        # The audit log names who granted and revoked what.
        def audited() -> set[tuple[str, str]]:
            log = http.get(
                f"{goals}/v1/audit",
                params={"who": "person:wang-fang", "service": "goals", "limit": 500},
                headers=stack.auth_headers("wang-fang"),
            )
            assert log.status_code == 200, log.text
            return {
                (record["action"], record["target"].get("role", ""))
                for record in log.json()["records"]
                if record["target"].get("person_id") == person
            }

        wanted = {
            ("PUT /v1/role-grants/{person_id}/{role}", "hr_admin"),
            ("DELETE /v1/role-grants/{person_id}/{role}", "hr_admin"),
        }
        deadline = time.monotonic() + 30
        while not wanted <= audited() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert wanted <= audited()
