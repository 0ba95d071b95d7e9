"""API keys: how systems that cannot do OAuth 2.0 sign in (docs/api-keys.md).

A key reads ``gw_<key id>_<secret>``: the key id is short and public (it names the key in
lists, logs and revocations), the secret is :data:`SECRET_BYTES` random bytes, URL-safe
base64. The goals service issues and stores keys (``services/goals/api_keys.py``) and keeps
only a hash of the secret; every other service asks goals to verify a key
(:mod:`goalwatch.auth.api_key_client`).

A key stands for a system, never a person, and grants only system roles
(:data:`KEY_ROLES`): whoever holds a key cannot do more than a system could, and a key can
never be made into an HR admin, an operator or a goalwatch service.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from goalwatch.auth.principal import Kind, Principal
from goalwatch.auth.roles import Role
from goalwatch.auth.tokens import InvalidToken

PREFIX = "gw_"
"""What every key starts with, so that it is told from a JWT at a glance (and by scanners)."""
KEY_ID_BYTES = 6
"""Random bytes of a key id (12 hex digits): enough not to collide, short enough to read."""
SECRET_BYTES = 32
"""Random bytes of a key's secret: 256 bits, beyond guessing."""

KEY_ID_PATTERN = r"^[0-9a-f]{12}$"
"""A key id: 12 lowercase hex digits (no ``_``, so the key splits unambiguously)."""
_KEY = re.compile(r"^gw_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43,128})$")

KEY_ROLES: frozenset[Role] = frozenset({Role.PUBLISHER, Role.GOALS_WRITER, Role.DIRECTORY_WRITER})
"""The only roles a key may grant: a system's. ``hr_admin``, ``operator`` and ``service``
belong to people and to goalwatch's own services, signed in at the identity provider."""


class InvalidApiKey(InvalidToken):
    """A key that is not accepted (malformed, unknown, revoked or expired); the message says
    why, without the secret."""


class ApiKeysUnavailable(Exception):
    """Keys cannot be checked now (the goals service does not answer); retry later."""


@dataclass(frozen=True)
class KeyParts:
    """A presented key, split: its public id and its secret."""

    key_id: str
    secret: str


def looks_like_key(credential: str) -> bool:
    """Whether ``credential`` is meant as an API key (rather than a JWT)."""
    return credential.startswith(PREFIX)


def parse_key(key: str) -> KeyParts:
    """The id and secret of ``key``; :class:`InvalidApiKey` when it is not written as a key is."""
    match = _KEY.match(key.strip())
    if match is None:
        raise InvalidApiKey(
            "not an API key: a key reads gw_<12 hex digits>_<secret>, exactly as it was "
            "shown when it was created (copy it whole)"
        )
    return KeyParts(match["id"], match["secret"])


def new_key() -> tuple[str, KeyParts]:
    """A fresh key: its full text (shown once) and its parts."""
    parts = KeyParts(secrets.token_hex(KEY_ID_BYTES), secrets.token_urlsafe(SECRET_BYTES))
    return f"{PREFIX}{parts.key_id}_{parts.secret}", parts


def hash_secret(secret: str) -> str:
    """The hash kept in place of ``secret`` (hex SHA-256).

    A plain, fast hash is right here, unlike for passwords: the secret is 256 random bits, so
    nobody can guess it from its hash however fast they try, and a slow hash (bcrypt,
    Argon2) would add nothing but its cost to every request a key signs.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Whether ``secret`` is the one ``stored_hash`` was made from, in constant time (so the
    time an answer takes says nothing of how much of a guess was right)."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


class ApiKeyGrant(BaseModel):
    """What a valid key grants: the fields of the system principal it signs in as."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(description="The key's public id.", pattern=KEY_ID_PATTERN)
    name: str = Field(description="The key's name, given when it was made (the system's).")
    roles: list[Role] = Field(description="The roles the key grants (system roles only).")
    metrics: list[str] = Field(
        default_factory=list, description="For a publisher: the metrics it may publish (* all)."
    )
    sources: list[str] = Field(
        default_factory=list, description="For a publisher: the sources it may publish as (* all)."
    )
    expires_at: datetime | None = Field(None, description="When the key stops working, if ever.")

    def principal(self) -> Principal:
        """The caller the key signs in as: always a system, with at most the system roles,
        whatever the record says."""
        return Principal(
            subject=f"api-key:{self.key_id}",
            kind=Kind.SYSTEM,
            roles=frozenset(self.roles) & KEY_ROLES,
            client_id=f"api-key:{self.key_id}",
            name=self.name,
            metrics=frozenset(self.metrics),
            sources=frozenset(self.sources),
        )


class ApiKeyCheck(BaseModel):
    """``POST /v1/api-keys/verify``: a key presented to another service. In the body, not the
    URL, so that it stays out of access logs."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="The key as presented (gw_<key id>_<secret>).", max_length=256)


class ApiKeyVerdict(BaseModel):
    """Whether a key is valid now, and what it grants.

    A refused key is an answer (200 with ``valid: false``), not a refused call: a 401 would
    read as the asking service's own sign-in being refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    valid: bool = Field(description="Whether the key is accepted now.")
    grant: ApiKeyGrant | None = Field(None, description="What it grants, when valid.")
    reason: str | None = Field(None, description="Why it is refused, when not valid.")


class ApiKeyVerifier(Protocol):
    """Turns a presented key into the principal it signs in as."""

    async def verify(self, key: str) -> Principal:
        """The principal of ``key``; :class:`InvalidApiKey` if it is refused,
        :class:`ApiKeysUnavailable` if it cannot be checked now."""
        ...

    async def aclose(self) -> None:
        """Release what the verifier holds (connections)."""
        ...
