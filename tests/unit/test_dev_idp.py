"""The development identity provider, in process: discovery, keys, the three grants."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from goalwatch.dev.idp import (
    DEFAULT_USERS_FILE,
    IdpSettings,
    create_app,
    load_directory,
    pkce_challenge,
    read_client_secrets,
)

ISSUER = "http://idp.test"
CONSOLE = "goalwatch-console"
CALLBACK = "http://127.0.0.1:8123/callback"
VERIFIER = "a-code-verifier-of-forty-three-characters-or-more"


class Clock:
    """Wall-clock time until a test moves it on (PyJWT checks tokens against the wall clock)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(tmp_path: Path) -> IdpSettings:
    return IdpSettings(state_dir=tmp_path, idp_issuer=ISSUER)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def idp(settings: IdpSettings, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock), base_url=ISSUER) as client:
        yield client


def secret(settings: IdpSettings, client: str) -> str:
    return read_client_secrets(settings.key_dir)[client]


def verify(idp: TestClient, token: str, audience: str = "goalwatch") -> dict[str, Any]:
    """The claims, checked against the key the provider serves, as a service checks them."""
    keys = jwt.PyJWKSet.from_dict(idp.get("/jwks").json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "sub", "jti"]},
    )
    return claims


def test_discovery_names_the_endpoints_under_the_issuer(idp: TestClient) -> None:
    metadata = idp.get("/.well-known/openid-configuration").json()
    assert metadata["issuer"] == ISSUER
    assert metadata["jwks_uri"] == f"{ISSUER}/jwks"
    assert metadata["token_endpoint"] == f"{ISSUER}/token"
    assert metadata["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert metadata["userinfo_endpoint"] == f"{ISSUER}/userinfo"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(metadata["grant_types_supported"]) == {
        "client_credentials",
        "password",
        "authorization_code",
        "refresh_token",
    }


def test_the_key_and_secrets_are_kept_private_and_reused(settings: IdpSettings) -> None:
    first = TestClient(create_app(settings)).get("/jwks").json()["keys"]
    secrets = read_client_secrets(settings.key_dir)
    second = TestClient(create_app(settings)).get("/jwks").json()["keys"]
    assert first == second and len(first) == 1
    assert first[0]["kty"] == "RSA" and first[0]["alg"] == "RS256" and first[0]["kid"]
    assert "d" not in first[0]  # the public half only
    assert read_client_secrets(settings.key_dir) == secrets
    directory = load_directory(DEFAULT_USERS_FILE)
    assert set(secrets) == {c for c, client in directory.clients.items() if not client.public}
    for path in settings.key_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_client_credentials_by_basic_and_by_form(idp: TestClient, settings: IdpSettings) -> None:
    basic = idp.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=("his", secret(settings, "his")),
    )
    assert basic.status_code == 200, basic.text
    assert basic.headers["cache-control"] == "no-store"
    body = basic.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 12 * 3600
    assert "id_token" not in body
    claims = verify(idp, body["access_token"])
    assert claims["sub"] == claims["client_id"] == claims["azp"] == "his"
    assert claims["roles"] == ["publisher"]
    assert claims["goalwatch_sources"] == ["his"]
    assert "report_rework_rate" in claims["goalwatch_metrics"]
    assert claims["exp"] - claims["iat"] == 12 * 3600 and claims["jti"]

    form = idp.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "goalwatch-dev",
            "client_secret": secret(settings, "goalwatch-dev"),
        },
    )
    claims = verify(idp, form.json()["access_token"])
    assert claims["roles"] == ["hr_admin", "operator", "publisher"]
    assert claims["goalwatch_metrics"] == claims["goalwatch_sources"] == ["*"]
    service = idp.post(
        "/token",
        data={"grant_type": "client_credentials"},
        auth=("goalwatch-evaluator", secret(settings, "goalwatch-evaluator")),
    )
    claims = verify(idp, service.json()["access_token"])
    assert claims["roles"] == ["service"] and "goalwatch_metrics" not in claims


@pytest.mark.parametrize(
    ("auth", "form"),
    [
        (("his", "not-the-secret"), {}),
        (("nobody", "x"), {}),
        (None, {"client_id": "his", "client_secret": "not-the-secret"}),
        (None, {"client_id": "his"}),
        (None, {}),
    ],
)
def test_a_wrong_client_secret_is_invalid_client(
    idp: TestClient, auth: tuple[str, str] | None, form: dict[str, str]
) -> None:
    refused = idp.post("/token", data={"grant_type": "client_credentials", **form}, auth=auth)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert refused.headers["www-authenticate"].startswith("Basic")


def test_a_client_may_use_only_its_grants(idp: TestClient, settings: IdpSettings) -> None:
    refused = idp.post(
        "/token",
        data={"grant_type": "password", "username": "zhang-wei"},
        auth=("his", secret(settings, "his")),
    )
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    public = idp.post("/token", data={"grant_type": "client_credentials", "client_id": CONSOLE})
    assert public.status_code == 400 and public.json()["error"] == "unauthorized_client"


