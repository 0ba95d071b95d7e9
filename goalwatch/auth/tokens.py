"""OpenID Connect bearer tokens, checked against the identity provider's published keys.

The provider is found by its issuer URL (``GOALWATCH_OIDC_ISSUER``): its discovery document
names the JWKS URL, whose keys are fetched once and again only when a token names a key not
yet seen (the provider rotated its keys), at most every :data:`REFRESH_AT_MOST_EVERY` seconds
so a stream of tokens with made-up key ids cannot make the service hammer the provider.
All JWT work is PyJWT's: signature, ``exp``/``nbf``/``iat`` with leeway, ``iss`` and ``aud``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

REFRESH_AT_MOST_EVERY = 30.0
"""Seconds between two fetches of the provider's keys."""

LEEWAY_SECONDS = 30
"""Clock difference tolerated between the provider and the service."""

# Asymmetric algorithms only: a token signed with HMAC would use the public key as a secret.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


class InvalidToken(Exception):
    """A bearer token that is not accepted; the message says why, without the token."""


class ProviderUnavailable(Exception):
    """The identity provider's keys could not be fetched (so no token can be checked now)."""


class TokenVerifier:
    """Checks bearer tokens of one issuer for one audience."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._jwks_url = jwks_url
        self._http = http or httpx.AsyncClient(timeout=10.0)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def discovery_url(self) -> str:
        """The provider's OpenID Connect discovery document."""
        return f"{self.issuer}/.well-known/openid-configuration"

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` if it is valid now; else :class:`InvalidToken`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"not a JWT ({exc})") from None
        kid = header.get("kid")
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise InvalidToken(f"signed with {algorithm!r}; accepted: {', '.join(ALGORITHMS)}")
        key = await self._key(kid if isinstance(kid, str) else None)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired; sign in again") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(f"the token is not for audience {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken(f"the token was not issued by {self.issuer}") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is not valid ({exc})") from None
        return claims

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        found = self._pick(kid)
        if found is not None:
            return found
        async with self._lock:
            found = self._pick(kid)
            if found is None and time.monotonic() - self._fetched_at >= REFRESH_AT_MOST_EVERY:
                await self._fetch()
                found = self._pick(kid)
        if found is None:
            raise InvalidToken(
                f"signed with a key ({kid!r}) the identity provider does not publish"
            )
        return found

    def _pick(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            # A provider with one key may leave kid out of its tokens.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            if self._jwks_url is None:
                discovery = await self._http.get(self.discovery_url)
                discovery.raise_for_status()
                self._jwks_url = str(discovery.json()["jwks_uri"])
            answer = await self._http.get(self._jwks_url)
            answer.raise_for_status()
            document = answer.json()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise ProviderUnavailable(
                f"the identity provider's keys could not be fetched from "
                f"{self._jwks_url or self.discovery_url}: {exc}"
            ) from None
        keys: dict[str, jwt.PyJWK] = {}
        for index, entry in enumerate(document.get("keys", [])):
            if entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK.from_dict(entry)
            except jwt.PyJWTError:
                continue  # a key type this service does not use (e.g. encryption)
            keys[key.key_id or f"#{index}"] = key
        self._keys = keys

    async def aclose(self) -> None:
        """Close the HTTP client used to fetch keys."""
        await self._http.aclose()
