"""What every service's app is made of: one lifespan, health and metrics, problem+json errors.

A service's ``create_app`` builds its clients and domain objects, subscribes its handlers with
:class:`goalwatch.consumers.Consumers` and hands the rest to :func:`service_app`.

Lifecycle, in order: streams and the service's consumers are provisioned, the broker starts
(subscribers begin to pull), the app serves (its API docs at ``/docs`` from local files, not a CDN); on shutdown
(SIGTERM) the leased consumers drain (finish and acknowledge their batch, give their leases
back), then the broker stops (it finishes what it holds), then every client is closed, all
within ``shutdown_grace_seconds``. FastStream's FastAPI integration (``NatsRouter``)
would start the broker too, but it builds a broker of its own, where a service here takes one
as an argument so that tests can pass theirs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from goalwatch import __version__
from goalwatch.audit import install_audit
from goalwatch.auth.api_key_client import HttpApiKeyVerifier
from goalwatch.auth.api_keys import ApiKeyVerifier
from goalwatch.auth.identity import Authenticator
from goalwatch.auth.policy import Policy, access_of, undeclared_routes
from goalwatch.connections import nats_access
from goalwatch.consumers import Consumers
from goalwatch.goals_client import service_auth
from goalwatch.guards import (
    BodyLimits,
    HostAllowList,
    SecurityHeaders,
    allowed_hosts,
    known_query_parameters,
)
from goalwatch.messaging import ensure_streams
from goalwatch.partitions import LeasedConsumers
from goalwatch.problems import FieldProblem, Problem, install_problem_handlers
from goalwatch.serving import offline_docs
from goalwatch.settings import ServiceSettings
from goalwatch.telemetry import ReadyCheck, ops_router

logger = logging.getLogger(__name__)

Close = Callable[[], Awaitable[None]]


def service_app(
    *,
    name: str,
    settings: ServiceSettings,
    checks: Mapping[str, ReadyCheck],
    registry: CollectorRegistry,
    broker: NatsBroker | None = None,
    consumers: Consumers | None = None,
    leased: LeasedConsumers | None = None,
    close: Sequence[Close] = (),
    on_start: Callable[[], None] | None = None,
    prepare: Callable[[], Awaitable[None]] | None = None,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    schemas: Sequence[type[BaseModel]] = (),
    max_body_bytes: int | None = None,
    api_keys: ApiKeyVerifier | None = None,
) -> FastAPI:
    """The FastAPI app of service ``name``; routes are added by the caller.

    ``broker`` is started and stopped with the app, after the streams ``name`` owns and its
    ``consumers`` (and ``leased`` consumers, served while this replica holds their leases:
    :mod:`goalwatch.partitions`) are provisioned (connecting as ``settings`` say, see
    :func:`goalwatch.messaging.ensure_streams`); ``close`` is awaited on shutdown; ``registry`` holds the service's
    own metrics, served at ``/metrics``; ``prepare`` is awaited once the broker is connected,
    before its consumers start (what every message needs in place); ``background`` tasks run while the app serves
    (started after the broker, cancelled before it stops); ``schemas`` are added to the
    OpenAPI components (models that a route answers with by hand). From ``settings``: the
    Host allow-list and the body limits (``max_body_bytes`` replaces
    ``http_max_body_bytes``), see :mod:`goalwatch.guards`. ``api_keys`` checks API keys
    (goals passes its own store); by default the goals service is asked.
    """

    authenticator = Authenticator(settings, api_keys=api_keys or _ask_goals(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A route that declares who may call it is the only kind served (goalwatch.auth.policy).
        undeclared = undeclared_routes(app)
        if undeclared:
            raise RuntimeError(
                f"goalwatch {name}: routes without exactly one access policy: "
                f"{', '.join(undeclared)}"
            )
        try:
            if broker is not None:
                await ensure_streams(
                    nats_access(settings),
                    owner=name,
                    consumers=[
                        *(consumers.specs if consumers else ()),
                        *(leased.specs if leased else ()),
                    ],
                    metrics_retention=settings.metrics_retention,
                    audit_retention=settings.audit_retention,
                    metrics_partitions=settings.metrics_partitions,
                )
                if prepare is not None:
                    await broker.connect()
                    await prepare()
                await broker.start()
            if on_start is not None:
                on_start()
            tasks = [asyncio.create_task(task()) for task in background]
            if leased is not None:
                tasks.append(asyncio.create_task(leased.run()))
            try:
                yield
            finally:
                # Drain: the leased consumers finish and acknowledge their batches and hand
                # their slots over; then the broker's own subscribers finish theirs (its
                # graceful timeout), all within the grace period.
                if leased is not None:
                    await leased.drain(within=settings.shutdown_grace_seconds / 2)
                for running in tasks:
                    running.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if broker is not None:
                await broker.stop()
            for closer in close:
                await closer()
            await authenticator.aclose()

    app = FastAPI(
        title=f"goalwatch {name}",
        version=__version__,
        lifespan=lifespan,
        dependencies=[Depends(known_query_parameters)],
    )
    app.state.broker = broker  # what the service subscribes and publishes, for AsyncAPI
    app.state.authenticator = authenticator
    install_problem_handlers(app)
    if settings.cors_origins:
        # Bearer tokens, never cookies: no credentials mode, so no CSRF through CORS either.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-Id"],
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    # Innermost of the middleware: it sees the route that answered (goalwatch.audit).
    install_audit(app, service=name, broker=broker, registry=registry,
                  timeout=settings.audit_publish_timeout,
                  trust_forwarded=settings.audit_trust_forwarded)  # fmt: skip
    # Added last, so run first: a foreign Host is refused before anything reads the body.
    app.add_middleware(
        BodyLimits,
        max_bytes=max_body_bytes or settings.http_max_body_bytes,
        timeout=settings.http_body_timeout,
    )
    app.add_middleware(
        HostAllowList, hosts=allowed_hosts(settings.allowed_hosts, listen_host=settings.host)
    )
    app.include_router(ops_router(checks, registry=registry))
    _document(app, [Problem, FieldProblem, *schemas])
    offline_docs(app)
    return app


def _ask_goals(settings: ServiceSettings) -> ApiKeyVerifier:
    """API keys checked by the goals service, which owns them, signed in as this service."""
    return HttpApiKeyVerifier(
        base_url=settings.goals_url, auth=service_auth(settings), ttl=settings.api_key_cache_ttl
    )


def _document(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Add ``models`` to the OpenAPI components, where hand-written responses refer to them."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for (method, path), access in access_of(app).items():
                operation = schema.get("paths", {}).get(path, {}).get(method.lower())
                if operation is not None:
                    operation["x-goalwatch-access"] = access.describe()
                    if isinstance(access, Policy):
                        _document_refusals(operation)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_REFUSALS = {
    "401": "No valid bearer token: sign in (the `WWW-Authenticate` header says why).",
    "403": "The caller may not do this: the answer names the role it needs.",
}


def _document_refusals(operation: dict[str, Any]) -> None:
    """Add the answers of sign-in and access checks to an operation that has a policy."""
    responses = operation.setdefault("responses", {})
    for status, description in _REFUSALS.items():
        responses.setdefault(
            status,
            {
                "description": description,
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            },
        )
