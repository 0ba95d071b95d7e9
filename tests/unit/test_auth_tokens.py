"""Bearer tokens checked against an identity provider's published keys (served here by an
in-process transport; tests/integration/test_access.py uses the real local provider)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from goalwatch.auth.identity import Authenticator
from goalwatch.auth.principal import Kind
from goalwatch.auth.roles import Role
from goalwatch.auth.settings import AuthSettings
from goalwatch.auth.tokens import InvalidToken, ProviderUnavailable, TokenVerifier

ISSUER = "https://idp.example.org/realms/acme"


class Provider:
    """An identity provider's discovery document and keys, counting the fetches."""

    def __init__(self) -> None:
        self.keys = {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        self.fetches = 0
        self.down = False

    def jwks(self) -> dict[str, Any]:
        published = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            published.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": published}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503)
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/certs"})
        self.fetches += 1
        return httpx.Response(200, json=self.jwks())

    def token(self, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": "goalwatch", "sub": "u-1", "iat": now, "exp": now + 300}
        body.update(claims)
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def provider() -> Provider:
    return Provider()


def verifier(provider: Provider) -> TokenVerifier:
    http = httpx.AsyncClient(transport=httpx.MockTransport(provider.handle))
    return TokenVerifier(issuer=ISSUER, audience="goalwatch", http=http)


async def test_a_token_of_the_provider_is_accepted_and_its_keys_fetched_once(
    provider: Provider,
) -> None:
    check = verifier(provider)
    for _ in range(3):
        claims = await check.verify(provider.token(preferred_username="zhang-wei"))
        assert claims["preferred_username"] == "zhang-wei"
    assert provider.fetches == 1


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"aud": "another-app"}, "not for audience 'goalwatch'"),
        ({"iss": "https://evil.example.org"}, "not issued by"),
    ],
)
async def test_a_token_that_is_not_for_goalwatch_now_is_refused_saying_why(
    provider: Provider, claims: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidToken, match=reason):
        await verifier(provider).verify(provider.token(**claims))


async def test_a_token_signed_by_another_key_or_unsigned_is_refused(provider: Provider) -> None:
    check = verifier(provider)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {"iss": ISSUER, "aud": "goalwatch", "sub": "x", "iat": 0, "exp": 2**40},
        stranger,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    with pytest.raises(InvalidToken, match="not valid"):
        await check.verify(forged)
    unsigned = jwt.encode({"iss": ISSUER, "sub": "x"}, key=None, algorithm="none")
    with pytest.raises(InvalidToken, match="'none'"):
        await check.verify(unsigned)
    # HMAC with the public key as the secret: the classic confusion, refused by algorithm.
    with pytest.raises(InvalidToken, match="HS256"):
        await check.verify(
            jwt.encode({"sub": "x"}, "a-shared-secret-of-thirty-two-bytes!", algorithm="HS256")
        )
    with pytest.raises(InvalidToken, match="not a JWT"):
        await check.verify("not-a-token")


async def test_rotated_keys_are_fetched_again_but_made_up_key_ids_do_not_hammer_the_provider(
    provider: Provider,
) -> None:
    check = verifier(provider)
    await check.verify(provider.token())
    provider.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # The provider rotated: the new key is fetched once the refresh interval allows.
    check._fetched_at -= 60  # as if the last fetch were a minute ago
    assert (await check.verify(provider.token(kid="k2")))["sub"] == "u-1"
    fetched = provider.fetches
    for made_up in ("x1", "x2", "x3"):
        with pytest.raises(InvalidToken, match="does not publish"):
            await check.verify(_with_kid(provider, made_up))
    assert provider.fetches == fetched


def _with_kid(provider: Provider, kid: str) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "goalwatch", "sub": "u", "iat": now, "exp": now + 60}
    return jwt.encode(body, provider.keys["k1"], algorithm="RS256", headers={"kid": kid})


async def test_a_provider_that_cannot_be_reached_is_unavailable_not_a_refusal(
    provider: Provider,
) -> None:
    provider.down = True
    with pytest.raises(ProviderUnavailable, match="could not be fetched"):
        await verifier(provider).verify(provider.token())


def authenticator(**settings: Any) -> Authenticator:
    return Authenticator(AuthSettings(oidc_issuer=ISSUER, **settings))


def test_a_persons_token_names_them_by_the_configured_claim_with_mapped_roles() -> None:
    auth = authenticator(oidc_person_claim="email", oidc_role_map={"gw-hr": "hr_admin"})
    person = auth.principal(
        {"sub": "abc", "email": "sun.li@example.org", "roles": ["gw-hr", "operator", "other"]}
    )
    assert person.kind is Kind.PERSON
    assert person.person_id == "sun.li@example.org"
    assert person.roles == {Role.HR_ADMIN, Role.OPERATOR}
    assert person.who == "person:sun.li@example.org"


def test_roles_are_read_from_a_nested_claim_and_a_person_cannot_hold_a_systems_role() -> None:
    auth = authenticator(oidc_roles_claim="realm_access.roles")
    person = auth.principal(
        {
            "sub": "abc",
            "preferred_username": "li-na",
            "realm_access": {"roles": ["hr_admin", "publisher", "service"]},
        }
    )
    assert person.roles == {Role.HR_ADMIN}


def test_a_systems_token_carries_its_client_and_publisher_grant() -> None:
    system = authenticator().principal(
        {
            "sub": "svc-his",
            "client_id": "his",
            "roles": ["publisher"],
            "goalwatch_metrics": ["report_rework_rate"],
            "goalwatch_sources": "his",
        }
    )
    assert system.kind is Kind.SYSTEM and system.who == "system:his"
    assert system.may_publish(metric="report_rework_rate", source="his")
    assert not system.may_publish(metric="report_rework_rate", source="crm")
    assert not system.may_publish(metric="visit_logged", source="his")


def test_a_token_naming_no_person_and_no_client_is_refused_naming_the_claims() -> None:
    with pytest.raises(InvalidToken, match="'preferred_username'"):
        authenticator().principal({"sub": "abc"})


async def test_without_a_provider_configured_no_bearer_token_is_accepted() -> None:
    with pytest.raises(InvalidToken, match="GOALWATCH_OIDC_ISSUER"):
        await Authenticator(AuthSettings()).from_bearer("anything")


def test_a_role_map_that_is_not_name_equals_role_is_refused() -> None:
    with pytest.raises(ValueError, match="NAME=ROLE"):
        AuthSettings(oidc_role_map="gw-hr")  # type: ignore[arg-type]
    assert AuthSettings(oidc_role_map="gw-hr=hr_admin, ops = operator").oidc_role_map == {  # type: ignore[arg-type]
        "gw-hr": Role.HR_ADMIN,
        "ops": Role.OPERATOR,
    }


def test_a_claim_value_can_tell_a_systems_token_from_a_persons() -> None:
    """Entra ID marks app-only tokens with idtyp=app; people's tokens carry azp too."""
    auth = authenticator(oidc_client_claim="idtyp=app")
    app = auth.principal({"sub": "sp-1", "idtyp": "app", "azp": "his-app", "roles": ["publisher"]})
    assert app.who == "system:his-app" and app.roles == {Role.PUBLISHER}
    person = auth.principal(
        {"sub": "u-1", "idtyp": "user", "azp": "goalwatch-console", "preferred_username": "li-na"}
    )
    assert person.who == "person:li-na"
