"""Several alerts in one e-mail: subject, text and HTML lists, Message-ID, addressing."""

from __future__ import annotations

# The Chinese mails are written with full-width punctuation, and so are the expectations.
# ruff: noqa: RUF001
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from goalwatch.contracts import AlertDigest, DeliveryStatus, Recipient, Severity
from services.notifier.email import DIGEST_SHOWN, compose_digest, parse_address
from services.notifier.templates import ENVIRONMENT, Language
from tests.unit.digest_samples import HEAD, HR, alert, digest, many
from tests.unit.test_email_channel import FakeSend, channel, parts

SENDER = parse_address("Goalwatch <alerts@example.org>")
NOW = datetime(2026, 11, 21, 9, 35, tzinfo=UTC)


def mail(d: AlertDigest, language: Language = "en") -> EmailMessage:
    return compose_digest(
        d,
        sender=SENDER,
        to=[parse_address("Wang Fang <wang.fang@example.org>")],
        language=language,
        now=NOW,
    )


SUBJECTS: dict[Language, str] = {
    "en": "[CRITICAL] 3 alerts firing, 1 resolved — Report rework rate above 8%",
    "zh": "【严重】3 条告警，1 条已恢复 — Report rework rate above 8%",
}
# The opening, each section and the facts of the critical alert and the resolved one.
WORDS: dict[Language, tuple[str, ...]] = {
    "en": (
        "FIRING",
        "3 alerts, the loudest critical (red); 1 resolved",
        "Firing (3), loudest first",
        "Resolved since the previous message (1)",
        "Dr Li Na: report rework rate 14% is above 8% for 3 consecutive days",
        "report_rework_rate = 0.14 · since 2026-11-19 15:30 UTC",
        "report_rework_rate = 0.05 · resolved 2026-11-20 09:30 UTC",
        "department=cardiology",
    ),
    "zh": (
        "告警",
        "3 条，最高级别严重（红色）；1 条已恢复",
        "告警中（3 条，级别高的在前）",
        "自上次通知以来已恢复（1 条）",
        "Dr Li Na: report rework rate 14% is above 8% for 3 consecutive days",
        "report_rework_rate = 0.14 · 自 2026-11-19 15:30 UTC 起",
        "report_rework_rate = 0.05 · 2026-11-20 09:30 UTC 恢复",
        "department=cardiology",
    ),
}


@pytest.mark.parametrize("language", ["en", "zh"])
def test_one_mail_lists_every_alert_in_text_and_html(language: Language) -> None:
    message = mail(digest(), language)
    assert message["Subject"] == SUBJECTS[language]
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text, html = parts(message)
    for body in (text, html):
        for words in WORDS[language]:
            assert words in body, f"{words!r} missing from the {language} digest mail"
        positions = [
            body.index(n) for n in ("Dr Li Na", "Dr Wang Hui", "Dr Zhao Lei", "Dr Chen Jie")
        ]
        assert positions == sorted(positions)  # firing loudest then newest, then resolved
    assert html.count("<li") == 4
    assert f"<title>{SUBJECTS[language]}</title>" in html


def test_new_alerts_are_marked_and_nothing_is_on_a_first_message() -> None:
    text, html = parts(mail(digest()))
    marked = [line for line in text.splitlines() if "[new]" in line]
    assert [line.split("  ")[2] for line in marked] == [
        "Dr Li Na (dr-li-na)",
        "Dr Chen Jie (dr-chen-jie)",
    ]
    assert html.count(">new</strong>") == 2
    first_text, first_html = parts(mail(digest(previous_at=None)))
    assert "[new]" not in first_text and ">new</strong>" not in first_html


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("repeat", "Reminder: still firing; the previous message was sent 2026-11-19 10:30 UTC."),
        ("rate_limit", "Merged: more alerts than this channel accepts per minute."),
        ("quiet_hours", "Held back during quiet hours, sent when they ended."),
    ],
)
def test_the_reason_is_said(reason: str, words: str) -> None:
    message = mail(digest(reason=reason))
    text, html = parts(message)
    assert words in text and words in html
    assert message["X-Goalwatch-Reason"] == reason
    if reason == "repeat":
        assert message["Subject"].startswith("[CRITICAL] Reminder: 3 alerts still firing")


def test_message_id_is_the_digest_key_and_the_same_on_every_attempt() -> None:
    d = digest()
    first, again = mail(d), mail(d)
    assert first["Message-ID"] == again["Message-ID"] == f"<{d.idempotency_key}@example.org>"
    assert first["X-Goalwatch-Digest"] == "cardiology-rework:7"
    # Without a key, one is derived from the id, the channel and the recipients: still stable,
    # and another digest gets another.
    keyless = mail(digest(idempotency_key=None))
    assert keyless["Message-ID"] == mail(digest(idempotency_key=None))["Message-ID"]
    assert keyless["Message-ID"] != first["Message-ID"]
    other = mail(digest(idempotency_key=None, id="cardiology-rework:8"))
    assert other["Message-ID"] != keyless["Message-ID"]


