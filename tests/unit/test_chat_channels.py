"""Chat and Alertmanager channels: payloads, vendor signatures, error codes, limits, escaping.

The signatures are checked here as each vendor documents them (shared/notes/channels.md),
computed in the test, not with the channels' own signers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from goalwatch.contracts import (
    AlertNotification,
    AlertState,
    DeliveryStatus,
    Observation,
    Recipient,
    Severity,
    SubjectRef,
)
from goalwatch.contracts.goals import ImpactedGoal, PathStep
from goalwatch.contracts.impact import FailingGoal, ImpactAnalysis
from goalwatch.contracts.overdue import OverdueGoal
from services.notifier.alertmanager import AlertmanagerChannel
from services.notifier.app import NotifierSettings, build_channels
from services.notifier.dingtalk import DingTalkChannel
from services.notifier.feishu import FeishuChannel
from services.notifier.http_delivery import masked_url
from services.notifier.slack import SlackChannel
from services.notifier.templates import LANGUAGES, Language
from services.notifier.wecom import WeComChannel

SECRET = "SECdeadbeef"
NOW = 1_790_000_000.25  # seconds, with a fraction: DingTalk wants milliseconds
START = datetime(2026, 11, 18, 9, 30, tzinfo=UTC)
WECOM_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-key-123"
DINGTALK_URL = "https://oapi.dingtalk.com/robot/send?access_token=ding-token-123"
FEISHU_URL = "https://open.feishu.cn/open-apis/bot/v2/hook/feishu-hook-123"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/slack-secret-123"
ALERTMANAGER_URL = "http://alertmanager.test:9093"
CREDENTIALS = ("wecom-key-123", "ding-token-123", "feishu-hook-123", "slack-secret-123", SECRET)


def base(**changes: Any) -> AlertNotification:
    fields: dict[str, Any] = {
        "state": AlertState.FIRING,
        "fingerprint": "fp-1",
        "rule_id": "report-rework-rate-high",
        "rule_name": "Report rework rate above 8%",
        "kind": "threshold",
        "severity": Severity.WARNING,
        "subject": SubjectRef(id="li-na", name="Dr Li Na"),
        "metric": "report_rework_rate",
        "value": 0.11,
        "message": "Dr Li Na: report rework rate 11% is above 8% for 3 consecutive days",
        "started_at": START,
        "fired_at": START + timedelta(minutes=1),
        "recipients": [Recipient(id="li-na", name="Dr Li Na", role="subject")],
        "labels": {"department": "radiology", "org-unit": "ward 3"},
    }
    return AlertNotification(**{**fields, **changes})


def history(count: int) -> list[Observation]:
    return [
        Observation(event_id=f"e{i}", time=START + timedelta(days=i), value=0.09 + i / 1000)
        for i in range(count)
    ]


def impact(count: int) -> ImpactAnalysis:
    failing = FailingGoal(
        goal_id="kr-stores",
        title="Open 12 stores",
        type="key_result",
        owner_id="zhao-lei",
        status="invalid",
        previous_status="on_track",
        changed_at=START,
        version=3,
    )
    affected = [
        ImpactedGoal(
            goal_id=f"goal-{i}",
            title=f"Dependent goal number {i}",
            owner_name=f"Owner {i}",
            depth=1 + i % 3,
            path=[PathStep(from_goal="kr-stores", to_goal=f"goal-{i}", link="depends_on", share=1)],
            weight=1.0,
        )
        for i in range(count)
    ]
    return ImpactAnalysis(
        failing_goal=failing, affected=affected, affected_total=count, owners_total=1
    )


def overdue_goal() -> OverdueGoal:
    return OverdueGoal(
        form="behind_plan",
        goal_id="kr-weekly-review",
        title="Review every reworked report weekly",
        type="key_result",
        owner_id="li-na",
        status="at_risk",
        due=START + timedelta(days=30),
        progress=20.0,
        expected_progress=45.0,
        cadence="weekly",
        version=2,
    )


KINDS: dict[str, Callable[[], AlertNotification]] = {
    "threshold": lambda: base(history=history(3)),
    "overdue": lambda: base(kind="overdue", metric="goal_progress", value=20, goal=overdue_goal()),
    "fraud": lambda: base(kind="fraud", metric="visit_recorded", value=40, severity="critical"),
    "dependency_impact": lambda: base(
        kind="dependency_impact", metric="goal_status", value=0, impact=impact(3)
    ),
    "escalation": lambda: base(
        severity=Severity.CRITICAL,
        escalated_from=Severity.WARNING,
        escalated_at=START + timedelta(hours=2),
        history=history(3),
    ),
    "resolved": lambda: base(
        state=AlertState.RESOLVED,
        value=0.05,
        resolved_at=START + timedelta(days=2),
        history=history(4),
    ),
}


class Recorder:
    """Answers from a script and keeps the requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers) or [httpx.Response(200, json={"errcode": 0})]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


