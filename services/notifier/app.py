"""Notifier service wiring: alert consumers, channels, the inbox API, health and metrics."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI
from faststream.nats import NatsBroker
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from redis.asyncio import Redis

from goalwatch.checkpoints import Checkpoint, Recovery
from goalwatch.connections import nats_access, ready_checks, redis_client
from goalwatch.consumers import Consumers, ConsumerSpec, RedeliveryPolicy
from goalwatch.contracts import TimerFired, subjects
from goalwatch.durations import duration_text
from goalwatch.file_errors import FileErrors
from goalwatch.goals_client import GoalsClient, service_auth
from goalwatch.messaging import new_broker
from goalwatch.routing.spec import RoutesFile, RouteSpec
from goalwatch.service import service_app
from goalwatch.serving import ServiceInfo
from goalwatch.settings import Port, StateCheckSettings, duration_setting, environment
from goalwatch.timers import Timers, fired_subject
from services.notifier.access import AlertAccess
from services.notifier.ack_pages import ack_router
from services.notifier.api import deliveries_router, inbox_router, silences_router
from services.notifier.channels import Channel
from services.notifier.claims import DeliveryClaims
from services.notifier.deliveries import DeliveryLog
from services.notifier.directory import DEFAULT_TTL, CachedDirectory, DirectoryWatch, follow_changes
from services.notifier.email import EmailChannel, parse_address
from services.notifier.flush import GroupFlusher, NotifierTimers
from services.notifier.groups import OWNER as GROUP_OWNER
from services.notifier.groups import TIMER as GROUP_TIMER
from services.notifier.groups import Groups
from services.notifier.inbox import Inbox
from services.notifier.limits import Limiter
from services.notifier.links import AckLinks
from services.notifier.metrics import DEAD_LETTERS, HANDLER_SECONDS, REGISTRY
from services.notifier.notification import Alert
from services.notifier.ordering import DeliveryOrder
from services.notifier.outcomes import NatsOutcomes
from services.notifier.pipeline import PASS_UP, Notifier
from services.notifier.receivers import (
    ENV_RECEIVER,
    HttpOptions,
    MakeEmail,
    Receiver,
    ReceiverError,
    Retries,
    build_receivers,
)
from services.notifier.recovery import InboxHandler, inbox_replay
from services.notifier.routes_api import routes_router
from services.notifier.routing import Router, Routing
from services.notifier.silences import Silences
from services.notifier.templates import Language

CHAT_URLS = ("wecom_url", "dingtalk_url", "feishu_url", "slack_url", "alertmanager_url")
# Scheme, host, optional port and path: nothing that could end a markdown link or a quoted
# attribute in a message (parentheses, brackets, quotes, spaces), no query or fragment.
PUBLIC_URL: Final = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?$")
MIN_LINK_SECRET: Final = 32
PLACEHOLDER_SECRETS: Final = frozenset({"changeme", "change-me", "changethis", "secret", "test"})

logger = logging.getLogger(__name__)

# Redeliveries wait 5 s, doubling up to 5 min: goals or Redis trouble gets about half an hour.
POLICY = RedeliveryPolicy(max_deliver=10, first_delay=5.0, max_delay=300.0)
ALERTS_CONSUMER = "notifier-alerts"
# The consumers it replaced, one per subject: a resolution could overtake its firing between
# them. The first start of notifier-alerts takes over where they left off and deletes them.
REPLACED_CONSUMERS = ("notifier-fired", "notifier-resolved")
TIMERS_CONSUMER = "notifier-timers"


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
        # Alerts are what managers wait on: as the evaluator's metric events, a 20 ms window
        # rather than 50 (docs/benchmarks.md).
        batch_window=0.02,
        replaces=REPLACED_CONSUMERS,
    )


def timers_consumer(settings: NotifierSettings) -> ConsumerSpec:
    """The consumer of the notifier's fired timers: groups' messages, pass-ups."""
    return ConsumerSpec(
        name=TIMERS_CONSUMER,
        stream=subjects.STREAM_TIMERS,
        subject=fired_subject(GROUP_OWNER),
        policy=policy(settings),
        ack_wait=settings.notifier_ack_wait,
        batch_size=10,
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

    @field_validator("inbox_retention", "link_lifetime", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        return duration_setting(value)

    public_url: str | None = Field(
        None,
        description="The notifier's address as people's browsers reach it, e.g. "
        "https://goalwatch.example.org: every firing message then carries a signed "
        "acknowledgement link ({public_url}/v1/ack/...), and the API answers to its host. "
        "Unset: messages carry no link.",
    )
    link_secret: SecretStr | None = Field(
        None,
        description="Key that signs acknowledgement links (HMAC-SHA256), at least 32 "
        "characters; required with GOALWATCH_PUBLIC_URL. Never logged. Changing it voids "
        "every link sent.",
    )
    link_lifetime: timedelta = Field(
        timedelta(days=7),
        gt=timedelta(0),
        le=timedelta(days=90),
        description="How long an acknowledgement link works after its message is sent "
        "(7d, 12h, or seconds; at most 90d).",
    )

    @field_validator("public_url", mode="before")
    @classmethod
    def _blank_public_url_is_unset(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().rstrip("/") or None
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not PUBLIC_URL.match(value):
            raise ValueError(
                "GOALWATCH_PUBLIC_URL must be http:// or https://, a host name or address, an "
                "optional port and path, and nothing else (no query, fragment, user, spaces, "
                "quotes or brackets), e.g. https://goalwatch.example.org"
            )
        return value

    @model_validator(mode="after")
    def _link_secret_with_public_url(self) -> NotifierSettings:
        if self.public_url is None:
            return self
        secret = self.link_secret.get_secret_value() if self.link_secret else ""
        if not secret:
            raise ValueError(
                "GOALWATCH_LINK_SECRET is required when GOALWATCH_PUBLIC_URL is set: it signs "
                "every acknowledgement link. Set it to a random value of at least "
                f"{MIN_LINK_SECRET} characters, e.g. the output of "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'."
            )
        if len(secret) < MIN_LINK_SECRET or secret.lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                f"GOALWATCH_LINK_SECRET is too short or a placeholder: use at least "
                f"{MIN_LINK_SECRET} random characters, e.g. the output of "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'."
            )
        return self

    routes_file: Path | None = Field(
        None,
        description="Routing file (receivers, named groups, the routing tree; docs/routing.md); "
        "unset: every alert goes to the channels the GOALWATCH_<CHANNEL>_* settings configure.",
    )
    goals_url: str = Field(
        "http://127.0.0.1:8002",
        description="Base URL of the goals service, which resolves people and managers.",
    )
    goals_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds to wait for one goals-service request.",
    )
    directory_cache_ttl: timedelta = Field(
        DEFAULT_TTL,
        gt=timedelta(0),
        description="How long a person or org unit looked up for recipients is kept in "
        "memory at most (10m, 1h, or seconds). Directory change events refresh it sooner; "
        "this only bounds how stale it can be after a change the notifier missed.",
    )

    @field_validator("directory_cache_ttl", mode="before")
    @classmethod
    def _directory_cache_ttl(cls, value: Any) -> Any:
        return duration_setting(value)

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


def http_options(settings: NotifierSettings, *, client: httpx.AsyncClient) -> HttpOptions:
    """What every HTTP channel shares; the webhook's timeout, attempts and backoff."""
    return HttpOptions(
        client=client,
        retries=Retries(
            timeout=settings.webhook_timeout,
            max_attempts=settings.webhook_max_attempts,
            backoff=settings.webhook_backoff,
        ),
    )


