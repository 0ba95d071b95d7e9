"""Several alerts in one message on the chat channels and the Alertmanager: title, lines,
reasons, the "new" mark, escaping, and each vendor's size limit."""

# The Chinese messages are written with full-width punctuation, and so are the expectations.
# ruff: noqa: RUF001

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from typing import Any

import httpx
import pytest

from goalwatch.contracts import AlertDigest, DeliveryStatus, Severity
from services.notifier.digests import digest_title, group_labels, ordered
from services.notifier.messages import plain
from services.notifier.templates import LANGUAGES, Language
from tests.unit.digest_samples import OTHER_RULE, PREVIOUS, alert, digest, many
from tests.unit.test_chat_channels import (
    FACTORIES,
    HOSTILE,
    SECRET,
    Recorder,
    alertmanager,
    dingtalk,
    feishu,
    wecom,
)

CHAT = ("wecom", "dingtalk", "feishu", "slack")
OK = {"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success"}


async def send(name: str, d: AlertDigest, language: Language) -> Any:
    recorder = Recorder(httpx.Response(200, json=OK))
    result = await FACTORIES[name](recorder, language).deliver_digest(digest=d, attempt=1)
    assert result.status is DeliveryStatus.SENT, result
    return recorder.body


def title_of(name: str, body: Any) -> str:
    """What the chat list and the phone notification show."""
    if name == "wecom":
        return str(body["markdown"]["content"].split("\n", 1)[0])
    if name == "dingtalk":
        return str(body["markdown"]["title"])
    if name == "feishu":
        return str(body["card"]["header"]["title"]["content"])
    return str(body["text"])


def text_of(name: str, body: Any) -> str:
    """The message's lines as one text."""
    if name == "wecom":
        return str(body["markdown"]["content"])
    if name == "dingtalk":
        return str(body["markdown"]["text"])
    if name == "feishu":
        return str(body["card"]["elements"][0]["text"]["content"])
    return "\n\n".join(block["text"]["text"] for block in body["blocks"])


TITLES: dict[Language, str] = {
    "en": "[Critical] 3 alerts firing, 1 resolved — Report rework rate above 8%",
    "zh": "【严重】3 条告警，1 条已恢复 — Report rework rate above 8%",
}
# Section headings, the critical alert's line and the resolved one's, per language.
LINES: dict[Language, tuple[str, ...]] = {
    "en": (
        "Firing (3):",
        "Critical",
        "Dr Li Na · 0.14 · since 2026-11-19 15:30 UTC",
        "Resolved (1):",
        "Warning Dr Chen Jie · 0.05 · resolved 2026-11-20 09:30 UTC",
        "department=cardiology",
    ),
    "zh": (
        "告警中（3）",
        "严重",
        "Dr Li Na · 0.14 · 自 2026-11-19 15:30 UTC 起",
        "已恢复（1）",
        "警告 Dr Chen Jie · 0.05 · 2026-11-20 09:30 UTC 恢复",
        "department=cardiology",
    ),
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", CHAT)
async def test_a_digest_renders_in_both_languages(name: str, language: Language) -> None:
    body = await send(name, digest(), language)
    assert TITLES[language] in title_of(name, body)
    text = text_of(name, body)
    for words in LINES[language]:
        assert words in text, f"{words!r} missing from the {name} {language} digest:\n{text}"
    # One line per alert, and the rule they share is in the title, not on every line.
    for subject in ("Dr Wang Hui", "Dr Li Na", "Dr Zhao Lei", "Dr Chen Jie"):
        (line,) = [line for line in text.splitlines() if subject in line]
        assert "Report rework rate above 8%" not in line
    other = "告警中" if language == "en" else "Firing"
    assert other not in text


@pytest.mark.parametrize("name", CHAT)
async def test_firing_come_first_loudest_then_newest_and_resolved_last(name: str) -> None:
    text = text_of(name, await send(name, digest(), "en"))
    positions = [text.index(s) for s in ("Dr Li Na", "Dr Wang Hui", "Dr Zhao Lei", "Dr Chen Jie")]
    assert positions == sorted(positions)
    assert text.index("Resolved (1)") < positions[-1]


@pytest.mark.parametrize("name", CHAT)
async def test_alerts_changed_since_the_previous_message_are_marked_new(name: str) -> None:
    text = text_of(name, await send(name, digest(), "en"))
    lines = {
        s: next(line for line in text.splitlines() if s in line)
        for s in ("Li Na", "Wang Hui", "Zhao Lei", "Chen Jie")
    }
    assert {s: "new" in line for s, line in lines.items()} == {
        "Li Na": True,  # fired after the previous message
        "Wang Hui": False,
        "Zhao Lei": False,
        "Chen Jie": True,  # resolved after it
    }
    # The first message of a group has nothing before it: nothing is marked.
    first = text_of(name, await send(name, digest(previous_at=None), "en"))
    assert "new" not in first


def test_new_is_measured_against_the_previous_message() -> None:
    d = digest()
    assert d.alerts[1].changed_at > PREVIOUS  # Dr Li Na
    assert [a.subject.name for a in ordered(d)] == [
        "Dr Li Na",
        "Dr Wang Hui",
        "Dr Zhao Lei",
        "Dr Chen Jie",
    ]


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "[Warning] 2 alerts firing — department=cardiology"),
        ("zh", "【警告】2 条告警 — department=cardiology"),
    ],
)
def test_without_a_shared_rule_the_title_names_the_group_and_lines_their_rule(
    language: Language, expected: str
) -> None:
    d = digest(
        [alert("Dr Li Na"), alert("Dr Li Na", rule=OTHER_RULE, severity=Severity.INFO)],
        group_labels={"department": "cardiology"},
    )
    assert digest_title(language, d, esc=plain) == expected