def client(recorder: Recorder) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(recorder))


def wecom(recorder: Recorder, language: Language = "zh") -> WeComChannel:
    return WeComChannel(
        url=WECOM_URL,
        client=client(recorder),
        language=language,
        max_attempts=3,
        clock=lambda: NOW,
        jitter=lambda: 0.0,
    )


def dingtalk(recorder: Recorder, language: Language = "zh") -> DingTalkChannel:
    return DingTalkChannel(
        url=DINGTALK_URL,
        secret=SecretStr(SECRET),
        client=client(recorder),
        language=language,
        max_attempts=3,
        clock=lambda: NOW,
        jitter=lambda: 0.0,
    )


def feishu(recorder: Recorder, language: Language = "zh") -> FeishuChannel:
    return FeishuChannel(
        url=FEISHU_URL,
        secret=SecretStr(SECRET),
        client=client(recorder),
        language=language,
        max_attempts=3,
        clock=lambda: NOW,
        jitter=lambda: 0.0,
    )


def slack(recorder: Recorder, language: Language = "en") -> SlackChannel:
    return SlackChannel(
        url=SLACK_URL,
        client=client(recorder),
        language=language,
        max_attempts=3,
        clock=lambda: NOW,
        jitter=lambda: 0.0,
    )


def alertmanager(recorder: Recorder, language: Language = "en") -> AlertmanagerChannel:
    return AlertmanagerChannel(
        url=ALERTMANAGER_URL,
        client=client(recorder),
        language=language,
        generator_url="http://goalwatch.test/v1/alerts/fp-1",
        max_attempts=3,
        clock=lambda: NOW,
        jitter=lambda: 0.0,
    )


ChannelKind = WeComChannel | DingTalkChannel | FeishuChannel | SlackChannel | AlertmanagerChannel
FACTORIES: dict[str, Callable[[Recorder, Language], ChannelKind]] = {
    "wecom": wecom,
    "dingtalk": dingtalk,
    "feishu": feishu,
    "slack": slack,
    "alertmanager": alertmanager,
}


def message_text(name: str, body: Any) -> str:
    """The human-readable text of a request body, per vendor."""
    if name == "wecom":
        return str(body["markdown"]["content"])
    if name == "dingtalk":
        return str(body["markdown"]["title"] + "\n" + body["markdown"]["text"])
    if name == "feishu":
        card = body["card"]
        return str(
            card["header"]["title"]["content"] + "\n" + card["elements"][0]["text"]["content"]
        )
    if name == "slack":
        return str(body["text"] + "\n" + body["blocks"][0]["text"]["text"])
    annotations = body[0]["annotations"]
    return str(annotations["summary"] + "\n" + annotations["description"])


async def send(name: str, notification: AlertNotification, language: Language) -> Any:
    recorder = Recorder(
        httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success"})
    )
    result = await FACTORIES[name](recorder, language).deliver(notification=notification, attempt=1)
    assert result.status is DeliveryStatus.SENT, result
    return recorder.body


