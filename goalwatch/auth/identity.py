"""From a request's credentials to a :class:`~goalwatch.auth.principal.Principal`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import httpx

from goalwatch.auth.api_keys import ApiKeyVerifier, InvalidApiKey
from goalwatch.auth.grants import RoleGrants, RoleGrantsUnavailable
from goalwatch.auth.principal import Kind, Principal
from goalwatch.auth.roles import Role
from goalwatch.auth.settings import AuthSettings
from goalwatch.auth.tokens import InvalidToken, TokenVerifier


def claim(claims: Mapping[str, Any], path: str) -> Any:
    """The claim at ``path``; dots reach into objects (``realm_access.roles``)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()  # OAuth scopes and some providers' roles are space-separated
    if isinstance(value, Iterable):
        return [item for item in value if isinstance(item, str)]
    return []


CLIENT_ID_CLAIMS = ("azp", "appid", "client_id")
"""Where a token marked as a system's by ``CLAIM=VALUE`` names its client, in this order."""


class Authenticator:
    """Turns bearer tokens and API keys into principals, as the settings say.

    ``api_keys`` checks API keys (:mod:`goalwatch.auth.api_keys`); without it, none is
    accepted. ``grants`` adds the roles granted to a person in goalwatch to their token's
    (:mod:`goalwatch.auth.grants`).
    """

    def __init__(
        self,
        settings: AuthSettings,
        *,
        http: httpx.AsyncClient | None = None,
        api_keys: ApiKeyVerifier | None = None,
        grants: RoleGrants | None = None,
    ) -> None:
        self.settings = settings
        self.api_keys = api_keys
        self.grants = grants
        self.verifier = (
            TokenVerifier(
                issuer=settings.oidc_issuer,
                audience=settings.oidc_audience,
                jwks_url=settings.oidc_jwks_url,
                http=http,
            )
            if settings.oidc_issuer
            else None
        )

    async def from_bearer(self, token: str) -> Principal:
        """The caller a bearer token names; :class:`InvalidToken` if it names none."""
        if self.verifier is None:
            raise InvalidToken(
                "this service accepts no bearer tokens: no identity provider is configured "
                "(GOALWATCH_OIDC_ISSUER)"
            )
        principal = self.principal(await self.verifier.verify(token))
        if self.grants is None or principal.person_id is None:
            return principal
        try:
            granted = await self.grants.roles_of(principal.person_id)
        except RoleGrantsUnavailable:
            return replace(principal, grants_unknown=True)
        return replace(principal, roles=principal.roles | granted)

    async def from_api_key(self, key: str) -> Principal:
        """The system an API key signs in as; :class:`InvalidApiKey` if it is refused."""
        if self.api_keys is None:
            raise InvalidApiKey("this service accepts no API keys; sign in with a bearer token")
        return await self.api_keys.verify(key)

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        """The caller verified ``claims`` describe."""
        settings = self.settings
        roles = frozenset(self._roles(claim(claims, settings.oidc_roles_claim)))
        client = self._client(claims)
        subject = str(claims["sub"])
        name = claims.get("name")
        if isinstance(client, str) and client:
            return Principal(
                subject=subject,
                kind=Kind.SYSTEM,
                roles=roles,
                client_id=client,
                name=name if isinstance(name, str) else client,
                metrics=frozenset(_strings(claims.get("goalwatch_metrics"))),
                sources=frozenset(_strings(claims.get("goalwatch_sources"))),
            )
        person = claim(claims, settings.oidc_person_claim)
        if not isinstance(person, str) or not person:
            raise InvalidToken(
                f"the token names no person: it has no {settings.oidc_person_claim!r} claim "
                "(GOALWATCH_OIDC_PERSON_CLAIM) and no client claim "
                f"({settings.oidc_client_claim!r}, GOALWATCH_OIDC_CLIENT_CLAIM)"
            )
        return Principal(
            subject=subject,
            kind=Kind.PERSON,
            roles=roles - {Role.SERVICE, Role.PUBLISHER, Role.GOALS_WRITER, Role.DIRECTORY_WRITER},
            person_id=person,
            name=name if isinstance(name, str) else person,
        )

    def _client(self, claims: Mapping[str, Any]) -> Any:
        """The client a system's token names, or ``None`` for a person's token."""
        name, equals, value = self.settings.oidc_client_claim.partition("=")
        if not equals:
            return claim(claims, name)
        if claim(claims, name) != value:
            return None
        return next(
            (claims[key] for key in CLIENT_ID_CLAIMS if isinstance(claims.get(key), str)),
            claims.get("sub"),
        )

    def _roles(self, value: Any) -> Iterable[Role]:
        mapping = self.settings.oidc_role_map
        for name in _strings(value):
            if name in mapping:
                yield mapping[name]
            elif name in Role.__members__.values():
                yield Role(name)

    async def aclose(self) -> None:
        """Release the connections used to fetch the provider's keys and to check API keys."""
        if self.verifier is not None:
            await self.verifier.aclose()
        if self.api_keys is not None:
            await self.api_keys.aclose()
