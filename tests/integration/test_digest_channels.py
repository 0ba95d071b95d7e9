"""Digests (several alerts in one message) posted by each channel to real receivers.

No stack: each channel's ``deliver_digest`` is called directly against the vendor receivers of
``test_chat_channels`` (real HTTP servers that verify DingTalk's and Feishu's signatures and
WeCom's key, and answer as the vendors do), a real Prometheus Alertmanager (a stand-in for
its documented API only when it cannot be installed, as there), and a real SMTP server
(aiosmtpd with STARTTLS and AUTH required, as in ``test_email``).
"""

from __future__ import annotations

# The Chinese messages are written with full-width punctuation, and so are the expectations.
# ruff: noqa: RUF001
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from goalwatch.contracts import AlertDigest, AlertNotification, DeliveryStatus
from goalwatch.dev.stack import free_port
from services.notifier.alertmanager import AlertmanagerChannel
from services.notifier.dingtalk import DingTalkChannel
from services.notifier.email import EmailChannel
from services.notifier.feishu import FeishuChannel
from services.notifier.slack import SlackChannel
from services.notifier.templates import Language
from services.notifier.wecom import WeComChannel
from tests.integration.helpers import unique
from tests.integration.test_chat_channels import (
    DINGTALK_SECRET,
    FEISHU_SECRET,
    Alertmanager,
    AlertmanagerShape,
    VendorReceiver,
    _until_ready,
    alertmanager_binary,
)
from tests.integration.test_email import LOGIN, PASSWORD, SENDER, MailServer, self_signed
from tests.unit.digest_samples import START, digest, many

pytestmark = pytest.mark.integration

ChatChannel = WeComChannel | DingTalkChannel | FeishuChannel | SlackChannel


def recent(d: AlertDigest) -> AlertDigest:
    """``d`` with every time moved so that it ended a few minutes ago: an Alertmanager
    takes a resolved alert's ``endsAt`` as said, so it must lie in the past."""
    shift = datetime.now(UTC) - timedelta(minutes=5) - (START + timedelta(days=3))

    def moved(a: AlertNotification) -> AlertNotification:
        times = ("started_at", "fired_at", "escalated_at", "resolved_at")
        return a.model_copy(
            update={t: getattr(a, t) + shift for t in times if getattr(a, t) is not None}
        )

    return d.model_copy(
        update={
            "alerts": [moved(a) for a in d.alerts],
            "previous_at": d.previous_at + shift if d.previous_at else None,
            "created_at": d.created_at + shift,
        }
    )


@pytest.fixture(scope="module")
def receivers() -> Iterator[dict[str, VendorReceiver]]:
    servers = {style: VendorReceiver(style) for style in ("wecom", "dingtalk", "feishu", "slack")}
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def chat_channel(
    style: str, receivers: dict[str, VendorReceiver], http: httpx.AsyncClient, language: Language
) -> ChatChannel:
    url = receivers[style].url
    options: dict[str, Any] = {"url": url, "client": http, "language": language}
    if style == "wecom":
        return WeComChannel(**options)
    if style == "dingtalk":
        return DingTalkChannel(**options, secret=SecretStr(DINGTALK_SECRET))
    if style == "feishu":
        return FeishuChannel(**options, secret=SecretStr(FEISHU_SECRET))
    return SlackChannel(**options)


def lines(body: Any, style: str) -> str:
    """The whole message as the vendor got it, as one text."""
    if style == "wecom":
        return str(body["markdown"]["content"])
    if style == "dingtalk":
        return str(body["markdown"]["title"] + "\n" + body["markdown"]["text"])
    if style == "feishu":
        card = body["card"]
        return str(
            card["header"]["title"]["content"] + "\n" + card["elements"][0]["text"]["content"]
        )
    return "\n".join([body["text"], *(b["text"]["text"] for b in body["blocks"])])


STYLES = ("wecom", "dingtalk", "feishu", "slack")
TITLES: dict[Language, str] = {
    "en": "[Critical] 3 alerts firing, 1 resolved — Report rework rate above 8%",
    "zh": "【严重】3 条告警，1 条已恢复 — Report rework rate above 8%",
}


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("style", STYLES)
async def test_a_digest_reaches_each_chat_vendor_signed(
    style: str, language: Language, receivers: dict[str, VendorReceiver], http: httpx.AsyncClient
) -> None:
    receiver = receivers[style]
    marker = unique("grp")
    d = recent(digest(group_labels={"department": "cardiology", "batch": marker}))
    result = await chat_channel(style, receivers, http, language).deliver_digest(
        digest=d, attempt=1
    )
    assert result.status is DeliveryStatus.SENT, result.error
    (call,) = receiver.about(marker)
    assert call.signature_ok and call.accepted
    text = lines(call.body, style)
    assert TITLES[language] in text
    for subject in ("Dr Li Na", "Dr Wang Hui", "Dr Zhao Lei", "Dr Chen Jie"):
        assert subject in text
    assert ("Resolved (1)" if language == "en" else "已恢复（1）") in text


