"""Small builders shared by the integration tests."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from goalwatch.contracts import subjects

DAY0 = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)


def unique(prefix: str) -> str:
    """An id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rework_event(subject: str, day: int, value: float, **extra: Any) -> dict[str, Any]:
    """A ``report_rework_rate`` event for ``subject`` on day ``day`` (1-based) of November 2026."""
    time = DAY0 + timedelta(days=day - 1)
    return {
        "id": f"{subject}-d{day}",
        "metric": "report_rework_rate",
        "value": value,
        "time": time.isoformat(),
        "subject": subject,
        "source": "his",
        "labels": {"department": "radiology"},
        **extra,
    }


def add_doctor(client: httpx.Client, goals_url: str) -> tuple[str, str]:
    """A department head and a doctor reporting to them; returns (doctor id, head id)."""
    head, doctor = unique("head"), unique("doctor")
    people = [
        {"id": head, "name": f"Head {head}", "email": f"{head}@example.org"},
        {"id": doctor, "name": f"Dr {doctor}", "manager_id": head, "department": "radiology"},
    ]
    response = client.post(f"{goals_url}/v1/people", json=people)
    assert response.status_code == 200, response.text
    return doctor, head


def post_events(
    client: httpx.Client, ingestion_url: str, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Post events one request each (in order) and return the last answer."""
    answer: dict[str, Any] = {}
    for event in events:
        response = client.post(f"{ingestion_url}/v1/events", json=event)
        assert response.status_code == 200, response.text
        answer = response.json()
    return answer


def inbox(client: httpx.Client, notifier_url: str, **filters: str) -> list[dict[str, Any]]:
    """The notifier's inbox with ``filters`` (recipient, rule, state)."""
    response = client.get(f"{notifier_url}/v1/alerts", params=filters)
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


def await_notification(nats_url: str, *, subject_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait for the notifier's record of a delivery about ``subject_id`` and return it."""
    return asyncio.run(_await_notification(nats_url, subject_id, wait=timeout))


async def _await_notification(nats_url: str, subject_id: str, *, wait: float) -> dict[str, Any]:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(
            subjects.NOTIFICATIONS_SENT,
            stream=subjects.STREAM_NOTIFICATIONS,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        while True:
            msg = await sub.next_msg(timeout=wait)
            notification: dict[str, Any] = json.loads(msg.data)
            if any(r["id"] == subject_id for r in notification["recipients"]):
                await sub.unsubscribe()
                return notification
    finally:
        await nc.close()
