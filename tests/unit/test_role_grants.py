"""Roles granted in goalwatch: kept a while per person, used stale while goals is away, added
to the token's roles, and a 503 rather than a misleading 403 when only a grant could open a
route and the grants cannot be read (tests/integration/test_role_grants.py runs the real
thing)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from goalwatch.auth.grants import CachedRoleGrants, PersonRoles, RoleGrant, RoleGrantsUnavailable
from goalwatch.auth.identity import Authenticator
from goalwatch.auth.policy import Caller, policy
from goalwatch.auth.principal import Kind, Principal
from goalwatch.auth.roles import Role
from goalwatch.auth.settings import AuthSettings
from tests.unit.signed_in import signed_in
from tests.unit.test_auth_tokens import ISSUER, Provider, verifier


class Goals:
    """The grants as goals would answer them, counting the questions."""

    def __init__(self) -> None:
        self.roles: dict[str, set[Role]] = {}
        self.asked = 0
        self.down = False

    async def get_role_grants(self, person_id: str) -> PersonRoles | None:
        self.asked += 1
        if self.down:
            raise OSError("goals does not answer")
        at = datetime(2026, 12, 7, tzinfo=UTC)
        grants = [RoleGrant(role=role, granted_by="person:hr", granted_at=at)
                  for role in sorted(self.roles.get(person_id, ()))]  # fmt: skip
        return PersonRoles(person_id=person_id, grants=grants)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_grants_are_kept_for_the_ttl_then_asked_again() -> None:
    goals, clock = Goals(), Clock()
    cache = CachedRoleGrants(goals, ttl=30, clock=clock)
    goals.roles["li-na"] = {Role.HR_ADMIN}
    assert await cache.roles_of("li-na") == {Role.HR_ADMIN}
    goals.roles["li-na"] = set()
    clock.now += 29
    assert await cache.roles_of("li-na") == {Role.HR_ADMIN}
    assert goals.asked == 1
    clock.now += 1
    assert await cache.roles_of("li-na") == frozenset()
    assert goals.asked == 2


async def test_while_goals_is_away_the_last_answer_serves_a_while_then_none() -> None:
    goals, clock = Goals(), Clock()
    cache = CachedRoleGrants(goals, ttl=30, stale_for=300, clock=clock)
    goals.roles["li-na"] = {Role.OPERATOR}
    assert await cache.roles_of("li-na") == {Role.OPERATOR}
    goals.down = True
    clock.now += 200
    assert await cache.roles_of("li-na") == {Role.OPERATOR}
    clock.now += 100
    with pytest.raises(RoleGrantsUnavailable, match="goals does not answer"):
        await cache.roles_of("li-na")
    with pytest.raises(RoleGrantsUnavailable):
        await cache.roles_of("never-asked")


async def test_a_persons_roles_are_their_tokens_and_those_granted_in_goalwatch() -> None:
    provider, goals = Provider(), Goals()
    goals.roles["li-na"] = {Role.HR_ADMIN}
    auth = Authenticator(
        AuthSettings(oidc_issuer=ISSUER), grants=CachedRoleGrants(goals, ttl=0, stale_for=0)
    )
    auth.verifier = verifier(provider)
    token = provider.token(preferred_username="li-na", roles=["operator"])
    assert (await auth.from_bearer(token)).roles == {Role.HR_ADMIN, Role.OPERATOR}
    # A system's token is not a person's: no grant is looked up for it.
    system = await auth.from_bearer(provider.token(client_id="his", roles=["publisher"]))
    assert system.roles == {Role.PUBLISHER} and goals.asked == 1

    goals.down = True
    unknown = await auth.from_bearer(token)
    assert unknown.roles == {Role.OPERATOR} and unknown.grants_unknown
    await auth.aclose()


HR_ONLY = policy("change rules", Role.HR_ADMIN)
PEOPLE = policy("read people", Role.HR_ADMIN, people=True)


def _app(principal: Principal) -> FastAPI:
    app = FastAPI()

    @app.get("/hr")
    async def hr(_: Annotated[Caller, Depends(HR_ONLY)]) -> str:
        return "ok"

    @app.get("/people")
    async def scoped(caller: Annotated[Caller, Depends(PEOPLE)]) -> bool:
        return caller.org_wide

    return signed_in(app, principal)


async def test_when_only_a_grant_could_let_a_person_in_and_grants_are_unknown_it_is_503() -> None:
    person = Principal(subject="u", kind=Kind.PERSON, person_id="li-na", grants_unknown=True)
    transport = httpx.ASGITransport(app=_app(person))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        refused = await http.get("/hr")
        assert refused.status_code == 503
        assert "roles granted in goalwatch cannot be read now" in refused.json()["detail"]
        assert refused.headers["retry-after"]
        # Where their place in the org chart lets them in, they get their own part meanwhile.
        scoped = await http.get("/people")
        assert scoped.status_code == 200 and scoped.json() is False

    known = Principal(subject="u", kind=Kind.PERSON, person_id="li-na")
    transport = httpx.ASGITransport(app=_app(known))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/hr")).status_code == 403


async def test_the_store_keeps_the_first_grant_lists_holders_and_forgets_revoked_ones() -> None:
    from fakeredis import FakeAsyncRedis

    from services.goals.role_grants import RoleGrantStore

    store = RoleGrantStore(FakeAsyncRedis(), now=lambda: datetime(2026, 12, 7, tzinfo=UTC))
    roles, new = await store.grant("li-na", Role.HR_ADMIN, by="person:wang-fang", note="HR-1")
    assert new and roles.roles == {Role.HR_ADMIN}
    again, new = await store.grant("li-na", Role.HR_ADMIN, by="person:ops", note=None)
    assert not new and again.grants[0].granted_by == "person:wang-fang"
    await store.grant("li-na", Role.OPERATOR, by="person:ops", note=None)
    await store.grant("chen-jie", Role.OPERATOR, by="person:ops", note=None)
    assert await store.roles_of("li-na") == {Role.HR_ADMIN, Role.OPERATOR}
    assert await store.revoke("chen-jie", Role.OPERATOR)
    assert not await store.revoke("chen-jie", Role.OPERATOR)
    assert [person.person_id for person in await store.list()] == ["li-na"]
    assert await store.roles_of("nobody") == frozenset()
