"""API keys for systems that cannot sign in with OAuth 2.0, kept by the goals service.

Goals owns identity, so it issues, lists, revokes and verifies keys; the other services ask it
(``POST /v1/api-keys/verify``) and never read these Redis keys themselves. Each key is one
Redis hash (:func:`services.goals.keys.api_key`) holding its name, what it grants, who made
it and when, when it expires and was revoked, when it was last used, and a SHA-256 hash of its
secret (:func:`goalwatch.auth.api_keys.hash_secret`): the secret itself is shown once, when
the key is made, and kept nowhere.

Revocation keeps the record, so that lists and audits still name the key; a revoked or
expired key is refused. A key's use is written down at most once a
:data:`LAST_USED_EVERY`, so a busy key costs one read per check, not a write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from redis.asyncio import Redis

from goalwatch.auth.api_keys import (
    KEY_ROLES,
    ApiKeyGrant,
    ApiKeyVerdict,
    InvalidApiKey,
    hash_secret,
    new_key,
    parse_key,
    secret_matches,
)
from goalwatch.auth.principal import ANY, Principal
from goalwatch.auth.roles import Role
from services.goals import keys

LAST_USED_EVERY = timedelta(minutes=1)
"""How stale a key's ``last_used_at`` may be: it is written at most this often."""

KeyRole = Literal["publisher", "goals_writer", "directory_writer"]
"""The roles a key may grant (:data:`goalwatch.auth.api_keys.KEY_ROLES`)."""

_ALLOWED = ", ".join(role.value for role in Role if role in KEY_ROLES)


class KeyState(StrEnum):
    """Whether a key works."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ApiKeyCreate(BaseModel):
    """A key to make: for which system, with which roles and, for a publisher, which grant."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=100,
        description="Which system the key is for, and why (e.g. `lab-analyser feed`).",
    )
    roles: list[KeyRole] = Field(
        min_length=1, description=f"Roles the key grants: system roles only ({_ALLOWED})."
    )
    metrics: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="For a publisher: the metrics it may publish (`*` for all).",
    )
    sources: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="For a publisher: the sources it may publish as (`*` for all).",
    )
    expires_at: datetime | None = Field(
        None, description="When the key stops working (ISO 8601 with a zone); none: never."
    )

    @field_validator("roles", mode="before")
    @classmethod
    def _system_roles_only(cls, value: Any) -> Any:
        # Said here, before the Literal check, so that the refusal says why and not only what.
        roles = value if isinstance(value, list) else []
        for role in roles:
            if (
                isinstance(role, str)
                and role in Role.__members__.values()
                and role not in KEY_ROLES
            ):
                raise ValueError(
                    f"a key cannot grant {role}: keys are for systems, and grant only "
                    f"{_ALLOWED}; people and goalwatch's services sign in at the identity "
                    "provider"
                )
        return value

    @field_validator("expires_at")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("write the time with its zone, e.g. 2030-01-01T00:00:00Z")
        return value

    @model_validator(mode="after")
    def _grant_fits_roles(self) -> ApiKeyCreate:
        publisher = "publisher" in self.roles
        if publisher and not (self.metrics and self.sources):
            raise ValueError(
                "a publisher key needs the metrics and the sources it may publish: give at "
                f"least one of each (`{ANY}` for all)"
            )
        if not publisher and (self.metrics or self.sources):
            raise ValueError("metrics and sources are a publisher's grant: add role publisher")
        return self


class ApiKeyRead(BaseModel):
    """A key as lists show it: never its secret, nor the secret's hash."""

    id: str = Field(description="The key's public id (the part after `gw_`).")
    name: str = Field(description="Which system the key is for.")
    roles: list[Role] = Field(description="Roles the key grants.")
    metrics: list[str] = Field(description="For a publisher: the metrics it may publish.")
    sources: list[str] = Field(description="For a publisher: the sources it may publish as.")
    created_by: str = Field(description="Who made it (`person:<id>` or `system:<client>`).")
    created_at: datetime = Field(description="When it was made.")
    expires_at: datetime | None = Field(description="When it stops working, if ever.")
    revoked_at: datetime | None = Field(description="When it was revoked, if it was.")
    revoked_by: str | None = Field(description="Who revoked it, if it was.")
    last_used_at: datetime | None = Field(
        description="When it was last accepted, to the minute (none: never)."
    )
    state: KeyState = Field(description="Whether it works now.")


