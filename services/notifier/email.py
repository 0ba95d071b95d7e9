"""E-mail channel: one multipart message per alert transition, sent over SMTP.

Who gets it
    Every recipient of the notification that has an e-mail address, all in the ``To`` of one
    message. One message rather than one per person because delivery is claimed and recorded
    per channel per transition (``pipeline``): with a single SMTP transaction an attempt either
    reaches everybody or nobody, so a retry never mails someone twice. A recipient without an
    address is skipped (logged). When nobody has one, the message goes to ``fallback_to`` if
    set; otherwise the delivery fails for good, naming the people, so it is dead-lettered and
    can be replayed once their addresses are in the goals service.

The message
    ``multipart/alternative`` with a text and an HTML part, and a subject line, rendered from
    ``templates/email.{subject,text,html}.<language>.j2``. ``Message-ID`` is derived from the
    notification's ``idempotency_key``, so every attempt and redelivery of one notification
    carries the same id and a receiving system can drop a repeat. A resolution or escalation
    names the firing of its episode in ``In-Reply-To`` and ``References``, so mail clients
    show an episode as one thread.

Several alerts in one mail
    A digest (a group of alerts, a repeat, or what a rate limit or quiet hours held back) is
    one mail to the digest's recipients, addressed exactly as one alert's, rendered from
    ``templates/email.digest.{subject,text,html}.<language>.j2``: one entry per alert, firing
    then resolved. Its ``Message-ID`` comes from the digest's ``idempotency_key`` (or, without
    one, from its id, the channel and the recipients), the same on every attempt.

Retries
    Each call makes one SMTP transaction. Connection failures, timeouts and ``4xx`` replies
    (greylisting, a full queue, a temporary authentication failure) are retried after
    exponential backoff with jitter; ``5xx`` replies, a certificate that is not trusted and a
    server lacking what the settings require (STARTTLS, AUTH) fail at once: retrying will
    not change them. When the server refuses some recipients and accepts the others, the
    message was delivered to those it accepted: the attempt counts as sent (retrying would
    mail them again) and the refused addresses are logged with the server's reply. When it
    refuses all of them, the attempt is retried if any refusal was ``4xx``, else it fails.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
from pydantic import SecretStr

from goalwatch.contracts import (
    AlertDigest,
    AlertNotification,
    AlertState,
    DeliveryStatus,
    Recipient,
    Severity,
)
from services.notifier.channels import DeliveryResult
from services.notifier.digests import digest_context, digest_key, render_digest
from services.notifier.pipeline import idempotency_key
from services.notifier.templates import Language, render

logger = logging.getLogger(__name__)

Security = Literal["starttls", "tls", "none"]

CHANNEL = "email"
DEFAULT_PORTS: dict[Security, int] = {"starttls": 587, "tls": 465, "none": 25}
# The impact list of a dependency alert can run to hundreds of goals; a mail that long is
# not read. The rest is counted ("... and N more").
IMPACT_SHOWN = 50
# A digest can gather hundreds of alerts (a burst held back); the mail lists this many.
DIGEST_SHOWN = 50
# Greylisting servers answer 451 and expect the sender back after minutes, not seconds: the
# cap is higher than the webhook's, and equals the redelivery policy's longest delay.
BACKOFF_MAX = 300.0


class _Retryable(Exception):
    """A failure that may pass on a later attempt."""


class _Permanent(Exception):
    """A failure that retrying will not fix."""


@dataclass(frozen=True)
class Envelope:
    """What one SMTP transaction sends: the message and its envelope addresses."""

    message: EmailMessage
    sender: str
    recipients: tuple[str, ...]


Send = Callable[..., Awaitable[tuple[dict[str, Any], str]]]


def parse_address(value: str) -> Address:
    """An ``Address`` from ``alerts@example.org`` or ``Goalwatch <alerts@example.org>``;
    ValueError when it is not one address."""
    name, spec = parseaddr(value)
    if "@" not in spec:
        raise ValueError(f"{value!r} is not an e-mail address (expected name@domain)")
    try:
        return Address(display_name=name, addr_spec=spec)
    except (ValueError, HeaderParseError, IndexError) as exc:
        raise ValueError(f"{value!r} is not an e-mail address: {exc}") from exc


def message_id(key: str, *, domain: str) -> str:
    """The ``Message-ID`` of the notification whose ``idempotency_key`` is ``key``."""
    return f"<{key}@{domain}>"


def firing_key(notification: AlertNotification) -> str:
    """The ``idempotency_key`` the firing of ``notification``'s episode had on this channel,
    assuming the same recipients (they rarely change within an episode)."""
    firing = notification.model_copy(
        update={"state": AlertState.FIRING, "escalated_from": None, "idempotency_key": None}
    )
    return idempotency_key(channel=CHANNEL, notification=firing)


def format_time(moment: datetime | None) -> str:
    """``2026-11-03 18:00 UTC``: every time in the mail in UTC, to the minute."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_value(value: float | None) -> str:
    """A number as people write it: ``0.12``, ``3``, ``4.5``."""
    return "-" if value is None else f"{value:g}"