# Words each language's messages show, for one kind: the proof the right template ran.
EXPECTED: dict[str, dict[Language, tuple[str, ...]]] = {
    "threshold": {"en": ("Recent values", "0.091"), "zh": ("最近数值", "0.091")},
    "overdue": {
        "en": ("Review every reworked report weekly", "behind plan", "expected 45%"),
        "zh": ("Review every reworked report weekly", "进度落后于计划", "应达 45%"),
    },
    "fraud": {"en": ("Critical", "visit"), "zh": ("严重", "visit")},
    "dependency_impact": {
        "en": ("Open 12 stores", "Goals affected", "Dependent goal number 2"),
        "zh": ("Open 12 stores", "受影响的目标", "Dependent goal number 2"),
    },
    "escalation": {"en": ("Escalated", "warning"), "zh": ("已升级", "升级自")},
    "resolved": {
        "en": ("[Resolved]", "2026-11-20 09:30 UTC"),
        "zh": ("【已恢复】", "2026-11-20 09:30 UTC"),
    },
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("name", sorted(FACTORIES))
async def test_every_kind_renders_in_both_languages(
    name: str, kind: str, language: Language
) -> None:
    body = await send(name, KINDS[kind](), language)
    text = message_text(name, body)
    for word in EXPECTED[kind][language]:
        assert word in text, f"{word!r} missing from the {name} {language} {kind} message:\n{text}"
    assert "Dr Li Na" in text
    other = "规则" if language == "en" else "Rule:"
    assert other not in text  # nothing of the other language's template


async def test_wecom_payload_is_markdown_with_a_coloured_title() -> None:
    body = await send("wecom", base(severity=Severity.CRITICAL), "zh")
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["content"].startswith('<font color="warning">**【严重】')
    resolved = await send("wecom", KINDS["resolved"](), "zh")
    assert resolved["markdown"]["content"].startswith('<font color="info">**【已恢复】')


async def test_dingtalk_signs_the_url_as_dingtalk_documents() -> None:
    recorder = Recorder(httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}))
    await dingtalk(recorder).deliver(notification=base(), attempt=1)
    url = recorder.requests[0].url
    query = urllib.parse.parse_qs(url.query.decode())
    assert query["access_token"] == ["ding-token-123"]
    timestamp = query["timestamp"][0]
    assert timestamp == str(int(NOW * 1000))  # milliseconds
    # sign = urlencode(base64(HMAC_SHA256(key=secret, msg=f"{timestamp}\n{secret}")))
    mac = hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), hashlib.sha256)
    expected = base64.b64encode(mac.digest()).decode()
    assert query["sign"] == [expected]  # parse_qs undid the URL encoding
    raw = url.query.decode()
    assert f"sign={urllib.parse.quote_plus(expected)}" in raw
    body = recorder.body
    assert body["msgtype"] == "markdown"
    assert set(body["markdown"]) == {"title", "text"}
    assert body["at"] == {"atMobiles": [], "isAtAll": False}


async def test_feishu_signs_the_body_as_feishu_documents() -> None:
    recorder = Recorder(httpx.Response(200, json={"code": 0, "msg": "success"}))
    await feishu(recorder).deliver(notification=base(severity=Severity.CRITICAL), attempt=1)
    body = recorder.body
    assert body["timestamp"] == str(int(NOW))  # seconds
    # sign = base64(HMAC_SHA256(key=f"{timestamp}\n{secret}", msg=b""))
    mac = hmac.new(f"{body['timestamp']}\n{SECRET}".encode(), b"", hashlib.sha256)
    assert body["sign"] == base64.b64encode(mac.digest()).decode()
    assert body["msg_type"] == "interactive"
    header = body["card"]["header"]
    assert header["template"] == "red"
    assert header["title"]["tag"] == "plain_text"
    assert body["card"]["elements"][0]["text"]["tag"] == "lark_md"


@pytest.mark.parametrize(
    ("severity", "state", "colour"),
    [
        ("info", "firing", "blue"),
        ("warning", "firing", "yellow"),
        ("critical", "firing", "red"),
        ("critical", "resolved", "green"),
    ],
)
async def test_feishu_header_colour_follows_severity(
    severity: str, state: str, colour: str
) -> None:
    body = await send("feishu", base(severity=severity, state=state), "en")
    assert body["card"]["header"]["template"] == colour


async def test_slack_payload_has_blocks_and_a_text_fallback() -> None:
    body = await send("slack", base(), "en")
    assert body["text"] == "[Warning] Report rework rate above 8% · Dr Li Na"
    (block,) = body["blocks"]
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    assert block["text"]["text"].startswith("*[Warning] Report rework rate")
    assert "*Severity:* warning" in block["text"]["text"]