class ApiKeyCreated(ApiKeyRead):
    """A key just made, with the key itself: shown this once, kept nowhere."""

    key: str = Field(
        description="The key (`gw_<id>_<secret>`): store it in the system's secret store now; "
        "it is not shown again."
    )


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class ApiKeyStore:
    """API keys in the goals service's Redis."""

    def __init__(self, redis: Redis, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._redis = redis
        self._now = now

    async def create(self, *, spec: ApiKeyCreate, created_by: str) -> ApiKeyCreated:
        """Make a key as ``spec`` says; the answer is the only place its secret appears."""
        text, parts = new_key()
        now = self._now()
        record = {
            "id": parts.key_id,
            "name": spec.name,
            "roles": json.dumps(sorted(set(spec.roles))),
            "metrics": json.dumps(sorted(set(spec.metrics))),
            "sources": json.dumps(sorted(set(spec.sources))),
            "created_by": created_by,
            "created_at": now.isoformat(),
            "expires_at": spec.expires_at.isoformat() if spec.expires_at else "",
            "secret_sha256": hash_secret(parts.secret),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.api_key(parts.key_id), mapping=dict(record.items()))
            pipe.zadd(keys.API_KEY_IDS, {parts.key_id: now.timestamp()})
            await pipe.execute()
        read = self._read(record, now)
        return ApiKeyCreated(**read.model_dump(), key=text)

    async def get(self, key_id: str) -> ApiKeyRead | None:
        """The key ``key_id``, or ``None``."""
        record = await self._record(key_id)
        return None if record is None else self._read(record, self._now())

    async def list(self) -> list[ApiKeyRead]:
        """Every key, revoked ones too, newest first."""
        ids = [
            key_id
            for key_id in await self._redis.zrange(keys.API_KEY_IDS, 0, -1, desc=True)
            if isinstance(key_id, bytes | str)
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hgetall(keys.api_key(_text(key_id)))
            records = await pipe.execute()
        now = self._now()
        return [self._read(_decoded(record), now) for record in records if record]

    async def revoke(self, key_id: str, *, revoked_by: str) -> ApiKeyRead | None:
        """Revoke ``key_id`` (the first revocation's time and author stay); ``None`` if there
        is no such key."""
        name = keys.api_key(key_id)
        if not await self._redis.exists(name):
            return None
        # HSETNX: revoking again changes nothing, so the record says when it first stopped.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(name, "revoked_at", self._now().isoformat())
            pipe.hsetnx(name, "revoked_by", revoked_by)
            await pipe.execute()
        return await self.get(key_id)

    async def check(self, key: str) -> ApiKeyVerdict:
        """Whether ``key`` is valid now, and what it grants; notes its use (coarsely)."""
        try:
            parts = parse_key(key)
        except InvalidApiKey as exc:
            return ApiKeyVerdict(valid=False, reason=str(exc))
        record = await self._record(parts.key_id)
        # An unknown id and a wrong secret read the same: nothing to learn by trying.
        if record is None or not secret_matches(parts.secret, record["secret_sha256"]):
            return ApiKeyVerdict(
                valid=False,
                reason=f"no API key {parts.key_id} with this secret: check that the key was "
                "copied whole, or ask an operator for a new one",
            )
        now = self._now()
        read = self._read(record, now)
        if read.state is KeyState.REVOKED:
            return ApiKeyVerdict(
                valid=False,
                reason=f"API key {read.id} ({read.name}) was revoked at {read.revoked_at}; "
                "ask an operator for a new one",
            )
        if read.state is KeyState.EXPIRED:
            return ApiKeyVerdict(
                valid=False,
                reason=f"API key {read.id} ({read.name}) expired at {read.expires_at}; ask an "
                "operator for a new one",
            )
        if read.last_used_at is None or now - read.last_used_at >= LAST_USED_EVERY:
            await self._redis.hset(keys.api_key(read.id), "last_used_at", now.isoformat())
        return ApiKeyVerdict(
            valid=True,
            grant=ApiKeyGrant(
                key_id=read.id,
                name=read.name,
                roles=read.roles,
                metrics=read.metrics,
                sources=read.sources,
                expires_at=read.expires_at,
            ),
        )

    async def _record(self, key_id: str) -> dict[str, str] | None:
        record = await self._redis.hgetall(keys.api_key(key_id))
        return _decoded(record) if record else None

    @staticmethod
    def _read(record: dict[str, str], now: datetime) -> ApiKeyRead:
        expires_at = _time(record.get("expires_at"))
        revoked_at = _time(record.get("revoked_at"))
        if revoked_at is not None:
            state = KeyState.REVOKED
        elif expires_at is not None and expires_at <= now:
            state = KeyState.EXPIRED
        else:
            state = KeyState.ACTIVE
        return ApiKeyRead(
            id=record["id"],
            name=record["name"],
            roles=json.loads(record["roles"]),
            metrics=json.loads(record["metrics"]),
            sources=json.loads(record["sources"]),
            created_by=record["created_by"],
            created_at=datetime.fromisoformat(record["created_at"]),
            expires_at=expires_at,
            revoked_at=revoked_at,
            revoked_by=record.get("revoked_by") or None,
            last_used_at=_time(record.get("last_used_at")),
            state=state,
        )


class StoreVerifier:
    """The goals service's own :class:`~goalwatch.auth.api_keys.ApiKeyVerifier`: its store,
    read at each request (no cache, so a revocation holds at once here)."""

    def __init__(self, store: ApiKeyStore) -> None:
        self._store = store

    async def verify(self, key: str) -> Principal:
        """The principal of ``key``; :class:`InvalidApiKey` if it is refused."""
        verdict = await self._store.check(key)
        if not verdict.valid or verdict.grant is None:
            raise InvalidApiKey(verdict.reason or "the API key was refused")
        return verdict.grant.principal()

    async def aclose(self) -> None:
        """Nothing to release: the store's Redis client is closed with the app."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decoded(record: dict[Any, Any]) -> dict[str, str]:
    return {_text(name): _text(value) for name, value in record.items()}
