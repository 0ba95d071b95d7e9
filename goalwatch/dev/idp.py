"""A small OpenID Connect provider for development: ``goalwatch up`` and the tests only.

The services accept a request only with a bearer token (a JWT) signed by the company's
identity provider. On a developer's machine there is none, so this stands in for it: a real
provider of its own, on 127.0.0.1, whose tokens the services verify exactly as they verify
production ones (its JWKS, issuer, audience). It is never meant for production: anyone who
can reach it can sign in as any demo user without a password.

- ``GET /.well-known/openid-configuration``, ``GET /jwks``;
- ``POST /token``: ``client_credentials`` (systems), ``password`` (the ``goalwatch token``
  command), ``authorization_code`` with PKCE S256 (browsers) and ``refresh_token`` (a
  browser's session outlasting one access token: each refresh token is used once and
  replaced, and the session ends ``GOALWATCH_IDP_SESSION_LIFETIME`` after sign-in);
- ``GET /authorize`` (a page listing the demo users) and ``POST /authorize``;
- ``GET /userinfo``.

Who exists comes from a users file (:data:`DEFAULT_USERS_FILE`); the RSA signing key and the
client secrets are generated once per state directory and kept there, readable only by their
owner. Every JWT is made and checked by PyJWT; the keys come from ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote_plus, unquote_plus

import httpx
import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPBasic
from jwt.algorithms import RSAAlgorithm
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from goalwatch.contracts.metrics import PERSON_ID_PATTERN
from goalwatch.settings import Port, duration_setting, settings_or_exit

DEFAULT_USERS_FILE = Path(__file__).with_name("idp_users.yaml")
"""The demo company's people and the installation's clients, shipped with the package."""

DISCOVERY_PATH = "/.well-known/openid-configuration"
"""Where a provider publishes its metadata (OpenID Connect Discovery 1.0)."""

CLI_CLIENT = "goalwatch-cli"
"""The public client ``goalwatch token --as`` signs people in with (password grant)."""

DEV_CLIENT = "goalwatch-dev"
"""The client with every role: the demo loader, benchmarks and the test harness."""

ALGORITHM = "RS256"
CODE_LIFETIME = 60.0
"""Seconds an authorization code can be redeemed in (RFC 6749 §4.1.2 recommends at most 10 min)."""

PERSON_ID = re.compile(PERSON_ID_PATTERN)

GrantType = Literal["client_credentials", "password", "authorization_code", "refresh_token"]

_CLIENT_CREDENTIALS: tuple[GrantType, ...] = ("client_credentials",)

_CLAIMS = [
    "iss", "sub", "aud", "exp", "iat", "jti", "azp", "client_id", "nonce", "preferred_username",
    "name", "email", "roles", "goalwatch_metrics", "goalwatch_sources",
]  # fmt: skip


class IdpSettings(BaseSettings):
    """The development identity provider: where it listens, what its tokens say, its files."""

    model_config = SettingsConfigDict(env_prefix="GOALWATCH_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface the provider listens on.")
    idp_port: Port = Field(8005, description="The development identity provider's port.")
    idp_issuer: str | None = Field(
        None,
        description="The provider's URL, as tokens name it in `iss` and the services expect "
        "it (default http://<host>:<idp port>).",
    )
    idp_audience: str = Field("goalwatch", description="The `aud` of access tokens.")
    idp_token_lifetime: timedelta = Field(
        timedelta(hours=12),
        gt=timedelta(0),
        description="How long a token is valid. Written 12h, 30m, or seconds.",
    )
    idp_session_lifetime: timedelta = Field(
        timedelta(hours=24),
        gt=timedelta(0),
        description="How long a browser stays signed in through refresh tokens after it "
        "signed in (clients granted refresh_token). Written 24h, 30m, or seconds.",
    )
    idp_users_file: Path = Field(
        DEFAULT_USERS_FILE, description="Who can sign in: demo users and clients (YAML)."
    )
    state_dir: Path = Field(
        Path(".goalwatch"),
        description="The signing key and client secrets are kept in <state dir>/idp/.",
    )
    log_level: str = Field("INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")
    idp_any_person: bool = Field(
        False,
        description="Let a person id the users file does not list sign in too, with no role "
        "(the integration tests make people of their own and act as them).",
    )

    @field_validator("idp_token_lifetime", "idp_session_lifetime", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return duration_setting(value)

    @property
    def issuer(self) -> str:
        """The provider's base URL (no trailing slash)."""
        return (self.idp_issuer or f"http://{self.host}:{self.idp_port}").rstrip("/")

    @property
    def key_dir(self) -> Path:
        """Where the signing key and the client secrets are kept."""
        return self.state_dir / KEY_DIR


