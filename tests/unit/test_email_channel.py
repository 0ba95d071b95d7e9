"""The e-mail channel without a server: the message it builds, and how it reads failures."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import pytest
from pydantic import SecretStr, ValidationError

from goalwatch.contracts import AlertNotification, DeliveryStatus
from services.notifier.app import NotifierSettings, build_channels
from services.notifier.email import EmailChannel, compose, parse_address
from services.notifier.pipeline import idempotency_key
from services.notifier.templates import ENVIRONMENT
from tests.unit.email_samples import DOCTOR, MANAGER, notification

KINDS = ("threshold", "overdue", "fraud", "dependency_impact")
TRANSITIONS = ("firing", "escalation", "resolved")
SENDER = parse_address("Goalwatch <alerts@example.org>")
NOW = datetime(2026, 11, 3, 18, 5, tzinfo=UTC)


def keyed(n: AlertNotification) -> AlertNotification:
    """``n`` as the pipeline hands it to the channel: with its idempotency key."""
    key = idempotency_key(channel="email", notification=n)
    return n.model_copy(update={"idempotency_key": key})


def mail(n: AlertNotification, language: str = "en") -> EmailMessage:
    return compose(
        keyed(n),
        sender=SENDER,
        to=[parse_address("Wang Fang <wang.fang@example.org>")],
        language=language,  # type: ignore[arg-type]
        now=NOW,
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return str(text.get_content()), str(html.get_content())


def test_a_multipart_alternative_with_text_then_html() -> None:
    message = mail(notification("threshold"))
    assert message.get_content_type() == "multipart/alternative"
    types = [p.get_content_type() for p in message.iter_parts()]
    # Clients show the last alternative they can: the richer one goes last.
    assert types == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())
    assert message["From"] == "Goalwatch <alerts@example.org>"
    assert message["To"] == "Wang Fang <wang.fang@example.org>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Goalwatch-Fingerprint"] == "fp-threshold"
    assert message["X-Goalwatch-State"] == "firing"


def test_message_id_is_the_idempotency_key_and_the_same_on_every_attempt() -> None:
    n = keyed(notification("threshold"))
    assert n.idempotency_key is not None
    first, again = mail(n), mail(n)
    assert first["Message-ID"] == again["Message-ID"] == f"<{n.idempotency_key}@example.org>"
    # A firing starts its thread.
    assert first["In-Reply-To"] is None and first["References"] is None


@pytest.mark.parametrize("transition", ["escalation", "resolved"])
def test_resolution_and_escalation_reply_to_the_firing(transition: str) -> None:
    firing = mail(notification("threshold"))
    later = mail(notification("threshold", transition=transition))
    assert later["Message-ID"] != firing["Message-ID"]
    assert later["In-Reply-To"] == firing["Message-ID"]
    assert later["References"] == firing["Message-ID"]


def test_only_a_critical_firing_is_marked_important() -> None:
    assert mail(notification("fraud", transition="escalation"))["Importance"] == "high"
    assert mail(notification("fraud"))["Importance"] is None
    assert (
        mail(notification("fraud", transition="resolved", severity="critical"))["Importance"]
        is None
    )


# What each kind adds to the mail, in the text and the HTML part, per language.
KIND_DETAIL = {
    "threshold": {"en": "0.11", "zh": "0.11"},
    "overdue": {"en": "progress behind plan", "zh": "进度落后于计划"},
    "fraud": {"en": "About", "zh": "对象"},
    "dependency_impact": {"en": "… and 10 more", "zh": "…… 另有 10 个"},
}
TAGS = {
    ("firing", "en"): ("[WARNING]", "FIRING"),
    ("escalation", "en"): ("[CRITICAL]", "ESCALATED"),
    ("resolved", "en"): ("[RESOLVED]", "RESOLVED"),
    ("firing", "zh"): ("【警告】", "告警"),
    ("escalation", "zh"): ("【严重】", "已升级"),
    ("resolved", "zh"): ("【已恢复】", "已恢复"),
}


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("transition", TRANSITIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_and_transition_in_both_languages(
    kind: str, transition: str, language: str
) -> None:
    n = notification(kind, transition=transition)
    message = mail(n, language)
    subject_tag, opening = TAGS[(transition, language)]
    assert message["Subject"].startswith(subject_tag)
    assert f"A {kind} rule — Dr Li Wei" in message["Subject"]
    text, html = parts(message)
    for body in (text, html):
        assert n.message in body
        assert opening in body
        if transition != "resolved" or kind != "threshold":  # a resolution has no history
            assert KIND_DETAIL[kind][language] in body
    if transition == "escalation":
        assert ("escalated from warning" if language == "en" else "由警告升级") in message[
            "Subject"
        ]
        assert ("2026-11-04 00:00 UTC") in text
    if transition == "resolved":
        assert "2026-11-04 18:00 UTC" in text  # resolved_at


def test_the_impact_list_stops_at_fifty() -> None:
    text, html = parts(mail(notification("dependency_impact")))
    assert "Department goal 49 " in text and "Department goal 50 " not in text
    assert "60 here; 75 across 3 owner(s)" in text
    assert html.count("<li>") == 51  # fifty goals and the remainder


def test_html_escapes_what_people_typed() -> None:
    name = '<script>alert("x")</script> & <b>Co</b>'
    n = notification(
        "threshold",
        subject={"id": "doctor-x", "name": name},
        message=f"{name}: rework 12%",
    )
    text, html = parts(mail(n))
    assert "<script>" not in html and "<b>Co</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;Co&lt;/b&gt;" in html
    assert name in text  # plain text is shown as it is


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_html_template_escapes(language: str) -> None:
    # Named <channel>.html.<language>.j2: the escaping must not depend on the name's end.
    template = ENVIRONMENT.get_template(f"email.html.{language}.j2")
    assert template.environment.autoescape(template.name) is True  # type: ignore[operator]
    assert ENVIRONMENT.autoescape(f"email.text.{language}.j2") is False  # type: ignore[operator]


def test_a_line_break_in_a_name_cannot_add_a_header() -> None:
    n = notification("threshold", subject={"id": "x", "name": "Dr X\r\nBcc: all@example.org"})
    message = mail(n)
    assert message["Bcc"] is None
    assert message["Subject"].endswith("Dr X Bcc: all@example.org")
    headers = message.as_string().split("\n\n", 1)[0]
    assert "\nBcc:" not in headers


class FakeSend:
    """Stands in for aiosmtplib.send: records its arguments, raises or answers as told."""

    def __init__(self, outcome: BaseException | dict[str, Any] | None = None) -> None:
        self.outcome = outcome
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, message: EmailMessage, **kwargs: Any) -> tuple[dict[str, Any], str]:
        self.calls.append({"message": message, **kwargs})
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return (self.outcome or {}), "250 OK"


def channel(send: FakeSend, **options: Any) -> EmailChannel:
    defaults: dict[str, Any] = {
        "host": "smtp.example.org",
        "sender": "Goalwatch <alerts@example.org>",
        "max_attempts": 3,
        "backoff": 1.0,
        "jitter": lambda: 0.0,
    }
    return EmailChannel(send=send, **{**defaults, **options})


async def deliver(ch: EmailChannel, attempt: int = 1, **changes: Any) -> Any:
    return await ch.deliver(
        notification=keyed(notification("threshold", **changes)), attempt=attempt
    )


async def test_sends_one_message_to_the_recipients_with_addresses() -> None:
    send = FakeSend()
    result = await deliver(
        channel(send, username="mailer", password=SecretStr("pw-123"), port=2525)
    )
    assert (result.status, result.attempts, result.retry_in) == (DeliveryStatus.SENT, 1, None)
    (call,) = send.calls
    assert call["recipients"] == ["wang.fang@example.org"]  # the doctor has no address
    assert call["sender"] == "alerts@example.org"
    assert (call["hostname"], call["port"]) == ("smtp.example.org", 2525)
    assert (call["username"], call["password"]) == ("mailer", "pw-123")
    assert (call["start_tls"], call["use_tls"]) == (True, False)


@pytest.mark.parametrize(
    ("security", "port", "start_tls", "use_tls"),
    [("starttls", 587, True, False), ("tls", 465, False, True), ("none", 25, False, False)],
)
async def test_security_modes_and_their_ports(
    security: str, port: int, start_tls: bool, use_tls: bool
) -> None:
    send = FakeSend()
    await deliver(channel(send, security=security))
    (call,) = send.calls
    assert (call["port"], call["start_tls"], call["use_tls"]) == (port, start_tls, use_tls)


async def test_without_any_address_it_fails_for_good_unless_there_is_a_fallback() -> None:
    nobody = {"recipients": [DOCTOR]}
    send = FakeSend()
    result = await deliver(channel(send), **nobody)
    assert result.status is DeliveryStatus.FAILED and result.retry_in is None
    assert "no recipient has an e-mail address (recipients: doctor-li)" in result.error
    assert "GOALWATCH_SMTP_FALLBACK_TO" in result.error
    assert send.calls == []

    result = await deliver(channel(send, fallback_to="oncall@example.org"), **nobody)
    assert result.status is DeliveryStatus.SENT
    assert send.calls[0]["recipients"] == ["oncall@example.org"]


async def test_the_same_address_twice_gets_one_copy() -> None:
    send = FakeSend()
    twin = {**MANAGER, "id": "head-wang-2", "email": "Wang.Fang@example.org"}
    await deliver(channel(send), recipients=[MANAGER, twin])
    assert send.calls[0]["recipients"] == ["wang.fang@example.org"]


def refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(c, "no", f"r{c}@example.org") for c in codes]
    )


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (aiosmtplib.SMTPResponseException(451, "4.7.1 Greylisted, try later"), True),
        (aiosmtplib.SMTPDataError(452, "4.3.1 Insufficient storage"), True),
        (aiosmtplib.SMTPAuthenticationError(454, "4.7.0 Temporary auth failure"), True),
        (aiosmtplib.SMTPConnectError("Error connecting to smtp.example.org"), True),
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), True),
        (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (refused(450, 550), True),
        (aiosmtplib.SMTPResponseException(550, "5.1.1 No such user"), False),
        (aiosmtplib.SMTPSenderRefused(553, "5.7.1 Not our domain", "alerts@example.org"), False),
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Bad credentials"), False),
        (aiosmtplib.SMTPDataError(554, "5.6.0 Message rejected"), False),
        (aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."), False),
        (refused(550, 553), False),
    ],
)
async def test_retry_classification(failure: BaseException, retried: bool) -> None:
    result = await deliver(channel(FakeSend(failure)), attempt=2)
    assert result.status is DeliveryStatus.FAILED
    assert result.attempts == 2
    assert (result.retry_in == 2.0) if retried else (result.retry_in is None)
    assert "smtp.example.org:587 (starttls)" in result.error


async def test_the_last_attempt_gives_up() -> None:
    result = await deliver(
        channel(FakeSend(aiosmtplib.SMTPResponseException(421, "busy"))), attempt=3
    )
    assert (result.status, result.retry_in) == (DeliveryStatus.FAILED, None)
    assert "421 busy" in result.error


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    ch = channel(FakeSend(), backoff=1.0, backoff_max=300.0, jitter=lambda: 0.5)
    assert [ch.retry_delay(a) for a in (1, 2, 3, 9, 10)] == [1.5, 2.5, 4.5, 256.5, 300.0]


async def test_some_recipients_refused_counts_as_sent(caplog: pytest.LogCaptureFixture) -> None:
    ok = {**MANAGER, "id": "a", "email": "a@example.org"}
    gone = {**MANAGER, "id": "b", "email": "gone@example.org"}
    send = FakeSend({"gone@example.org": aiosmtplib.SMTPResponse(550, "5.1.1 No such user")})
    result = await deliver(channel(send), recipients=[ok, gone])
    assert result.status is DeliveryStatus.SENT
    assert "accepted for 1 of 2 recipient(s); refused: gone@example.org" in caplog.text


async def test_the_password_is_never_in_an_error() -> None:
    failure = aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Bad credentials")
    result = await deliver(
        channel(FakeSend(failure), username="mailer", password=SecretStr("pw-123"))
    )
    assert "pw-123" not in (result.error or "")


# Settings and registration.

SMTP = {"smtp_host": "smtp.example.org", "smtp_from": "alerts@example.org"}


def test_smtp_is_off_unless_a_host_is_set() -> None:
    channels = build_channels(NotifierSettings(smtp_host=" "), client=httpx.AsyncClient())
    assert channels == []


def test_a_host_registers_the_email_channel() -> None:
    settings = NotifierSettings(**SMTP, smtp_language="zh")
    (ch,) = build_channels(settings, client=httpx.AsyncClient())
    assert isinstance(ch, EmailChannel) and ch.name == "email"
    assert ch.where == "smtp.example.org:587 (starttls)"


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "GOALWATCH_SMTP_HOST": "mail.example.org",
        "GOALWATCH_SMTP_PORT": "2525",
        "GOALWATCH_SMTP_SECURITY": "tls",
        "GOALWATCH_SMTP_USERNAME": "mailer",
        "GOALWATCH_SMTP_PASSWORD": "pw-123",
        "GOALWATCH_SMTP_FROM": "Goalwatch <alerts@example.org>",
        "GOALWATCH_SMTP_FALLBACK_TO": "oncall@example.org",
        "GOALWATCH_SMTP_LANGUAGE": "zh",
    }.items():
        monkeypatch.setenv(name, value)
    settings = NotifierSettings()
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_security) == (
        "mail.example.org",
        2525,
        "tls",
    )
    assert settings.smtp_fallback_to == "oncall@example.org"
    assert settings.smtp_language == "zh"
    assert "pw-123" not in repr(settings)


def test_a_host_without_a_from_address_stops_start_up() -> None:
    with pytest.raises(ValidationError, match="GOALWATCH_SMTP_FROM is required"):
        NotifierSettings(smtp_host="smtp.example.org")


@pytest.mark.parametrize("field", ["smtp_from", "smtp_fallback_to"])
def test_an_address_that_is_not_one_stops_start_up(field: str) -> None:
    with pytest.raises(ValidationError, match=f"GOALWATCH_{field.upper()}: 'alerts' is not"):
        NotifierSettings(**{**SMTP, field: "alerts"})


def test_user_name_and_password_go_together() -> None:
    with pytest.raises(ValidationError, match="USERNAME and GOALWATCH_SMTP_PASSWORD go together"):
        NotifierSettings(**SMTP, smtp_username="mailer")
    with pytest.raises(ValidationError, match="go together"):
        NotifierSettings(**SMTP, smtp_password="pw")


def test_a_missing_ca_file_stops_start_up(tmp_path: Any) -> None:
    with pytest.raises(ValidationError, match="GOALWATCH_SMTP_CA_FILE"):
        NotifierSettings(**SMTP, smtp_ca_file=tmp_path / "nope.pem")


def test_unknown_security_and_language_are_refused() -> None:
    with pytest.raises(ValidationError):
        NotifierSettings(**SMTP, smtp_security="ssl")
    with pytest.raises(ValidationError):
        NotifierSettings(**SMTP, smtp_language="fr")


ACK_URL = "https://goalwatch.example.org/v1/ack/0123456789abcdef0123.1790604800..c2ln-x_y"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_firing_mail_carries_its_acknowledgement_link(language: str) -> None:
    linked = notification("threshold", ack_url=ACK_URL)
    text, html = parts(mail(linked, language))
    assert ACK_URL in text
    assert f'<a href="{ACK_URL}"' in html
    plain_text, plain_html = parts(mail(notification("threshold"), language))
    assert "/v1/ack/" not in plain_text + plain_html