async def test_alertmanager_payload_follows_the_v2_api() -> None:
    recorder = Recorder(httpx.Response(200))
    await alertmanager(recorder).deliver(notification=KINDS["threshold"](), attempt=1)
    assert recorder.requests[0].url == "http://alertmanager.test:9093/api/v2/alerts"
    (alert,) = recorder.body
    assert alert["labels"] == {
        "alertname": "report-rework-rate-high",
        "severity": "warning",
        "subject": "li-na",
        "metric": "report_rework_rate",
        "fingerprint": "fp-1",
        "kind": "threshold",
        "source": "goalwatch",
        "department": "radiology",
        "org_unit": "ward 3",  # made a valid label name
    }
    assert alert["annotations"]["summary"] == "[Warning] Report rework rate above 8% · Dr Li Na"
    assert "Recent values" in alert["annotations"]["description"]
    assert alert["startsAt"] == "2026-11-18T09:30:00Z"
    assert "endsAt" not in alert
    assert alert["generatorURL"] == "http://goalwatch.test/v1/alerts/fp-1"


async def test_alertmanager_resolved_has_ends_at_and_escalation_ends_the_lower_severity() -> None:
    (resolved,) = await send("alertmanager", KINDS["resolved"](), "en")
    assert resolved["endsAt"] == "2026-11-20T09:30:00Z"
    raised, ended = await send("alertmanager", KINDS["escalation"](), "en")
    assert raised["labels"]["severity"] == "critical" and "endsAt" not in raised
    assert ended["labels"]["severity"] == "warning"
    assert ended["endsAt"] == "2026-11-18T11:30:00Z"


@pytest.mark.parametrize(
    ("name", "answer", "retried"),
    [
        ("wecom", {"errcode": 130101, "errmsg": "send too fast"}, True),
        ("wecom", {"errcode": 93000, "errmsg": "invalid webhook url"}, False),
        ("dingtalk", {"errcode": 130101, "errmsg": "send too fast"}, True),
        ("dingtalk", {"errcode": 410100, "errmsg": "send too fast"}, True),
        ("dingtalk", {"errcode": 310000, "errmsg": "sign not match"}, False),
        ("feishu", {"code": 9499, "msg": "too many request"}, True),
        ("feishu", {"code": 19021, "msg": "sign match fail"}, False),
        ("feishu", {"StatusCode": 19024, "StatusMessage": "Key Words Not Found"}, False),
    ],
)
async def test_error_codes_in_a_200_body(name: str, answer: dict[str, Any], retried: bool) -> None:
    recorder = Recorder(httpx.Response(200, json=answer))
    result = await FACTORIES[name](recorder, "zh").deliver(notification=base(), attempt=1)
    assert result.status is DeliveryStatus.FAILED
    assert result.error is not None and str(next(iter(answer.values()))) in result.error
    assert (result.retry_in is not None) is retried
    if retried:
        assert result.retry_in == 0.5  # the shared backoff, first attempt, no jitter


async def test_rate_limited_then_ok_is_sent_on_the_next_attempt() -> None:
    recorder = Recorder(
        httpx.Response(200, json={"errcode": 130101, "errmsg": "send too fast"}),
        httpx.Response(200, json={"errcode": 0, "errmsg": "ok"}),
    )
    channel = wecom(recorder)
    first = await channel.deliver(notification=base(), attempt=1)
    second = await channel.deliver(notification=base(), attempt=2)
    assert first.retry_in is not None
    assert second.status is DeliveryStatus.SENT and second.attempts == 2


async def test_rate_limit_code_on_the_last_attempt_gives_up() -> None:
    recorder = Recorder(httpx.Response(200, json={"errcode": 130101, "errmsg": "too fast"}))
    result = await wecom(recorder).deliver(notification=base(), attempt=3)
    assert result.status is DeliveryStatus.FAILED and result.retry_in is None


async def test_slack_429_retry_after_is_honoured_and_capped() -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "7"}, text="rate_limited"))
    result = await slack(recorder).deliver(notification=base(), attempt=1)
    assert result.retry_in == 7.0
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "3600"}))
    assert (await slack(recorder).deliver(notification=base(), attempt=1)).retry_in == 30.0
    recorder = Recorder(httpx.Response(404, text="channel_not_found"))
    gone = await slack(recorder).deliver(notification=base(), attempt=1)
    assert gone.retry_in is None and gone.error is not None and "404" in gone.error


