"""The one client of the goals service, and its one failure policy.

Every service that asks goals about a person, a goal or a goal's impact uses
:class:`GoalsClient`:

- a person goals does not know (404) is an answer: ``None``;
- network trouble, a timeout, 429 or a 5xx is retried a few times with backoff, then raised as
  :class:`GoalsUnavailable`, and so is any other unexpected answer. The caller's message is then
  redelivered later by its consumer's policy: an alert waits for goals rather than going out
  for good with a degraded text (a person's id where their name belongs, a manager missing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from goalwatch.auth.client_credentials import ClientCredentials
from goalwatch.auth.grants import PersonRoles
from goalwatch.auth.settings import AuthSettings
from goalwatch.contracts import GoalImpact, GoalRead, OrgUnitRead, PersonRead
from goalwatch.http_retry import Transient, send_retrying

M = TypeVar("M", bound=BaseModel)


class GoalsUnavailable(Exception):
    """The goals service could not answer a person lookup (after retries, or wrongly)."""


class PersonDirectory(Protocol):
    """Looks people up by id."""

    async def get_person(self, person_id: str) -> PersonRead | None:
        """The person, or None when the directory has no such id."""
        ...


class OrgUnits(Protocol):
    """Looks org units up by id."""

    async def get_org_unit(self, unit_id: str) -> OrgUnitRead | None:
        """The org unit, or None when the directory has no such id."""
        ...


class GoalImpacts(Protocol):
    """Computes what a goal's failure reaches."""

    async def get_impact(self, goal_id: str) -> GoalImpact | None:
        """Every goal affected if ``goal_id`` fails, or None when goals has no such goal."""
        ...


class GoalsClient:
    """``GET {goals_url}/v1/people/{id}``, ``/v1/goals/{id}`` and ``/v1/goals/{id}/impact``
    with timeouts and retries of transient failures, signed in with ``auth`` (the calling
    service's own client, :func:`service_auth`)."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        auth: httpx.Auth | None = None,
        attempts: int = 3,
        backoff: float = 0.2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        # Per request, not on the client: a client shared with webhooks must not carry it.
        self._auth = auth
        self._base_url = base_url.rstrip("/")
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep

    async def get_person(self, person_id: str) -> PersonRead | None:
        """The person with ``person_id``, or None on 404; raises GoalsUnavailable otherwise."""
        return await self._get(f"/v1/people/{quote(person_id, safe='')}", PersonRead)

    async def get_org_unit(self, unit_id: str) -> OrgUnitRead | None:
        """The org unit with ``unit_id``, or None on 404; raises GoalsUnavailable otherwise."""
        return await self._get(f"/v1/org-units/{quote(unit_id, safe='')}", OrgUnitRead)

    async def get_goal(self, goal_id: str) -> GoalRead | None:
        """The goal with ``goal_id`` (progress rolled up), or None on 404."""
        return await self._get(f"/v1/goals/{quote(goal_id, safe='')}", GoalRead)

    async def get_impact(self, goal_id: str) -> GoalImpact | None:
        """Every goal affected if ``goal_id`` fails, or None if goals knows no such goal."""
        return await self._get(f"/v1/goals/{quote(goal_id, safe='')}/impact", GoalImpact)

    async def get_role_grants(self, person_id: str) -> PersonRoles | None:
        """The roles granted to ``person_id`` in goalwatch (:mod:`goalwatch.auth.grants`)."""
        return await self._get(f"/v1/role-grants/{quote(person_id, safe='')}", PersonRoles)

    async def _get(self, path: str, model: type[M]) -> M | None:
        url = f"{self._base_url}{path}"
        try:
            response = await send_retrying(
                lambda: self._client.get(url, auth=self._auth),
                what=f"GET {url}",
                attempts=self._attempts,
                backoff=self._backoff,
                max_wait=5.0,
                sleep=self._sleep,
            )
        except Transient as exc:
            raise GoalsUnavailable(
                f"goals service did not answer GET {path} after {self._attempts} attempts: {exc}"
            ) from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise GoalsUnavailable(
                f"GET {url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise GoalsUnavailable(
                f"GET {url} returned a body that is not a {model.__name__}: {exc}"
            ) from exc

    async def name_of(self, *, subject: str) -> str:
        """The display name of ``subject``; its id when goals knows no such person.

        Raises :class:`GoalsUnavailable` when goals cannot answer, like :meth:`get_person`.
        """
        person = await self.get_person(subject)
        return subject if person is None else person.name


def service_auth(settings: AuthSettings) -> ClientCredentials | None:
    """The calling service's own sign-in (OAuth2 client credentials at the identity
    provider), or ``None`` when no client is configured."""
    if not (settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret):
        return None
    return ClientCredentials(
        settings.oidc_issuer,
        settings.oidc_client_id,
        settings.oidc_client_secret.get_secret_value(),
    )