# --- who exists ------------------------------------------------------------------------------


class DemoUser(BaseModel):
    """A person who can sign in; the users file's key is their goalwatch person id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    email: str
    roles: list[str] = Field(default_factory=list)
    password: str | None = Field(
        None, description="When set, signing in needs it; when absent any password is accepted."
    )


class DemoClient(BaseModel):
    """A system that gets tokens of its own (or, public, on behalf of people)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: list[str] = Field(default_factory=list)
    metrics: list[str] | None = Field(None, description="Metrics it may publish; * for all.")
    sources: list[str] | None = Field(None, description="Sources it may publish as; * for all.")
    grant_types: list[GrantType] = Field(default_factory=lambda: list(_CLIENT_CREDENTIALS))
    public: bool = Field(False, description="Has no secret (a command line, a browser app).")
    redirect_uris: list[str] = Field(default_factory=list)


class Directory(BaseModel):
    """The users file: people by person id, clients by client id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: dict[str, DemoUser] = Field(default_factory=dict)
    clients: dict[str, DemoClient] = Field(default_factory=dict)


class UsersFileError(ValueError):
    """The users file cannot be read; the message names the file and each problem."""


def load_directory(path: Path) -> Directory:
    """The users file at ``path``, validated."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Directory.model_validate(document or {})
    except OSError as exc:
        raise UsersFileError(f"{path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise UsersFileError(f"{path}: not YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise UsersFileError(f"{path}: {problems}") from None


# --- what is kept in the state directory -----------------------------------------------------


def _write_private(path: Path, data: bytes, *, replace: bool) -> bool:
    """Write ``data`` to ``path`` readable by its owner only, all at once.

    With ``replace=False`` an existing file wins (another process created it first) and
    ``False`` is returned.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp creates the file with mode 0600: the secret is never readable by others.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)  # fails if the file exists: first writer wins
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def signing_key(key_dir: Path) -> rsa.RSAPrivateKey:
    """The provider's RSA key, generated on first use and kept in ``key_dir`` (mode 0600)."""
    path = key_dir / "signing-key.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(path, pem, replace=False)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise UsersFileError(f"{path}: not an RSA private key; delete it to have one generated")
    return loaded


SECRETS_FILE = "client-secrets.json"
KEY_DIR = "idp"
"""The folder of the state dir that holds the signing key and the client secrets."""


def read_client_secrets(key_dir: Path) -> dict[str, str]:
    """The client secrets kept in ``key_dir`` (none before the provider first ran)."""
    path = key_dir / SECRETS_FILE
    if not path.exists():
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    return {str(client): str(secret) for client, secret in document.items()}


def client_secrets(key_dir: Path, directory: Directory) -> dict[str, str]:
    """A secret for every confidential client of ``directory``: those kept in ``key_dir``,
    and a new random one for each client that has none yet (then kept there too)."""
    kept = read_client_secrets(key_dir)
    missing = [
        client_id
        for client_id, client in directory.clients.items()
        if not client.public and client_id not in kept
    ]
    if missing:
        kept |= {client_id: secrets.token_urlsafe(32) for client_id in missing}
        data = json.dumps(kept, indent=2, sort_keys=True).encode()
        _write_private(key_dir / SECRETS_FILE, data, replace=True)
    return kept


def key_id(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 thumbprint of an RSA public JWK: stable for a key, different for another."""
    members = json.dumps(
        {"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(members.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE code verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- the protocol ----------------------------------------------------------------------------


class OAuthError(Exception):
    """An error the token or userinfo endpoint answers as RFC 6749 §5.2 says."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class _Session:
    """What a refresh token stands for: a person signed in through a client, until when."""

    client_id: str
    user_id: str
    ends_at: float


@dataclass(frozen=True)
class _Grant:
    """What an authorization code was issued for."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    user_id: str
    nonce: str | None
    expires_at: float


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def redirect_uri_allowed(registered: list[str], given: str) -> bool:
    """Whether ``given`` is one of the ``registered`` redirect URIs.

    Exact match, except that a loopback URI matches on any port (RFC 8252 §7.3): each
    service's ``/docs`` and a console started on a free port sign in with one registration.
    """
    try:
        url = httpx.URL(given)
    except httpx.InvalidURL:
        return False
    for candidate in registered:
        if given == candidate:
            return True
        known = httpx.URL(candidate)
        if (
            known.scheme == "http"
            and known.host in _LOOPBACK
            and (url.scheme, url.host, url.path, url.query)
            == (known.scheme, known.host, known.path, known.query)
        ):
            return True
    return False


class Provider:
    """Issues and checks the tokens: the signing key, who exists, the pending codes."""

    def __init__(
        self,
        settings: IdpSettings,
        directory: Directory,
        key: rsa.RSAPrivateKey,
        client_secrets: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.issuer = settings.issuer
        self.audience = settings.idp_audience
        self.lifetime = int(settings.idp_token_lifetime.total_seconds())
        self._key = key
        self._public_key = key.public_key()
        public = RSAAlgorithm.to_jwk(self._public_key, as_dict=True)
        self.kid = key_id(public)
        self.jwk: dict[str, Any] = {**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM}
        self._secrets = dict(client_secrets)
        self._codes: dict[str, _Grant] = {}
        self._sessions: dict[str, _Session] = {}
        self._session_lifetime = settings.idp_session_lifetime.total_seconds()
        self._clock = clock

    def metadata(self) -> dict[str, Any]:
        """The discovery document."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": [
                "authorization_code",
                "client_credentials",
                "password",
                "refresh_token",
            ],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email"],
            "claims_supported": _CLAIMS,
        }

    # clients

    def authenticate(self, client_id: str, secret: str | None) -> DemoClient:
        """The client, if ``secret`` is its secret (a public client has none); else
        ``invalid_client``."""
        client = self.directory.clients.get(client_id)
        if client is None:
            raise OAuthError("invalid_client", f"no client {client_id!r}", 401)
        if client.public:
            if secret:
                raise OAuthError("invalid_client", f"{client_id} is public: send no secret", 401)
            return client
        expected = self._secrets.get(client_id)
        if expected is None or secret is None or not hmac.compare_digest(secret, expected):
            raise OAuthError("invalid_client", f"wrong secret for client {client_id}", 401)
        return client

    def known(self, user_id: str) -> DemoUser | None:
        """The person of the users file, or (``idp_any_person``) one it does not list."""
        user = self.directory.users.get(user_id)
        if user is None and self.settings.idp_any_person and PERSON_ID.fullmatch(user_id):
            user = DemoUser(name=user_id, email=f"{user_id}@example.org")
        return user

    def user(self, user_id: str, password: str | None) -> DemoUser:
        """The person signing in, if the password is theirs (or they need none)."""
        user = self.known(user_id)
        if user is None:
            raise OAuthError("invalid_grant", f"no user {user_id!r}")
        if user.password is not None and not hmac.compare_digest(password or "", user.password):
            raise OAuthError("invalid_grant", f"wrong password for {user_id}")
        return user

    # tokens

    def _sign(self, claims: dict[str, Any], typ: str) -> str:
        return jwt.encode(
            claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid, "typ": typ}
        )

    def _standard(self, subject: str, audience: str) -> dict[str, Any]:
        now = int(self._clock())
        return {
            "iss": self.issuer,
            "aud": audience,
            "sub": subject,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": uuid.uuid4().hex,
        }

    def client_tokens(self, client_id: str, client: DemoClient) -> dict[str, Any]:
        """The token response for a client acting as itself."""
        claims = {
            **self._standard(client_id, self.audience),
            "client_id": client_id,
            "azp": client_id,
            "roles": list(client.roles),
        }
        if client.metrics is not None:
            claims["goalwatch_metrics"] = list(client.metrics)
        if client.sources is not None:
            claims["goalwatch_sources"] = list(client.sources)
        # RFC 9068's media type: an access token is not mistaken for an ID token.
        return self._response(self._sign(claims, "at+jwt"))

    def user_tokens(self, user_id: str, client_id: str, nonce: str | None = None) -> dict[str, Any]:
        """The token response for a person signed in through ``client_id``."""
        user = self.known(user_id)
        assert user is not None, "signed in through user(), which knows them"
        profile = {
            "preferred_username": user_id,
            "name": user.name,
            "email": user.email,
            "roles": list(user.roles),
        }
        access = self._sign({**self._standard(user_id, self.audience), **profile}, "at+jwt")
        id_claims = {**self._standard(user_id, client_id), "azp": client_id, **profile}
        if nonce:
            id_claims["nonce"] = nonce
        return {**self._response(access), "id_token": self._sign(id_claims, "JWT")}

    def _response(self, access_token: str) -> dict[str, Any]:
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": self.lifetime}

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of an access token this provider issued; ``invalid_token`` otherwise."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise OAuthError("invalid_token", str(exc), 401) from None
        return claims

    # authorization codes

    def issue_code(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        code_challenge: str,
        user_id: str,
        nonce: str | None,
    ) -> str:
        """A single-use code for ``user_id``, bound to the client, redirect URI and challenge."""
        now = self._clock()
        for code in [c for c, grant in self._codes.items() if grant.expires_at <= now]:
            del self._codes[code]
        code = secrets.token_urlsafe(32)
        self._codes[code] = _Grant(
            client_id, redirect_uri, code_challenge, user_id, nonce, now + CODE_LIFETIME
        )
        return code

    def redeem_code(
        self, *, code: str, client_id: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        """The token response for a code; the code is gone afterwards, whatever the outcome."""
        grant = self._codes.pop(code, None)
        if grant is None or grant.expires_at <= self._clock():
            raise OAuthError("invalid_grant", "unknown, used or expired authorization code")
        if grant.client_id != client_id:
            raise OAuthError("invalid_grant", "the code was issued to another client")
        if grant.redirect_uri != redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization's")
        if not hmac.compare_digest(pkce_challenge(code_verifier), grant.code_challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        body = self.user_tokens(grant.user_id, client_id, grant.nonce)
        return self._with_refresh(body, client_id, grant.user_id, None)

    def refresh(self, *, refresh_token: str, client_id: str) -> dict[str, Any]:
        """New tokens for a refresh token, which is used up: the answer carries its successor
        (rotation, as OAuth 2.1 asks of public clients), valid until the session ends."""
        session = self._sessions.pop(refresh_token, None)
        if session is None or session.ends_at <= self._clock():
            raise OAuthError("invalid_grant", "unknown, used or expired refresh token")
        if session.client_id != client_id:
            raise OAuthError("invalid_grant", "the refresh token was issued to another client")
        if self.known(session.user_id) is None:
            raise OAuthError("invalid_grant", f"{session.user_id} can no longer sign in")
        body = self.user_tokens(session.user_id, client_id)
        return self._with_refresh(body, client_id, session.user_id, session.ends_at)

    def _with_refresh(
        self, body: dict[str, Any], client_id: str, user_id: str, ends_at: float | None
    ) -> dict[str, Any]:
        """``body`` with a refresh token when the client may refresh, for a session ending at
        ``ends_at`` (a new one: the session lifetime from now)."""
        client = self.directory.clients.get(client_id)
        if client is None or "refresh_token" not in client.grant_types:
            return body
        now = self._clock()
        for token in [t for t, old in self._sessions.items() if old.ends_at <= now]:
            del self._sessions[token]
        token = secrets.token_urlsafe(32)
        self._sessions[token] = _Session(
            client_id, user_id, now + self._session_lifetime if ends_at is None else ends_at
        )
        return {**body, "refresh_token": token}


# --- HTTP ------------------------------------------------------------------------------------

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_basic = HTTPBasic(auto_error=False)


async def _client_credentials(request: Request, form: Mapping[str, str]) -> tuple[str, str | None]:
    """The client id and secret a token request carries: by HTTP Basic or in the form
    (RFC 6749 §2.3.1), never both."""
    try:
        basic = await _basic(request)
    except HTTPException:
        raise OAuthError("invalid_client", "malformed HTTP Basic credentials", 401) from None
    if basic is not None:
        if "client_secret" in form:
            raise OAuthError("invalid_request", "send the client secret once: Basic or form")
        # The id and secret are form-encoded before Basic encoding (RFC 6749 §2.3.1).
        return unquote_plus(basic.username), unquote_plus(basic.password)
    client_id = form.get("client_id")
    if not client_id:
        raise OAuthError("invalid_client", "no client: send client_id (and its secret)", 401)
    return client_id, form.get("client_secret")


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise OAuthError("invalid_request", f"missing {name}")
    return value


def _login_page(provider: Provider, params: Mapping[str, str], problem: str | None = None) -> str:
    hidden = "\n".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in params.items()
    )
    users = "\n".join(
        f'<label><input type="radio" name="username" value="{html.escape(user_id)}"'
        f"{' checked' if index == 0 else ''}> {html.escape(user.name)} "
        f"<code>{html.escape(user_id)}</code> ({html.escape(', '.join(user.roles))})</label><br>"
        for index, (user_id, user) in enumerate(provider.directory.users.items())
    )
    notice = f'<p style="color:#b00">{html.escape(problem)}</p>' if problem else ""
    # People the users file does not list may sign in too: say who, by person id.
    other = (
        '<p><label>Or another person id <input name="person" autocomplete="off"></label></p>'
        if provider.settings.idp_any_person
        else ""
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>goalwatch development sign-in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>goalwatch development sign-in</h1>
<p>Development only: pick a demo user to sign in to
<code>{html.escape(params.get("client_id", ""))}</code>.</p>
{notice}
<form method="post" action="{html.escape(provider.issuer)}/authorize">
{hidden}
{users}
{other}
<p><label>Password (only if the user has one) <input type="password" name="password"></label></p>
<p><button type="submit">Sign in</button></p>
</form></body></html>"""


_AUTHORIZE_PARAMS = (
    "response_type", "client_id", "redirect_uri", "state", "scope", "nonce",
    "code_challenge", "code_challenge_method",
)  # fmt: skip


def _check_authorization(provider: Provider, params: Mapping[str, str]) -> str | None:
    """Why an authorization request is refused before anything is redirected (a page),
    or ``None``: a bad client or redirect URI must not be redirected to (RFC 6749 §4.1.2.1)."""
    client_id = params.get("client_id", "")
    client = provider.directory.clients.get(client_id)
    if client is None:
        return f"no client {client_id!r}"
    if "authorization_code" not in client.grant_types:
        return f"client {client_id} does not sign people in through a browser"
    if not redirect_uri_allowed(client.redirect_uris, params.get("redirect_uri", "")):
        return f"redirect_uri {params.get('redirect_uri')!r} is not registered for {client_id}"
    return None


def _redirect_error(params: Mapping[str, str], error: str, description: str) -> RedirectResponse:
    query = {"error": error, "error_description": description}
    if "state" in params:
        query["state"] = params["state"]
    url = httpx.URL(params["redirect_uri"]).copy_merge_params(query)
    return RedirectResponse(str(url), status_code=303)


def create_app(settings: IdpSettings, *, clock: Callable[[], float] = time.time) -> FastAPI:
    """The provider's app; reads (or creates) its key and client secrets in the state dir."""
    directory = load_directory(settings.idp_users_file)
    provider = Provider(
        settings,
        directory,
        signing_key(settings.key_dir),
        client_secrets(settings.key_dir, directory),
        clock=clock,
    )
    app = FastAPI(
        title="goalwatch development identity provider",
        description="OpenID Connect for `goalwatch up` and the tests. Never production.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.provider = provider
    # A browser app (the console, on its own origin) reads discovery and redeems its code with
    # fetch. Any origin: the endpoints take no cookies, and a code is bound to its redirect URI
    # and PKCE verifier, so a page elsewhere gains nothing by calling them.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        allow_credentials=False,
        max_age=600,
    )

    @app.exception_handler(OAuthError)
    async def oauth_error(_: Request, exc: OAuthError) -> JSONResponse:
        headers = dict(_NO_STORE)
        if exc.status == 401:
            # RFC 6749 §5.2 for clients, RFC 6750 §3 for bearer tokens.
            scheme = "Bearer" if exc.error == "invalid_token" else "Basic"
            headers["WWW-Authenticate"] = f'{scheme} realm="goalwatch-dev", error="{exc.error}"'
        return JSONResponse(
            {"error": exc.error, "error_description": exc.description},
            status_code=exc.status,
            headers=headers,
        )

    @app.get(DISCOVERY_PATH)
    async def discovery() -> dict[str, Any]:
        return provider.metadata()

    @app.get("/jwks")
    async def jwks() -> dict[str, Any]:
        return {"keys": [provider.jwk]}

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = {key: str(value) for key, value in (await request.form()).items()}
        grant_type = _required(form, "grant_type")
        if grant_type == "client_credentials":
            client_id, secret = await _client_credentials(request, form)
            client = provider.authenticate(client_id, secret)
            _allowed(client_id, client, grant_type)
            body = provider.client_tokens(client_id, client)
        elif grant_type == "password":
            # The resource owner password grant is left out of OAuth 2.1: the client sees the
            # password. Here it lets `goalwatch token --as PERSON` sign a demo user in from a
            # shell without a browser; a production provider would not offer it.
            if "client_id" not in form and request.headers.get("authorization") is None:
                form["client_id"] = CLI_CLIENT  # a command line sending no client at all
            client_id, secret = await _client_credentials(request, form)
            _allowed(client_id, provider.authenticate(client_id, secret), grant_type)
            user_id = _required(form, "username")
            provider.user(user_id, form.get("password"))
            body = provider.user_tokens(user_id, client_id)
        elif grant_type == "authorization_code":
            client_id, secret = await _client_credentials(request, form)
            _allowed(client_id, provider.authenticate(client_id, secret), grant_type)
            body = provider.redeem_code(
                code=_required(form, "code"),
                client_id=client_id,
                redirect_uri=_required(form, "redirect_uri"),
                code_verifier=_required(form, "code_verifier"),
            )
        elif grant_type == "refresh_token":
            client_id, secret = await _client_credentials(request, form)
            _allowed(client_id, provider.authenticate(client_id, secret), grant_type)
            body = provider.refresh(
                refresh_token=_required(form, "refresh_token"), client_id=client_id
            )
        else:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r}")
        return JSONResponse(body, headers=_NO_STORE)

    @app.get("/authorize", response_class=HTMLResponse)
    async def authorize_page(request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if k in _AUTHORIZE_PARAMS}
        refused = _check_authorization(provider, params)
        if refused is not None:
            return HTMLResponse(f"<p>{html.escape(refused)}</p>", status_code=400)
        problem = _request_problem(params)
        if problem is not None:
            return _redirect_error(params, *problem)
        return HTMLResponse(_login_page(provider, params))

    @app.post("/authorize", response_class=HTMLResponse)
    async def authorize(request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        params = {k: v for k, v in form.items() if k in _AUTHORIZE_PARAMS}
        refused = _check_authorization(provider, params)
        if refused is not None:
            return HTMLResponse(f"<p>{html.escape(refused)}</p>", status_code=400)
        problem = _request_problem(params)
        if problem is not None:
            return _redirect_error(params, *problem)
        # A person id typed in (idp_any_person) wins over the listed user picked.
        user_id = form.get("person", "").strip() or form.get("username", "")
        try:
            provider.user(user_id, form.get("password"))
        except OAuthError as exc:
            return HTMLResponse(_login_page(provider, params, exc.description), status_code=401)
        code = provider.issue_code(
            client_id=params["client_id"],
            redirect_uri=params["redirect_uri"],
            code_challenge=params["code_challenge"],
            user_id=user_id,
            nonce=params.get("nonce"),
        )
        query = {"code": code, **({"state": params["state"]} if "state" in params else {})}
        url = httpx.URL(params["redirect_uri"]).copy_merge_params(query)
        return RedirectResponse(str(url), status_code=303)

    @app.get("/userinfo")
    async def userinfo(request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise OAuthError("invalid_token", "send Authorization: Bearer <access token>", 401)
        claims = provider.verify(token.strip())
        user = provider.known(str(claims.get("preferred_username", "")))
        if user is None:
            raise OAuthError("invalid_token", "a client's token: there is no user to describe", 401)
        return JSONResponse(
            {
                "sub": claims["sub"],
                "preferred_username": claims["preferred_username"],
                "name": user.name,
                "email": user.email,
                "roles": list(user.roles),
            },
            headers=_NO_STORE,
        )

    return app


def _allowed(client_id: str, client: DemoClient, grant_type: str) -> None:
    if grant_type not in client.grant_types:
        raise OAuthError("unauthorized_client", f"client {client_id} may not use {grant_type}")


def _request_problem(params: Mapping[str, str]) -> tuple[str, str] | None:
    """What is wrong with an authorization request that is redirected back as an error."""
    if params.get("response_type") != "code":
        return "unsupported_response_type", "only response_type=code"
    if not params.get("code_challenge"):
        return "invalid_request", "PKCE is required: send code_challenge (S256)"
    if params.get("code_challenge_method") != "S256":
        return "invalid_request", "code_challenge_method must be S256"
    return None


def run(settings: IdpSettings) -> int:
    """Serve the provider until SIGINT/SIGTERM (``goalwatch idp``)."""
    from goalwatch.serving import serve
    from goalwatch.telemetry import configure_logging

    configure_logging("idp", settings.log_level)
    try:
        app = create_app(settings)
    except UsersFileError as exc:
        print(f"goalwatch: {exc}", file=sys.stderr)
        return 2
    serve(
        app,
        host=settings.host,
        port=settings.idp_port,
        service="development identity provider",
        env_var="GOALWATCH_IDP_PORT",
    )
    return 0


# --- getting a token -------------------------------------------------------------------------


class TokenRequestError(RuntimeError):
    """The provider could not be reached or refused; the message says which and why."""


def request_token(
    issuer: str,
    *,
    user: str | None = None,
    client: str | None = None,
    secret: str | None = None,
    password: str | None = None,
    http: httpx.Client | None = None,
) -> dict[str, Any]:
    """A token response from the provider at ``issuer``: for person ``user`` (password grant,
    through :data:`CLI_CLIENT`) or for ``client`` with its ``secret`` (client credentials)."""
    if (user is None) == (client is None):
        raise ValueError("name a user or a client, not both")
    owned = http is None
    session = http or httpx.Client(timeout=10.0)
    try:
        metadata = session.get(f"{issuer.rstrip('/')}{DISCOVERY_PATH}")
        metadata.raise_for_status()
        endpoint = str(metadata.json()["token_endpoint"])
        if user is not None:
            form = {"grant_type": "password", "username": user, "client_id": CLI_CLIENT}
            if password is not None:
                form["password"] = password
            response = session.post(endpoint, data=form)
        else:
            assert client is not None
            response = session.post(
                endpoint,
                data={"grant_type": "client_credentials"},
                # Form-encoded first, as RFC 6749 §2.3.1 asks of Basic credentials.
                auth=httpx.BasicAuth(quote_plus(client), quote_plus(secret or "")),
            )
    except httpx.HTTPError as exc:
        raise TokenRequestError(f"no identity provider answers at {issuer} ({exc})") from None
    finally:
        if owned:
            session.close()
    if response.status_code != 200:
        try:
            error = response.json()
            reason = f"{error.get('error')}: {error.get('error_description')}"
        except ValueError:
            reason = response.text[:200]
        raise TokenRequestError(f"{endpoint} refused the token request ({reason})")
    body: dict[str, Any] = response.json()
    return body


if __name__ == "__main__":
    # `python -m goalwatch.dev.idp`, as the stack starts it: the same as `goalwatch idp`
    # without importing every command and service first (a second less of start-up).
    sys.exit(run(settings_or_exit(IdpSettings)))
