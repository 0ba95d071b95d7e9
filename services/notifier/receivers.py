"""Receivers: the routing file's named places, made into channels that deliver.

A receiver has one or more channels (a WeCom group robot, e-mail, a webhook, ...). An alert
routed to it becomes one :class:`Delivery` per channel, carrying all of the alert's recipients
(a group chat reads one message); or, for a ``per_person`` receiver, one per recipient, on the
first of their preferred channels the receiver has, in their language.

Each delivery has a name that claims, outcome ids and idempotency keys are made of, so it
must stay the same for the same delivery across restarts and reloads: ``receiver/channel``,
and ``receiver/channel/person`` for a per-person one. The receiver made from the
``GOALWATCH_<CHANNEL>_*`` settings when there is no routing file keeps the bare channel name
(``webhook``), as before routing existed, so that an upgrade does not send again what was
being delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

import httpx
from pydantic import SecretStr

from goalwatch.contracts import AlertDigest, AlertNotification, Recipient, Severity
from goalwatch.routing.loader import expand, unset_references
from goalwatch.routing.rates import RateLimit
from goalwatch.routing.spec import (
    AlertmanagerTarget,
    ChannelTarget,
    EmailTarget,
    QuietHours,
    ReceiverSpec,
    RobotTarget,
    RoutesFile,
    SignedRobotTarget,
    WebhookTarget,
)
from services.notifier.alertmanager import AlertmanagerChannel
from services.notifier.channels import Channel
from services.notifier.dingtalk import DingTalkChannel
from services.notifier.feishu import FeishuChannel
from services.notifier.limits import DEFAULT_LIMITS, target_id
from services.notifier.slack import SlackChannel
from services.notifier.templates import Language
from services.notifier.webhook import WebhookChannel
from services.notifier.wecom import WeComChannel

ENV_RECEIVER = "default"
"""The receiver made from the per-channel settings when no routing file is configured."""

DEFAULT_LANGUAGES: dict[str, Language] = {
    "webhook": "en",
    "email": "en",
    "wecom": "zh",
    "dingtalk": "zh",
    "feishu": "zh",
    "slack": "en",
    "alertmanager": "en",
}

MakeEmail = Callable[[Language, Sequence[str] | None], Channel]
"""Builds an e-mail channel on the notifier's SMTP server: language, fixed addresses."""


class ReceiverError(Exception):
    """A receiver cannot be built: a variable it names is unset, e-mail without SMTP, ..."""


class Retries(TypedDict):
    """The attempt and backoff settings every HTTP channel takes."""

    timeout: float
    max_attempts: int
    backoff: float


@dataclass(frozen=True)
class HttpOptions:
    """What every HTTP channel shares: the client, and the attempt and backoff settings."""

    client: httpx.AsyncClient
    retries: Retries


@dataclass(frozen=True)
class Delivery:
    """One message on one channel for one transition: what claims and outcomes are named by."""

    name: str
    receiver: str
    channel: Channel
    notification: AlertNotification
    limits: tuple[RateLimit, ...] = ()
    bucket: str = ""
    quiet_hours: QuietHours | None = None
    time_zone: str | None = None

    def quiet_until(self, at: datetime) -> datetime | None:
        """When the quiet hours ``at`` falls in end for this delivery's reader, or None."""
        if self.quiet_hours is None:
            return None
        if self.quiet_hours.critical == "send" and self.notification.severity is Severity.CRITICAL:
            return None
        return self.quiet_hours.until(at, self.time_zone)


@dataclass(frozen=True)
class DigestDelivery:
    """One message of several alerts on one channel: named like a :class:`Delivery`."""

    name: str
    receiver: str
    channel: Channel
    digest: AlertDigest
    limits: tuple[RateLimit, ...] = ()
    bucket: str = ""


@dataclass
class Target:
    """One channel of a receiver; builds (and keeps) its channel per language."""

    kind: str
    language: Language | None
    build: Callable[[Language], Channel]
    where: str = ""
    limits: tuple[RateLimit, ...] = ()
    bucket: str = ""
    _built: dict[Language, Channel] = field(default_factory=dict)

    def channel(self, language: Language | None) -> Channel:
        """The channel rendering in ``language`` (the target's own, if it fixes one)."""
        chosen = self.language or language or DEFAULT_LANGUAGES[self.kind]
        if chosen not in self._built:
            self._built[chosen] = self.build(chosen)
        return self._built[chosen]


