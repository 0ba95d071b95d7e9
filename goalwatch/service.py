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

import httpx
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from faststream.nats import NatsBroker
from nats.js.api import ConsumerInfo
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from goalwatch import __version__
from goalwatch.audit import install_audit
from goalwatch.auth.api_key_client import HttpApiKeyVerifier
from goalwatch.auth.api_keys import ApiKeyVerifier
from goalwatch.auth.grants import CachedRoleGrants, RoleGrants
from goalwatch.auth.identity import Authenticator
from goalwatch.auth.policy import Policy, access_of, undeclared_routes
from goalwatch.connections import nats_access
from goalwatch.consumer_lag import consumer_lag, consumers_router, watch
from goalwatch.consumers import Consumers, ConsumerSpec
from goalwatch.goals_client import GoalsClient, service_auth
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
from goalwatch.telemetry import HttpMetrics, ReadyCheck, ops_router

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
    grants: RoleGrants | None = None,
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
    (goals passes its own store); by default the goals service is asked. So is it for
    the roles granted to a person in goalwatch, unless ``grants`` reads them (goals' store) or
    ``GOALWATCH_ROLE_GRANTS`` is off.

    Every HTTP answer is counted on ``registry`` (:class:`goalwatch.telemetry.HttpMetrics`),
    and the pending counts of ``consumers`` are read every ``settings.consumer_lag_seconds``
    into it (:mod:`goalwatch.consumer_lag`).
    """

    closers = list(close)
    if grants is None and settings.role_grants:
        grants, close_grants = _grants_from_goals(settings)
        closers.append(close_grants)
    authenticator = Authenticator(
        settings,
        api_keys=api_keys or _ask_goals(settings),
        grants=grants if settings.role_grants else None,
    )

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
                    replicas=settings.nats_stream_replicas,
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
            specs = [*(consumers.specs if consumers else ()), *(leased.specs if leased else ())]
            if broker is not None and specs:
                lag = _watch_lag(broker, specs, registry, settings)
                tasks.append(asyncio.create_task(lag))
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
            for closer in closers:
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
    if consumers is not None and consumers.specs:
        consumer_lag(registry)  # the families are on /metrics from the start, empty until read
    if broker is not None and ((consumers and consumers.specs) or (leased and leased.specs)):
        lag, _ = consumer_lag(registry)
        app.include_router(consumers_router(name, lag, every=settings.consumer_lag_seconds))
    # Outermost: it counts every answer, a refused Host or an oversized body included.
    app.add_middleware(HttpMetrics, registry=registry)
    app.include_router(ops_router(checks, registry=registry))
    _document(app, [Problem, FieldProblem, *schemas])
    offline_docs(app)
    return app


async def _watch_lag(
    broker: NatsBroker,
    specs: Sequence[ConsumerSpec],
    registry: CollectorRegistry,
    settings: ServiceSettings,
) -> None:
    """Keep the pending counts of the service's consumers (``specs``, leased ones included:
    every replica reports every partition) on ``registry`` until cancelled."""
    lag, failures = consumer_lag(registry)
    every = settings.consumer_lag_seconds
    own = sorted({(spec.stream, spec.name) for spec in specs})

    async def info_of(stream: str, consumer: str) -> ConsumerInfo:
        js = broker.connection.jetstream(timeout=every)
        info: ConsumerInfo = await js.consumer_info(stream, consumer)
        return info

    await watch(lag, failures, own, info_of=info_of, every=every)


def _ask_goals(settings: ServiceSettings) -> ApiKeyVerifier:
    """API keys checked by the goals service, which owns them, signed in as this service."""
    return HttpApiKeyVerifier(
        base_url=settings.goals_url, auth=service_auth(settings), ttl=settings.api_key_cache_ttl
    )


def _grants_from_goals(settings: ServiceSettings) -> tuple[RoleGrants, Close]:
    """Role grants read from the goals service, which keeps them, signed in as this service;
    and what closes its connections."""
    http = httpx.AsyncClient(timeout=httpx.Timeout(5.0))
    goals = GoalsClient(
        client=http, base_url=settings.goals_url, auth=service_auth(settings), attempts=2,
        backoff=0.1,
    )  # fmt: skip
    return CachedRoleGrants(goals, ttl=settings.role_grant_cache_ttl), http.aclose


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
