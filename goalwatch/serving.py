"""Run a service: the registry of services, one ``run_service``, and docs pages that work offline.

Each service defines one :class:`ServiceInfo` (module-level ``SERVICE`` in its ``app.py``) and
names it in ``pyproject.toml`` under ``[project.entry-points."goalwatch.services"]``. The kernel
reaches the services only through that registry (:func:`registered_services`), never by
importing them; ``python -m services.<name>`` hands its ``SERVICE`` to :func:`run_service`.
"""

from __future__ import annotations

import errno
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar, cast

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from goalwatch.auth.policies import API_DOCS
from goalwatch.settings import ServiceSettings, settings_or_exit
from goalwatch.telemetry import configure_logging

ENTRY_POINT_GROUP = "goalwatch.services"
"""The entry-point group every service registers its :class:`ServiceInfo` in."""

S = TypeVar("S", bound=ServiceSettings)


def _unexplained(_exc: Exception, _settings: Any) -> str | None:
    return None


@dataclass(frozen=True)
class ServiceInfo(Generic[S]):
    """What the kernel needs to know to run a service or render its OpenAPI document."""

    name: str
    """The service's name: its logger tag, entry-point name and ``python -m services.<name>``."""
    settings: type[S]
    """Its settings class, read from the environment by :func:`run_service`."""
    create_app: Callable[[S], FastAPI]
    """Builds the app from settings; connects to nothing until the app starts."""
    port_field: str
    """The settings field holding its HTTP port (``goals_port`` is ``GOALWATCH_GOALS_PORT``)."""
    explain_startup_error: Callable[[Exception, S], str | None] = _unexplained
    """For an exception ``create_app`` raised: the message to print before exiting 2, or
    ``None`` to let it propagate as a crash."""
    document_settings: Callable[[], S] | None = None
    """Settings to build the app with when only its OpenAPI document is wanted, whatever the
    environment says; by default the settings class's defaults."""

    @property
    def port_variable(self) -> str:
        """The environment variable that sets the port."""
        prefix = str(self.settings.model_config.get("env_prefix", ""))
        return f"{prefix}{self.port_field}".upper()

    def document_app(self) -> FastAPI:
        """The app as built for its OpenAPI document (nothing connects)."""
        if self.document_settings is not None:
            return self.create_app(self.document_settings())
        # model_construct skips validation and the environment: the defaults, as declared.
        return self.create_app(cast(S, self.settings.model_construct()))


class RegistryError(RuntimeError):
    """The installed services are not registered as expected; the message says how to fix it."""


def registered_services() -> dict[str, ServiceInfo[Any]]:
    """Every service registered under :data:`ENTRY_POINT_GROUP`, by name (sorted)."""
    found: dict[str, ServiceInfo[Any]] = {}
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        info = entry.load()
        if not isinstance(info, ServiceInfo):
            raise RegistryError(
                f"entry point {entry.name} = {entry.value!r} in group {ENTRY_POINT_GROUP} "
                f"is a {type(info).__name__}, not a ServiceInfo"
            )
        if info.name != entry.name:
            raise RegistryError(
                f"entry point {entry.name} = {entry.value!r} names a service called {info.name!r}"
            )
        found[entry.name] = info
    if not found:
        raise RegistryError(
            f"no services are registered in entry-point group {ENTRY_POINT_GROUP}: install the "
            "project (`make install`, or `pip install -e .`) so its entry points exist"
        )
    return found


