"""The ingestion service: metric events in over HTTP and NATS, validated, stored in JetStream."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import FastAPI
from faststream.nats import NatsBroker
from pydantic import Field, field_validator
from pydantic_settings import NoDecode
from redis.asyncio import Redis

from goalwatch.catalogue import DEFAULT_CATALOGUE, Catalogue, CatalogueLoadError, load_catalogue
from goalwatch.connections import nats_access, ready_checks, redis_client
from goalwatch.consumers import Consumers, ConsumerSpec, RedeliveryPolicy
from goalwatch.contracts import MetricCloudEvent, MetricRecorded, subjects
from goalwatch.dead_letter_replay import replay_router
from goalwatch.goals_client import GoalsClient, service_auth
from goalwatch.messaging import new_broker
from goalwatch.service import service_app
from goalwatch.serving import ServiceInfo
from goalwatch.settings import Port, ServiceSettings
from services.ingestion.api import events_router
from services.ingestion.catalogue_api import catalogue_router
from services.ingestion.history import GoalsDirectory, MetricReader, history_router
from services.ingestion.intake import MessageIntake, UncataloguedLog
from services.ingestion.metrics import DEAD_LETTERS, HANDLER_SECONDS, REGISTRY
from services.ingestion.publisher import NatsPublisher, Publisher
from services.ingestion.validation import EventLimits

CONSUMER = ConsumerSpec(
    name="ingestion",
    stream=subjects.STREAM_INGEST,
    subject=subjects.METRICS_IN,
    # Storing fails only while JetStream is unavailable: retry within about a minute.
    policy=RedeliveryPolicy(max_deliver=5, first_delay=2.0, max_delay=30.0),
    ack_wait=30,
    batch_size=50,
)


class IngestionSettings(ServiceSettings):
    """Settings of the ingestion service."""

    ingestion_port: Port = Field(8001, description="HTTP port (GOALWATCH_INGESTION_PORT).")
    ingest_max_batch: int = Field(
        1000,
        ge=1,
        description="Most events in one request or NATS message; a larger batch is refused "
        "whole (HTTP 413, or a dead letter).",
    )
    ingest_max_body_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1,
        description="Largest request body accepted, in bytes (HTTP 413 beyond).",
    )
    ingest_max_event_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=1_000_000,
        description="Largest event, as stored (its JSON), in bytes; a larger one is rejected "
        "on its own. Must stay below the NATS server's max_payload (1 MiB by default).",
    )
    ingest_max_future: timedelta = Field(
        timedelta(minutes=10),
        ge=timedelta(0),
        description="How far ahead of the ingestion clock an event's time may be (seconds, or "
        "ISO 8601 such as PT10M); a later event is rejected on its own.",
    )
    ingest_publish_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds to wait for JetStream to confirm it stored the events of one "
        "request or message (they are published together).",
    )
    catalogue_file: Path = Field(
        DEFAULT_CATALOGUE,
        description="The metric catalogue (GOALWATCH_CATALOGUE_FILE): events for a metric not "
        "in it, outside its range or with labels it does not list are rejected.",
    )
    ingest_onboarding_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Sources being onboarded, comma-separated (e.g. crm,his): their events' "
        "uncatalogued metrics and labels are accepted, counted and logged once each, "
        "instead of rejected. Values out of a catalogued range are rejected all the same.",
    )

    @field_validator("ingest_onboarding_sources", mode="before")
    @classmethod
    def _sources(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def create_app(
    settings: IngestionSettings,
    *,
    publisher: Publisher | None = None,
    broker: NatsBroker | None = None,
    catalogue: Catalogue | None = None,
    http: httpx.AsyncClient | None = None,
    redis: Redis | None = None,
) -> FastAPI:
    """Build the ingestion app; ``publisher`` and ``broker`` replace the JetStream ones,
    ``catalogue`` the one read from ``settings.catalogue_file``; ``http`` is the client that
    asks goals whom a person may see (for a metric's history); ``redis`` holds only the
    marks of the dead letters it replays.

    Raises :class:`CatalogueLoadError` if the catalogue file does not load.
    """
    catalogue = catalogue or load_catalogue(settings.catalogue_file)
    broker = broker or new_broker(nats_access(settings), name="ingestion")
    sink = publisher or NatsPublisher(
        broker, timeout=settings.ingest_publish_timeout, partitions=settings.metrics_partitions
    )
    limits = EventLimits(
        max_event_bytes=settings.ingest_max_event_bytes,
        max_future=settings.ingest_max_future,
        catalogue=catalogue,
        onboarding_sources=frozenset(settings.ingest_onboarding_sources),
    )
    uncatalogued = UncataloguedLog()
    http = http or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
    # Only for the marks of replayed dead letters: events flow without it.
    redis = redis or redis_client(settings)
    goals = GoalsClient(client=http, base_url=settings.goals_url, auth=service_auth(settings))
    intake = MessageIntake(
        publisher=sink,
        max_batch=settings.ingest_max_batch,
        policy=CONSUMER.policy,
        limits=limits,
        uncatalogued=uncatalogued,
    )
    consumers = Consumers(
        broker, service="ingestion", seconds=HANDLER_SECONDS, dead_letters=DEAD_LETTERS
    )
    consumers.add(
        CONSUMER,
        bytes,  # validation reports JSON errors itself, by event index, field, line and column
        intake,
        description="Metric events published straight to NATS: one event or a batch, plain "
        "JSON or CloudEvents, validated and stored like POST /v1/events.",
    )
    app = service_app(
        name="ingestion",
        settings=settings,
        max_body_bytes=settings.ingest_max_body_bytes,
        # Ingestion keeps no state of its own (JetStream de-duplicates): Redis holds only
        # the marks of the dead letters it replays, so events flow, and it is ready, without.
        checks=ready_checks(broker=broker),
        registry=REGISTRY,
        broker=broker,
        consumers=consumers,
        schemas=[MetricRecorded, MetricCloudEvent],
        close=[http.aclose, redis.aclose],
    )
    app.include_router(
        events_router(
            publisher=sink,
            max_batch=settings.ingest_max_batch,
            max_body_bytes=settings.ingest_max_body_bytes,
            limits=limits,
            uncatalogued=uncatalogued,
        )
    )
    app.include_router(catalogue_router(catalogue=catalogue))
    # Only ingestion publishes validated metric events: it replays their dead letters (the
    # evaluator's), onto the partition they came from.
    app.include_router(
        replay_router(
            "ingestion",
            connection=lambda: broker.connection,
            redis=redis,
            publish_timeout=settings.ingest_publish_timeout,
        )
    )
    app.include_router(
        history_router(
            reader=MetricReader(lambda: broker.connection, partitions=settings.metrics_partitions),
            directory=GoalsDirectory(goals),
        )
    )
    return app


def _explain_startup_error(exc: Exception, settings: IngestionSettings) -> str | None:
    """An invalid catalogue stops ingestion with every error listed as file:line."""
    if not isinstance(exc, CatalogueLoadError):
        return None
    count = len(exc.errors)
    return "\n".join(
        [
            f"ingestion cannot start: {count} error{'s' if count != 1 else ''} in the metric "
            f"catalogue {settings.catalogue_file} (set by GOALWATCH_CATALOGUE_FILE):",
            *(f"  {error}" for error in exc.errors),
        ]
    )


SERVICE = ServiceInfo(
    name="ingestion",
    settings=IngestionSettings,
    create_app=create_app,
    port_field="ingestion_port",
    explain_startup_error=_explain_startup_error,
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
