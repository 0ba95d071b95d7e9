"""``GET /v1/me``: who the signed-in person is to goalwatch, for a page to adapt to.

The roles are those every service checks (the token's claim and the roles granted in
goalwatch); the name and language are goals' own record of the person, when there is one.
The web console reads it to show each person the pages their roles open; the services still
decide every request on their own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import Field

from goalwatch.auth.policies import SIGNED_IN
from goalwatch.auth.policy import Caller
from goalwatch.auth.roles import Role
from goalwatch.contracts.base import Contract
from goalwatch.contracts.people import Language
from services.goals.metrics import HANDLER_SECONDS
from services.goals.people import PeopleStore


class Me(Contract):
    """The signed-in person, as goalwatch sees them."""

    person_id: str = Field(description="Their id in goals (GOALWATCH_OIDC_PERSON_CLAIM).")
    name: str | None = Field(description="Their name in goals; null when goals has no record.")
    language: Language | None = Field(description="Their language in goals (zh, en), if set.")
    roles: list[Role] = Field(
        description="Roles held org-wide, from the token and from grants in goalwatch "
        "(manager, HRBP and employee follow from the org chart and are not listed)."
    )
    grants_unknown: bool = Field(
        description="True when the roles granted in goalwatch could not be read just now: "
        "`roles` then holds only the token's."
    )


def me_router(people: PeopleStore) -> APIRouter:
    """The ``/v1/me`` route over goals' people."""
    router = APIRouter(prefix="/v1/me", tags=["people"])

    @router.get("", summary="Who the signed-in person is, and the roles they hold")
    async def me(caller: Annotated[Caller, Depends(SIGNED_IN)]) -> Me:
        with HANDLER_SECONDS.labels(service="goals", handler="me").time():
            principal = caller.principal
            person_id = principal.person_id or ""
            person = await people.get(person_id=person_id) if person_id else None
            return Me(
                person_id=person_id,
                name=person.name if person is not None else principal.name,
                language=person.language if person is not None else None,
                roles=sorted(principal.roles),
                grants_unknown=principal.grants_unknown,
            )

    return router
