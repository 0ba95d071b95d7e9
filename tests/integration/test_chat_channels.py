"""WeCom, DingTalk, Feishu, Slack and Alertmanager channels through the running services.

One stack for the module, with every channel pointed at a real receiver: an HTTP server per
vendor style that checks the request the way the vendor does (DingTalk's signed query,
Feishu's signed body, WeCom's key) and answers as the vendor does (errcode JSON in a 200),
and a real Prometheus Alertmanager (the Debian package ``prometheus-alertmanager``, installed
here when missing). Only if it cannot be installed does a stand-in that checks the
documented ``/api/v2/alerts`` shape take its place; the test then says so in its output.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from goalwatch.dev.stack import Stack, free_port
from tests.integration.conftest import WebhookReceiver, stack_of_its_own
from tests.integration.helpers import add_doctor, await_drained, post_events, rework_event

pytestmark = pytest.mark.integration

DINGTALK_SECRET = "SEC-dingtalk-integration"
FEISHU_SECRET = "feishu-integration-secret"
WECOM_KEY = "wecom-integration-key"
DINGTALK_TOKEN = "dingtalk-integration-token"
# Both vendors refuse a timestamp more than an hour from their clock.
SIGNATURE_WINDOW_S = 3600


def dingtalk_signature_ok(query: dict[str, list[str]]) -> bool:
    """DingTalk's check: timestamp (ms) within an hour, and
    sign == base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))."""
    try:
        timestamp, sign = query["timestamp"][0], query["sign"][0]
        stamp = int(timestamp)
    except (KeyError, ValueError):
        return False
    if abs(time.time() * 1000 - stamp) > SIGNATURE_WINDOW_S * 1000:
        return False
    mac = hmac.new(
        DINGTALK_SECRET.encode(), f"{timestamp}\n{DINGTALK_SECRET}".encode(), hashlib.sha256
    )
    return hmac.compare_digest(base64.b64encode(mac.digest()).decode(), sign)


def feishu_signature_ok(body: dict[str, Any]) -> bool:
    """Feishu's check: timestamp (s) within an hour, and
    sign == base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))."""
    timestamp, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW_S:
        return False
    mac = hmac.new(f"{timestamp}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256)
    return hmac.compare_digest(base64.b64encode(mac.digest()).decode(), sign)


@dataclass(frozen=True)
class VendorCall:
    """One request a vendor receiver got and what it answered."""

    text: str  # the message as a reader sees it
    body: Any
    accepted: bool
    signature_ok: bool


class VendorReceiver:
    """A real HTTP server answering like one chat vendor.

    ``style`` is ``wecom``, ``dingtalk``, ``feishu`` or ``slack``. A message mentioning a word
    in :attr:`throttle` is refused once with the vendor's rate-limit answer (WeCom and
    DingTalk errcode 130101, Feishu code 9499, Slack HTTP 429), then accepted.
    """

    RATE_LIMITED: ClassVar[dict[str, tuple[int, dict[str, Any] | None]]] = {
        "wecom": (200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
        "dingtalk": (200, {"errcode": 130101, "errmsg": "send too fast"}),
        "feishu": (200, {"code": 9499, "msg": "too many request"}),
        "slack": (429, None),
    }
    BAD_SIGNATURE: ClassVar[dict[str, dict[str, Any]]] = {
        "wecom": {"errcode": 93000, "errmsg": "invalid webhook url"},
        "dingtalk": {"errcode": 310000, "errmsg": "sign not match"},
        "feishu": {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"},
    }
    OK: ClassVar[dict[str, dict[str, Any] | None]] = {
        "wecom": {"errcode": 0, "errmsg": "ok"},
        "dingtalk": {"errcode": 0, "errmsg": "ok"},
        "feishu": {"code": 0, "msg": "success", "data": {}},
        "slack": None,  # Slack answers the plain text "ok"
    }
    PATHS: ClassVar[dict[str, str]] = {
        "wecom": "/cgi-bin/webhook/send",
        "dingtalk": "/robot/send",
        "feishu": "/open-apis/bot/v2/hook/integration-hook",
        "slack": "/services/T0/B0/integration-secret",
    }

    def __init__(self, style: str) -> None:
        self.style = style
        self.calls: list[VendorCall] = []
        self.throttle: set[str] = set()
        self._throttled: set[str] = set()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                path, _, query = self.path.partition("?")
                status, answer = receiver._answer(path, urllib.parse.parse_qs(query), raw)
                payload = b"ok" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}{self.PATHS[style]}"
        if style == "wecom":
            self.url += f"?key={WECOM_KEY}"
        elif style == "dingtalk":
            self.url += f"?access_token={DINGTALK_TOKEN}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _answer(
        self, path: str, query: dict[str, list[str]], raw: bytes
    ) -> tuple[int, dict[str, Any] | None]:
        body = json.loads(raw)
        if self.style == "wecom":
            signature_ok = query.get("key") == [WECOM_KEY]
            text = body["markdown"]["content"]
        elif self.style == "dingtalk":
            signature_ok = dingtalk_signature_ok(query) and query.get("access_token") == [
                DINGTALK_TOKEN
            ]
            text = body["markdown"]["title"] + "\n" + body["markdown"]["text"]
        elif self.style == "feishu":
            signature_ok = feishu_signature_ok(body)
            card = body["card"]
            text = card["header"]["title"]["content"] + "\n"
            text += card["elements"][0]["text"]["content"]
        else:
            signature_ok = True  # the URL is the secret
            text = body["text"] + "\n" + body["blocks"][0]["text"]["text"]
        if path != self.PATHS[self.style]:
            signature_ok = False
        with self._changed:
            throttled = next(
                (w for w in self.throttle if w in text and w not in self._throttled), None
            )
            if not signature_ok:
                status, answer = (
                    (404, None) if self.style == "slack" else (200, self.BAD_SIGNATURE[self.style])
                )
            elif throttled is not None:
                self._throttled.add(throttled)
                status, answer = self.RATE_LIMITED[self.style]
            else:
                status, answer = 200, self.OK[self.style]
            accepted = signature_ok and throttled is None
            self.calls.append(VendorCall(text, body, accepted, signature_ok))
            self._changed.notify_all()
        return status, answer

    def about(self, word: str) -> list[VendorCall]:
        """Requests whose message mentions ``word``, in arrival order."""
        with self._changed:
            return [c for c in self.calls if word in c.text]

    def wait_for(self, predicate: Callable[[list[VendorCall]], bool], timeout: float = 30) -> None:
        """Block until ``predicate(calls)`` holds; fail after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.calls), timeout=timeout):
                raise AssertionError(
                    f"{self.style}: expected messages did not arrive in {timeout} s; got "
                    f"{[c.text for c in self.calls]}"
                )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def alertmanager_binary() -> str | None:
    """The Alertmanager executable, installing the Debian package if it is missing."""
    for name in ("prometheus-alertmanager", "alertmanager"):
        if (found := shutil.which(name)) is not None:
            return found
    if shutil.which("apt-get") is None:
        return None
    # The package's service must not start on its own (and take port 9093): no init here.
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    command.append("prometheus-alertmanager")
    prefix = [] if _is_root() else ["sudo", "-n"]
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    done = subprocess.run([*prefix, *command], capture_output=True, env=env, timeout=300)
    if done.returncode != 0:
        print(f"apt-get install prometheus-alertmanager failed: {done.stderr[-500:]!r}")
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _is_root() -> bool:
    return os.geteuid() == 0