def test_the_group_shown_leaves_out_the_rule_and_labels_the_alerts_lack() -> None:
    d = digest(group_labels={"rule": "report-rework-rate-high", "team": "", "ward": "3"})
    assert digest_title("en", d, esc=plain).endswith("— Report rework rate above 8%")
    assert group_labels(d) == ["ward=3"]
    mixed = digest(
        [alert("Dr Li Na"), alert("Dr Wang Hui", rule=OTHER_RULE)],
        group_labels={"team": "", "ward": "3"},
    )
    assert digest_title("en", mixed, esc=plain) == "[Warning] 2 alerts firing — ward=3"


@pytest.mark.parametrize("name", CHAT)
async def test_lines_name_their_rule_when_the_rules_differ(name: str) -> None:
    d = digest(
        [alert("Dr Li Na"), alert("Dr Wang Hui", rule=OTHER_RULE)],
        group_labels={"department": "cardiology"},
    )
    text = text_of(name, await send(name, d, "en"))
    assert "Dr Li Na · Report rework rate above 8% · 0.11" in text
    assert "Dr Wang Hui · Feedback score below 4.5 · 0.11" in text


@pytest.mark.parametrize(
    ("reason", "language", "in_title", "in_text"),
    [
        (
            "repeat",
            "en",
            "[Critical] Reminder: 3 alerts still firing, 1 resolved",
            "the previous message was sent 2026-11-19 10:30 UTC",
        ),
        (
            "repeat",
            "zh",
            "【严重】提醒：3 条告警仍在触发，1 条已恢复",
            "上次通知于 2026-11-19 10:30 UTC 发出",
        ),
        (
            "rate_limit",
            "en",
            TITLES["en"],
            "Merged: more alerts than the robot accepts in a short time.",
        ),
        ("rate_limit", "zh", TITLES["zh"], "合并发送：告警数超过机器人在短时间内可接收的消息数。"),
        ("quiet_hours", "en", TITLES["en"], "Held back during quiet hours, sent when they ended."),
        ("quiet_hours", "zh", TITLES["zh"], "免打扰时段内暂缓发送，时段结束后发出。"),
    ],
)
async def test_the_reason_is_said(
    reason: str, language: Language, in_title: str, in_text: str
) -> None:
    body = await send("wecom", digest(reason=reason), language)
    assert in_title in title_of("wecom", body)
    assert in_text in text_of("wecom", body)


async def test_a_group_needs_no_reason() -> None:
    text = text_of("wecom", await send("wecom", digest(), "en"))
    for words in ("Reminder", "Merged", "Held back"):
        assert words not in text


async def test_slack_says_slack_refused_more() -> None:
    text = text_of("slack", await send("slack", digest(reason="rate_limit"), "en"))
    assert "more alerts than Slack accepts in a short time" in text


ALL_RESOLVED = [
    alert("Dr Li Na", state="resolved", severity=Severity.CRITICAL),
    alert("Dr Wang Hui", state="resolved"),
]


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "[Resolved] 2 alerts resolved — Report rework rate above 8%"),
        ("zh", "【已恢复】2 条告警已恢复 — Report rework rate above 8%"),
    ],
)
async def test_a_digest_of_resolved_alerts(language: Language, expected: str) -> None:
    d = digest(ALL_RESOLVED)
    assert digest_title(language, d, esc=plain) == expected
    wecom_body = await send("wecom", d, language)
    assert wecom_body["markdown"]["content"].startswith('<font color="info">**')
    feishu_body = await send("feishu", d, language)
    assert feishu_body["card"]["header"]["template"] == "green"
    assert "Firing" not in text_of("slack", await send("slack", d, "en"))


