"""A silence made with the CLI keeps an alert off the channels; the inbox and the delivery
log still show it; once the silence ends, the alert's next transition is sent."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookReceiver
from tests.integration.helpers import add_doctor, await_drained, post_events, rework_event

pytestmark = pytest.mark.integration


def goalwatch(*args: str, notifier: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goalwatch.cli", "silences", *args, "--notifier", notifier],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "GOALWATCH_TOKEN": token},
    )


def test_a_silenced_alert_reaches_the_inbox_but_no_channel(
    stack: Stack, webhook: WebhookReceiver
) -> None:
    notifier, ingestion = stack.settings.url("notifier"), stack.settings.url("ingestion")
    token = stack.token("wang-fang")
    with stack.client(timeout=10.0) as client:
        doctor, head = add_doctor(client, stack.settings.url("goals"))
        made = goalwatch(
            "add", "--match", f"subject={doctor}", "--match", "severity=~warning|info",
            "--for", "1h", "-m", "ward audit", notifier=notifier, token=token,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        silence_id = made.stdout.split()[0]
        assert "active" in made.stdout and "wang-fang: ward audit" in made.stdout
        post_events(client, ingestion, [rework_event(doctor, day, 0.2) for day in (1, 2, 3)])
        await_drained(stack.settings.nats_url)
        assert webhook.about(doctor) == []
        inbox = client.get(f"{notifier}/v1/alerts", params={"recipient": head}).json()
        assert [alert["state"] for alert in inbox["alerts"]] == ["firing"]
        log = client.get(f"{notifier}/v1/deliveries", params={"recipient": head}).json()
        webhook_outcomes = [d for d in log["deliveries"] if d["channel"] == "webhook"]
        assert [d["status"] for d in webhook_outcomes] == ["silenced"]
        assert webhook_outcomes[0]["error"] == f"silence {silence_id}: ward audit"
        # Ended: the resolution is sent.
        ended = goalwatch("expire", silence_id, notifier=notifier, token=token)
        assert ended.returncode == 0 and "expired" in ended.stdout
        post_events(client, ingestion, [rework_event(doctor, 4, 0.01)])
        await_drained(stack.settings.nats_url)
        assert [call.json["state"] for call in webhook.about(doctor)] == ["resolved"]
        listed = goalwatch("list", "--state", "expired", notifier=notifier, token=token)
        assert silence_id in listed.stdout
