"""Notifier service wiring: alert consumers, channels, the inbox API, health and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Annotated

import httpx
from fastapi import FastAPI, HTTPException, Path, Query
from faststream import AckPolicy
from faststream.nats import NatsMessage
from pydantic import Field, SecretStr, field_validator, model_validator

from goalwatch import __version__
from goalwatch.connections import ready_checks, redis_client
from goalwatch.contracts import AlertState, subjects
from goalwatch.contracts.base import Contract
from goalwatch.messaging import Durable, delivery, ensure_streams, new_broker, pull_sub, stream
from goalwatch.serving import ServiceInfo, offline_docs
from goalwatch.settings import Port, ServiceSettings
from goalwatch.telemetry import HANDLER_SECONDS, ops_router
from services.notifier.channels import Channel
from services.notifier.claims import DeliveryClaims
from services.notifier.inbox import DEFAULT_LIMIT, MAX_LIMIT, Inbox, InboxAlert, InboxPage
from services.notifier.pipeline import Notifier
from services.notifier.recipients import GoalsClient
from services.notifier.webhook import WebhookChannel

logger = logging.getLogger(__name__)

# Redeliveries allowed per alert message; the last one dead-letters instead of failing again.
MAX_DELIVER = 10
ACK_WAIT_SECONDS = 60.0
# Long webhook retries tell JetStream the message is still being worked on, well within ack_wait.
KEEP_ALIVE_SECONDS = ACK_WAIT_SECONDS / 3

CONSUMERS = tuple(
    Durable(
        name=name,
        stream=subjects.STREAM_ALERTS,
        subject=subject,
        max_deliver=MAX_DELIVER,
        ack_wait=ACK_WAIT_SECONDS,
    )
    for subject, name in (
        (subjects.ALERTS_FIRED, "notifier-fired"),
        (subjects.ALERTS_RESOLVED, "notifier-resolved"),
    )
)


class NotifierSettings(ServiceSettings):
    """Notifier settings; each is read from GOALWATCH_<FIELD NAME>."""

    notifier_port: Port = Field(8004, description="HTTP port (GOALWATCH_NOTIFIER_PORT).")
    goals_url: str = Field(
        "http://127.0.0.1:8002",
        description="Base URL of the goals service, which resolves people and managers.",
    )
    goals_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds to wait for one goals-service request.",
    )
    webhook_url: str | None = Field(
        None,
        description="Generic webhook receiving every alert transition; unset turns it off.",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Shared secret for the X-Goalwatch-Signature HMAC; required with a URL.",
    )
    webhook_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds to wait for one webhook POST.",
    )
    webhook_max_attempts: int = Field(
        5,
        ge=1,
        le=20,
        description="POST attempts before a notification is dead-lettered.",
    )
    webhook_backoff: float = Field(
        0.5,
        gt=0,
        description="First retry delay in seconds; doubles per attempt with jitter, cap 30 s.",
    )

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _blank_url_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                # Not echoed: webhook URLs often carry their token.
                "GOALWATCH_WEBHOOK_URL must be an http:// or https:// URL, got one starting "
                f"with {value.split(':', 1)[0]!r}:"
            )
        return value

    @model_validator(mode="after")
    def _secret_with_url(self) -> NotifierSettings:
        secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
        if self.webhook_url is not None and not secret:
            raise ValueError(
                "GOALWATCH_WEBHOOK_SECRET is required when GOALWATCH_WEBHOOK_URL is set: every "
                "webhook request is signed with it. Set it to the secret the receiver verifies."
            )
        return self


class FingerprintNotFound(Contract):
    """404 body of ``GET /v1/alerts/{fingerprint}``."""

    detail: str


def build_channels(settings: NotifierSettings, *, client: httpx.AsyncClient) -> list[Channel]:
    """Every configured channel, explicitly; a misconfigured one raises here, at start-up."""
    channels: list[Channel] = []
    if settings.webhook_url is not None:
        assert settings.webhook_secret is not None  # enforced by NotifierSettings
        channels.append(
            WebhookChannel(
                url=settings.webhook_url,
                secret=settings.webhook_secret,
                client=client,
                timeout=settings.webhook_timeout,
                max_attempts=settings.webhook_max_attempts,
                backoff=settings.webhook_backoff,
            )
        )
    return channels


@asynccontextmanager
async def _keep_alive(msg: NatsMessage) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            await asyncio.sleep(KEEP_ALIVE_SECONDS)
            try:
                await msg.in_progress()
            except Exception as exc:  # losing a heartbeat only risks a redelivery
                logger.debug("in-progress heartbeat failed: %s", exc)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def create_app(settings: NotifierSettings) -> FastAPI:
    """Build the notifier: consumers of both alert subjects, channels, inbox API."""
    broker = new_broker(settings.nats_url, name="notifier")
    redis = redis_client(settings.redis_url)
    http = httpx.AsyncClient(timeout=httpx.Timeout(settings.goals_timeout))
    channels = build_channels(settings, client=http)
    inbox = Inbox(redis)

    async def publish(message: Contract, *, subject: str, stream: str, msg_id: str) -> None:
        await broker.publish(message, subject, headers={"Nats-Msg-Id": msg_id}, stream=stream)

    notifier = Notifier(
        directory=GoalsClient(client=http, base_url=settings.goals_url),
        inbox=inbox,
        claims=DeliveryClaims(redis),
        channels=channels,
        publish=publish,
    )

    def consume(consumer: Durable) -> None:
        subject = consumer.subject
        handler_name = subject.split(".")[-2]

        @broker.subscriber(
            subject,
            stream=stream(consumer.stream),
            durable=consumer.name,
            # A fetched batch is handled concurrently; each message keeps itself alive.
            pull_sub=pull_sub(10),
            config=consumer.config(),
            ack_policy=AckPolicy.NACK_ON_ERROR,
        )
        async def handle(msg: NatsMessage) -> None:
            with HANDLER_SECONDS.labels("notifier", f"alerts_{handler_name}").time():
                async with _keep_alive(msg):
                    verdict = await notifier.process(
                        subject=subject,
                        body=msg.body,
                        delivered=delivery(msg.raw_message).count,
                        max_deliver=MAX_DELIVER,
                        sequence=delivery(msg.raw_message).sequence,
                    )
            if verdict.ack:
                await msg.ack()
            else:
                await msg.nack(delay=verdict.delay)

    for consumer in CONSUMERS:
        consume(consumer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not channels:
            logger.warning("webhook channel off (GOALWATCH_WEBHOOK_URL unset); inbox only")
        try:
            await ensure_streams(settings.nats_url, consumers=CONSUMERS)
            await broker.start()
            yield
        finally:
            await broker.stop()
            await http.aclose()
            await redis.aclose()

    app = FastAPI(title="goalwatch notifier", version=__version__, lifespan=lifespan)
    app.include_router(ops_router(ready_checks(broker=broker, redis=redis)))

    @app.get("/v1/alerts", response_model=InboxPage, tags=["inbox"], summary="Inbox")
    async def list_alerts(
        recipient: Annotated[
            str | None, Query(description="Only alerts addressed to this person id.")
        ] = None,
        rule: Annotated[str | None, Query(description="Only alerts of this rule id.")] = None,
        state: Annotated[
            AlertState | None, Query(description="Only alerts now in this state.")
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Most alerts to return.")
        ] = DEFAULT_LIMIT,
    ) -> InboxPage:
        """Alerts matching every filter given, most recently updated first."""
        alerts = await inbox.list(recipient=recipient, rule=rule, state=state, limit=limit)
        return InboxPage(alerts=alerts)

    @app.get(
        "/v1/alerts/{fingerprint}",
        response_model=InboxAlert,
        responses={404: {"model": FingerprintNotFound}},
        tags=["inbox"],
        summary="One alert",
    )
    async def get_alert(
        fingerprint: Annotated[str, Path(description="Alert fingerprint.")],
    ) -> InboxAlert:
        """The inbox entry of one alert."""
        alert = await inbox.get(fingerprint)
        if alert is None:
            raise HTTPException(
                status_code=404,
                detail=f"no alert with fingerprint {fingerprint!r} in the inbox; "
                "list them with GET /v1/alerts",
            )
        return alert

    offline_docs(app)
    return app


SERVICE = ServiceInfo(
    name="notifier", settings=NotifierSettings, create_app=create_app, port_field="notifier_port"
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