def format_percent(value: float | None) -> str:
    """A 0-100 progress as ``42.5%``."""
    return "-" if value is None else f"{value:g}%"


def template_context(notification: AlertNotification) -> dict[str, Any]:
    """What the e-mail templates get besides the notification (``n``)."""
    impact = notification.impact
    affected = impact.affected if impact is not None else []
    return {
        "time": format_time,
        "number": format_value,
        "percent": format_percent,
        "impact_shown": affected[:IMPACT_SHOWN],
        "impact_more": max(0, len(affected) - IMPACT_SHOWN),
    }


def compose(
    notification: AlertNotification,
    *,
    sender: Address,
    to: Sequence[Address],
    language: Language,
    now: datetime,
) -> EmailMessage:
    """The e-mail for ``notification``: headers, subject, text and HTML alternatives."""
    context = template_context(notification)
    key = notification.idempotency_key or idempotency_key(
        channel=CHANNEL, notification=notification
    )
    domain = sender.domain or "goalwatch.invalid"
    message = EmailMessage()
    # A subject name may hold a line break; a header may not (and must not be able to
    # smuggle in another header).
    subject = " ".join(render("email.subject", language, notification, **context).split())
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = list(to)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(key, domain=domain)
    if notification.state is AlertState.RESOLVED or notification.escalated_from is not None:
        first = message_id(firing_key(notification), domain=domain)
        message["In-Reply-To"] = first
        message["References"] = first
    # RFC 3834: out-of-office and other automatic replies are not sent to an automatic mail.
    message["Auto-Submitted"] = "auto-generated"
    if notification.severity is Severity.CRITICAL and notification.state is AlertState.FIRING:
        message["Importance"] = "high"
    message["X-Goalwatch-Fingerprint"] = notification.fingerprint
    message["X-Goalwatch-Rule"] = notification.rule_id
    message["X-Goalwatch-State"] = notification.state.value
    message["X-Goalwatch-Severity"] = notification.severity.value
    message.set_content(render("email.text", language, notification, **context))
    message.add_alternative(render("email.html", language, notification, **context), subtype="html")
    return message


