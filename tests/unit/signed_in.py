"""Apps under unit test, with a caller already signed in.

Unit tests exercise what a route does, so they replace sign-in (tokens checked against an
identity provider, tested in tests/unit/test_auth_tokens.py and through the running services
in tests/integration/test_access.py) by a fixed caller, the way FastAPI's dependency
overrides are meant to be used.
"""

from __future__ import annotations

from fastapi import FastAPI

from goalwatch.auth.policy import authenticate
from goalwatch.auth.principal import ANY, Kind, Principal
from goalwatch.auth.roles import Role

EVERY_ROLE = Principal(
    subject="unit-tests",
    kind=Kind.SYSTEM,
    roles=frozenset(Role),
    client_id="unit-tests",
    metrics=frozenset({ANY}),
    sources=frozenset({ANY}),
)
"""A system holding every role: what a route does, not who may call it, is under test."""


def signed_in(app: FastAPI, principal: Principal = EVERY_ROLE) -> FastAPI:
    """``app``, every request of which comes from ``principal``."""

    async def caller() -> Principal:
        return principal

    app.dependency_overrides[authenticate] = caller
    return app
