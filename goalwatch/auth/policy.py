"""What each HTTP route needs, declared on the route, and checked on every request.

A route states its policy as a dependency: ``dependencies=[Depends(RULES_WRITE)]``, or, when
the handler needs to know who asks, a parameter ``caller: Annotated[Caller, Depends(...)]``.
A route without one is a mistake the service refuses to start with
(:func:`undeclared_routes`), so nothing is left open by forgetting; the policy of every route
is written into the OpenAPI document (``x-goalwatch-access``) and the security schemes.

Answers: 401 without valid credentials (with ``WWW-Authenticate``), 403 when the caller may
not do this at all, and — for a person asking about something outside their part of the org
chart — 404, as if it did not exist (the handler decides that, with
:mod:`goalwatch.auth.scope`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from goalwatch.auth.api_keys import ApiKeysUnavailable, looks_like_key
from goalwatch.auth.grants import GRANTABLE
from goalwatch.auth.identity import Authenticator
from goalwatch.auth.principal import Kind, Principal
from goalwatch.auth.roles import PEOPLE, Role
from goalwatch.auth.tokens import InvalidToken, ProviderUnavailable
from goalwatch.problems import RETRY_AFTER_SECONDS

BEARER = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description="An access token from the identity provider (OpenID Connect) that "
    "GOALWATCH_OIDC_ISSUER names: a person's, or a system's (client credentials).",
    auto_error=False,
)
API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="apiKey",
    description="An API key (gw_<key id>_<secret>) for a system that cannot sign in with "
    "OAuth 2.0 (docs/api-keys.md); also accepted as `Authorization: Bearer gw_...`.",
    auto_error=False,
)
CHALLENGE = 'Bearer realm="goalwatch"'


def _unauthorized(detail: str, *, error: str | None = None) -> HTTPException:
    challenge = CHALLENGE if error is None else f'{CHALLENGE}, error="{error}"'
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    api_key: Annotated[str | None, Depends(API_KEY)],
) -> Principal:
    """The caller of ``request``, from its bearer token or API key; 401 without a valid one.

    A credential starting ``gw_`` is an API key (:mod:`goalwatch.auth.api_keys`), whether
    it comes as a bearer token or in ``X-API-Key``; anything else is an OpenID Connect token.
    """
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known
    if credentials is not None and api_key is not None:
        raise _unauthorized(
            "send one credential: either `Authorization: Bearer ...` or `X-API-Key`, not both",
            error="invalid_request",
        )
    if credentials is None and api_key is None:
        raise _unauthorized(
            "sign in first: send `Authorization: Bearer <access token>` from the identity "
            "provider, or a system's API key (see docs/security.md and docs/api-keys.md)"
        )
    authenticator: Authenticator = request.app.state.authenticator
    credential = credentials.credentials if credentials is not None else str(api_key)
    try:
        if looks_like_key(credential):
            principal = await authenticator.from_api_key(credential)
        elif credentials is None:
            raise InvalidToken("X-API-Key takes an API key (gw_...); send tokens as Bearer")
        else:
            principal = await authenticator.from_bearer(credential)
    except InvalidToken as exc:
        kind = "API key" if looks_like_key(credential) else "bearer token"
        raise _unauthorized(f"the {kind} was refused: {exc}", error="invalid_token") from None
    except (ProviderUnavailable, ApiKeysUnavailable) as exc:
        raise HTTPException(
            503, f"{exc}; retry after {RETRY_AFTER_SECONDS} s",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None  # fmt: skip
    request.state.principal = principal
    return principal


@dataclass(frozen=True)
class Caller:
    """Who asks, and whether a role lets them see and do this org-wide.

    When ``org_wide`` is false the caller is a person, and what they may see is their own
    part of the org chart (:mod:`goalwatch.auth.scope`).
    """

    principal: Principal
    org_wide: bool
    address: str | None = None
    """Where the request came from (the client's IP address), for the audit log."""

    @property
    def person_id(self) -> str | None:
        """The caller's person id, if a person asks."""
        return self.principal.person_id

    @property
    def who(self) -> str:
        """How the audit log names the caller."""
        return self.principal.who


@dataclass(frozen=True, eq=False)
class Policy:
    """Who may call a route: holders of ``roles`` org-wide; with ``people``, also any signed-in
    person, whom the handler limits to their part of the org chart.

    ``audited``: whether its changes (every method but GET, HEAD, OPTIONS) are written to the
    audit log; refusals (401, 403) are, always (:mod:`goalwatch.audit`)."""

    action: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    people: bool = False
    audited: bool = True

    def describe(self) -> str:
        """Who may call, in words."""
        parts = [f"role {role.value}" for role in sorted(self.roles)]
        if self.people:
            parts.append(PEOPLE)
        return " or ".join(parts) if parts else "nobody"

    def allows(self, principal: Principal) -> Caller | None:
        """The caller ``principal`` makes under this policy, or ``None`` if it may not."""
        if principal.has(*self.roles):
            return Caller(principal, org_wide=True)
        if self.people and principal.kind is Kind.PERSON:
            return Caller(principal, org_wide=False)
        return None

    async def __call__(
        self, request: Request, principal: Annotated[Principal, Depends(authenticate)]
    ) -> Caller:
        caller = self.allows(principal)
        if caller is None and principal.grants_unknown and self.roles & GRANTABLE:
            raise HTTPException(
                503,
                f"{principal.who} may not {self.action} by their token's roles, and the roles "
                f"granted in goalwatch cannot be read now (goals does not answer); retry "
                f"after {RETRY_AFTER_SECONDS} s",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if caller is None:
            raise HTTPException(
                403,
                f"{principal.who} may not {self.action}: it needs {self.describe()}. Ask an "
                "HR admin or an operator for the role, or sign in as someone who has it.",
            )
        client = request.client
        return Caller(caller.principal, caller.org_wide, client.host if client else None)


@dataclass(frozen=True, eq=False)
class Public:
    """A route anyone may call, and why that is safe (health checks, signed links);
    ``audited`` as for :class:`Policy`."""

    reason: str
    audited: bool = True

    def describe(self) -> str:
        """Who may call, in words."""
        return f"anyone: {self.reason}"

    async def __call__(self) -> None:
        return None


Access = Policy | Public
"""What a route declares."""


def policy(action: str, *roles: Role, people: bool = False, audited: bool = True) -> Policy:
    """A :class:`Policy` for ``action``, open to ``roles`` (and, with ``people``, persons);
    ``audited=False`` keeps its changes out of the audit log (refusals are still in it)."""
    return Policy(action, frozenset(roles), people, audited)


def _found(dependant: Dependant) -> Iterator[Access]:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, (Policy, Public)):
            yield dependency.call
        yield from _found(dependency)


def api_routes(app: FastAPI) -> Iterator[APIRoute]:
    """Every API route of ``app``, those of included routers too."""

    def walk(routes: Sequence[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):  # a router included into the app
                yield from walk(route.original_router.routes)

    yield from walk(app.routes)


def route_access(route: APIRoute) -> list[Access]:
    """The policies ``route`` declares (exactly one, when it is declared right)."""
    return list(dict.fromkeys(_found(route.dependant)))


def undeclared_routes(app: FastAPI) -> list[str]:
    """``METHOD path`` of every route of ``app`` declaring no policy, or more than one."""
    wrong = []
    for route in api_routes(app):
        if len(route_access(route)) != 1:
            for method in sorted(route.methods or ()):
                wrong.append(f"{method} {route.path}")
    return wrong


def access_of(app: FastAPI) -> dict[tuple[str, str], Access]:
    """The policy of each ``(METHOD, path)`` of ``app`` that declares exactly one."""
    found: dict[tuple[str, str], Access] = {}
    for route in api_routes(app):
        declared = route_access(route)
        if len(declared) == 1:
            for method in route.methods or ():
                found[(method, route.path)] = declared[0]
    return found
