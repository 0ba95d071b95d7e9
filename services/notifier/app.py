"""Notifier service wiring: alert consumers, channels, the inbox API, health and metrics."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypedDict

import httpx
from fastapi import FastAPI
from faststream.nats import NatsBroker
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from redis.asyncio import Redis

from goalwatch.checkpoints import Checkpoint, Recovery
from goalwatch.connections import ready_checks, redis_client
from goalwatch.consumers import Consumers, ConsumerSpec, RedeliveryPolicy
from goalwatch.contracts import subjects
from goalwatch.goals_client import GoalsClient
from goalwatch.messaging import new_broker
from goalwatch.service import service_app
from goalwatch.serving import ServiceInfo
from goalwatch.settings import Port, StateCheckSettings, duration_setting
from services.notifier.alertmanager import AlertmanagerChannel
from services.notifier.api import deliveries_router, inbox_router, silences_router
from services.notifier.channels import Channel
from services.notifier.claims import DeliveryClaims
from services.notifier.deliveries import DeliveryLog
from services.notifier.dingtalk import DingTalkChannel
from services.notifier.email import EmailChannel, parse_address
from services.notifier.feishu import FeishuChannel
from services.notifier.inbox import Inbox
from services.notifier.metrics import HANDLER_SECONDS, REGISTRY
from services.notifier.notification import Alert
from services.notifier.ordering import DeliveryOrder
from services.notifier.outcomes import NatsOutcomes
from services.notifier.pipeline import Notifier
from services.notifier.recovery import InboxHandler, inbox_replay
from services.notifier.silences import Silences
from services.notifier.slack import SlackChannel
from services.notifier.templates import Language
from services.notifier.webhook import WebhookChannel
from services.notifier.wecom import WeComChannel

CHAT_URLS = ("wecom_url", "dingtalk_url", "feishu_url", "slack_url", "alertmanager_url")

logger = logging.getLogger(__name__)

# Redeliveries wait 5 s, doubling up to 5 min: goals or Redis trouble gets about half an hour.
POLICY = RedeliveryPolicy(max_deliver=10, first_delay=5.0, max_delay=300.0)
ALERTS_CONSUMER = "notifier-alerts"
# The consumers it replaced, one per subject: a resolution could overtake its firing between
# them. The first start of notifier-alerts takes over where they left off and deletes them.
REPLACED_CONSUMERS = ("notifier-fired", "notifier-resolved")


def policy(settings: NotifierSettings) -> RedeliveryPolicy:
    """:data:`POLICY`, with deliveries enough for every webhook attempt (one per delivery)."""
    deliveries = max(POLICY.max_deliver, settings.webhook_max_attempts)
    return RedeliveryPolicy(deliveries, POLICY.first_delay, POLICY.max_delay)


def alert_consumer(settings: NotifierSettings) -> ConsumerSpec:
    """The consumer of fired and resolved alerts, in one stream order."""
    # A fetched batch is handled concurrently, one alert's transitions in order (add_ordered).
    return ConsumerSpec(
        name=ALERTS_CONSUMER,
        stream=subjects.STREAM_ALERTS,
        subject=subjects.ALERTS_ALL,
        filter_subjects=(subjects.ALERTS_FIRED, subjects.ALERTS_RESOLVED),
        policy=policy(settings),
        ack_wait=settings.notifier_ack_wait,
        batch_size=10,
        replaces=REPLACED_CONSUMERS,
    )


def order_ttl(settings: NotifierSettings) -> timedelta:
    """How long a firing's "not settled" marker outlives its last touch: longer than the
    whole retry span of its message, every delivery waiting the longest delay and then
    ``ack_wait`` (a channel's own retry delays are at most the policy's longest)."""
    retries = policy(settings)
    return timedelta(seconds=retries.max_deliver * (retries.max_delay + settings.notifier_ack_wait))


def claim_ttl(settings: NotifierSettings) -> timedelta:
    """How long a delivery claim outlives its owner: a third of ``ack_wait``.

    Shorter than ``ack_wait`` with room to spare, so the redelivery of a crashed process's
    message (after ``ack_wait``) finds its claim gone; renewed every third of itself.
    """
    return timedelta(seconds=settings.notifier_ack_wait / 3)


class NotifierSettings(StateCheckSettings):
    """Notifier settings; each is read from GOALWATCH_<FIELD NAME>."""

    notifier_port: Port = Field(8004, description="HTTP port (GOALWATCH_NOTIFIER_PORT).")
    inbox_retention: timedelta = Field(
        timedelta(days=90),
        gt=timedelta(0),
        description="How long a resolved alert stays in the inbox after its resolution, and "
        "a delivery record in the delivery log (30d, 12h, or seconds); a firing alert stays "
        "while it fires.",
    )

    @field_validator("inbox_retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        return duration_setting(value)

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
        # With the default backoff the attempts span about two minutes: a receiver that is
        # down for a restart or a deploy gets every alert without a replay.
        10,
        ge=1,
        le=20,
        description="POST attempts before a notification is dead-lettered.",
    )
    webhook_backoff: float = Field(
        0.5,
        gt=0,
        description="First retry delay in seconds; doubles per attempt with jitter, cap 30 s.",
    )
    # E-mail over SMTP: interim settings, until the routing file names receivers.
    smtp_host: str | None = Field(
        None,
        description="SMTP server that sends alert e-mails (GOALWATCH_SMTP_HOST); unset turns "
        "e-mail off.",
    )
    smtp_port: Port | None = Field(
        None,
        description="SMTP port; unset: 587 for starttls, 465 for tls, 25 for none.",
    )
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="starttls (plain connection upgraded with STARTTLS, refused if the server "
        "cannot), tls (TLS from the first byte, usually port 465) or none (no encryption).",
    )
    smtp_username: str | None = Field(
        None, description="SMTP AUTH user name; unset sends without logging in."
    )
    smtp_password: SecretStr | None = Field(
        None, description="SMTP AUTH password; required with a user name. Never logged."
    )
    smtp_from: str | None = Field(
        None,
        description="From address of alert e-mails, e.g. 'Goalwatch <alerts@example.org>'; "
        "required with GOALWATCH_SMTP_HOST. Its domain ends every Message-ID.",
    )
    smtp_fallback_to: str | None = Field(
        None,
        description="Address that gets an alert when none of its recipients has an e-mail "
        "address; unset: such an alert's e-mail fails and is dead-lettered.",
    )
    smtp_language: Language = Field("en", description="Language of alert e-mails: en or zh.")
    smtp_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for the connection and for each SMTP reply."
    )
    smtp_max_attempts: int = Field(
        # At most the consumers' max_deliver (10): each attempt is one delivery of the alert.
        10,
        ge=1,
        le=10,
        description="Sending attempts (1-10) before an e-mail is dead-lettered.",
    )
    smtp_backoff: float = Field(
        1.0,
        gt=0,
        description="First retry delay in seconds; doubles per attempt with jitter, cap 300 s "
        "(greylisting servers want the sender back after minutes).",
    )
    smtp_ca_file: Path | None = Field(
        None,
        description="PEM file of the CA certificates to trust for the SMTP server's "
        "certificate (a private CA); unset: the system's.",
    )

    @field_validator("smtp_host", "smtp_username", "smtp_fallback_to", "smtp_from", mode="before")
    @classmethod
    def _blank_smtp_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("smtp_from", "smtp_fallback_to")
    @classmethod
    def _email_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            try:
                parse_address(value)
            except ValueError as exc:
                variable = f"GOALWATCH_{(info.field_name or '').upper()}"
                raise ValueError(f"{variable}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _smtp_complete(self) -> NotifierSettings:
        if self.smtp_host is None:
            return self
        if self.smtp_from is None:
            raise ValueError(
                "GOALWATCH_SMTP_FROM is required when GOALWATCH_SMTP_HOST is set: it is the "
                "From address of every alert e-mail. Set it, e.g. to "
                "'Goalwatch <alerts@example.org>'."
            )
        password = self.smtp_password.get_secret_value() if self.smtp_password else ""
        if (self.smtp_username is None) != (not password):
            raise ValueError(
                "GOALWATCH_SMTP_USERNAME and GOALWATCH_SMTP_PASSWORD go together: set both to "
                "log in to the SMTP server, or neither to send without logging in."
            )
        if self.smtp_ca_file is not None and not self.smtp_ca_file.is_file():
            raise ValueError(
                f"GOALWATCH_SMTP_CA_FILE: {self.smtp_ca_file} is not a readable file; point it "
                "at the PEM file of the CA that signed the SMTP server's certificate."
            )
        return self

    # Chat and Alertmanager channels. Until the routing file exists each goes to one place,
    # in one language; they share the webhook's timeout, attempts and backoff.
    wecom_url: str | None = Field(
        None,
        description="WeCom group robot webhook URL (with its key); unset turns WeCom off.",
    )
    wecom_language: Language = Field("zh", description="Language of WeCom messages: zh or en.")
    dingtalk_url: str | None = Field(
        None,
        description="DingTalk custom robot webhook URL (with its access_token); unset turns "
        "DingTalk off.",
    )
    dingtalk_secret: SecretStr | None = Field(
        None,
        description="DingTalk robot signing secret (SEC...); required with GOALWATCH_DINGTALK_URL.",
    )
    dingtalk_language: Language = Field(
        "zh", description="Language of DingTalk messages: zh or en."
    )
    feishu_url: str | None = Field(
        None,
        description="Feishu or Lark custom bot webhook URL; unset turns Feishu off.",
    )
    feishu_secret: SecretStr | None = Field(
        None,
        description="Feishu bot signing secret; required with GOALWATCH_FEISHU_URL.",
    )
    feishu_language: Language = Field("zh", description="Language of Feishu cards: zh or en.")
    slack_url: str | None = Field(
        None,
        description="Slack incoming webhook URL; unset turns Slack off.",
    )
    slack_language: Language = Field("en", description="Language of Slack messages: zh or en.")
    alertmanager_url: str | None = Field(
        None,
        description="Base URL of a Prometheus Alertmanager to forward alerts to "
        "(POST /api/v2/alerts); unset turns forwarding off.",
    )
    alertmanager_language: Language = Field(
        "en", description="Language of the Alertmanager summary and description: zh or en."
    )
    notifier_ack_wait: float = Field(
        60.0,
        ge=1.0,
        le=3600.0,
        description="Seconds JetStream waits for the notifier to settle an alert before it "
        "redelivers it (a crashed notifier's alerts come again after this); delivery claims "
        "outlive a crashed owner by a third of it.",
    )

    @field_validator("webhook_url", *CHAT_URLS, mode="before")
    @classmethod
    def _blank_url_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("webhook_url", *CHAT_URLS)
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                # Not echoed: webhook URLs often carry their token.
                f"GOALWATCH_{str(info.field_name).upper()} must be an http:// or https:// URL, "
                "got one starting "
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
        for vendor, url, key in (
            ("DINGTALK", self.dingtalk_url, self.dingtalk_secret),
            ("FEISHU", self.feishu_url, self.feishu_secret),
        ):
            if url is not None and not (key.get_secret_value() if key else ""):
                raise ValueError(
                    f"GOALWATCH_{vendor}_SECRET is required when GOALWATCH_{vendor}_URL is set: "
                    "the robot refuses unsigned messages once signing is on, and goalwatch signs "
                    f"every one. Set it to the robot's signing secret, or unset GOALWATCH_{vendor}_URL."
                )
        return self


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
    if settings.smtp_host is not None:
        assert settings.smtp_from is not None  # enforced by NotifierSettings
        channels.append(
            EmailChannel(
                host=settings.smtp_host,
                port=settings.smtp_port,
                security=settings.smtp_security,
                username=settings.smtp_username,
                password=settings.smtp_password,
                sender=settings.smtp_from,
                fallback_to=settings.smtp_fallback_to,
                language=settings.smtp_language,
                timeout=settings.smtp_timeout,
                max_attempts=settings.smtp_max_attempts,
                backoff=settings.smtp_backoff,
                ca_file=settings.smtp_ca_file,
            )
        )
    channels.extend(chat_channels(settings, client=client))
    return channels


class _Retries(TypedDict):
    timeout: float
    max_attempts: int
    backoff: float


def chat_channels(settings: NotifierSettings, *, client: httpx.AsyncClient) -> list[Channel]:
    """The configured WeCom, DingTalk, Feishu, Slack and Alertmanager channels, in that order."""
    retries = _Retries(
        timeout=settings.webhook_timeout,
        max_attempts=settings.webhook_max_attempts,
        backoff=settings.webhook_backoff,
    )
    channels: list[Channel] = []
    if settings.wecom_url is not None:
        channels.append(
            WeComChannel(
                url=settings.wecom_url,
                client=client,
                language=settings.wecom_language,
                **retries,
            )
        )
    if settings.dingtalk_url is not None:
        assert settings.dingtalk_secret is not None  # enforced by NotifierSettings
        channels.append(
            DingTalkChannel(
                url=settings.dingtalk_url,
                secret=settings.dingtalk_secret,
                client=client,
                language=settings.dingtalk_language,
                **retries,
            )
        )
    if settings.feishu_url is not None:
        assert settings.feishu_secret is not None  # enforced by NotifierSettings
        channels.append(
            FeishuChannel(
                url=settings.feishu_url,
                secret=settings.feishu_secret,
                client=client,
                language=settings.feishu_language,
                **retries,
            )
        )
    if settings.slack_url is not None:
        channels.append(
            SlackChannel(
                url=settings.slack_url,
                client=client,
                language=settings.slack_language,
                **retries,
            )
        )
    if settings.alertmanager_url is not None:
        channels.append(
            AlertmanagerChannel(
                url=settings.alertmanager_url,
                client=client,
                language=settings.alertmanager_language,
                **retries,
            )
        )
    return channels


def create_app(
    settings: NotifierSettings,
    *,
    broker: NatsBroker | None = None,
    redis: Redis | None = None,
    http: httpx.AsyncClient | None = None,
) -> FastAPI:
    """Build the notifier: the consumer of both alert subjects, channels, inbox API."""
    broker = broker or new_broker(settings.nats_url, name="notifier")
    redis = redis or redis_client(settings.redis_url)
    http = http or httpx.AsyncClient(timeout=httpx.Timeout(settings.goals_timeout))
    channels = build_channels(settings, client=http)
    inbox = Inbox(redis, retention=settings.inbox_retention)
    goals = GoalsClient(client=http, base_url=settings.goals_url)
    deliveries = DeliveryLog(redis, retention=settings.inbox_retention)
    silences = Silences(redis, retention=settings.inbox_retention)
    notifier = Notifier(
        directory=goals,
        org_units=goals,
        inbox=inbox,
        claims=DeliveryClaims(redis, pending_ttl=claim_ttl(settings)),
        channels=channels,
        outcomes=NatsOutcomes(broker),
        policy=policy(settings),
        deliveries=deliveries,
        silences=silences,
        order=DeliveryOrder(
            redis,
            policy=policy(settings),
            in_flight=timedelta(seconds=settings.notifier_ack_wait),
            ttl=order_ttl(settings),
        ),
    )
    consumers = Consumers(broker, service="notifier", seconds=HANDLER_SECONDS)
    spec = alert_consumer(settings)
    checkpoint = Checkpoint(
        redis=redis,
        connection=lambda: broker.connection,
        stream=spec.stream,
        subject=spec.subject,
        filter_subjects=spec.filter_subjects,
        consumer=spec.name,
        # Until it commits its own, the replaced consumers' checkpoints stand for it.
        inherits=spec.replaces,
    )
    recovery = Recovery(views=[(checkpoint, inbox_replay(notifier))], what="inbox")
    handler = InboxHandler(notifier=notifier, recovery=recovery, policy=policy(settings))
    consumers.add_ordered(
        spec,
        Alert,
        handler,
        key=lambda alert: alert.fingerprint,
        description="Every AlertFired and AlertResolved: recipients resolved, inbox updated, "
        "channels notified once per transition, one alert's transitions in stream order.",
    )

    def announce() -> None:
        if not channels:
            logger.warning(
                "no channel configured (GOALWATCH_WEBHOOK_URL, GOALWATCH_SMTP_HOST, "
                "GOALWATCH_WECOM_URL, GOALWATCH_DINGTALK_URL, GOALWATCH_FEISHU_URL, "
                "GOALWATCH_SLACK_URL and GOALWATCH_ALERTMANAGER_URL unset): inbox only"
            )
        else:
            logger.info("channels: %s, and the inbox", ", ".join(c.name for c in channels))

    app = service_app(
        name="notifier",
        settings=settings,
        checks=ready_checks(broker=broker, redis=redis),
        registry=REGISTRY,
        nats_url=settings.nats_url,
        broker=broker,
        consumers=consumers,
        close=[http.aclose, redis.aclose],
        on_start=announce,
        # At once too: the checkpoints exist, and a restart is noticed, before any alert.
        background=[lambda: recovery.watch(every=settings.state_check_seconds, at_once=True)],
    )
    app.include_router(inbox_router(inbox))
    app.include_router(deliveries_router(deliveries))
    app.include_router(silences_router(silences))
    return app


SERVICE = ServiceInfo(
    name="notifier", settings=NotifierSettings, create_app=create_app, port_field="notifier_port"
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