@pytest.mark.parametrize(("status", "retried"), [(400, False), (503, True)])
async def test_alertmanager_errors(status: int, retried: bool) -> None:
    recorder = Recorder(httpx.Response(status, text="bad"))
    result = await alertmanager(recorder).deliver(notification=base(), attempt=1)
    assert result.status is DeliveryStatus.FAILED
    assert (result.retry_in is not None) is retried


@pytest.mark.parametrize("name", sorted(FACTORIES))
async def test_errors_name_no_credential(name: str) -> None:
    recorder = Recorder(httpx.ConnectError("refused"), httpx.Response(403, text="forbidden"))
    channel = FACTORIES[name](recorder, "en")
    for attempt in (1, 2):
        result = await channel.deliver(notification=base(), attempt=attempt)
        assert result.error is not None
        for credential in CREDENTIALS:
            assert credential not in result.error


def test_masked_url_hides_path_credentials() -> None:
    assert masked_url(FEISHU_URL, keep_segments=4) == (
        "https://open.feishu.cn/open-apis/bot/v2/hook/***"
    )
    assert masked_url(SLACK_URL, keep_segments=1) == "https://hooks.slack.com/services/***"


# Each vendor's documented limit, measured the way the vendor counts it.
LIMITS: dict[str, Callable[[Any], int]] = {
    "wecom": lambda body: len(body["markdown"]["content"].encode()),
    "dingtalk": lambda body: len(body["markdown"]["text"].encode()),
    "feishu": lambda body: len(json.dumps(body, ensure_ascii=False).encode()),
    "slack": lambda body: len(body["blocks"][0]["text"]["text"]),
    "alertmanager": lambda body: len(body[0]["annotations"]["description"]),
}
MAXIMA = {"wecom": 4096, "dingtalk": 4096, "feishu": 20 * 1024, "slack": 3000, "alertmanager": 4096}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", sorted(FACTORIES))
async def test_500_impacted_goals_fit_the_limit(name: str, language: Language) -> None:
    long_titles = impact(500).model_copy(
        update={
            "affected": [
                g.model_copy(update={"title": f"{g.title} " + "目标标题很长" * 20})
                for g in impact(500).affected
            ]
        }
    )
    notification = base(kind="dependency_impact", impact=long_titles)
    body = await send(name, notification, language)
    assert LIMITS[name](body) <= MAXIMA[name]
    text = message_text(name, body)
    shown = text.count("Dependent goal number")
    assert 0 < shown < 500
    more = f"… and {500 - shown} more" if language == "en" else f"… 另有 {500 - shown} 个"
    assert more in text


@pytest.mark.parametrize("name", ["wecom", "slack"])
async def test_long_history_keeps_the_latest(name: str) -> None:
    body = await send(name, base(history=history(200)), "en")
    text = message_text(name, body)
    assert "… and 180 earlier" in text  # at most 20 items: more is not read
    assert "0.289" in text  # the latest observation
    assert "0.179" not in text


async def test_a_message_too_long_even_without_lists_is_cut() -> None:
    body = await send("wecom", base(message="很长的消息" * 1000), "zh")
    content = body["markdown"]["content"]
    assert len(content.encode()) <= 4096
    assert content.endswith("…")


HOSTILE = '*Li_Na* [x](http://evil.test) <font color="red">`#1`</font> ~~a~~\n# heading'


@pytest.mark.parametrize("name", ["wecom", "dingtalk"])
async def test_markdown_characters_in_a_name_are_escaped(name: str) -> None:
    body = await send(name, base(subject=SubjectRef(id="li-na", name=HOSTILE)), "en")
    # DingTalk's title is plain text (the chat list shows it as is); the markdown is the text.
    text = body["markdown"]["content" if name == "wecom" else "text"]
    assert "*Li_Na*" not in text and "\\*Li\\_Na\\*" in text
    assert '<font color="red">' not in text and "&lt;font" in text
    assert "\\[x\\](http://evil.test)" in text
    assert "\n# heading" not in text  # a line break in a name cannot start a heading
    # Only goalwatch's own tag opens a font.
    assert text.count("<font") == (1 if name == "wecom" else 0)