def test_password_grant_signs_a_demo_person_in(idp: TestClient, clock: Clock) -> None:
    answer = idp.post("/token", data={"grant_type": "password", "username": "zhang-wei"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    claims = verify(idp, body["access_token"])
    assert claims["sub"] == claims["preferred_username"] == "zhang-wei"
    assert claims["name"] == "Dr. Zhang Wei" and claims["email"] == "zhang.wei@example.org"
    assert claims["roles"] == []  # a manager by the org chart, not by a claim
    assert claims["iat"] == int(clock.now) and claims["exp"] == int(clock.now) + 12 * 3600
    assert "client_id" not in claims
    identity = verify(idp, body["id_token"], audience="goalwatch-cli")
    assert identity["sub"] == "zhang-wei" and identity["azp"] == "goalwatch-cli"
    # An ID token is not an access token: its audience is the client.
    with pytest.raises(jwt.InvalidAudienceError):
        verify(idp, body["id_token"])

    unknown = idp.post("/token", data={"grant_type": "password", "username": "mallory"})
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"


def test_a_person_the_users_file_does_not_list_signs_in_only_when_allowed(
    settings: IdpSettings, clock: Clock
) -> None:
    ask = {"grant_type": "password", "username": "head-1234", "client_id": "goalwatch-cli"}
    with TestClient(create_app(settings, clock=clock), base_url=ISSUER) as closed:
        assert closed.post("/token", data=ask).json()["error"] == "invalid_grant"
    opened = settings.model_copy(update={"idp_any_person": True})
    with TestClient(create_app(opened, clock=clock), base_url=ISSUER) as idp:
        answer = idp.post("/token", data=ask)
        assert answer.status_code == 200, answer.text
        claims = verify(idp, answer.json()["access_token"])
        assert (claims["preferred_username"], claims["roles"]) == ("head-1234", [])
        info = idp.get(
            "/userinfo", headers={"Authorization": f"Bearer {answer.json()['access_token']}"}
        )
        assert info.json()["preferred_username"] == "head-1234"
        odd = idp.post("/token", data={**ask, "username": "../etc"})
        assert odd.json()["error"] == "invalid_grant"


def test_userinfo_describes_the_person_of_a_token(idp: TestClient, settings: IdpSettings) -> None:
    token = idp.post("/token", data={"grant_type": "password", "username": "sun-li"}).json()
    info = idp.get("/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert info.json() == {
        "sub": "sun-li",
        "preferred_username": "sun-li",
        "name": "Sun Li (HRBP)",
        "email": "sun.li@example.org",
        "roles": [],
    }
    assert idp.get("/userinfo", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert idp.get("/userinfo").status_code == 401


def _authorize(idp: TestClient, user: str = "li-na", **extra: str) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": CONSOLE,
        "redirect_uri": CALLBACK,
        "state": "xyz",
        "nonce": "n-1",
        "code_challenge": pkce_challenge(VERIFIER),
        "code_challenge_method": "S256",
        **extra,
    }
    page = idp.get("/authorize", params=params)
    assert page.status_code == 200, page.text
    assert "chen-jie" in page.text and 'name="password"' in page.text
    return idp.post(
        "/authorize", data={**params, "username": user, "password": ""}, follow_redirects=False
    )


def _code(redirect: httpx.Response) -> str:
    assert redirect.status_code == 303, redirect.text
    location = httpx.URL(redirect.headers["location"])
    assert str(location).startswith(CALLBACK)
    assert location.params["state"] == "xyz"
    return location.params["code"]


def _redeem(idp: TestClient, code: str, verifier: str = VERIFIER, **extra: str) -> httpx.Response:
    return idp.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "client_id": CONSOLE,
            "code_verifier": verifier,
            **extra,
        },
    )


def test_authorization_code_with_pkce(idp: TestClient) -> None:
    code = _code(_authorize(idp))
    answer = _redeem(idp, code)
    assert answer.status_code == 200, answer.text
    assert verify(idp, answer.json()["access_token"])["preferred_username"] == "li-na"
    identity = verify(idp, answer.json()["id_token"], audience=CONSOLE)
    assert identity["nonce"] == "n-1"
    # Single use: the same code again is refused.
    again = _redeem(idp, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def _refresh(idp: TestClient, token: str, client: str = CONSOLE) -> httpx.Response:
    return idp.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client}
    )


