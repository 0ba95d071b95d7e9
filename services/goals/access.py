"""What each caller of the goals API may see: org-wide roles everything, a person their own
part of the org chart (:mod:`goalwatch.auth.scope`), read from this service's own store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import HTTPException

from goalwatch.auth.policy import Caller
from goalwatch.auth.scope import Scope
from goalwatch.contracts import GoalRead, OrgUnitRead, PersonRead
from services.goals.org_units import OrgUnitStore
from services.goals.people import PeopleStore


class StoreDirectory:
    """The :class:`goalwatch.auth.scope.Directory` of the goals service's own stores."""

    def __init__(self, people: PeopleStore, units: OrgUnitStore) -> None:
        self._people = people
        self._units = units

    async def person(self, person_id: str) -> PersonRead | None:
        """The stored person, with their manager chain."""
        return await self._people.get(person_id=person_id)

    async def org_unit(self, unit_id: str) -> OrgUnitRead | None:
        """The stored org unit."""
        return await self._units.get(unit_id)


class Access:
    """Scopes for callers, over one directory."""

    def __init__(self, directory: StoreDirectory) -> None:
        self.directory = directory

    def scope(self, caller: Caller) -> Scope | None:
        """The caller's scope, or ``None`` when a role lets them see everything."""
        if caller.org_wide or caller.person_id is None:
            return None
        return Scope(caller.person_id, self.directory)

    def people_filter(self, caller: Caller) -> Callable[[PersonRead], Awaitable[bool]] | None:
        """Which people a listing shows the caller (``None``: all)."""
        scope = self.scope(caller)
        return None if scope is None else scope.sees_person

    def goals_filter(self, caller: Caller) -> Callable[[GoalRead], Awaitable[bool]] | None:
        """Which goals a listing shows the caller (``None``: all)."""
        scope = self.scope(caller)
        if scope is None:
            return None
        seen = scope

        async def visible(goal: GoalRead) -> bool:
            return await seen.sees_person_id(goal.owner_id) or await seen.covers_unit(
                goal.org_unit_id
            )

        return visible

    async def check_person(self, caller: Caller, person: PersonRead | None, person_id: str) -> None:
        """404 unless the caller may see ``person`` (as if there were none: 'no such person'
        and 'not yours' read the same, so ids cannot be probed)."""
        scope = self.scope(caller)
        if person is None or (scope is not None and not await scope.sees_person(person)):
            raise HTTPException(
                status_code=404,
                detail=f"no person with id '{person_id}'; add them with POST /v1/people",
            )

    async def may_check_in(self, caller: Caller, goal: GoalRead) -> bool:
        """Whether the caller may check in on ``goal`` (which they may see): its owner and
        the owner's managers, or a role; an HRBP reads their units' goals but does not
        report on them."""
        if self.scope(caller) is None:
            return True
        if goal.owner_id == caller.person_id:
            return True
        owner = await self.directory.person(goal.owner_id)
        return owner is not None and caller.person_id in owner.managers

    async def sees_goal(self, caller: Caller, goal: GoalRead) -> bool:
        """Whether the caller may see ``goal``."""
        check = self.goals_filter(caller)
        return check is None or await check(goal)
