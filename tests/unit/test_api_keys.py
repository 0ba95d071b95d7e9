"""API keys: their format, what goals keeps of them, who they can be, and how long other
services trust an answer (tests/integration/test_api_keys.py runs them through the stack)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import httpx
import pytest
from fakeredis import FakeAsyncRedis
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from goalwatch.auth.api_key_client import HttpApiKeyVerifier
from goalwatch.auth.api_keys import (
    KEY_ROLES,
    ApiKeyGrant,
    ApiKeysUnavailable,
    ApiKeyVerdict,
    InvalidApiKey,
    hash_secret,
    looks_like_key,
    new_key,
    parse_key,
    secret_matches,
)
from goalwatch.auth.policies import EVENTS_PUBLISH, PEOPLE_READ
from goalwatch.auth.policy import Caller
from goalwatch.auth.principal import Kind
from goalwatch.auth.roles import Role
from goalwatch.service import service_app
from goalwatch.settings import ServiceSettings
from services.goals import keys
from services.goals.api_keys import ApiKeyCreate, ApiKeyStore, KeyState, StoreVerifier
from services.goals.api_keys_api import api_keys_router
from tests.unit.signed_in import signed_in

LOCAL = "http://127.0.0.1"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Clock:
    """Wall time and a monotonic clock that tests move on by hand."""

    def __init__(self) -> None:
        self.at = T0
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        self.mono += seconds


def publisher(**overrides: object) -> ApiKeyCreate:
    spec = {"name": "lab feed", "roles": ["publisher"], "metrics": ["crm.visit_logged"],
            "sources": ["crm"], **overrides}  # fmt: skip
    return ApiKeyCreate.model_validate(spec)


# the format


def test_a_new_key_reads_gw_id_secret_and_parses_back() -> None:
    text, parts = new_key()
    assert text == f"gw_{parts.key_id}_{parts.secret}"
    assert looks_like_key(text) and not looks_like_key("eyJhbGciOiJSUzI1NiJ9.e30.sig")
    assert len(parts.key_id) == 12 and int(parts.key_id, 16) >= 0
    # 32 random bytes, URL-safe base64 without padding: 43 characters.
    assert len(parts.secret) >= 43 and "=" not in parts.secret
    assert parse_key(text) == parts
    assert new_key()[1] != parts


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gw_",
        "abc",
        "eyJhbGciOiJSUzI1NiJ9.e30.sig",
        "gw_0123456789ab",  # no secret
        "gw_0123456789ab_short",  # a secret under 32 bytes
        "gw_0123456789AB_" + "a" * 43,  # the id is lowercase hex
        "gw_0123456789a_" + "a" * 43,  # 11 digits
        "gw_0123456789ab_" + "a" * 42 + "!",  # not URL-safe
    ],
)
def test_text_that_is_not_a_key_is_refused_without_the_text(text: str) -> None:
    with pytest.raises(InvalidApiKey, match="gw_<12 hex digits>_<secret>") as refused:
        parse_key(text)
    assert len(text) < 20 or text not in str(refused.value)


def test_a_secret_may_hold_underscores_the_key_splits_at_the_first() -> None:
    secret = "a_b-" + "c" * 40
    assert parse_key(f"gw_0123456789ab_{secret}").secret == secret


def test_the_hash_is_sha256_compared_in_constant_time() -> None:
    _, parts = new_key()
    stored = hash_secret(parts.secret)
    assert stored == hashlib.sha256(parts.secret.encode()).hexdigest()
    assert secret_matches(parts.secret, stored)
    assert not secret_matches(parts.secret[:-1] + "x", stored)


# what goals keeps


async def test_the_store_keeps_a_hash_and_never_the_secret() -> None:
    redis = FakeAsyncRedis(decode_responses=True)
    store = ApiKeyStore(redis)
    made = await store.create(spec=publisher(), created_by="person:ops")
    secret = parse_key(made.key).secret
    everything = []
    for name in await redis.keys("*"):
        assert name.startswith("goalwatch:goals:api-key:")
        kind = await redis.type(name)
        if kind == "hash":
            everything += list((await redis.hgetall(name)).values())
        else:
            everything += list(await redis.zrange(name, 0, -1))
    assert not any(secret in value for value in everything)
    record = await redis.hgetall(keys.api_key(made.id))
    assert record["secret_sha256"] == hash_secret(secret)
    listed = await store.list()
    assert [key.id for key in listed] == [made.id]
    assert "key" not in listed[0].model_dump() and "secret_sha256" not in json.dumps(
        listed[0].model_dump(mode="json")
    )


async def test_a_revoked_key_is_refused_and_the_record_stays() -> None:
    clock = Clock()
    store = ApiKeyStore(FakeAsyncRedis(decode_responses=True), now=clock.now)
    made = await store.create(spec=publisher(), created_by="person:ops")
    assert (await store.check(made.key)).valid
    clock.advance(5)
    revoked = await store.revoke(made.id, revoked_by="person:wang-fang")
    assert revoked is not None and revoked.state is KeyState.REVOKED
    clock.advance(5)
    again = await store.revoke(made.id, revoked_by="person:ops")
    assert again is not None and again.revoked_at == T0 + timedelta(seconds=5)
    assert again.revoked_by == "person:wang-fang"
    verdict = await store.check(made.key)
    assert not verdict.valid and "revoked" in str(verdict.reason)
    assert await store.revoke("0123456789ab", revoked_by="person:ops") is None


async def test_an_expired_key_is_refused_and_a_wrong_secret_reads_as_no_key() -> None:
    clock = Clock()
    store = ApiKeyStore(FakeAsyncRedis(decode_responses=True), now=clock.now)
    made = await store.create(
        spec=publisher(expires_at=T0 + timedelta(days=1)), created_by="person:ops"
    )
    wrong = made.key[:-1] + ("A" if made.key[-1] != "A" else "B")
    unknown = await store.check(f"gw_0123456789ab_{'a' * 43}")
    assert not (await store.check(wrong)).valid
    assert (await store.check(wrong)).reason == (await store.check(wrong)).reason
    assert not unknown.valid and "with this secret" in str(unknown.reason)
    clock.advance(86400)
    expired = await store.check(made.key)
    assert not expired.valid and "expired" in str(expired.reason)


async def test_last_used_is_written_at_most_once_a_minute() -> None:
    clock = Clock()
    redis = FakeAsyncRedis(decode_responses=True)
    store = ApiKeyStore(redis, now=clock.now)
    made = await store.create(spec=publisher(), created_by="person:ops")
    await store.check(made.key)
    first = await redis.hget(keys.api_key(made.id), "last_used_at")
    clock.advance(30)
    await store.check(made.key)
    assert await redis.hget(keys.api_key(made.id), "last_used_at") == first
    clock.advance(31)
    await store.check(made.key)
    assert await redis.hget(keys.api_key(made.id), "last_used_at") != first


# who a key can be


@pytest.mark.parametrize("role", ["hr_admin", "operator", "service"])
def test_a_key_cannot_grant_a_person_or_service_role(role: str) -> None:
    with pytest.raises(ValidationError, match="publisher, goals_writer") as refused:
        ApiKeyCreate(name="x", roles=[role])  # type: ignore[list-item]
    assert f"cannot grant {role}" in str(refused.value)


def test_a_publisher_key_names_its_grant_and_others_have_none() -> None:
    with pytest.raises(ValidationError, match="needs the metrics and the sources"):
        publisher(sources=[])
    with pytest.raises(ValidationError, match="publisher's grant"):
        ApiKeyCreate(name="x", roles=["goals_writer"], metrics=["m"])
    with pytest.raises(ValidationError, match="zone"):
        publisher(expires_at="2030-01-01T00:00:00")


def test_a_key_is_always_a_system_with_system_roles_only() -> None:
    # Even a record changed behind goals' back cannot make a key a person or an HR admin.
    grant = ApiKeyGrant.model_construct(
        key_id="0123456789ab", name="forged", roles=[Role.HR_ADMIN, Role.PUBLISHER],
        metrics=["*"], sources=["*"], expires_at=None,
    )  # fmt: skip
    principal = grant.principal()
    assert principal.kind is Kind.SYSTEM and principal.person_id is None
    assert principal.roles == {Role.PUBLISHER} and principal.roles <= KEY_ROLES
    assert principal.who == "system:api-key:0123456789ab"


# through a service's sign-in


def keyed_app(store: ApiKeyStore) -> TestClient:
    app = service_app(
        name="keys",
        settings=ServiceSettings(),
        checks={},
        registry=CollectorRegistry(),
        api_keys=StoreVerifier(store),
    )
    toy = APIRouter()

    @toy.post("/v1/publish")
    async def publish(caller: Annotated[Caller, Depends(EVENTS_PUBLISH)]) -> str:
        return caller.who

    @toy.get("/v1/people")
    async def people(caller: Annotated[Caller, Depends(PEOPLE_READ)]) -> str:
        return caller.who

    app.include_router(toy)
    app.include_router(api_keys_router(store))
    return TestClient(app, base_url=LOCAL)


async def test_a_key_signs_in_as_bearer_or_x_api_key_and_only_as_one() -> None:
    store = ApiKeyStore(FakeAsyncRedis(decode_responses=True))
    made = await store.create(spec=publisher(), created_by="person:ops")
    with keyed_app(store) as client:
        as_bearer = client.post("/v1/publish", headers={"Authorization": f"Bearer {made.key}"})
        as_header = client.post("/v1/publish", headers={"X-API-Key": made.key})
        assert as_bearer.status_code == as_header.status_code == 200
        assert as_bearer.json() == f"system:api-key:{made.id}"
        # A person's route: a key is no person, so it is refused, not scoped.
        person = client.get("/v1/people", headers={"X-API-Key": made.key})
        assert person.status_code == 403
        both = client.post(
            "/v1/publish", headers={"X-API-Key": made.key, "Authorization": "Bearer x"}
        )
        assert both.status_code == 401 and "not both" in both.json()["detail"]
        jwt_as_key = client.post("/v1/publish", headers={"X-API-Key": "eyJhbGciOi.e30.x"})
        assert jwt_as_key.status_code == 401
        await store.revoke(made.id, revoked_by="person:ops")
        refused = client.post("/v1/publish", headers={"X-API-Key": made.key})
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
        assert made.key.split("_", 2)[2] not in refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")


def test_creating_a_key_with_an_hr_role_is_answered_422_naming_the_allowed_roles() -> None:
    store = ApiKeyStore(FakeAsyncRedis(decode_responses=True))
    with keyed_app(store) as client:
        signed_in(client.app)  # type: ignore[arg-type]
        answer = client.post("/v1/api-keys", json={"name": "x", "roles": ["hr_admin"]})
        assert answer.status_code == 422
        assert "publisher, goals_writer" in answer.json()["detail"]
        made = client.post("/v1/api-keys", json=publisher().model_dump(mode="json"))
        assert made.status_code == 201 and made.json()["key"].startswith("gw_")
        listed = client.get("/v1/api-keys")
        assert made.json()["key"] not in listed.text and "sha256" not in listed.text
        assert client.get("/v1/api-keys/0123456789ab").status_code == 404
        verdict = client.post("/v1/api-keys/verify", json={"key": made.json()["key"]})
        assert verdict.json()["valid"] is True


# how long another service trusts an answer


class Goals:
    """A stand-in goals verify route, counting the questions it is asked."""

    def __init__(self, verdict: ApiKeyVerdict, status: int = 200) -> None:
        self.verdict = verdict
        self.status = status
        self.asked = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.asked += 1
        assert request.url.path == "/v1/api-keys/verify"
        assert request.headers["authorization"] == "Bearer service-token"
        return httpx.Response(self.status, content=self.verdict.model_dump_json())


class ServiceToken(httpx.Auth):
    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = "Bearer service-token"
        yield request


def verifier(goals: Goals, clock: Clock, ttl: float = 30.0) -> HttpApiKeyVerifier:
    async def no_sleep(_: float) -> None:
        return None

    return HttpApiKeyVerifier(
        base_url="http://goals",
        auth=ServiceToken(),
        ttl=ttl,
        http=httpx.AsyncClient(transport=httpx.MockTransport(goals.handler)),
        clock=clock.monotonic,
        now=clock.now,
        sleep=no_sleep,
    )


def grant(**overrides: object) -> ApiKeyVerdict:
    fields = {"key_id": "0123456789ab", "name": "lab feed", "roles": ["publisher"],
              "metrics": ["m"], "sources": ["s"], **overrides}  # fmt: skip
    return ApiKeyVerdict(valid=True, grant=ApiKeyGrant.model_validate(fields))


KEY = "gw_0123456789ab_" + "s" * 43


async def test_an_answer_is_kept_for_the_ttl_then_asked_again() -> None:
    clock, goals = Clock(), Goals(grant())
    check = verifier(goals, clock)
    assert (await check.verify(KEY)).roles == {Role.PUBLISHER}
    clock.advance(29)
    await check.verify(KEY)
    assert goals.asked == 1
    goals.verdict = ApiKeyVerdict(valid=False, reason="API key 0123456789ab was revoked")
    clock.advance(1)  # the TTL is over: a revocation takes effect now
    with pytest.raises(InvalidApiKey, match="revoked"):
        await check.verify(KEY)
    assert goals.asked == 2
    await check.aclose()


async def test_refusals_are_kept_too_so_a_bad_key_cannot_hammer_goals() -> None:
    clock = Clock()
    goals = Goals(ApiKeyVerdict(valid=False, reason="no API key 0123456789ab with this secret"))
    check = verifier(goals, clock)
    for _ in range(5):
        with pytest.raises(InvalidApiKey, match="with this secret"):
            await check.verify(KEY)
    with pytest.raises(InvalidApiKey, match="gw_<12 hex digits>"):
        await check.verify("gw_nonsense")  # never leaves the service
    assert goals.asked == 1
    await check.aclose()


async def test_an_answer_is_never_kept_past_the_key_expiry() -> None:
    clock = Clock()
    goals = Goals(grant(expires_at=T0 + timedelta(seconds=5)))
    check = verifier(goals, clock)
    await check.verify(KEY)
    clock.advance(5)
    await check.verify(KEY)
    assert goals.asked == 2
    await check.aclose()


async def test_goals_not_answering_is_unavailable_and_nothing_is_kept() -> None:
    clock, goals = Clock(), Goals(grant(), status=503)
    check = verifier(goals, clock)
    with pytest.raises(ApiKeysUnavailable, match="after 2 attempts"):
        await check.verify(KEY)
    assert goals.asked == 2
    goals.status = 200
    await check.verify(KEY)
    assert goals.asked == 3
    goals.status = 403
    clock.advance(60)
    with pytest.raises(ApiKeysUnavailable, match="role service"):
        await check.verify(KEY)
    await check.aclose()


async def test_a_service_without_a_sign_in_of_its_own_says_so() -> None:
    check = HttpApiKeyVerifier(base_url="http://goals", auth=None, ttl=30)
    with pytest.raises(ApiKeysUnavailable, match="GOALWATCH_OIDC_CLIENT_ID"):
        await check.verify(KEY)
    await check.aclose()
