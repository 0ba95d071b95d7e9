"""Logging, Prometheus metrics and the health endpoints every service exposes."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from pythonjsonlogger.json import JsonFormatter
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from goalwatch.auth.policies import HEALTH, METRICS

_HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def service_registry() -> CollectorRegistry:
    """A registry for one service's metrics, with the standard process and Python ones.

    Each service counts on a registry of its own, so its ``/metrics`` shows what it observes
    and nothing another service defines.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def handler_seconds(registry: CollectorRegistry) -> Histogram:
    """``goalwatch_handler_seconds{service, handler}``: time to handle a message or request."""
    return Histogram(
        "goalwatch_handler_seconds",
        "Time spent handling one message or request.",
        ["service", "handler"],
        buckets=_HANDLER_BUCKETS,
        registry=registry,
    )


def dead_letters(registry: CollectorRegistry) -> Counter:
    """``goalwatch_dead_letters_total{origin_subject}``: messages a service kept as dead
    letters, by the subject they came from."""
    return Counter(
        "goalwatch_dead_letters_total",
        "Messages stored in GOALWATCH_DEADLETTER because they could not be processed, by the "
        "subject they came from.",
        ["origin_subject"],
        registry=registry,
    )


_HTTP: WeakKeyDictionary[CollectorRegistry, Counter] = WeakKeyDictionary()
_READY: WeakKeyDictionary[CollectorRegistry, Gauge] = WeakKeyDictionary()


def http_requests(registry: CollectorRegistry) -> Counter:
    """``goalwatch_http_requests_total{method, route, code}`` on ``registry``, made once."""
    counter = _HTTP.get(registry)
    if counter is None:
        counter = Counter(
            "goalwatch_http_requests_total",
            "HTTP requests answered, by method, route template (unmatched: no route) and "
            "status code.",
            ["method", "route", "code"],
            registry=registry,
        )
        _HTTP[registry] = counter
    return counter


def dependency_up(registry: CollectorRegistry) -> Gauge:
    """``goalwatch_dependency_up{dependency}`` on ``registry``, made once: 1 when the last
    ``/readyz`` found the dependency up, 0 when it did not."""
    gauge = _READY.get(registry)
    if gauge is None:
        gauge = Gauge(
            "goalwatch_dependency_up",
            "Whether the dependency (nats, redis) answered at the last readiness check "
            "(/readyz): 1 up, 0 down.",
            ["dependency"],
            registry=registry,
        )
        _READY[registry] = gauge
    return gauge


class HttpMetrics:
    """ASGI middleware counting every HTTP answer in ``goalwatch_http_requests_total``.

    The route is the matched route's template (``/v1/goals/{goal_id}``), never the path, so
    the label's values stay few; ``unmatched`` when no route matched (a 404, or an answer
    given before routing, such as a refused Host). An exception that escapes counts as 500.
    """

    def __init__(self, app: ASGIApp, *, registry: CollectorRegistry) -> None:
        self.app = app
        self.counter = http_requests(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
            self.counter.labels(
                method=scope.get("method", ""),
                route=template or "unmatched",
                code=str(status),
            ).inc()


ReadyCheck = Callable[[], Awaitable[bool]]
READY_TIMEOUT_SECONDS = 2.0


def configure_logging(service: str, level: str = "INFO") -> None:
    """Log one JSON object per line on stderr, tagged with the service name.

    Pass ``extra={"event_id": ...}`` (or ``fingerprint``) to carry ids through the logs.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Access logs are per request: useful when debugging, noise otherwise.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request URL at INFO: noise on hot paths, and a webhook URL may carry its
    # token in the query string.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


def ops_router(checks: Mapping[str, ReadyCheck], *, registry: CollectorRegistry) -> APIRouter:
    """``/healthz`` (process alive), ``/readyz`` (every dependency answers, each recorded in
    ``goalwatch_dependency_up``), ``/metrics``."""
    router = APIRouter(tags=["operations"])
    up = dependency_up(registry)

    @router.get("/healthz", summary="Liveness", dependencies=[Depends(HEALTH)])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: NATS and Redis connections are up",
        dependencies=[Depends(HEALTH)],
    )
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                # A dependency that hangs is down; the probe must answer in time either way.
                ok = await asyncio.wait_for(check(), timeout=READY_TIMEOUT_SECONDS)
            except TimeoutError:
                results[name] = f"down: no answer within {READY_TIMEOUT_SECONDS:g} s"
                continue
            except Exception as exc:  # a failing dependency is an answer, not a crash
                results[name] = f"down: {exc}"
                continue
            results[name] = "up" if ok else "down"
        for name, result in results.items():
            up.labels(dependency=name).set(1 if result == "up" else 0)
        ready = all(v == "up" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        include_in_schema=False,
        dependencies=[Depends(METRICS)],
    )
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
