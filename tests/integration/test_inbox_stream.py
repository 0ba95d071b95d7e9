"""The inbox's live stream and the delivery log, through the running services."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import httpx
import pytest

from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookReceiver
from tests.integration.helpers import add_doctor, await_drained, post_events, rework_event

pytestmark = pytest.mark.integration


def test_an_alert_arrives_on_its_recipients_stream_as_it_fires(stack: Stack) -> None:
    notifier, ingestion = stack.settings.url("notifier"), stack.settings.url("ingestion")
    with stack.client(timeout=10.0) as client:
        doctor, head = add_doctor(client, stack.settings.url("goals"))
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    opened = threading.Event()

    def listen() -> None:
        timeout = httpx.Timeout(10.0, read=60.0)
        with (
            stack.client(timeout=timeout) as client,
            client.stream(
                "GET", f"{notifier}/v1/alerts/stream", params={"recipient": head}
            ) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in response.iter_lines():
                if line == ": listening":
                    opened.set()  # subscribed: nothing from now on is missed
                elif line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.put((kind, json.loads(line.removeprefix("data: "))))
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(10)
    with stack.client(timeout=10.0) as client:
        post_events(client, ingestion, [rework_event(doctor, day, 0.2) for day in (1, 2, 3)])
    kind, alert = events.get(timeout=60)  # the event itself, not a pause
    assert kind == "firing"
    assert alert["subject"]["id"] == doctor
    assert head in {recipient["id"] for recipient in alert["recipients"]}
    listener.join(10)


def test_the_delivery_log_says_who_was_told_where_and_whether_it_arrived(
    stack: Stack, webhook: WebhookReceiver
) -> None:
    notifier, ingestion = stack.settings.url("notifier"), stack.settings.url("ingestion")
    with stack.client(timeout=10.0) as client:
        doctor, head = add_doctor(client, stack.settings.url("goals"))
        post_events(client, ingestion, [rework_event(doctor, day, 0.2) for day in (1, 2, 3)])
        await_drained(stack.settings.nats_url)
        delivered = {call.json["fingerprint"] for call in webhook.about(doctor)}
        assert delivered, "the alert reached the webhook"
        answer = client.get(f"{notifier}/v1/deliveries", params={"recipient": head})
        assert answer.status_code == 200, answer.text
        logged = answer.json()["deliveries"]
        assert {one["fingerprint"] for one in logged} == delivered
        # The webhook's delivery, and the inbox's (recorded as a channel of its own).
        assert {(one["channel"], one["status"], one["state"]) for one in logged} == {
            ("webhook", "sent", "firing"),
            ("inbox", "sent", "firing"),
        }
        fingerprint = logged[0]["fingerprint"]
        by_alert = client.get(f"{notifier}/v1/deliveries", params={"alert": fingerprint})
        assert [one["id"] for one in by_alert.json()["deliveries"]] == [
            one["id"] for one in logged if one["fingerprint"] == fingerprint
        ]


def test_a_manager_acknowledges_a_firing_alert(stack: Stack) -> None:
    notifier, ingestion = stack.settings.url("notifier"), stack.settings.url("ingestion")
    with stack.client(timeout=10.0) as client:
        doctor, head = add_doctor(client, stack.settings.url("goals"))
        post_events(client, ingestion, [rework_event(doctor, day, 0.2) for day in (1, 2, 3)])
        await_drained(stack.settings.nats_url)
        waiting = client.get(f"{notifier}/v1/alerts", params={"recipient": head, "acked": "false"})
        [alert] = waiting.json()["alerts"]
        url = f"{notifier}/v1/alerts/{alert['fingerprint']}/ack"
        acked = client.post(url, json={"comment": "calling her"}, headers=stack.auth_headers(head))
        assert acked.status_code == 200, acked.text
        assert acked.json()["acked_by"] == head and acked.json()["ack_comment"] == "calling her"
        left = client.get(f"{notifier}/v1/alerts", params={"recipient": head, "acked": "false"})
        assert left.json()["alerts"] == []
        post_events(client, ingestion, [rework_event(doctor, 4, 0.01)])
        await_drained(stack.settings.nats_url)
        # Resolved: still shows who took it on; nothing left to acknowledge.
        entry = client.get(f"{notifier}/v1/alerts/{alert['fingerprint']}").json()
        assert entry["state"] == "resolved" and entry["acked_by"] == head
        assert client.post(url, headers=stack.auth_headers(head)).status_code == 409
        assert client.post(f"{notifier}/v1/alerts/nope/ack").status_code == 404