def email_maker(settings: NotifierSettings) -> MakeEmail | None:
    """Builds e-mail channels on the configured SMTP server; None without one."""
    if settings.smtp_host is None:
        return None
    host, sender = settings.smtp_host, settings.smtp_from
    assert sender is not None  # enforced by NotifierSettings

    def make(language: Language, to: Sequence[str] | None) -> Channel:
        return EmailChannel(
            host=host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password,
            sender=sender,
            to=to,
            fallback_to=settings.smtp_fallback_to,
            language=language,
            timeout=settings.smtp_timeout,
            max_attempts=settings.smtp_max_attempts,
            backoff=settings.smtp_backoff,
            ca_file=settings.smtp_ca_file,
        )

    return make


def build_routing(
    settings: NotifierSettings, *, client: httpx.AsyncClient, environ: Mapping[str, str]
) -> Routing:
    """The routing file's receivers, or without one the per-channel settings' channels;
    a file that does not load, or a receiver that cannot be built, raises here, at start-up."""
    options, email = http_options(settings, client=client), email_maker(settings)
    if settings.routes_file is None:
        receiver = settings_receiver(settings, http=options, email=email)
        return Routing(
            Router(tree=RouteSpec(receiver=ENV_RECEIVER), receivers={ENV_RECEIVER: receiver})
        )

    def build(routes: RoutesFile) -> dict[str, Receiver]:
        return build_receivers(routes, environ=environ, http=options, email=email)

    return Routing.from_file(settings.routes_file, build)