@pytest.mark.parametrize("style", STYLES)
async def test_a_burst_of_alerts_fits_what_each_vendor_accepts(
    style: str, receivers: dict[str, VendorReceiver], http: httpx.AsyncClient
) -> None:
    receiver = receivers[style]
    marker = unique("burst")
    name = f"{marker} " + "医生" * 40
    d = recent(many(300, name=name, resolved=30))
    # The marker in the group labels too: Slack's receiver reads the first block only.
    d = d.model_copy(update={"group_labels": {**d.group_labels, "batch": marker}})
    result = await chat_channel(style, receivers, http, "zh").deliver_digest(digest=d, attempt=1)
    assert result.status is DeliveryStatus.SENT, result.error
    (call,) = receiver.about(marker)
    assert call.accepted
    body = call.body
    if style in ("wecom", "dingtalk"):
        key = "content" if style == "wecom" else "text"
        assert len(body["markdown"][key].encode()) <= 4096
    elif style == "feishu":
        assert len(json.dumps(body, ensure_ascii=False).encode()) <= 20 * 1024
    else:
        assert len(body["blocks"]) <= 50
        assert all(len(b["text"]["text"]) <= 3000 for b in body["blocks"])
    text = lines(body, style)
    shown = text.count(name)
    assert 0 < shown <= 20
    assert f"… 另有 {300 - shown} 条" in text
    assert "300 条告警，30 条已恢复" in text


@pytest.mark.parametrize("style", STYLES)
async def test_a_rate_limited_digest_is_sent_again_unchanged(
    style: str, receivers: dict[str, VendorReceiver], http: httpx.AsyncClient
) -> None:
    receiver = receivers[style]
    marker = unique("limited")
    receiver.throttle.add(marker)
    d = recent(digest(reason="rate_limit", group_labels={"batch": marker}))
    channel = chat_channel(style, receivers, http, "en")
    first = await channel.deliver_digest(digest=d, attempt=1)
    assert first.status is DeliveryStatus.FAILED and first.retry_in is not None
    second = await channel.deliver_digest(digest=d, attempt=2)
    assert second.status is DeliveryStatus.SENT, second.error
    calls = receiver.about(marker)
    assert [c.accepted for c in calls] == [False, True]
    assert all(c.signature_ok for c in calls)
    assert lines(calls[0].body, style) == lines(calls[1].body, style)
    assert "Merged: more alerts than" in lines(calls[1].body, style)


@pytest.fixture(scope="module")
def alertmanager_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    binary = alertmanager_binary()
    if binary is None:
        print("prometheus-alertmanager could not be installed: testing against its documented API")
        shape = AlertmanagerShape()
        yield Alertmanager(shape.url, real=False)
        shape.close()
        return
    home = tmp_path_factory.mktemp("alertmanager-digest")
    config = home / "alertmanager.yml"
    config.write_text('route: {receiver: "null"}\nreceivers: [{name: "null"}]\n')
    port = free_port()
    log = (home / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _until_ready(f"http://127.0.0.1:{port}/-/ready", process, Path(log.name))
        yield Alertmanager(f"http://127.0.0.1:{port}", real=True)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


async def test_the_alertmanager_takes_a_digest_in_one_post(
    alertmanager_url: Alertmanager, http: httpx.AsyncClient
) -> None:
    department = unique("dept")
    d = recent(digest())
    # Every alert carries the department label, so this test finds its own.
    d = d.model_copy(
        update={
            "alerts": [
                a.model_copy(update={"labels": {"department": department}}) for a in d.alerts
            ]
        }
    )
    channel = AlertmanagerChannel(url=alertmanager_url.url, client=http)
    result = await channel.deliver_digest(digest=d, attempt=1)
    assert result.status is DeliveryStatus.SENT, result.error
    # The POST has returned: the Alertmanager has stored the alerts.
    response = await http.get(
        f"{alertmanager_url.url}/api/v2/alerts", params={"filter": f'department="{department}"'}
    )
    assert response.status_code == 200, response.text
    active = [a for a in response.json() if a["labels"].get("department") == department]
    # The three firing ones are there; the resolved one ended in the past.
    assert sorted(a["labels"]["subject"] for a in active) == [
        "dr-li-na",
        "dr-wang-hui",
        "dr-zhao-lei",
    ]
    severities = {a["labels"]["subject"]: a["labels"]["severity"] for a in active}
    assert severities["dr-li-na"] == "critical"
    if alertmanager_url.real:
        assert {a["status"]["state"] for a in active} == {"active"}


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MailServer, Path]]:
    cert, key = self_signed(tmp_path_factory.mktemp("smtp-tls-digest"))
    server = MailServer(cert, key)
    yield server, cert
    server.close()


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert isinstance(part, EmailMessage), f"no text/{subtype} part"
    return str(part.get_content())


async def test_a_digest_arrives_as_one_mail_over_starttls(
    smtp: tuple[MailServer, Path],
) -> None:
    server, cert = smtp
    address = f"{unique('head')}@example.org"
    d = recent(digest())
    d = d.model_copy(
        update={"recipients": [r.model_copy(update={"email": address}) for r in d.recipients[:1]]}
    )
    channel = EmailChannel(
        host="127.0.0.1",
        port=server.port,
        security="starttls",
        username=LOGIN,
        password=SecretStr(PASSWORD),
        sender=f"Goalwatch <{SENDER}>",
        ca_file=cert,
        language="zh",
    )
    result = await channel.deliver_digest(digest=d, attempt=1)
    assert result.status is DeliveryStatus.SENT, result.error
    # The server answered 250 after recording the mail: it is there.
    (mail,) = server.to(address)
    assert (mail.tls, mail.login, mail.envelope_from) == (True, LOGIN, SENDER)
    message = mail.message
    assert message["Subject"] == "【严重】3 条告警，1 条已恢复 — Report rework rate above 8%"
    assert message["Message-ID"] == f"<{d.idempotency_key}@goalwatch.test>"
    assert message["X-Goalwatch-Digest"] == d.id
    text, html = body(message, "plain"), body(message, "html")
    for subject in ("Dr Li Na", "Dr Wang Hui", "Dr Zhao Lei", "Dr Chen Jie"):
        assert subject in text and subject in html
    assert "自上次通知以来已恢复（1 条）" in text
    assert html.count("<li") == 4
