"""The inbox API over a fake Redis: one episode with its deliveries, acknowledging and
resolving by id (or by fingerprint: the newest episode), and the new filters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import cast

import httpx
import pytest
from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis

from goalwatch.auth.principal import Kind, Principal
from goalwatch.auth.roles import Role
from goalwatch.contracts import AlertState, DeliveryStatus, NotificationSent
from services.notifier.app import NotifierSettings, create_app
from services.notifier.deliveries import DeliveryLog
from services.notifier.inbox import Inbox
from tests.unit.signed_in import signed_in
from tests.unit.test_inbox import T0, firing, resolved

# An HR admin who is also a person: what they do is recorded under their person id.
HR_ADMIN = Principal(
    subject="mgr-1", kind=Kind.PERSON, roles=frozenset({Role.HR_ADMIN}), person_id="mgr-1"
)


class Api:
    def __init__(self, client: httpx.AsyncClient, redis: Redis) -> None:
        self.client = client
        self.inbox = Inbox(redis)
        self.log = DeliveryLog(redis, retention=timedelta(days=90))


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    redis = cast(Redis, FakeAsyncRedis(decode_responses=True))
    app = signed_in(create_app(NotifierSettings(), redis=redis), HR_ADMIN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield Api(client, redis)


def outcome(
    n: int, *, started: timedelta | None, channel: str = "webhook", status: str = "sent"
) -> NotificationSent:
    fire = firing()
    return NotificationSent(
        id=f"out-{n}",
        fingerprint=fire.fingerprint,
        rule_id=fire.rule_id,
        state=AlertState.FIRING,
        channel=channel,
        recipients=fire.recipients,
        status=DeliveryStatus(status),
        attempts=n,
        error=None if status == "sent" else "503 from the receiver",
        at=T0 + timedelta(minutes=n),
        started_at=None if started is None else fire.started_at + started,
    )


async def test_one_episode_with_its_timeline_and_every_delivery_of_it(api: Api) -> None:
    first = firing()
    entry = (await api.inbox.record(first)).alert
    await api.log.record(outcome(1, started=timedelta(0), channel="inbox"))
    await api.log.record(outcome(2, started=timedelta(0), status="failed"))
    await api.log.record(outcome(3, started=timedelta(0)))
    await api.log.record(outcome(4, started=timedelta(days=3)))  # a later episode's
    await api.log.record(outcome(5, started=None))  # recorded before episodes were

    answer = await api.client.get(f"/v1/alerts/{entry.id}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == entry.id and body["state"] == "firing"
    assert [t["what"] for t in body["timeline"]] == ["fired"]
    assert [(d["id"], d["channel"], d["status"], d["attempts"]) for d in body["deliveries"]] == [
        ("out-3", "webhook", "sent", 3),
        ("out-2", "webhook", "failed", 2),
        ("out-1", "inbox", "sent", 1),
    ]
    assert body["deliveries"][1]["error"] == "503 from the receiver"
    by_episode = await api.client.get("/v1/deliveries", params={"episode": entry.id})
    assert [d["id"] for d in by_episode.json()["deliveries"]] == ["out-3", "out-2", "out-1"]
    # By fingerprint: the newest episode, as the path always answered.
    assert (await api.client.get("/v1/alerts/fp-1")).json()["id"] == entry.id
    missing = await api.client.get("/v1/alerts/nope")
    assert missing.status_code == 404
    assert "list them with GET /v1/alerts" in missing.json()["detail"]


async def test_acknowledge_and_resolve_by_hand_by_id(api: Api) -> None:
    fire = firing()
    entry = (await api.inbox.record(fire)).alert
    acked = await api.client.post(f"/v1/alerts/{entry.id}/ack", json={"comment": "on it"})
    assert acked.status_code == 200, acked.text
    assert (acked.json()["acked_by"], acked.json()["acknowledgements"][0]["via"]) == (
        "mgr-1",
        "api",
    )
    too_long = await api.client.post(f"/v1/alerts/{entry.id}/resolve", json={"comment": "x" * 1001})
    assert too_long.status_code == 422 and "comment" in too_long.json()["detail"]
    done = await api.client.post(
        f"/v1/alerts/{entry.id}/resolve", json={"comment": "entered twice"}
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["state"], body["resolved_by"], body["resolve_comment"]) == (
        "resolved",
        "mgr-1",
        "entered twice",
    )
    assert [t["what"] for t in body["timeline"]] == ["fired", "acknowledged", "resolved_by_hand"]
    again = await api.client.post(f"/v1/alerts/{entry.id}/resolve")
    assert again.status_code == 409 and "resolved already" in again.json()["detail"]
    ack_late = await api.client.post(f"/v1/alerts/{entry.id}/ack")
    assert ack_late.status_code == 409
    for verb in ("ack", "resolve"):
        assert (await api.client.post(f"/v1/alerts/nope/{verb}")).status_code == 404
    # The rule resolves it later: the timeline says so; who resolved it by hand stays.
    await api.inbox.record(resolved(fire, at=datetime.now(UTC) + timedelta(minutes=1)))
    later = (await api.client.get(f"/v1/alerts/{entry.id}")).json()
    assert later["resolved_by"] == "mgr-1" and later["timeline"][-1]["what"] == "resolved"


async def test_the_list_takes_org_unit_and_fingerprint(api: Api) -> None:
    await api.inbox.record(firing("fp-a"), org_units=["ward-3", "radiology"])
    await api.inbox.record(firing("fp-b", at=T0 + timedelta(hours=1)), org_units=["lab"])

    async def fingerprints(**params: str) -> list[str]:
        answer = await api.client.get("/v1/alerts", params=params)
        assert answer.status_code == 200, answer.text
        return [a["fingerprint"] for a in answer.json()["alerts"]]

    assert await fingerprints(org_unit="radiology") == ["fp-a"]
    assert await fingerprints(fingerprint="fp-b") == ["fp-b"]
    assert await fingerprints() == ["fp-b", "fp-a"]
    unknown = await api.client.get("/v1/alerts", params={"unit": "lab"})
    assert unknown.status_code == 400
    assert "org_unit" in unknown.json()["detail"] and "fingerprint" in unknown.json()["detail"]