def settings_receiver(
    settings: NotifierSettings, *, http: HttpOptions, email: MakeEmail | None
) -> Receiver:
    """The receiver the per-channel settings make (no routing file): a routing file's
    receiver, ``default``, whose channels read the ``GOALWATCH_<CHANNEL>_*`` values, built as
    any receiver is; its deliveries keep the bare channel names they had before routing."""
    values: dict[str, str] = {}
    targets: dict[str, dict[str, Any]] = {}

    def secret(name: str, value: SecretStr | None) -> str:
        values[name] = value.get_secret_value() if value is not None else ""
        return f"${{{name}}}"

    def url(name: str, value: str) -> str:
        values[name] = value
        return f"${{{name}}}"

    if settings.webhook_url is not None:
        targets["webhook"] = {
            "url": url("GOALWATCH_WEBHOOK_URL", settings.webhook_url),
            "secret": secret("GOALWATCH_WEBHOOK_SECRET", settings.webhook_secret),
        }
    if email is not None:
        targets["email"] = {"language": settings.smtp_language}
    robots = (
        ("wecom", settings.wecom_url, None, settings.wecom_language),
        ("dingtalk", settings.dingtalk_url, settings.dingtalk_secret, settings.dingtalk_language),
        ("feishu", settings.feishu_url, settings.feishu_secret, settings.feishu_language),
        ("slack", settings.slack_url, None, settings.slack_language),
    )
    for kind, address, key, language in robots:
        if address is not None:
            targets[kind] = {
                "url": url(f"GOALWATCH_{kind.upper()}_URL", address),
                "language": language,
            }
            if key is not None:
                targets[kind]["secret"] = secret(f"GOALWATCH_{kind.upper()}_SECRET", key)
    if settings.alertmanager_url is not None:
        targets["alertmanager"] = {
            "url": settings.alertmanager_url,
            "language": settings.alertmanager_language,
        }
    if not targets:
        return Receiver(name=ENV_RECEIVER, targets=(), bare_names=True)
    routes = RoutesFile.model_validate(
        {"receivers": [{"name": ENV_RECEIVER, **targets}], "route": {"receiver": ENV_RECEIVER}}
    )
    built = build_receivers(routes, environ=values, http=http, email=email)[ENV_RECEIVER]
    return replace(built, bare_names=True)


def build_channels(settings: NotifierSettings, *, client: httpx.AsyncClient) -> list[Channel]:
    """Every channel the per-channel settings configure, in order; a misconfigured one
    raises here, at start-up."""
    receiver = settings_receiver(
        settings, http=http_options(settings, client=client), email=email_maker(settings)
    )
    return [target.channel(None) for target in receiver.targets]


def ack_links(settings: NotifierSettings) -> AckLinks | None:
    """What signs and checks acknowledgement links; None when no public URL is set."""
    if settings.public_url is None:
        return None
    assert settings.link_secret is not None  # enforced by NotifierSettings
    return AckLinks(
        base_url=settings.public_url, secret=settings.link_secret, lifetime=settings.link_lifetime
    )


def with_public_host(settings: NotifierSettings) -> NotifierSettings:
    """``settings``, with the public URL's host allowed: links point browsers there."""
    host = urlsplit(settings.public_url).hostname if settings.public_url else None
    if host is None or host in settings.allowed_hosts:
        return settings
    return settings.model_copy(update={"allowed_hosts": [*settings.allowed_hosts, host]})


