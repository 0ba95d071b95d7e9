"""The ingestion service: metric events in over HTTP and NATS, validated, stored in JetStream."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from faststream.nats import NatsBroker
from pydantic import Field

from goalwatch.connections import ready_checks
from goalwatch.consumers import Consumers, ConsumerSpec, RedeliveryPolicy
from goalwatch.contracts import MetricCloudEvent, MetricRecorded, subjects
from goalwatch.messaging import new_broker
from goalwatch.service import service_app
from goalwatch.serving import ServiceInfo
from goalwatch.settings import Port, ServiceSettings
from services.ingestion.api import events_router
from services.ingestion.intake import MessageIntake
from services.ingestion.metrics import HANDLER_SECONDS, REGISTRY
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


def create_app(
    settings: IngestionSettings,
    *,
    publisher: Publisher | None = None,
    broker: NatsBroker | None = None,
) -> FastAPI:
    """Build the ingestion app; ``publisher`` and ``broker`` replace the JetStream ones."""
    broker = broker or new_broker(settings.nats_url, name="ingestion")
    sink = publisher or NatsPublisher(broker, timeout=settings.ingest_publish_timeout)
    limits = EventLimits(
        max_event_bytes=settings.ingest_max_event_bytes, max_future=settings.ingest_max_future
    )
    intake = MessageIntake(
        publisher=sink, max_batch=settings.ingest_max_batch, policy=CONSUMER.policy, limits=limits
    )
    consumers = Consumers(broker, service="ingestion", seconds=HANDLER_SECONDS)
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
        # Ingestion keeps no state of its own (JetStream de-duplicates): no Redis.
        checks=ready_checks(broker=broker),
        registry=REGISTRY,
        nats_url=settings.nats_url,
        broker=broker,
        consumers=consumers,
        schemas=[MetricRecorded, MetricCloudEvent],
    )
    app.include_router(
        events_router(
            publisher=sink,
            max_batch=settings.ingest_max_batch,
            max_body_bytes=settings.ingest_max_body_bytes,
            limits=limits,
        )
    )
    return app


SERVICE = ServiceInfo(
    name="ingestion", settings=IngestionSettings, create_app=create_app, port_field="ingestion_port"
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
