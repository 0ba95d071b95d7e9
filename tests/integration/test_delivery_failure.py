"""A webhook that stays down: retried, then recorded as failed and dead-lettered; inbox intact."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack
from tests.integration.conftest import FAILING_PREFIX, WebhookCall, WebhookReceiver
from tests.integration.helpers import inbox, post_events, rework_event, unique

pytestmark = pytest.mark.integration


async def _first(
    nats_url: str, subject: str, stream: str, match: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first message on ``subject`` for which ``match`` holds."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(
            subject, stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        while True:
            msg = await sub.next_msg(timeout=30)
            doc: dict[str, Any] = json.loads(msg.data)
            if match(doc):
                return doc
    finally:
        await nc.close()


def test_failed_webhook_is_retried_then_dead_lettered(
    stack: Stack, webhook: WebhookReceiver
) -> None:
    subject = unique(f"{FAILING_PREFIX}doctor")
    with stack.client(timeout=10.0) as http:
        response = http.post(
            f"{stack.settings.url('goals')}/v1/people",
            json={"id": subject, "name": "Dr Unreachable"},
        )
        assert response.status_code == 200
        post_events(
            http,
            stack.settings.url("ingestion"),
            [rework_event(subject, d, 0.4) for d in (1, 2, 3)],
        )

        letter = asyncio.run(
            _first(
                stack.settings.nats_url,
                subjects.DEADLETTER_ALERTS,
                subjects.STREAM_DEADLETTER,
                lambda letter: subject in letter["payload"],
            )
        )
        assert letter["origin_subject"] == subjects.ALERTS_FIRED
        assert "503" in letter["reason"]

        def attempts(deliveries: list[WebhookCall]) -> int:
            return sum(d.json["subject"]["id"] == subject for d in deliveries)

        assert attempts(webhook.deliveries) == 3  # GOALWATCH_WEBHOOK_MAX_ATTEMPTS

        outcome = asyncio.run(
            _first(
                stack.settings.nats_url,
                subjects.NOTIFICATIONS_SENT,
                subjects.STREAM_NOTIFICATIONS,
                lambda n: (
                    n["channel"] == "webhook" and any(r["id"] == subject for r in n["recipients"])
                ),
            )
        )
        assert (outcome["status"], outcome["attempts"]) == ("failed", 3)

        # The inbox does not depend on the webhook.
        assert [
            a["state"] for a in inbox(http, stack.settings.url("notifier"), recipient=subject)
        ] == ["firing"]