def test_a_refresh_token_is_used_once_and_replaced_until_the_session_ends(
    idp: TestClient, clock: Clock, settings: IdpSettings
) -> None:
    first = _redeem(idp, _code(_authorize(idp))).json()
    assert first["refresh_token"]
    renewed = _refresh(idp, first["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    body = renewed.json()
    assert verify(idp, body["access_token"])["preferred_username"] == "li-na"
    assert body["refresh_token"] != first["refresh_token"]
    # Rotation: the used token is refused, its successor works.
    assert _refresh(idp, first["refresh_token"]).json()["error"] == "invalid_grant"
    successor = _refresh(idp, body["refresh_token"])
    assert successor.status_code == 200
    # The session ends a session lifetime after sign-in, however often it was refreshed.
    clock.now += settings.idp_session_lifetime.total_seconds() + 1
    ended = _refresh(idp, successor.json()["refresh_token"])
    assert ended.status_code == 400 and ended.json()["error"] == "invalid_grant"


def test_a_client_without_the_refresh_grant_neither_gets_nor_redeems_one(idp: TestClient) -> None:
    token = _redeem(idp, _code(_authorize(idp))).json()["refresh_token"]
    stolen = _refresh(idp, token, client="goalwatch-cli")
    assert stolen.status_code == 400 and stolen.json()["error"] == "unauthorized_client"
    password = idp.post(
        "/token", data={"grant_type": "password", "username": "li-na", "client_id": "goalwatch-cli"}
    )
    assert password.status_code == 200, password.text
    assert "refresh_token" not in password.json()


def test_a_wrong_verifier_spends_the_code(idp: TestClient) -> None:
    code = _code(_authorize(idp))
    wrong = _redeem(idp, code, verifier="another-verifier-of-forty-three-characters-xx")
    assert wrong.status_code == 400 and "code_verifier" in wrong.json()["error_description"]
    assert _redeem(idp, code).json()["error"] == "invalid_grant"


def test_a_code_is_bound_to_its_redirect_uri_and_expires(idp: TestClient, clock: Clock) -> None:
    moved = _redeem(idp, _code(_authorize(idp)), redirect_uri="http://127.0.0.1:9/callback")
    assert moved.json()["error"] == "invalid_grant"
    code = _code(_authorize(idp))
    clock.now += 61
    assert _redeem(idp, code).json()["error"] == "invalid_grant"


def test_authorization_requests_that_are_refused(idp: TestClient) -> None:
    base = {"response_type": "code", "client_id": CONSOLE, "redirect_uri": CALLBACK}
    # A redirect URI that is not registered: an error page, never a redirect there.
    elsewhere = idp.get("/authorize", params={**base, "redirect_uri": "https://evil.example/cb"})
    assert elsewhere.status_code == 400
    # No PKCE: redirected back with the error.
    plain = idp.get("/authorize", params={**base, "state": "s"}, follow_redirects=False)
    assert plain.status_code == 303
    location = httpx.URL(plain.headers["location"])
    assert location.params["error"] == "invalid_request" and location.params["state"] == "s"


def test_a_user_with_a_password_needs_it(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    users.write_text(
        "users:\n  kim: {name: Kim, email: kim@example.org, roles: [employee], password: pw}\n"
        "clients:\n  goalwatch-cli: {public: true, grant_types: [password]}\n"
    )
    settings = IdpSettings(state_dir=tmp_path, idp_issuer=ISSUER, idp_users_file=users)
    with TestClient(create_app(settings)) as idp:
        form = {"grant_type": "password", "username": "kim"}
        assert idp.post("/token", data=form).json()["error"] == "invalid_grant"
        assert idp.post("/token", data={**form, "password": "pw"}).status_code == 200


def test_the_login_page_takes_a_person_id_only_when_any_person_may_sign_in(
    idp: TestClient, settings: IdpSettings, clock: Clock
) -> None:
    params = {
        "response_type": "code", "client_id": CONSOLE, "redirect_uri": CALLBACK, "state": "xyz",
        "code_challenge": pkce_challenge(VERIFIER), "code_challenge_method": "S256",
    }  # fmt: skip
    assert 'name="person"' not in idp.get("/authorize", params=params).text
    typed = {**params, "username": "li-na", "person": "head-1234"}
    refused = idp.post("/authorize", data=typed, follow_redirects=False)
    assert refused.status_code == 401 and "head-1234" in refused.text
    opened = settings.model_copy(update={"idp_any_person": True})
    with TestClient(create_app(opened, clock=clock), base_url=ISSUER) as open_idp:
        assert 'name="person"' in open_idp.get("/authorize", params=params).text
        signed_in = open_idp.post("/authorize", data=typed, follow_redirects=False)
        answer = _redeem(open_idp, _code(signed_in))
        assert verify(open_idp, answer.json()["access_token"])["preferred_username"] == "head-1234"


def test_a_browser_app_on_another_origin_may_discover_and_redeem_codes(idp: TestClient) -> None:
    console = "http://127.0.0.1:8006"
    discovery = idp.get("/.well-known/openid-configuration", headers={"Origin": console})
    assert discovery.headers["access-control-allow-origin"] == "*"
    preflight = idp.options(
        "/token",
        headers={"Origin": console, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )  # fmt: skip
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    # No cookies: credentials are never allowed cross-origin.
    assert "access-control-allow-credentials" not in preflight.headers