def compose_digest(
    digest: AlertDigest,
    *,
    sender: Address,
    to: Sequence[Address],
    language: Language,
    now: datetime,
) -> EmailMessage:
    """The one e-mail for every alert of ``digest``: headers, subject, text and HTML
    alternatives listing them (at most :data:`DIGEST_SHOWN`, then "… and N more")."""
    context: dict[str, Any] = {
        **digest_context(digest, shown=DIGEST_SHOWN),
        "time": format_time,
        "number": format_value,
    }
    domain = sender.domain or "goalwatch.invalid"
    # As for one alert: no line break from a name may reach the header.
    subject = " ".join(render_digest("email.digest.subject", language, digest, **context).split())
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = list(to)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(digest_key(channel=CHANNEL, digest=digest), domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    if any(a.severity is Severity.CRITICAL for a in digest.firing):
        message["Importance"] = "high"
    message["X-Goalwatch-Digest"] = digest.id
    message["X-Goalwatch-Reason"] = digest.reason.value
    message.set_content(render_digest("email.digest.text", language, digest, **context))
    html = render_digest("email.digest.html", language, digest, subject=subject, **context)
    message.add_alternative(html, subtype="html")
    return message


def _address(recipient: Recipient) -> Address | None:
    if not recipient.email:
        return None
    try:
        return Address(display_name=recipient.name, addr_spec=recipient.email)
    except (ValueError, HeaderParseError, IndexError):
        return None


def _code_class(code: int) -> str:
    return "temporary" if 400 <= code < 500 else "permanent"


class EmailChannel:
    """Sends each notification as one e-mail to its recipients' addresses, or to the fixed
    addresses ``to`` (a team mailbox) when given."""

    def __init__(
        self,
        *,
        host: str,
        sender: str,
        port: int | None = None,
        security: Security = "starttls",
        username: str | None = None,
        password: SecretStr | None = None,
        fallback_to: str | None = None,
        to: Sequence[str] | None = None,
        language: Language = "en",
        timeout: float = 10.0,
        max_attempts: int = 10,
        backoff: float = 1.0,
        backoff_max: float = BACKOFF_MAX,
        ca_file: Path | None = None,
        send: Send = aiosmtplib.send,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._host = host
        self._port = port if port is not None else DEFAULT_PORTS[security]
        self._security = security
        self._username = username
        self._password = password
        self._sender = parse_address(sender)
        self._fallback = parse_address(fallback_to) if fallback_to else None
        self._to = [parse_address(address) for address in to or ()]
        self._language = language
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._ca_file = ca_file
        self._send = send
        self._clock = clock
        self._jitter = jitter

    @property
    def name(self) -> str:
        """Always ``email``."""
        return CHANNEL

    @property
    def where(self) -> str:
        """``host:port (security)``, for messages; never the credentials."""
        return f"{self._host}:{self._port} ({self._security})"

    def retry_delay(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: ``backoff x 2^(attempt-1)`` plus up to
        ``backoff`` of jitter, at most ``backoff_max``."""
        delay = self._backoff * 2 ** (attempt - 1) + self._backoff * self._jitter()
        return float(min(delay, self._backoff_max))

    def envelope(self, notification: AlertNotification) -> Envelope:
        """The message and envelope for ``notification``; :class:`_Permanent` when nobody
        can be addressed."""
        extra = {"fingerprint": notification.fingerprint, "channel": self.name}
        to = self._addresses(notification.recipients, extra=extra)
        message = compose(
            notification,
            sender=self._sender,
            to=to,
            language=self._language,
            now=datetime.fromtimestamp(self._clock(), UTC),
        )
        return self._envelope(message, to)

    def digest_envelope(self, digest: AlertDigest) -> Envelope:
        """The one message and envelope for every alert of ``digest``, addressed as a single
        alert's would be; :class:`_Permanent` when nobody can be addressed."""
        extra = {"fingerprint": digest.id, "channel": self.name}
        to = self._addresses(digest.recipients, extra=extra)
        message = compose_digest(
            digest,
            sender=self._sender,
            to=to,
            language=self._language,
            now=datetime.fromtimestamp(self._clock(), UTC),
        )
        return self._envelope(message, to)

    def _envelope(self, message: EmailMessage, to: Sequence[Address]) -> Envelope:
        return Envelope(
            message=message,
            sender=self._sender.addr_spec,
            recipients=tuple(a.addr_spec for a in to),
        )

    def _addresses(
        self, recipients: Sequence[Recipient], *, extra: dict[str, str]
    ) -> list[Address]:
        """Whom a message to ``recipients`` goes to: the fixed addresses if set, else each
        recipient's own (once per address), else the fallback; :class:`_Permanent` when
        there is nobody."""
        to: list[Address] = list(self._to)
        # Fixed addresses (a team mailbox) replace the recipients' own.
        for recipient in () if self._to else recipients:
            address = _address(recipient)
            if address is None:
                logger.info(
                    "recipient %s (%s) has no usable e-mail address; not mailed",
                    recipient.id,
                    recipient.role.value,
                    extra=extra,
                )
                continue
            if all(a.addr_spec.lower() != address.addr_spec.lower() for a in to):
                to.append(address)
        if not to:
            ids = ", ".join(r.id for r in recipients) or "none"
            if self._fallback is None:
                raise _Permanent(
                    f"no recipient has an e-mail address (recipients: {ids}); add their "
                    "addresses in the goals service, or set GOALWATCH_SMTP_FALLBACK_TO"
                )
            logger.info(
                "no recipient has an e-mail address (%s); mailing the fallback address",
                ids,
                extra=extra,
            )
            to = [self._fallback]
        return to

    async def deliver(self, *, notification: AlertNotification, attempt: int) -> DeliveryResult:
        """Send the notification's e-mail once; say whether and when another try is worth it."""
        extra = {"fingerprint": notification.fingerprint, "channel": self.name}
        return await self._attempt(
            lambda: self.envelope(notification), attempt=attempt, extra=extra
        )

    async def deliver_digest(self, *, digest: AlertDigest, attempt: int) -> DeliveryResult:
        """Send the digest as one e-mail, once; say whether and when another try is worth it."""
        extra = {"fingerprint": digest.id, "channel": self.name}
        return await self._attempt(
            lambda: self.digest_envelope(digest), attempt=attempt, extra=extra
        )

    async def _attempt(
        self, build: Callable[[], Envelope], *, attempt: int, extra: dict[str, str]
    ) -> DeliveryResult:
        try:
            envelope = build()
            await self._send_once(envelope, extra=extra)
        except _Permanent as exc:
            return DeliveryResult(status=DeliveryStatus.FAILED, attempts=attempt, error=str(exc))
        except _Retryable as exc:
            if attempt >= self._max_attempts:
                return DeliveryResult(
                    status=DeliveryStatus.FAILED, attempts=attempt, error=str(exc)
                )
            wait = self.retry_delay(attempt)
            logger.warning(
                "e-mail attempt %d of %d failed (%s); retrying in %.1fs",
                attempt,
                self._max_attempts,
                exc,
                wait,
                extra=extra,
            )
            return DeliveryResult(
                status=DeliveryStatus.FAILED, attempts=attempt, error=str(exc), retry_in=wait
            )
        return DeliveryResult(status=DeliveryStatus.SENT, attempts=attempt)

    async def _send_once(self, envelope: Envelope, *, extra: dict[str, str]) -> None:
        where = self.where
        try:
            refused, _ = await self._send(
                envelope.message,
                sender=envelope.sender,
                recipients=list(envelope.recipients),
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password.get_secret_value() if self._password else None,
                use_tls=self._security == "tls",
                # False, not None, for "none": None would upgrade whenever the server offers it.
                start_tls=self._security == "starttls",
                timeout=self._timeout,
                cert_bundle=str(self._ca_file) if self._ca_file else None,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            replies = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            detail = f"SMTP {where} refused every recipient ({replies})"
            if any(400 <= r.code < 500 for r in exc.recipients):
                raise _Retryable(detail) from exc
            raise _Permanent(detail) from exc
        except aiosmtplib.SMTPResponseException as exc:
            detail = (
                f"SMTP {where} answered {exc.code} {exc.message} "
                f"({type(exc).__name__}, {_code_class(exc.code)})"
            )
            if 400 <= exc.code < 500:
                raise _Retryable(detail) from exc
            if 500 <= exc.code < 600:
                raise _Permanent(detail) from exc
            # Not an SMTP reply code (a garbled answer, or -1 for none): the server or the
            # path to it is in trouble, which may pass.
            raise _Retryable(detail) from exc
        except ssl.SSLCertVerificationError as exc:
            raise _Permanent(
                f"SMTP {where}: the server's certificate is not trusted ({exc.verify_message}); "
                "set GOALWATCH_SMTP_CA_FILE to the CA that signed it"
            ) from exc
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
            raise _Retryable(
                f"SMTP {where} timed out after {self._timeout}s ({type(exc).__name__})"
            ) from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
                raise _Permanent(
                    f"SMTP {where}: the server's certificate is not trusted "
                    f"({exc.__cause__.verify_message}); set GOALWATCH_SMTP_CA_FILE to the CA "
                    "that signed it"
                ) from exc
            raise _Retryable(f"SMTP {where} failed: {type(exc).__name__}: {exc}") from exc
        except aiosmtplib.SMTPException as exc:
            # No reply code: the server lacks what the settings require (STARTTLS, an AUTH
            # mechanism we speak). Configuration, not a passing outage.
            raise _Permanent(f"SMTP {where}: {exc}") from exc
        if refused:
            logger.warning(
                "e-mail accepted for %d of %d recipient(s); refused: %s",
                len(envelope.recipients) - len(refused),
                len(envelope.recipients),
                "; ".join(f"{addr}: {reply}" for addr, reply in refused.items()),
                extra=extra,
            )