@dataclass(frozen=True)
class Receiver:
    """A named receiver ready to deliver."""

    name: str
    targets: tuple[Target, ...]
    per_person: bool = False
    bare_names: bool = False
    quiet_hours: QuietHours | None = None

    def deliveries(self, notification: AlertNotification) -> list[Delivery]:
        """What ``notification`` becomes on this receiver (see the module)."""
        if not self.per_person:
            return [
                Delivery(
                    name=self._name(target.kind),
                    receiver=self.name,
                    channel=target.channel(None),
                    notification=notification,
                    limits=target.limits,
                    bucket=target.bucket,
                    quiet_hours=self.quiet_hours,
                )
                for target in self.targets
            ]
        found: list[Delivery] = []
        for recipient in notification.recipients:
            target = self.target_for(recipient)
            if target is None:
                continue
            found.append(
                Delivery(
                    name=f"{self._name(target.kind)}/{recipient.id}",
                    receiver=self.name,
                    channel=target.channel(_language(recipient)),
                    notification=notification.model_copy(update={"recipients": [recipient]}),
                    limits=target.limits,
                    bucket=target.bucket,
                    quiet_hours=self.quiet_hours,
                    time_zone=recipient.time_zone,
                )
            )
        return found

    def digest_deliveries(self, digest: AlertDigest) -> list[DigestDelivery]:
        """What ``digest`` becomes on this receiver: one message per channel, or for a
        per-person receiver one per recipient, holding the alerts addressed to them."""
        if not self.per_person:
            return [
                DigestDelivery(
                    name=self._name(target.kind),
                    receiver=self.name,
                    channel=target.channel(None),
                    digest=digest,
                    limits=target.limits,
                    bucket=target.bucket,
                )
                for target in self.targets
            ]
        found: list[DigestDelivery] = []
        for recipient in digest.recipients:
            target = self.target_for(recipient)
            theirs = [a for a in digest.alerts if any(r.id == recipient.id for r in a.recipients)]
            if target is None or not theirs:
                continue
            alone = [a.model_copy(update={"recipients": [recipient]}) for a in theirs]
            found.append(
                DigestDelivery(
                    name=f"{self._name(target.kind)}/{recipient.id}",
                    receiver=self.name,
                    channel=target.channel(_language(recipient)),
                    digest=digest.model_copy(update={"alerts": alone, "recipients": [recipient]}),
                    limits=target.limits,
                    bucket=target.bucket,
                )
            )
        return found

    def target_for(self, recipient: Recipient) -> Target | None:
        """The first of ``recipient``'s preferred channels this receiver has; None when the
        first preference is the inbox alone; else the receiver's first channel."""
        by_kind = {target.kind: target for target in self.targets}
        for preferred in _preferences(recipient):
            if preferred == "inbox":
                return None
            if preferred in by_kind:
                return by_kind[preferred]
        return self.targets[0] if self.targets else None

    def _name(self, kind: str) -> str:
        return kind if self.bare_names else f"{self.name}/{kind}"


def _preferences(recipient: Recipient) -> list[str]:
    return [channel.value for channel in recipient.channels]


def _language(recipient: Recipient) -> Language | None:
    if recipient.language is None:
        return None
    return "zh" if recipient.language.value == "zh" else "en"


def fixed_receiver(channels: Sequence[Channel]) -> Receiver:
    """The receiver made of channels built from the per-channel settings (no routing file)."""
    targets = tuple(
        Target(
            kind=c.name,
            language=None,
            build=_constant(c),
            where=f"GOALWATCH_{c.name.upper()}_* settings",
            limits=DEFAULT_LIMITS.get(c.name, ()),
            # One target per channel kind in the settings.
            bucket=target_id(c.name, ENV_RECEIVER),
        )
        for c in channels
    )
    return Receiver(name=ENV_RECEIVER, targets=targets, bare_names=True)