async def test_lark_md_characters_in_a_name_are_entities() -> None:
    body = await send("feishu", base(subject=SubjectRef(id="li-na", name=HOSTILE)), "en")
    content = body["card"]["elements"][0]["text"]["content"]
    assert "&#42;Li&#95;Na&#42;" in content
    assert "<font" not in content and "[x]" not in content and "`" not in content
    # The header is plain text: shown as written, on one line.
    assert body["card"]["header"]["title"]["content"].endswith(HOSTILE.replace("\n", " "))


async def test_slack_entities_and_formatting_characters_are_neutralised() -> None:
    name = "<!channel> *Li_Na* & co"
    body = await send("slack", base(subject=SubjectRef(id="li-na", name=name)), "en")
    text = body["blocks"][0]["text"]["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert "&amp; co" in text
    assert "*Li_Na*" not in text and "\u200b*\u200bLi\u200b_\u200bNa\u200b*\u200b" in text
    assert "<!channel>" not in body["text"]


def test_settings_register_every_configured_channel() -> None:
    settings = NotifierSettings(
        wecom_url=WECOM_URL,
        dingtalk_url=DINGTALK_URL,
        dingtalk_secret=SECRET,
        feishu_url=FEISHU_URL,
        feishu_secret=SECRET,
        slack_url=SLACK_URL,
        slack_language="zh",
        alertmanager_url=ALERTMANAGER_URL,
    )
    channels = build_channels(settings, client=httpx.AsyncClient())
    assert [c.name for c in channels] == ["wecom", "dingtalk", "feishu", "slack", "alertmanager"]
    languages = {c.name: c.language for c in channels}
    assert languages == {
        "wecom": "zh",
        "dingtalk": "zh",
        "feishu": "zh",
        "slack": "zh",
        "alertmanager": "en",
    }
    assert SECRET not in repr(settings)


@pytest.mark.parametrize("vendor", ["dingtalk", "feishu"])
def test_a_signed_vendor_without_its_secret_stops_start_up(vendor: str) -> None:
    with pytest.raises(ValidationError, match=f"GOALWATCH_{vendor.upper()}_SECRET is required"):
        NotifierSettings(**{f"{vendor}_url": "https://robot.test/send"})


def test_chat_urls_must_be_http_and_languages_known() -> None:
    with pytest.raises(ValidationError, match="GOALWATCH_SLACK_URL must be an http"):
        NotifierSettings(slack_url="hooks.slack.com/services/x")
    with pytest.raises(ValidationError, match="wecom_language"):
        NotifierSettings(wecom_language="fr")
    assert NotifierSettings(wecom_url=" ").wecom_url is None


ACK_URL = "https://goalwatch.example.org/v1/ack/0123456789abcdef0123.1790604800..c2ln_bmF0dXJl-x"
LINKS: dict[str, str] = {
    "wecom": f"[我来处理]({ACK_URL})",
    "dingtalk": f"[我来处理]({ACK_URL})",
    "feishu": f"[我来处理]({ACK_URL})",
    "slack": f"<{ACK_URL}|I'm on it>",
    "alertmanager": f"Acknowledge: {ACK_URL}",
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
async def test_a_firing_shows_its_acknowledgement_link_as_a_link_of_the_channel(
    name: str,
) -> None:
    language: Language = "en" if name in ("slack", "alertmanager") else "zh"
    text = message_text(name, await send(name, base(ack_url=ACK_URL), language))
    assert LINKS[name] in text, text
    # Not cut or escaped into something else by the channel's fitting to its limit.
    long = base(ack_url=ACK_URL, history=history(200), impact=impact(500))
    assert LINKS[name] in message_text(name, await send(name, long, language))
    without = message_text(name, await send(name, base(), language))
    assert "/v1/ack/" not in without


async def test_alertmanager_carries_the_link_as_an_annotation() -> None:
    body = await send("alertmanager", base(ack_url=ACK_URL), "en")
    assert body[0]["annotations"]["ack_url"] == ACK_URL
    plain_body = await send("alertmanager", base(), "en")
    assert "ack_url" not in plain_body[0]["annotations"]