def run_service(info: ServiceInfo[Any]) -> None:
    """Run a service with settings from the environment until SIGINT/SIGTERM.

    Exits 2 with a message for invalid settings, a startup error the service explains, or a
    taken port.
    """
    settings = settings_or_exit(info.settings)
    configure_logging(info.name, settings.log_level)
    try:
        app = info.create_app(settings)
    except Exception as exc:
        message = info.explain_startup_error(exc, settings)
        if message is None:
            raise
        print(f"goalwatch: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    serve(
        app,
        host=settings.host,
        port=int(getattr(settings, info.port_field)),
        service=info.name,
        env_var=info.port_variable,
        tls=TlsFiles(
            cert=settings.tls_cert_file,
            key=settings.tls_key_file,
            client_ca=settings.tls_client_ca_file,
        ),
    )


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_taken_message(what: str, host: str, port: int, env_var: str) -> str:
    """The one wording for a taken port, naming the variable that moves it."""
    return (
        f"{what} cannot listen on {host}:{port}: the port is already in use. "
        f"Stop whatever holds it, or choose another port with {env_var}=<port>."
    )


@dataclass(frozen=True)
class TlsFiles:
    """Where a service's HTTPS certificate, key and (for mutual TLS) client CA are."""

    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None


def serve(
    app: FastAPI,
    *,
    host: str,
    port: int,
    service: str,
    env_var: str,
    tls: TlsFiles | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, over TLS when ``tls`` names a certificate; exit 2
    with a clear message if the port is taken or the TLS files are half given."""
    if not port_free(host, port):
        message = port_taken_message(f"the {service} service", host, port, env_var)
        print(f"goalwatch: {message}", file=sys.stderr)
        raise SystemExit(2)
    tls = tls or TlsFiles()
    if bool(tls.cert) != bool(tls.key):
        print(
            "goalwatch: HTTPS needs both GOALWATCH_TLS_CERT_FILE and GOALWATCH_TLS_KEY_FILE",
            file=sys.stderr,
        )
        raise SystemExit(2)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ssl_certfile=tls.cert,
        ssl_keyfile=tls.key,
        ssl_ca_certs=tls.client_ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED if tls.client_ca else ssl.CERT_NONE,
        # On SIGTERM, requests under way get this long before the consumers drain (the
        # lifespan's shutdown, bounded by shutdown_grace_seconds).
        timeout_graceful_shutdown=HTTP_GRACE_SECONDS,
    )


HTTP_GRACE_SECONDS = 3
"""On SIGTERM, how long HTTP requests under way may take before the service drains."""

DOCS_ASSETS_PATH = "/docs/assets"
"""Where :func:`offline_docs` serves the Swagger UI and ReDoc files."""


def offline_docs(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI) and ``/redoc`` from files shipped with the app, not a CDN.

    FastAPI's own pages load their scripts from the internet, so they stay blank on a machine
    without it. The files come from the ``fastapi-offline`` distribution.
    """
    docs_paths = {app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url}
    app.router.routes[:] = [
        route for route in app.router.routes if getattr(route, "path", None) not in docs_paths
    ]
    app.mount(
        DOCS_ASSETS_PATH,
        StaticFiles(packages=[("fastapi_offline", "static")]),
        name="docs-assets",
    )
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url
    # No validator badge: it would send the document to validator.swagger.io.
    parameters = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}

    def assets(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{DOCS_ASSETS_PATH}"

    if app.docs_url:

        @app.get(app.docs_url, include_in_schema=False, dependencies=[Depends(API_DOCS)])
        async def swagger_ui(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=f"{root}{oauth2_redirect_url}" if oauth2_redirect_url else None,
                swagger_js_url=f"{assets(request)}/swagger-ui-bundle.js",
                swagger_css_url=f"{assets(request)}/swagger-ui.css",
                swagger_favicon_url=f"{assets(request)}/favicon.png",
                swagger_ui_parameters=parameters,
            )

    if app.docs_url and oauth2_redirect_url:

        @app.get(oauth2_redirect_url, include_in_schema=False, dependencies=[Depends(API_DOCS)])
        async def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    if app.redoc_url:

        @app.get(app.redoc_url, include_in_schema=False, dependencies=[Depends(API_DOCS)])
        async def redoc(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{assets(request)}/redoc.standalone.js",
                redoc_favicon_url=f"{assets(request)}/favicon.png",
                with_google_fonts=False,
            )