def create_app(
    settings: NotifierSettings,
    *,
    broker: NatsBroker | None = None,
    redis: Redis | None = None,
    http: httpx.AsyncClient | None = None,
    environ: Mapping[str, str] | None = None,
) -> FastAPI:
    """Build the notifier: the consumer of both alert subjects, routing and channels, inbox
    API.

    ``environ`` fills the routing file's ``${VARIABLE}`` references (default: the process
    environment); a routing file that does not load raises :class:`FileErrors`."""
    settings = with_public_host(settings)
    broker = broker or new_broker(nats_access(settings), name="notifier")
    redis = redis or redis_client(settings)
    http = http or httpx.AsyncClient(timeout=httpx.Timeout(settings.goals_timeout))
    routing = build_routing(settings, client=http, environ=environ or environment())
    inbox = Inbox(redis, retention=settings.inbox_retention)
    goals = GoalsClient(client=http, base_url=settings.goals_url, auth=service_auth(settings))
    deliveries = DeliveryLog(redis, retention=settings.inbox_retention)
    silences = Silences(redis, retention=settings.inbox_retention)
    links = ack_links(settings)
    claims = DeliveryClaims(redis, pending_ttl=claim_ttl(settings))
    outcomes = NatsOutcomes(broker, dead_letters=DEAD_LETTERS)
    timer_clock = Timers(lambda: broker.connection)
    groups = Groups(redis, timer_clock, retention=settings.inbox_retention)
    directory = CachedDirectory(goals, ttl=settings.directory_cache_ttl)
    limiter = Limiter(redis)
    notifier = Notifier(
        directory=directory,
        org_units=directory,
        inbox=inbox,
        claims=claims,
        groups=groups,
        limiter=limiter,
        timers=timer_clock,
        routing=routing,
        outcomes=outcomes,
        policy=policy(settings),
        deliveries=deliveries,
        silences=silences,
        links=links,
        order=DeliveryOrder(
            redis,
            policy=policy(settings),
            in_flight=timedelta(seconds=settings.notifier_ack_wait),
            ttl=order_ttl(settings),
        ),
    )
    consumers = Consumers(
        broker, service="notifier", seconds=HANDLER_SECONDS, dead_letters=DEAD_LETTERS
    )
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

    flusher = GroupFlusher(
        limiter=limiter,
        groups=groups,
        routing=routing,
        claims=claims,
        outcomes=outcomes,
        policy=policy(settings),
        deliveries=deliveries,
    )
    timers = NotifierTimers({GROUP_TIMER: flusher.handle, PASS_UP: notifier.pass_up})
    consumers.add(
        timers_consumer(settings),
        TimerFired,
        timers,
        description="The notifier's fired timers: a group's message falls due, or an alert "
        "nobody acknowledged in time goes to the next manager up.",
        keep_alive=True,
    )
    watches: list[DirectoryWatch] = []

    async def follow_directory() -> None:
        # Before the consumers start: no lookup is cached without its changes followed.
        watches.append(await follow_changes(broker.connection, directory))

    async def stop_following() -> None:
        for watch in watches:
            await watch.stop()

    async def prepare() -> None:
        await follow_directory()
        # Before any alert: entries of the earlier layout are moved to one per episode.
        await inbox.migrate()

    def announce() -> None:
        receivers = routing.current.receivers
        if routing.path is not None:
            logger.info(
                "routing from %s: receivers %s, and the inbox",
                routing.path,
                ", ".join(
                    f"{r.name} ({', '.join(t.kind for t in r.targets)})" for r in receivers.values()
                ),
            )
        elif not receivers[ENV_RECEIVER].targets:
            logger.warning(
                "no channel configured (GOALWATCH_ROUTES_FILE, GOALWATCH_WEBHOOK_URL, "
                "GOALWATCH_SMTP_HOST, GOALWATCH_WECOM_URL, GOALWATCH_DINGTALK_URL, "
                "GOALWATCH_FEISHU_URL, GOALWATCH_SLACK_URL and GOALWATCH_ALERTMANAGER_URL "
                "unset): inbox only"
            )
        else:
            logger.info(
                "channels: %s, and the inbox",
                ", ".join(t.kind for t in receivers[ENV_RECEIVER].targets),
            )
        if links is None:
            logger.info("no GOALWATCH_PUBLIC_URL: messages carry no acknowledgement link")
        else:
            # The URL only: the secret that signs the links is never logged.
            logger.info(
                "acknowledgement links: %s/v1/ack/..., valid %s",
                settings.public_url,
                duration_text(settings.link_lifetime),
            )

    app = service_app(
        name="notifier",
        settings=settings,
        checks=ready_checks(broker=broker, redis=redis),
        registry=REGISTRY,
        broker=broker,
        consumers=consumers,
        close=[stop_following, http.aclose, redis.aclose],
        prepare=prepare,
        on_start=announce,
        # At once too: the checkpoints exist, and a restart is noticed, before any alert.
        background=[lambda: recovery.watch(every=settings.state_check_seconds, at_once=True)],
    )
    app.include_router(inbox_router(inbox, deliveries, AlertAccess(directory)))
    app.include_router(ack_router(inbox, links))
    app.include_router(deliveries_router(deliveries))
    app.include_router(silences_router(silences))
    app.include_router(routes_router(routing))
    return app


def explain_startup_error(exc: Exception, settings: NotifierSettings) -> str | None:
    """What a broken routing file says at start-up, every problem on its line."""
    if isinstance(exc, FileErrors):
        count = len(exc.errors)
        return "\n".join(
            [
                f"the notifier cannot start: {count} error{'s' if count != 1 else ''} in the "
                f"routing file {settings.routes_file} (set by GOALWATCH_ROUTES_FILE):",
                *(f"  {error.lint_line()}" for error in exc.errors),
            ]
        )
    if isinstance(exc, ReceiverError):
        return f"the notifier cannot start: {exc}"
    return None


SERVICE = ServiceInfo(
    name="notifier",
    settings=NotifierSettings,
    create_app=create_app,
    port_field="notifier_port",
    explain_startup_error=explain_startup_error,
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
