"""`goalwatch webhook-receiver`: accepts what goalwatch signs, refuses what it did not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from goalwatch.contracts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.integration.conftest import free_port
from tests.integration.helpers import Lines

pytestmark = pytest.mark.integration


def test_receiver_checks_signatures_and_prints_the_alert() -> None:
    port = free_port()
    env = {**os.environ, "GOALWATCH_WEBHOOK_SECRET": "demo", "GOALWATCH_RECEIVER_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "goalwatch.cli", "webhook-receiver"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        assert "webhook receiver on" in lines.next()  # listening from here on
        assert "a WeCom group robot on" in lines.next()
        payload = {
            "state": "firing",
            "severity": "warning",
            "rule_id": "report-rework-rate-high",
            "message": "li-na: report rework rate 12%",
            "recipients": [{"name": "Dr. Zhang Wei", "role": "manager"}],
        }
        body = json.dumps(payload).encode()
        stamp = str(int(time.time()))
        signed = {
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(secret="demo", timestamp=stamp, body=body),
        }
        url = f"http://127.0.0.1:{port}/"
        assert httpx.post(url, content=body, headers=signed).status_code == 204
        assert lines.next().startswith("[signature ok] FIRING warning")
        assert "li-na: report rework rate 12%" in lines.next()
        assert "Dr. Zhang Wei (manager)" in lines.next()

        forged = {**signed, SIGNATURE_HEADER: sign(secret="guess", timestamp=stamp, body=body)}
        assert httpx.post(url, content=body, headers=forged).status_code == 401
        assert lines.next().startswith("[SIGNATURE INVALID]")
        assert "li-na: report rework rate 12%" in lines.next()
        assert "Dr. Zhang Wei (manager)" in lines.next()

        # The stand-in WeCom group answers as WeCom does and prints the message as shown.
        wecom = f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key=demo"
        message = {"msgtype": "markdown", "markdown": {"content": "**[Warning] Rework**"}}
        answer = httpx.post(wecom, json=message)
        assert answer.json() == {"errcode": 0, "errmsg": "ok"}
        assert lines.next().startswith("┌")
        assert lines.next() == "│ [WeCom group: goalwatch robot]\n"
        assert lines.next() == "│ **[Warning] Rework**\n"
    finally:
        process.terminate()
        process.wait(timeout=10)
