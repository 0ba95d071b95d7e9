"""Roles granted to people in goalwatch (:mod:`goalwatch.auth.grants`), kept by goals.

Each person with grants has one Redis hash, role → who granted it, when and why; a set names
every person ever granted one, for the listing. ``/v1/role-grants`` reads and changes them:
an HR admin grants and revokes ``hr_admin``, an operator ``operator`` — nobody hands out a
role they do not hold. Every grant and revocation is in the audit log (who, what, when,
from where), which is also where the history of a person's roles is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from goalwatch.auth.grants import GRANTABLE, PersonRoles, RoleGrant
from goalwatch.auth.policies import ROLE_GRANTS_LOOKUP, ROLE_GRANTS_READ, ROLE_GRANTS_WRITE
from goalwatch.auth.policy import Caller
from goalwatch.auth.roles import Role
from goalwatch.contracts.metrics import PERSON_ID_MAX_LENGTH, PERSON_ID_PATTERN
from goalwatch.problems import problem_responses
from services.goals import keys
from services.goals.metrics import HANDLER_SECONDS

_GRANTABLE = ", ".join(sorted(GRANTABLE))
# Module-level: the routes' annotations are strings here, resolved in this module's namespace.
PersonPath = Annotated[
    str,
    Path(
        pattern=PERSON_ID_PATTERN,
        max_length=PERSON_ID_MAX_LENGTH,
        description="The person's id, as their token names them (GOALWATCH_OIDC_PERSON_CLAIM).",
    ),
]
RolePath = Annotated[Role, Path(description=f"The role: {_GRANTABLE}.")]


class RoleGrantStore:
    """The grants in the goals service's Redis."""

    def __init__(self, redis: Redis, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._redis = redis
        self._now = now

    async def of(self, person_id: str) -> PersonRoles:
        """The roles granted to ``person_id`` (perhaps none)."""
        record = await self._redis.hgetall(keys.role_grants(person_id))
        return _person_roles(person_id, record)

    async def roles_of(self, person_id: str) -> frozenset[Role]:
        """The granted roles only: how goals signs its own callers in."""
        return (await self.of(person_id)).roles

    async def list(self) -> list[PersonRoles]:
        """Everyone who holds a granted role, by person id."""
        people = sorted(
            _text(person) for person in await self._redis.smembers(keys.ROLE_GRANT_PEOPLE)
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for person in people:
                pipe.hgetall(keys.role_grants(person))
            records = await pipe.execute()
        found = (
            _person_roles(person, record) for person, record in zip(people, records, strict=True)
        )
        return [roles for roles in found if roles.grants]

    async def grant(
        self, person_id: str, role: Role, *, by: str, note: str | None
    ) -> tuple[PersonRoles, bool]:
        """Grant ``role``; whether it is new (granting again keeps the first grant)."""
        grant = RoleGrant(role=role, granted_by=by, granted_at=self._now(), note=note)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(keys.role_grants(person_id), role.value, grant.model_dump_json())
            pipe.sadd(keys.ROLE_GRANT_PEOPLE, person_id)
            added, _ = await pipe.execute()
        return await self.of(person_id), bool(added)

    async def revoke(self, person_id: str, role: Role) -> bool:
        """Take ``role`` back; whether it was granted."""
        return bool(await self._redis.hdel(keys.role_grants(person_id), role.value))


def _person_roles(person_id: str, record: dict[Any, Any]) -> PersonRoles:
    grants = [
        RoleGrant.model_validate({"role": _text(role), **json.loads(_text(value))})
        for role, value in record.items()
        if _text(role) in Role.__members__.values()
    ]
    return PersonRoles(person_id=person_id, grants=sorted(grants, key=lambda grant: grant.role))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class GrantRequest(BaseModel):
    """Why a role is granted (kept with the grant and in the audit log)."""

    note: str | None = Field(
        default=None, max_length=500, description="Why, e.g. a ticket number.", examples=["HR-1234"]
    )


def role_grants_router(store: RoleGrantStore) -> APIRouter:
    """The ``/v1/role-grants`` routes over ``store``."""
    router = APIRouter(prefix="/v1/role-grants", tags=["role grants"])
    timed = HANDLER_SECONDS.labels

    def grantable(role: Role, caller: Caller) -> None:
        if role not in GRANTABLE:
            raise HTTPException(
                422,
                f"role {role.value} cannot be granted to a person in goalwatch: only "
                f"{_GRANTABLE} can. System roles belong to a client at the identity provider "
                "or to an API key (`goalwatch keys create`).",
            )
        if not caller.principal.has(role):
            raise HTTPException(
                403,
                f"{caller.who} may not grant or revoke {role.value}: only someone who holds "
                f"{role.value} may (an HR admin grants hr_admin, an operator grants operator).",
            )

    @router.get("", summary="Everyone holding a role granted in goalwatch, by person id")
    async def list_role_grants(
        _: Annotated[Caller, Depends(ROLE_GRANTS_READ)],
    ) -> list[PersonRoles]:
        with timed(service="goals", handler="list_role_grants").time():
            return await store.list()

    @router.get(
        "/{person_id}",
        summary="The roles granted to one person in goalwatch",
        description="A person may read their own. Empty `grants` when none is (the identity provider may still grant "
        "roles through the token's roles claim). goalwatch's services read it to sign people "
        "in (GOALWATCH_ROLE_GRANT_CACHE_TTL).",
    )
    async def get_role_grants(
        person_id: PersonPath,
        caller: Annotated[Caller, Depends(ROLE_GRANTS_LOOKUP)],
    ) -> PersonRoles:
        if not caller.org_wide and caller.person_id != person_id:
            # A person reads their own grants only; another's are not theirs to know of.
            raise HTTPException(404, f"no role grants of {person_id} for {caller.who} to read")
        return await store.of(person_id)

    @router.put(
        "/{person_id}/{role}",
        summary="Grant a role to a person",
        description="hr_admin is granted by an HR admin, operator by an operator. It counts "
        "at once on goals and within GOALWATCH_ROLE_GRANT_CACHE_TTL (30 s by default) on the "
        "other services. Granting it again changes nothing (201 the first time, 200 after).",
        responses=problem_responses(
            {
                403: "The caller does not hold the role they grant.",
                422: "Not a role goalwatch grants to people.",
            }
        ),
    )
    async def grant_role(
        person_id: PersonPath,
        role: RolePath,
        caller: Annotated[Caller, Depends(ROLE_GRANTS_WRITE)],
        response: Response,
        body: GrantRequest | None = None,
    ) -> PersonRoles:
        grantable(role, caller)
        with timed(service="goals", handler="grant_role").time():
            roles, new = await store.grant(
                person_id, role, by=caller.who, note=body.note if body else None
            )
        response.status_code = 201 if new else 200
        return roles

    @router.delete(
        "/{person_id}/{role}",
        status_code=204,
        summary="Revoke a role granted to a person",
        description="It stops counting at once on goals and within "
        "GOALWATCH_ROLE_GRANT_CACHE_TTL on the other services. A role the token's roles claim "
        "carries is the identity provider's to take back.",
        responses=problem_responses(
            {
                403: "The caller does not hold the role they revoke.",
                404: "The person holds no such grant.",
            }
        ),
    )
    async def revoke_role(
        person_id: PersonPath,
        role: RolePath,
        caller: Annotated[Caller, Depends(ROLE_GRANTS_WRITE)],
    ) -> None:
        grantable(role, caller)
        with timed(service="goals", handler="revoke_role").time():
            revoked = await store.revoke(person_id, role)
        if not revoked:
            raise HTTPException(
                404,
                f"{person_id} holds no {role.value} granted in goalwatch; "
                "`goalwatch roles list` shows the grants",
            )

    return router