class AlertmanagerShape:
    """Stand-in used only when the real Alertmanager cannot be installed: accepts
    ``POST /api/v2/alerts`` bodies that match the documented schema (a list of postable
    alerts: ``labels`` of strings with ``alertname``, optional ``annotations``, RFC 3339
    ``startsAt``/``endsAt``, ``generatorURL``) and lists the active ones on GET."""

    def __init__(self) -> None:
        self.alerts: dict[str, dict[str, Any]] = {}
        shape = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = self.path == "/api/v2/alerts" and shape.accept(json.loads(raw))
                self.send_response(200 if ok else 400)
                self.end_headers()

            def do_GET(self) -> None:
                now = time.time()
                active = [
                    a
                    for a in shape.alerts.values()
                    if "endsAt" not in a or _epoch(a["endsAt"]) > now
                ]
                payload = json.dumps(active).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def accept(self, alerts: Any) -> bool:
        if not isinstance(alerts, list):
            return False
        for alert in alerts:
            labels = alert.get("labels")
            if not isinstance(labels, dict) or "alertname" not in labels:
                return False
            if not all(isinstance(v, str) for v in labels.values()):
                return False
            if set(alert) - {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}:
                return False
            for field in ("startsAt", "endsAt"):
                if field in alert:
                    _epoch(alert[field])
            key = json.dumps(labels, sort_keys=True)
            self.alerts[key] = alert
        return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class Alertmanager:
    url: str
    real: bool


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    binary = alertmanager_binary()
    if binary is None:
        print("prometheus-alertmanager could not be installed: testing against its documented API")
        shape = AlertmanagerShape()
        yield Alertmanager(shape.url, real=False)
        shape.close()
        return
    home = tmp_path_factory.mktemp("alertmanager")
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
            "--cluster.listen-address=",  # one instance: no gossip port
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until_ready(f"{url}/-/ready", process, Path(log.name))
        yield Alertmanager(url, real=True)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"alertmanager exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a readiness probe, not waiting for an outcome
    raise AssertionError(f"alertmanager not ready after 30 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def vendors() -> Iterator[dict[str, VendorReceiver]]:
    receivers = {style: VendorReceiver(style) for style in ("wecom", "dingtalk", "feishu", "slack")}
    yield receivers
    for receiver in receivers.values():
        receiver.close()


@pytest.fixture(scope="module")
def chat_stack(
    tmp_path_factory: pytest.TempPathFactory,
    webhook: WebhookReceiver,
    vendors: dict[str, VendorReceiver],
    alertmanager: Alertmanager,
) -> Iterator[Stack]:
    env = {
        "GOALWATCH_WECOM_URL": vendors["wecom"].url,  # zh by default
        "GOALWATCH_DINGTALK_URL": vendors["dingtalk"].url,
        "GOALWATCH_DINGTALK_SECRET": DINGTALK_SECRET,
        "GOALWATCH_DINGTALK_LANGUAGE": "en",
        "GOALWATCH_FEISHU_URL": vendors["feishu"].url,  # zh by default
        "GOALWATCH_FEISHU_SECRET": FEISHU_SECRET,
        "GOALWATCH_SLACK_URL": vendors["slack"].url,
        "GOALWATCH_SLACK_LANGUAGE": "zh",
        "GOALWATCH_ALERTMANAGER_URL": alertmanager.url,  # en by default
        "GOALWATCH_WEBHOOK_MAX_ATTEMPTS": "5",
        "GOALWATCH_WEBHOOK_BACKOFF": "0.05",
    }
    with stack_of_its_own(tmp_path_factory, webhook, name="chat", env=env) as running:
        yield running


def alerts_in(alertmanager: Alertmanager, subject: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{alertmanager.url}/api/v2/alerts", params={"filter": f'subject="{subject}"'}
    )
    assert response.status_code == 200, response.text
    return [a for a in response.json() if a["labels"].get("subject") == subject]


def wait_for_alerts(
    alertmanager: Alertmanager,
    subject: str,
    predicate: Callable[[list[dict[str, Any]]], bool],
) -> list[dict[str, Any]]:
    """Poll the Alertmanager's API (it offers no way to be told) until ``predicate`` holds."""
    deadline = time.monotonic() + 30
    while True:
        alerts = alerts_in(alertmanager, subject)
        if predicate(alerts):
            return alerts
        if time.monotonic() > deadline:
            raise AssertionError(f"alertmanager: {subject} alerts are {alerts}")
        time.sleep(0.1)


def test_the_vendor_checks_can_fail() -> None:
    # The receivers' verification refuses a wrong signature, so the checks below mean something.
    stamp = str(int(time.time() * 1000))
    assert not dingtalk_signature_ok({"timestamp": [stamp], "sign": ["bm9wZQ=="]})
    assert not feishu_signature_ok({"timestamp": str(int(time.time())), "sign": "bm9wZQ=="})
    old = str(int(time.time()) - 2 * SIGNATURE_WINDOW_S)
    mac = hmac.new(f"{old}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256)
    assert not feishu_signature_ok({"timestamp": old, "sign": base64.b64encode(mac.digest())})


def test_an_alert_reaches_every_channel_in_its_language_and_resolves(
    chat_stack: Stack, vendors: dict[str, VendorReceiver], alertmanager: Alertmanager
) -> None:
    with chat_stack.client(timeout=10) as http:
        doctor, _head = add_doctor(http, chat_stack.settings.url("goals"))
        ingestion = chat_stack.settings.url("ingestion")
        post_events(http, ingestion, [rework_event(doctor, d, 0.2) for d in (1, 2, 3)])
        for receiver in vendors.values():
            receiver.wait_for(lambda calls: any(doctor in c.text for c in calls))
        firing = wait_for_alerts(alertmanager, doctor, lambda alerts: len(alerts) == 1)

        for receiver in vendors.values():
            (call,) = receiver.about(doctor)
            assert call.signature_ok and call.accepted
        wecom, dingtalk, feishu, slack = (
            vendors[s].about(doctor)[0] for s in ("wecom", "dingtalk", "feishu", "slack")
        )
        assert wecom.text.startswith('<font color="warning">**【警告】')  # zh, the default
        assert "**最近数值**" in wecom.text and "0.2" in wecom.text
        assert "[Warning] Report rework rate" in dingtalk.text  # en, as configured
        assert "**Recent values:**" in dingtalk.text
        assert feishu.body["card"]["header"]["template"] == "yellow"
        assert "【警告】" in feishu.text and "最近数值" in feishu.text  # zh, the default
        assert "*最近数值*" in slack.text  # zh, as configured

        (alert,) = firing
        assert alert["labels"]["alertname"] == "report-rework-rate-high"
        assert alert["labels"]["severity"] == "warning"
        assert alert["labels"]["metric"] == "report_rework_rate"
        assert alert["labels"]["department"] == "radiology"
        assert alert["annotations"]["summary"].startswith("[Warning] Report rework rate")
        assert "Recent values:" in alert["annotations"]["description"]  # en, the default
        if alertmanager.real:
            assert alert["status"]["state"] == "active"

        post_events(http, ingestion, [rework_event(doctor, 4, 0.02)])
        for receiver in vendors.values():
            receiver.wait_for(lambda calls: sum(doctor in c.text for c in calls) == 2)
        wait_for_alerts(alertmanager, doctor, lambda alerts: alerts == [])

    assert "【已恢复】" in vendors["wecom"].about(doctor)[1].text
    assert '<font color="info">' in vendors["wecom"].about(doctor)[1].text
    assert "[Resolved]" in vendors["dingtalk"].about(doctor)[1].text
    assert vendors["feishu"].about(doctor)[1].body["card"]["header"]["template"] == "green"
    assert "【已恢复】" in vendors["slack"].about(doctor)[1].text


def test_a_rate_limited_message_is_retried_and_delivered_once(
    chat_stack: Stack, vendors: dict[str, VendorReceiver]
) -> None:
    with chat_stack.client(timeout=10) as http:
        doctor, _head = add_doctor(http, chat_stack.settings.url("goals"))
        for receiver in vendors.values():
            receiver.throttle.add(doctor)
        post_events(
            http,
            chat_stack.settings.url("ingestion"),
            [rework_event(doctor, d, 0.3) for d in (1, 2, 3)],
        )
        for receiver in vendors.values():
            receiver.wait_for(lambda calls: any(doctor in c.text and c.accepted for c in calls))
    # Nothing more on its way (no retry pending), then count what each vendor got.
    await_drained(chat_stack.settings.nats_url)
    for style, receiver in vendors.items():
        calls = receiver.about(doctor)
        assert [c.accepted for c in calls] == [False, True], style
        assert all(c.signature_ok for c in calls), style
        assert calls[0].text == calls[1].text, style  # the same message, sent again
