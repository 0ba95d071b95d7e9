"""The ingestion service: metric events in over HTTP and NATS, validated, stored in JetStream."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from faststream import AckPolicy
from faststream.nats.annotations import NatsMessage
from pydantic import Field

from goalwatch import __version__
from goalwatch.connections import ready_checks
from goalwatch.contracts import subjects
from goalwatch.messaging import Durable, delivery, ensure_streams, new_broker, pull_sub, stream
from goalwatch.serving import ServiceInfo, offline_docs
from goalwatch.settings import Port, ServiceSettings
from goalwatch.telemetry import HANDLER_SECONDS, ops_router
from services.ingestion.api import document_event_bodies, events_router
from services.ingestion.intake import PublishFailedError, dead_letter, ingest_message
from services.ingestion.publisher import NatsPublisher, Publisher

logger = logging.getLogger(__name__)

# Deliveries of one ingest message before it is dead-lettered instead of retried.
MAX_DELIVER = 5
CONSUMER = Durable(
    name="ingestion",
    stream=subjects.STREAM_INGEST,
    subject=subjects.METRICS_IN,
    max_deliver=MAX_DELIVER,
    ack_wait=30,
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
    ingest_publish_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds to wait for JetStream to confirm it stored one event.",
    )


async def _raw_body(msg: NatsMessage) -> bytes:
    """Keep the body as bytes: validation reports JSON errors itself, with line and column."""
    return bytes(msg.body)


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    """NATS headers are case-sensitive; HTTP habits make senders spell them either way."""
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def create_app(settings: IngestionSettings, *, publisher: Publisher | None = None) -> FastAPI:
    """Build the ingestion app.

    ``publisher`` replaces the JetStream publisher (unit tests pass a fake and do not start
    the app's lifespan, so nothing connects to NATS).
    """
    broker = new_broker(settings.nats_url, name="ingestion")
    sink: Publisher = publisher or NatsPublisher(broker, timeout=settings.ingest_publish_timeout)

    @broker.subscriber(
        subjects.METRICS_IN,
        stream=stream(subjects.STREAM_INGEST),
        durable=CONSUMER.name,
        pull_sub=pull_sub(50),
        config=CONSUMER.config(),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=_raw_body,
    )
    async def on_metrics_in(body: bytes, msg: NatsMessage) -> None:
        facts = delivery(msg.raw_message)
        sequence, delivered = facts.sequence, facts.count
        # The same id for every delivery of one message: a redelivered reject is dead-lettered once.
        msg_id = f"ingest-{sequence}" if sequence is not None else None
        with HANDLER_SECONDS.labels(service="ingestion", handler="metrics_in").time():
            try:
                await ingest_message(
                    body=body,
                    content_type=_header(msg.headers, "content-type"),
                    max_batch=settings.ingest_max_batch,
                    publisher=sink,
                    msg_id=msg_id,
                )
            except PublishFailedError as exc:
                if delivered < MAX_DELIVER:
                    logger.warning(
                        "ingest message %s not stored, will be redelivered (delivery %d of %d): %s",
                        sequence,
                        delivered,
                        MAX_DELIVER,
                        exc,
                    )
                    raise
                # Last delivery: NATS would drop the message silently, so keep it as a dead letter.
                logger.error(
                    "ingest message %s dead-lettered after %d deliveries: %s",
                    sequence,
                    delivered,
                    exc,
                )
                await sink.publish_dead_letter(
                    dead_letter(
                        body=body,
                        reason=f"could not be stored after {delivered} deliveries: {exc}",
                        rejects=[],
                        batch=False,
                    ),
                    msg_id=msg_id,
                )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await ensure_streams(settings.nats_url, consumers=[CONSUMER])
            await broker.start()
            yield
        finally:
            await broker.stop()

    app = FastAPI(title="goalwatch ingestion", version=__version__, lifespan=lifespan)
    app.state.broker = broker  # for tests that drive the NATS path with TestNatsBroker
    # Ingestion keeps no state of its own (JetStream de-duplicates): Redis is not a dependency.
    app.include_router(ops_router(ready_checks(broker=broker)))
    app.include_router(
        events_router(
            publisher=sink,
            max_batch=settings.ingest_max_batch,
            max_body_bytes=settings.ingest_max_body_bytes,
        )
    )
    document_event_bodies(app)
    offline_docs(app)
    return app


SERVICE = ServiceInfo(
    name="ingestion", settings=IngestionSettings, create_app=create_app, port_field="ingestion_port"
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
