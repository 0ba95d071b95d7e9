"""The console's routes: its page, its built scripts and styles, and ``/config.json``.

Every route is public (:data:`goalwatch.auth.policies.CONSOLE_FILES`): nothing here is data.
The page carries a Content-Security-Policy of its own: scripts, styles and images from the
console only (nothing from a CDN), and connections only to the console, the four APIs and the
identity provider named in ``/config.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import Field

from goalwatch.auth.policies import CONSOLE_CONFIG, CONSOLE_FILES
from goalwatch.contracts.base import Contract

INDEX = "index.html"
ASSETS = "assets"
# Vite names every built file by its content's hash: a name never changes meaning.
IMMUTABLE = "public, max-age=31536000, immutable"
# The page and its configuration are asked for again each time: a new build shows at once.
REVALIDATE = "no-cache"


class ServiceUrls(Contract):
    """The four services' APIs as the browser reaches them."""

    ingestion: str = Field(description="Base URL of ingestion (metric events, the catalogue).")
    goals: str = Field(description="Base URL of goals (people, org units, goals).")
    evaluator: str = Field(description="Base URL of the evaluator (rules).")
    notifier: str = Field(description="Base URL of the notifier (the inbox).")


class ConsoleConfig(Contract):
    """``GET /config.json``: where the console signs people in and which APIs it calls."""

    issuer: str = Field(
        description="The OpenID Connect provider's issuer URL; empty when none is set."
    )
    client_id: str = Field(description="The console's public client id at the provider.")
    person_claim: str = Field(
        description="The token claim holding the person's id in goals (preferred_username)."
    )
    services: ServiceUrls = Field(description="The APIs the page calls with the token.")


class ConsoleNotBuiltError(RuntimeError):
    """The console's files are not where the service looks for them."""


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``, or ``None`` if it has none."""
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        return None
    return f"{scheme}://{rest.split('/', 1)[0]}"


def content_security_policy(config: ConsoleConfig) -> str:
    """The page's policy: everything from the console itself, connections also to the APIs
    and the identity provider of ``config``, no frames, no plugins, forms nowhere."""
    urls = [config.issuer, *config.services.model_dump().values()]
    connect = " ".join(dict.fromkeys(o for o in map(_origin, urls) if o))
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' {connect}".rstrip(),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


class ConsolePages:
    """The built console in ``files`` (``index.html``, ``assets/``), served with ``config``."""

    def __init__(self, files: Path, config: ConsoleConfig) -> None:
        self.files = files
        self.config = config
        self.policy = content_security_policy(config)
        self.assets = StaticFiles(directory=files / ASSETS, check_dir=False)

    def missing(self) -> str | None:
        """Why the console cannot be served, or ``None`` when its files are in place."""
        if (self.files / INDEX).is_file():
            return None
        return (
            f"the console is not built: no {self.files / INDEX}; run `make console` (npm ci and "
            "vite build in console/), or point GOALWATCH_CONSOLE_FILES at a built console"
        )

    async def ready(self) -> bool:
        """The ``/readyz`` check: ready once the files are there; otherwise it says why."""
        problem = self.missing()
        if problem is not None:
            raise ConsoleNotBuiltError(problem)
        return True

    def index(self) -> Response:
        """The page, under its Content-Security-Policy."""
        problem = self.missing()
        if problem is not None:
            raise HTTPException(503, problem)
        return FileResponse(
            self.files / INDEX,
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": self.policy, "Cache-Control": REVALIDATE},
        )


def pages_router(pages: ConsolePages) -> APIRouter:
    """The console's routes: ``/`` and ``/callback`` (the page), ``/assets/...``, and
    ``/config.json``."""
    router = APIRouter(tags=["console"])

    @router.get(
        "/",
        summary="The console",
        response_class=FileResponse,
        dependencies=[Depends(CONSOLE_FILES)],
    )
    async def index() -> Response:
        """The console's page (the inbox)."""
        return pages.index()

    # The page's own addresses (console/src/main.tsx): the page itself, which shows the
    # part the address names, so that a link or a reload lands where it points.
    files = [Depends(CONSOLE_FILES)]

    @router.get(
        "/goals",
        summary="The console: the goals tree",
        response_class=FileResponse,
        dependencies=files,
    )
    async def goals_page() -> Response:
        """The console's page, showing goals."""
        return pages.index()

    @router.get(
        "/goals/{goal_id}",
        summary="The console: one goal",
        response_class=FileResponse,
        dependencies=files,
    )
    async def goal_page(goal_id: Annotated[str, PathParam(max_length=200)]) -> Response:
        """The console's page, showing one goal and what depends on it."""
        return pages.index()

    @router.get(
        "/goals/{goal_id}/impact",
        summary="The console: what depends on one goal (its impact walk, as a tree)",
        response_class=FileResponse,
        dependencies=files,
    )
    async def goal_impact_page(goal_id: Annotated[str, PathParam(max_length=200)]) -> Response:
        """The console's page, showing every goal affected if this one fails."""
        return pages.index()

    @router.get(
        "/rules",
        summary="The console: rules (HR)",
        response_class=FileResponse,
        dependencies=files,
    )
    async def rules_page() -> Response:
        """The console's page, showing the rules."""
        return pages.index()

    @router.get(
        "/rules/{rule_id}",
        summary="The console: one rule's editor (HR)",
        response_class=FileResponse,
        dependencies=files,
    )
    async def rule_page(rule_id: Annotated[str, PathParam(max_length=200)]) -> Response:
        """The console's page, showing one rule's editor."""
        return pages.index()

    @router.get(
        "/operations",
        summary="The console: operations (operator)",
        response_class=FileResponse,
        dependencies=files,
    )
    async def operations_page() -> Response:
        """The console's page, showing operations."""
        return pages.index()

    @router.get(
        "/callback",
        summary="Where the identity provider sends the browser back after sign-in",
        response_class=FileResponse,
        dependencies=[Depends(CONSOLE_FILES)],
    )
    async def callback(
        code: Annotated[str | None, Query(description="The authorization code.")] = None,
        state: Annotated[str | None, Query(description="The state the page sent.")] = None,
        iss: Annotated[str | None, Query(description="The provider (RFC 9207).")] = None,
        error: Annotated[str | None, Query(description="Why sign-in failed.")] = None,
        error_description: Annotated[str | None, Query(description="In words.")] = None,
    ) -> Response:
        """The console's page, which finishes signing in with the code in the query (the
        page reads it; the server only takes the parameters the provider sends)."""
        return pages.index()

    @router.get(
        "/assets/{name}",
        summary="The console's built scripts and styles",
        response_class=FileResponse,
        dependencies=[Depends(CONSOLE_FILES)],
    )
    async def asset(
        name: Annotated[
            str, PathParam(max_length=200, description="A built file's name (the folder is flat).")
        ],
        request: Request,
    ) -> Response:
        """One built file; its name changes with its content, so browsers keep it."""
        response = await pages.assets.get_response(name, request.scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
        return response

    @router.get(
        "/config.json",
        summary="Where the console signs in and which APIs it calls",
        response_model=ConsoleConfig,
        dependencies=[Depends(CONSOLE_CONFIG)],
    )
    async def config() -> Response:
        """The identity provider, the console's client id and the services' URLs."""
        return Response(
            pages.config.model_dump_json(),
            media_type="application/json",
            headers={"Cache-Control": REVALIDATE},
        )

    return router