def test_critical_firing_makes_it_important_and_a_resolved_critical_does_not() -> None:
    assert mail(digest())["Importance"] == "high"
    calm = digest(
        [alert("Dr Li Na", state="resolved", severity=Severity.CRITICAL), alert("Dr Wang Hui")]
    )
    assert mail(calm)["Importance"] is None


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "[RESOLVED] 1 alert resolved — Report rework rate above 8%"),
        ("zh", "【已恢复】1 条告警已恢复 — Report rework rate above 8%"),
    ],
)
def test_a_digest_of_resolved_alerts(language: Language, expected: str) -> None:
    message = mail(digest([alert("Dr Li Na", state="resolved")]), language)
    assert message["Subject"] == expected
    text, _ = parts(message)
    assert ("RESOLVED: 1 alert over." if language == "en" else "已恢复：1 条告警已结束。") in text


def test_html_escapes_what_people_typed() -> None:
    name = '<script>alert("x")</script> & <b>Co</b>'
    d = digest(
        [alert(name, message=f"{name}: rework 12%"), alert("Dr Li Na", rule=("r2", name))],
        group_labels={"team": "<i>a</i>"},
    )
    text, html = parts(mail(d))
    assert "<script>" not in html and "<b>Co</b>" not in html and "<i>a</i>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;Co&lt;/b&gt;" in html
    assert "&lt;i&gt;a&lt;/i&gt;" in html
    assert name in text  # plain text is shown as it is


def test_a_line_break_in_a_name_cannot_add_a_header() -> None:
    evil = "a\r\nBcc: all@example.org"
    # The subject names the shared rule, or else the group labels: try both.
    by_rule = mail(digest([alert("Dr X", rule=("r", evil))], group_labels={}))
    by_labels = mail(
        digest([alert("Dr X"), alert("Dr Y", rule=("q", "Q"))], group_labels={"team": evil})
    )
    for message in (by_rule, by_labels):
        assert message["Bcc"] is None
        assert message["Subject"].endswith("a Bcc: all@example.org")
        headers = message.as_string().split("\n\n", 1)[0]
        assert "\nBcc:" not in headers


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_list_stops_at_fifty_and_counts_the_rest(language: Language) -> None:
    text, html = parts(mail(many(70, resolved=5), language))
    assert text.count("doctor-") == DIGEST_SHOWN == 50  # each entry names the id once
    assert "doctor-020" in text and "doctor-019" not in text  # the newest fifty
    more = "… and 20 more" if language == "en" else "…… 另有 20 条"
    more_resolved = "… and 5 more" if language == "en" else "…… 另有 5 条"
    for body in (text, html):
        assert more in body and more_resolved in body
    assert html.count("<li") == 52  # fifty alerts and two remainders


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_digest_html_templates_escape(language: Language) -> None:
    template = ENVIRONMENT.get_template(f"email.digest.html.{language}.j2")
    assert template.environment.autoescape(template.name) is True  # type: ignore[operator]
    assert ENVIRONMENT.autoescape(f"email.digest.text.{language}.j2") is False  # type: ignore[operator]


async def deliver(send: FakeSend, d: AlertDigest, attempt: int = 1, **options: Any) -> Any:
    return await channel(send, **options).deliver_digest(digest=d, attempt=attempt)


async def test_one_mail_to_every_recipient_with_an_address() -> None:
    send = FakeSend()
    nobody = Recipient(id="doctor-li", name="Dr Li", email=None, role="subject")
    result = await deliver(send, digest(recipients=[HEAD, nobody, HR]))
    assert (result.status, result.attempts) == (DeliveryStatus.SENT, 1)
    (call,) = send.calls
    assert call["recipients"] == ["wang.fang@example.org", "zhao.min@example.org"]
    assert (
        call["message"]["To"]
        == "Wang Fang <wang.fang@example.org>, Zhao Min <zhao.min@example.org>"
    )
    assert call["message"]["Subject"] == SUBJECTS["en"]


async def test_fixed_addresses_replace_the_recipients_as_for_one_alert() -> None:
    send = FakeSend()
    await deliver(send, digest(), to=["Team <team@example.org>"])
    assert send.calls[0]["recipients"] == ["team@example.org"]


async def test_without_any_address_it_fails_for_good_unless_there_is_a_fallback() -> None:
    nobody = Recipient(id="doctor-li", name="Dr Li", email=None, role="subject")
    send = FakeSend()
    result = await deliver(send, digest(recipients=[nobody]))
    assert result.status is DeliveryStatus.FAILED and result.retry_in is None
    assert "no recipient has an e-mail address (recipients: doctor-li)" in result.error
    assert send.calls == []
    result = await deliver(send, digest(recipients=[nobody]), fallback_to="oncall@example.org")
    assert result.status is DeliveryStatus.SENT
    assert send.calls[0]["recipients"] == ["oncall@example.org"]


async def test_a_greylisted_digest_is_retried_and_the_last_attempt_gives_up() -> None:
    greylisted = aiosmtplib.SMTPResponseException(451, "4.7.1 Greylisted, try later")
    result = await deliver(FakeSend(greylisted), digest(), attempt=2)
    assert (result.status, result.retry_in) == (DeliveryStatus.FAILED, 2.0)
    result = await deliver(FakeSend(greylisted), digest(), attempt=3)
    assert (result.status, result.retry_in) == (DeliveryStatus.FAILED, None)