def _constant(channel: Channel) -> Callable[[Language], Channel]:
    return lambda _language: channel


def build_receivers(
    routes: RoutesFile,
    *,
    environ: Mapping[str, str],
    http: HttpOptions,
    email: MakeEmail | None,
) -> dict[str, Receiver]:
    """Every receiver of ``routes``, its ``${VARIABLE}`` references filled from ``environ``;
    raises :class:`ReceiverError` naming what is missing (never a secret's value)."""
    unset = unset_references(routes, environ)
    if unset:
        raise ReceiverError(
            "the routing file refers to environment variables that are not set: "
            f"{', '.join(unset)}; set them in the notifier's environment (a Kubernetes "
            "Secret), or remove the receivers that use them"
        )
    return {
        spec.name: Receiver(
            name=spec.name,
            per_person=spec.per_person,
            quiet_hours=spec.quiet_hours,
            targets=tuple(
                _target(spec, kind, t, environ, http, email) for kind, t in spec.targets()
            ),
        )
        for spec in routes.receivers
    }


def _target(
    spec: ReceiverSpec,
    kind: str,
    target: object,
    environ: Mapping[str, str],
    http: HttpOptions,
    email: MakeEmail | None,
) -> Target:
    def value(text: str) -> str:
        return expand(text, environ)

    retries = http.retries
    build: Callable[[Language], Channel]
    where = address = ""
    if isinstance(target, WebhookTarget):
        url, secret = value(target.url), SecretStr(value(target.secret))
        where, address = _check_url(spec, kind, url), url

        def build(_language: Language) -> Channel:
            return WebhookChannel(url=url, secret=secret, client=http.client, **retries)

    elif isinstance(target, EmailTarget):
        if email is None:
            raise ReceiverError(
                f"receiver {spec.name!r} sends e-mail, but no SMTP server is configured: set "
                "GOALWATCH_SMTP_HOST and GOALWATCH_SMTP_FROM"
            )
        make_email, to = email, target.to
        where = ", ".join(to) if to else "the recipients' addresses"

        def build(language: Language) -> Channel:
            return make_email(language, to)

    elif isinstance(target, SignedRobotTarget):
        url, secret = value(target.url), SecretStr(value(target.secret))
        where, address = _check_url(spec, kind, url), url
        robot = DingTalkChannel if kind == "dingtalk" else FeishuChannel

        def build(language: Language) -> Channel:
            return robot(url=url, secret=secret, client=http.client, language=language, **retries)

    elif isinstance(target, RobotTarget):
        url = value(target.url)
        where, address = _check_url(spec, kind, url), url
        plain = WeComChannel if kind == "wecom" else SlackChannel

        def build(language: Language) -> Channel:
            return plain(url=url, client=http.client, language=language, **retries)

    elif isinstance(target, AlertmanagerTarget):
        url = value(target.url)
        where, address = _check_url(spec, kind, url), url

        def build(language: Language) -> Channel:
            return AlertmanagerChannel(url=url, client=http.client, language=language, **retries)

    else:  # pragma: no cover - every target model is handled above
        raise ReceiverError(f"receiver {spec.name!r}: unknown channel {kind!r}")
    assert isinstance(target, ChannelTarget)
    rates = target.rates()
    built = Target(
        kind=kind,
        language=target.language,
        build=build,
        where=where,
        limits=DEFAULT_LIMITS.get(kind, ()) if rates is None else rates,
        # The same robot reached by two receivers shares its vendor's limit.
        bucket=target_id(kind, address or where),
    )
    built.channel(None)  # a channel that cannot be built fails now, at load, not per alert
    return built


def _check_url(spec: ReceiverSpec, kind: str, url: str) -> str:
    """Where ``url`` points, for display: scheme, host and port only (a Slack hook's path,
    and the others' queries, carry tokens); raises if it is no HTTP URL."""
    if not url.startswith(("http://", "https://")):
        # Not echoed: robot URLs carry their token.
        raise ReceiverError(
            f"receiver {spec.name!r}: {kind}.url must be an http:// or https:// URL; the value "
            f"given starts with {url.split(':', 1)[0][:10]!r}"
        )
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