@pytest.mark.parametrize(
    ("top", "wecom_colour", "feishu_colour"),
    [("info", "comment", "blue"), ("warning", "warning", "yellow"), ("critical", "warning", "red")],
)
async def test_colours_follow_the_loudest_firing_alert(
    top: str, wecom_colour: str, feishu_colour: str
) -> None:
    # A louder alert that has resolved does not colour the message.
    d = digest(
        [
            alert("Dr Li Na", severity=Severity.INFO),
            alert("Dr Wang Hui", severity=top),
            alert("Dr Chen Jie", state="resolved", severity=Severity.CRITICAL),
        ]
    )
    content = (await send("wecom", d, "en"))["markdown"]["content"]
    assert content.startswith(f'<font color="{wecom_colour}">**[{top.capitalize()}] 2 alerts')
    assert (await send("feishu", d, "en"))["card"]["header"]["template"] == feishu_colour


async def test_an_escalation_says_so_on_its_line() -> None:
    d = digest(
        [
            alert(
                "Dr Li Na",
                severity=Severity.CRITICAL,
                escalated_from=Severity.WARNING,
                escalated_at=PREVIOUS,
            )
        ]
    )
    assert "**Critical** (escalated from warning) Dr Li Na" in text_of(
        "wecom", await send("wecom", d, "en")
    )
    assert "**严重**（由警告升级） Dr Li Na" in text_of("wecom", await send("wecom", d, "zh"))


# Each vendor's documented limit, measured the way the vendor counts it.
def within_limit(name: str, body: Any) -> bool:
    if name == "wecom":
        return len(body["markdown"]["content"].encode()) <= 4096
    if name == "dingtalk":
        return len(body["markdown"]["text"].encode()) <= 4096
    if name == "feishu":
        return len(json.dumps(body, ensure_ascii=False).encode()) <= 20 * 1024
    blocks = body["blocks"]
    return len(blocks) <= 50 and all(len(b["text"]["text"]) <= 3000 for b in blocks)


LONG_NAME = "医生" * 200 + " Doctor"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", CHAT)
async def test_many_alerts_fit_the_limit_with_and_n_more(name: str, language: Language) -> None:
    d = many(300, name=LONG_NAME, resolved=40)
    body = await send(name, d, language)
    assert within_limit(name, body)
    text = text_of(name, body)
    shown = text.count(LONG_NAME)
    assert 0 < shown < 20  # the long names leave room for fewer than the usual twenty
    more = f"… and {300 - shown} more" if language == "en" else f"… 另有 {300 - shown} 条"
    assert more in text
    # Firing alerts take the room first; the resolved ones are counted, not dropped unsaid.
    resolved_more = "… and 40 more" if language == "en" else "… 另有 40 条"
    assert resolved_more in text
    assert ("Resolved (40)" if language == "en" else "已恢复（40）") in text
    # The title still counts them all.
    assert (
        "300 alerts firing, 40 resolved" if language == "en" else "300 条告警，40 条已恢复"
    ) in title_of(name, body)


@pytest.mark.parametrize("name", CHAT)
async def test_at_most_twenty_lines_however_short(name: str) -> None:
    text = text_of(name, await send(name, many(25), "en"))
    assert text.count("Doctor ") == 20
    assert "… and 5 more" in text


async def test_slack_digest_is_a_block_per_part_each_within_the_limit() -> None:
    body = await send("slack", digest(), "en")
    assert body["text"] == TITLES["en"]
    sections = [b["text"]["text"] for b in body["blocks"]]
    assert [b["type"] for b in body["blocks"]] == ["section"] * 3
    assert sections[0].startswith(f"*{TITLES['en']}*")
    assert sections[1].startswith("*Firing (3):*")
    assert sections[2].startswith("*Resolved (1):*")


@pytest.mark.parametrize("name", ["wecom", "dingtalk"])
async def test_markdown_in_names_is_escaped_in_a_digest(name: str) -> None:
    d = digest([alert(HOSTILE), alert("Dr Li Na", rule=(HOSTILE, HOSTILE))])
    text = text_of(name, await send(name, d, "en"))
    assert "*Li_Na*" not in text and "\\*Li\\_Na\\*" in text
    assert '<font color="red">' not in text and "&lt;font" in text
    assert "\\[x\\](http://evil.test)" in text
    assert "\n# heading" not in text
    assert text.count("<font") == (1 if name == "wecom" else 0)


async def test_lark_md_in_names_is_entities_in_a_digest() -> None:
    body = await send(
        "feishu", digest([alert(HOSTILE), alert("Dr Li Na", rule=(HOSTILE, HOSTILE))]), "en"
    )
    content = text_of("feishu", body)
    assert "&#42;Li&#95;Na&#42;" in content
    assert "<font" not in content and "[x]" not in content and "`" not in content
    assert "\n# heading" not in content
    # The header is plain text, on one line.
    assert "\n" not in title_of("feishu", body)


