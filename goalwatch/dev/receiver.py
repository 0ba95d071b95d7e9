"""A webhook receiver for trying goalwatch out: prints each alert it gets, signature checked.

``goalwatch webhook-receiver`` listens on 127.0.0.1 (port 9000 unless told otherwise) and
verifies every request with ``GOALWATCH_WEBHOOK_SECRET``, exactly as a real receiver should.

It is also a stand-in WeCom group: a request to ``/cgi-bin/webhook/send?key=...`` is read as
a WeCom group robot message and printed as the group would show it, and answered as WeCom
answers (``{"errcode": 0}``). Point a routing file's ``wecom`` receiver at it to see what a
chat group reads, acknowledgement link included.
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from goalwatch.contracts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from goalwatch.serving import port_free, port_taken_message
from goalwatch.settings import Port


class ReceiverSettings(BaseSettings):
    """Where the receiver listens and the secret it checks signatures with."""

    model_config = SettingsConfigDict(env_prefix="GOALWATCH_", extra="ignore")

    webhook_secret: SecretStr | None = Field(None, description="Shared signing secret.")
    receiver_port: Port = Field(9000, description="Port of the demo webhook receiver.")


def describe(payload: dict[str, Any], *, check: str) -> str:
    """One readable paragraph for a delivered alert, headed by the signature ``check``; a
    digest (several alerts in one message) is a header and one paragraph per alert."""
    if isinstance(payload.get("alerts"), list):
        reason = payload.get("reason", "group")
        alerts = [a for a in payload["alerts"] if isinstance(a, dict)]
        header = f"[{check}] DIGEST ({reason}) of {len(alerts)} alert(s)"
        labels = payload.get("group_labels") or {}
        if labels:
            header += " · " + ", ".join(f"{k}={v}" for k, v in labels.items())
        return "\n".join([header, *(_indented(describe(a, check="in digest")) for a in alerts)])
    recipients = ", ".join(f"{r['name']} ({r['role']})" for r in payload.get("recipients", []))
    severity = payload.get("severity", "")
    if payload.get("escalated_from"):
        severity += f" (escalated from {payload['escalated_from']})"
    text = (
        f"[{check}] {payload.get('state', '?').upper()} {severity} "
        f"{payload.get('rule_id', '')}\n  {payload.get('message', '')}\n  to: {recipients}"
    )
    if payload.get("ack_url"):
        text += f"\n  acknowledge: {payload['ack_url']}"
    return text


def _indented(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


WECOM_PATH = "/cgi-bin/webhook/send"
"""Where the stand-in WeCom group robot takes messages, as the real one does."""


def chat_bubble(payload: dict[str, Any]) -> str:
    """A WeCom group robot message as the group shows it: markdown kept, colours named."""
    content = str(payload.get("markdown", {}).get("content", ""))
    content = re.sub(r'<font color="(\w+)">(.*?)</font>', r"\2", content)
    lines = content.splitlines() or [""]
    width = max(len(line) for line in lines)
    rule = "─" * min(width + 2, 100)
    body = "\n".join(f"│ {line}" for line in lines)
    return f"┌{rule}\n│ [WeCom group: goalwatch robot]\n{body}\n└{rule}"


def run(settings: ReceiverSettings) -> int:
    """Serve until Ctrl-C."""
    host, port = "127.0.0.1", settings.receiver_port
    if not port_free(host, port):
        message = port_taken_message("the webhook receiver", host, port, "GOALWATCH_RECEIVER_PORT")
        print(f"goalwatch: {message}")
        return 2
    secret = settings.webhook_secret

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path.startswith(WECOM_PATH):
                self._chat(body)
                return
            verified = secret is not None and verify_signature(
                secret=secret,
                timestamp=self.headers.get(TIMESTAMP_HEADER, ""),
                body=body,
                signature=self.headers.get(SIGNATURE_HEADER, ""),
            )
            check = (
                "not checked"
                if secret is None
                else "signature ok"
                if verified
                else ("SIGNATURE INVALID")
            )
            try:
                payload = json.loads(body)
                if not isinstance(payload, dict):
                    raise ValueError("not a JSON object")
                print(describe(payload, check=check), flush=True)
            except (ValueError, TypeError, KeyError, AttributeError):
                print(f"[{check}] not an alert: {body[:200]!r}", flush=True)
            # Refuse what fails the check, as a real receiver would.
            self.send_response(401 if check == "SIGNATURE INVALID" else 204)
            self.end_headers()

        def _chat(self, body: bytes) -> None:
            try:
                payload = json.loads(body)
                print(chat_bubble(payload), flush=True)
                answer = {"errcode": 0, "errmsg": "ok"}
            except (ValueError, AttributeError):
                answer = {"errcode": 40008, "errmsg": "invalid message type"}
            reply = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    note = "" if secret else " (GOALWATCH_WEBHOOK_SECRET unset: signatures not checked)"
    print(f"webhook receiver on http://{host}:{port}/{note}; Ctrl-C stops it", flush=True)
    print(f"a WeCom group robot on http://{host}:{port}{WECOM_PATH}?key=demo", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
