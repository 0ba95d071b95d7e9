"""The console service: serves the built web console (``console/``) and its ``/config.json``.

It has no API of its own and keeps no state: the page signs the person in at the identity
provider and calls the other services' APIs with their token (docs/console.md).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic import Field

from goalwatch.service import service_app
from goalwatch.serving import ServiceInfo
from goalwatch.settings import Port, ServiceSettings
from services.console.metrics import REGISTRY
from services.console.pages import ConsoleConfig, ConsolePages, ServiceUrls, pages_router

BUILT_FILES = Path(__file__).resolve().parent / "dist"
"""Where ``make console`` (``vite build``) writes the console, and a wheel carries it."""


class ConsoleSettings(ServiceSettings):
    """Settings of the console service: where it listens, where its files are, and the
    addresses the browser uses for the identity provider and the four services."""

    console_port: Port = Field(8006, description="HTTP port (GOALWATCH_CONSOLE_PORT).")
    console_files: Path = Field(
        BUILT_FILES,
        description="The built console (index.html and assets/), as `make console` writes it.",
    )
    console_client_id: str = Field(
        "goalwatch-console",
        description="The console's public client at the identity provider (authorization "
        "code with PKCE; its redirect URI is <console URL>/callback).",
    )
    console_oidc_issuer: str | None = Field(
        None,
        description="The identity provider as browsers reach it; default GOALWATCH_OIDC_ISSUER.",
    )
    console_ingestion_url: str = Field(
        "http://127.0.0.1:8001", description="The ingestion API as browsers reach it."
    )
    console_goals_url: str = Field(
        "http://127.0.0.1:8002", description="The goals API as browsers reach it."
    )
    console_evaluator_url: str = Field(
        "http://127.0.0.1:8003", description="The evaluator API as browsers reach it."
    )
    console_notifier_url: str = Field(
        "http://127.0.0.1:8004", description="The notifier API as browsers reach it."
    )


def console_config(settings: ConsoleSettings) -> ConsoleConfig:
    """What the page reads at ``/config.json`` to find the provider and the APIs."""
    return ConsoleConfig(
        issuer=(settings.console_oidc_issuer or settings.oidc_issuer or "").rstrip("/"),
        client_id=settings.console_client_id,
        person_claim=settings.oidc_person_claim,
        services=ServiceUrls(
            ingestion=settings.console_ingestion_url.rstrip("/"),
            goals=settings.console_goals_url.rstrip("/"),
            evaluator=settings.console_evaluator_url.rstrip("/"),
            notifier=settings.console_notifier_url.rstrip("/"),
        ),
    )


def create_app(settings: ConsoleSettings) -> FastAPI:
    """Build the console app; it starts without built files, and then says how to build
    them (``/readyz`` and the page answer 503)."""
    pages = ConsolePages(settings.console_files, console_config(settings))
    app = service_app(
        name="console",
        settings=settings,
        checks={"files": pages.ready},
        registry=REGISTRY,
        schemas=[ConsoleConfig],
    )
    app.include_router(pages_router(pages))
    return app


SERVICE = ServiceInfo(
    name="console",
    settings=ConsoleSettings,
    create_app=create_app,
    port_field="console_port",
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