async def test_slack_entities_are_neutralised_in_a_digest() -> None:
    hostile = "<!channel> *Li_Na* & co"
    d = digest([alert(hostile), alert("Dr Li Na")], group_labels={"team": "<!here>"})
    body = await send("slack", d, "en")
    text = text_of("slack", body)
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "<!here>" not in text and "<!here>" not in body["text"]
    assert "*Li_Na*" not in text and "&amp; co" in text


async def test_dingtalk_signs_a_digest_as_dingtalk_documents() -> None:
    recorder = Recorder(httpx.Response(200, json=OK))
    await dingtalk(recorder).deliver_digest(digest=digest(), attempt=1)
    query = urllib.parse.parse_qs(recorder.requests[0].url.query.decode())
    timestamp = query["timestamp"][0]
    mac = hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), hashlib.sha256)
    assert query["sign"] == [base64.b64encode(mac.digest()).decode()]
    assert recorder.body["msgtype"] == "markdown"
    assert recorder.body["markdown"]["text"].startswith(f"### {TITLES['zh']}")


async def test_feishu_signs_a_digest_as_feishu_documents() -> None:
    recorder = Recorder(httpx.Response(200, json=OK))
    await feishu(recorder).deliver_digest(digest=digest(), attempt=1)
    body = recorder.body
    mac = hmac.new(f"{body['timestamp']}\n{SECRET}".encode(), b"", hashlib.sha256)
    assert body["sign"] == base64.b64encode(mac.digest()).decode()
    assert body["msg_type"] == "interactive"
    assert body["card"]["header"]["template"] == "red"


async def test_a_rate_limited_digest_is_retried_like_a_single_alert() -> None:
    recorder = Recorder(
        httpx.Response(200, json={"errcode": 130101, "errmsg": "send too fast"}),
        httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}),
    )
    channel = wecom(recorder)
    first = await channel.deliver_digest(digest=digest(), attempt=1)
    assert first.status is DeliveryStatus.FAILED and first.retry_in == 0.5
    second = await channel.deliver_digest(digest=digest(), attempt=2)
    assert second.status is DeliveryStatus.SENT and second.attempts == 2
    assert recorder.requests[0].content == recorder.requests[1].content


async def test_alertmanager_gets_every_alert_of_a_digest_in_one_post() -> None:
    escalated = alert(
        "Dr Zhao Lei",
        severity=Severity.CRITICAL,
        escalated_from=Severity.WARNING,
        escalated_at=PREVIOUS,
    )
    d = digest([*digest().alerts, escalated])
    recorder = Recorder(httpx.Response(200))
    result = await alertmanager(recorder).deliver_digest(digest=d, attempt=1)
    assert result.status is DeliveryStatus.SENT
    (request,) = recorder.requests
    assert request.url == "http://alertmanager.test:9093/api/v2/alerts"
    alerts = recorder.body
    # Four alerts and, for the escalation, the lower severity ended.
    assert len(alerts) == 6
    by_subject: dict[tuple[str, str], dict[str, Any]] = {
        (a["labels"]["subject"], a["labels"]["severity"]): a for a in alerts
    }
    assert "endsAt" not in by_subject[("dr-li-na", "critical")]
    assert by_subject[("dr-chen-jie", "warning")]["endsAt"] == "2026-11-20T09:30:00Z"
    assert by_subject[("dr-zhao-lei", "warning")]["endsAt"] == "2026-11-19T10:30:00Z"
    for one in alerts:
        assert one["labels"]["alertname"] == "report-rework-rate-high"
        assert one["annotations"]["summary"].endswith(one["annotations"]["subject_name"])


def test_each_firing_alert_of_a_digest_carries_its_acknowledgement_link() -> None:
    from services.notifier.wecom import WeComChannel
    from tests.unit.digest_samples import alert, digest

    linked = alert("Dr Li", ack_url="https://goalwatch.example.org/v1/ack/tok-li")
    over = alert(
        "Dr Wang", state="resolved", ack_url="https://goalwatch.example.org/v1/ack/tok-wang"
    )
    sample = digest([linked, over])
    wecom = WeComChannel(
        url="https://qyapi.test/send?key=k", client=httpx.AsyncClient(), language="en"
    )
    content = wecom.digest_payload(sample)["markdown"]["content"]
    assert "[acknowledge](https://goalwatch.example.org/v1/ack/tok-li)" in content
    assert "tok-wang" not in content  # a resolved alert has nothing to acknowledge
