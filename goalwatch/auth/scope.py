"""Which people a person may see, following the org chart in goals.

A person sees themselves; as a manager, everyone below them (direct and indirect reports:
those whose manager chain names them); as the head or the HRBP of an org unit, everyone in it
and in the units below it. Nothing is granted here that the org chart does not
say, so a change of manager in goals changes what each side sees as soon as the reader's
copy of the directory has the change.
"""

from __future__ import annotations

from typing import Protocol

from goalwatch.contracts import OrgUnitRead, PersonRead

MAX_UNIT_DEPTH = 64
"""Org units walked up at most (a loop in a broken chart ends there)."""


class Directory(Protocol):
    """People and org units as goals stores them (goals' own store, or a reader's copy)."""

    async def person(self, person_id: str) -> PersonRead | None:
        """The person, with their manager chain, or ``None``."""
        ...

    async def org_unit(self, unit_id: str) -> OrgUnitRead | None:
        """The org unit, or ``None``."""
        ...


class Scope:
    """What one person may see; answers are remembered for the scope's life (one request)."""

    def __init__(self, viewer: str, directory: Directory) -> None:
        self.viewer = viewer
        self._directory = directory
        self._people: dict[str, bool] = {}
        self._units: dict[str, bool] = {}

    async def sees_person_id(self, person_id: str | None) -> bool:
        """Whether the viewer may see the person ``person_id`` (no such person: no)."""
        if person_id is None:
            return False
        if person_id == self.viewer:
            return True
        if person_id not in self._people:
            person = await self._directory.person(person_id)
            self._people[person_id] = person is not None and await self.sees_person(person)
        return self._people[person_id]

    async def sees_person(self, person: PersonRead) -> bool:
        """Whether the viewer may see ``person``."""
        if person.id == self.viewer or self.viewer in person.managers:
            return True
        return await self.covers_unit(person.org_unit_id)

    async def covers_unit(self, unit_id: str | None) -> bool:
        """Whether the viewer heads or is the HRBP of ``unit_id`` or of a unit above it."""
        walked: list[str] = []
        answer = False
        while unit_id is not None and len(walked) < MAX_UNIT_DEPTH:
            if unit_id in self._units:
                answer = self._units[unit_id]
                break
            walked.append(unit_id)
            unit = await self._directory.org_unit(unit_id)
            if unit is None:
                break
            if self.viewer in (unit.hrbp_id, unit.head_id):
                answer = True
                break
            unit_id = unit.parent_id if unit.parent_id not in walked else None
        for seen in walked:
            self._units[seen] = answer
        return answer
