"""Roles granted to people in goalwatch itself, next to those the identity provider's claim
carries (docs/security.md, "Roles granted in goalwatch").

Not every company can add a group to its identity provider for one application; HR admins
and operators can then grant each other's roles in goalwatch: ``hr_admin`` by an HR admin,
``operator`` by an operator (:data:`GRANTABLE`). The goals service keeps the grants
(``/v1/role-grants``), reads them from its own store, and the other services ask it,
keeping each answer for ``GOALWATCH_ROLE_GRANT_CACHE_TTL`` seconds (:class:`CachedRoleGrants`).

A signed-in person's roles are those of their token's roles claim and those granted here.
When goals cannot be asked and no answer is known, the person keeps the token's roles: a
route that any of their claimed roles or their place in the org chart opens still answers,
and one that only a grant could open answers 503 (:mod:`goalwatch.auth.policy`), never a
misleading 403.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import AwareDatetime, BaseModel, Field

from goalwatch.auth.roles import Role

GRANTABLE: frozenset[Role] = frozenset({Role.HR_ADMIN, Role.OPERATOR})
"""The roles goalwatch grants to people. System roles (publisher, goals_writer,
directory_writer, service) belong to clients at the identity provider or to API keys."""

MAX_ENTRIES = 10_000
"""People whose grants a service keeps at most; the least recently asked go first."""


class RoleGrantsUnavailable(Exception):
    """The grants cannot be read now (the goals service does not answer)."""


class RoleGrant(BaseModel):
    """One role granted to one person."""

    role: Role = Field(description="The role: hr_admin or operator.")
    granted_by: str = Field(description="Who granted it (person:<id> or system:<client>).")
    granted_at: AwareDatetime = Field(description="When.")
    note: str | None = Field(default=None, description="Why, in the granter's words.")


class PersonRoles(BaseModel):
    """The roles goalwatch grants one person (the identity provider may grant more)."""

    person_id: str = Field(description="The person's id, as tokens name them.")
    grants: list[RoleGrant] = Field(
        default_factory=list, description="One per granted role, by role; empty: none."
    )

    @property
    def roles(self) -> frozenset[Role]:
        """The granted roles."""
        return frozenset(grant.role for grant in self.grants)


class RoleGrants(Protocol):
    """Where a service reads the roles granted to a person."""

    async def roles_of(self, person_id: str) -> frozenset[Role]:
        """The roles granted to ``person_id`` (none: an empty set); raises
        :class:`RoleGrantsUnavailable` when they cannot be read now."""
        ...


class GrantsSource(Protocol):
    """Asks the owner of the grants (the goals service) for one person's."""

    async def get_role_grants(self, person_id: str) -> PersonRoles | None:
        """The person's grants, or ``None`` if there are none; raises on trouble."""
        ...


@dataclass
class _Known:
    roles: frozenset[Role]
    at: float


class CachedRoleGrants:
    """Grants read from ``source`` and kept ``ttl`` seconds per person.

    So a grant or a revocation reaches a service within ``ttl``. When ``source`` fails, the
    last answer is used for up to ``stale_for`` seconds after it was read (goals restarting
    does not take HR admins' rights away), then :class:`RoleGrantsUnavailable` is raised.
    """

    def __init__(
        self,
        source: GrantsSource,
        *,
        ttl: float,
        stale_for: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._stale_for = stale_for
        self._clock = clock
        self._known: OrderedDict[str, _Known] = OrderedDict()

    async def roles_of(self, person_id: str) -> frozenset[Role]:
        """The roles granted to ``person_id`` (see the class's description)."""
        now = self._clock()
        known = self._known.get(person_id)
        if known is not None and now - known.at < self._ttl:
            return known.roles
        try:
            answer = await self._source.get_role_grants(person_id)
        except Exception as exc:
            if known is not None and now - known.at < self._stale_for:
                return known.roles
            raise RoleGrantsUnavailable(
                f"the roles granted in goalwatch are unknown: {exc}"
            ) from exc
        roles = answer.roles if answer is not None else frozenset()
        self._known[person_id] = _Known(roles, now)
        self._known.move_to_end(person_id)
        while len(self._known) > MAX_ENTRIES:
            self._known.popitem(last=False)
        return roles
