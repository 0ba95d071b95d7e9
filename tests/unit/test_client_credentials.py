"""``ClientCredentials``: tokens from the development provider, in sync and async clients."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from goalwatch.auth.client_credentials import ClientCredentials, TokenError
from goalwatch.dev.idp import IdpSettings, create_app, read_client_secrets

ISSUER = "http://idp.test"
API = "http://api.test/v1/things"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Api:
    """A resource server that records the bearer tokens it sees; it refuses the ones in
    ``refused`` with 401."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.bodies: list[bytes] = []
        self.refused: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        self.tokens.append(token)
        self.bodies.append(request.content)
        return httpx.Response(401 if token in self.refused else 200, json={"ok": True})


@pytest.fixture
def settings(tmp_path: Path) -> IdpSettings:
    return IdpSettings(state_dir=tmp_path, idp_issuer=ISSUER, idp_token_lifetime=600)


@pytest.fixture
def idp(settings: IdpSettings) -> TestClient:
    return TestClient(create_app(settings), base_url=ISSUER)


def _auth(
    idp: TestClient, settings: IdpSettings, clock: Clock, secret: str | None = None
) -> tuple[ClientCredentials, list[httpx.Request]]:
    """An auth for goalwatch-ingestion reaching the provider in process; and the requests
    it sent the provider."""
    sent: list[httpx.Request] = []

    def to_idp(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        answer = idp.send(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    async def to_idp_async(request: httpx.Request) -> httpx.Response:
        await request.aread()
        await asyncio.sleep(0.01)  # a slow provider: other requests come while this waits
        return to_idp(request)

    auth = ClientCredentials(
        ISSUER,
        "goalwatch-ingestion",
        secret or read_client_secrets(settings.key_dir)["goalwatch-ingestion"],
        transport=httpx.MockTransport(to_idp),
        async_transport=httpx.MockTransport(to_idp_async),
        clock=clock,
    )
    return auth, sent


def test_sync_a_token_is_fetched_once_and_renewed_before_expiry(
    idp: TestClient, settings: IdpSettings
) -> None:
    clock, api = Clock(), Api()
    auth, sent = _auth(idp, settings, clock)
    with httpx.Client(transport=httpx.MockTransport(api), auth=auth) as http:
        assert http.post(API, json={"n": 1}).status_code == 200
        assert http.get(API).status_code == 200
        # Discovery, then the token; the second call reuses it.
        assert [r.url.path for r in sent] == ["/.well-known/openid-configuration", "/token"]
        assert api.tokens[0] == api.tokens[1]
        claims = jwt.decode(api.tokens[0], options={"verify_signature": False})
        assert claims["client_id"] == "goalwatch-ingestion" and claims["roles"] == ["service"]
        clock.now += 600 - 59  # inside the last minute of a 10-minute token
        http.get(API)
    assert [r.url.path for r in sent][2:] == ["/token"]
    assert api.tokens[2] != api.tokens[1]


def test_sync_a_401_fetches_a_new_token_and_repeats_the_request_once(
    idp: TestClient, settings: IdpSettings
) -> None:
    api = Api()
    auth, sent = _auth(idp, settings, Clock())
    with httpx.Client(transport=httpx.MockTransport(api), auth=auth) as http:
        http.get(API)
        api.refused.add(api.tokens[0])
        answer = http.post(API, content=b"the body")
    assert answer.status_code == 200
    assert len(api.tokens) == 3 and api.tokens[2] != api.tokens[1]
    assert api.bodies[1:] == [b"the body", b"the body"]  # the body went again
    assert [r.url.path for r in sent].count("/token") == 2


def test_a_refused_secret_is_a_token_error(idp: TestClient, settings: IdpSettings) -> None:
    auth, _ = _auth(idp, settings, Clock(), secret="wrong")
    with (
        httpx.Client(transport=httpx.MockTransport(Api()), auth=auth) as http,
        pytest.raises(TokenError, match="invalid_client"),
    ):
        http.get(API)
    assert "wrong" not in repr(auth)


async def test_async_concurrent_requests_share_one_fetch(
    idp: TestClient, settings: IdpSettings
) -> None:
    api = Api()
    auth, sent = _auth(idp, settings, Clock())
    async with httpx.AsyncClient(transport=httpx.MockTransport(api), auth=auth) as http:
        answers = await asyncio.gather(*(http.get(API) for _ in range(10)))
        assert {a.status_code for a in answers} == {200}
        assert len(set(api.tokens)) == 1
        assert [r.url.path for r in sent] == ["/.well-known/openid-configuration", "/token"]
        api.refused.add(api.tokens[0])
        assert (await http.get(API)).status_code == 200
    assert [r.url.path for r in sent][2:] == ["/token"]
