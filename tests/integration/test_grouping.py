"""Grouping and reminders through the running services: a route that groups alerts sends
them as one message after group_wait, again after group_interval when they change, and ends
the group once its alerts resolved; a route with repeat_interval reminds of an alert that
still fires. Timers are the real JetStream message schedules; the receiver is the real signed
webhook receiver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookCall, WebhookReceiver, stack_of_its_own
from tests.integration.helpers import (
    add_doctor,
    await_drained,
    post_events,
    rework_event,
    unique,
)
from tests.integration.test_chat_channels import VendorReceiver

pytestmark = pytest.mark.integration

ROUTES = """\
receivers:
  - name: room
    webhook: {url: "${GOALWATCH_WEBHOOK_URL}", secret: "${GOALWATCH_WEBHOOK_SECRET}"}
  - name: burst-room
    wecom: {url: "${BURST_WECOM_URL}", language: en, rate_limit: 2/10s}
  - name: quiet-room
    webhook: {url: "${GOALWATCH_WEBHOOK_URL}", secret: "${GOALWATCH_WEBHOOK_SECRET}"}
    quiet_hours: {start: "%(quiet_start)s", end: "%(quiet_end)s", time_zone: UTC}
route:
  receiver: room
  routes:
    - matchers: ['department=~"burst-.*"']
      receiver: burst-room
    - matchers: ['department=~"quiet-.*"']
      receiver: quiet-room
    - matchers: ['department=~"ignored-.*"']
      escalate_after: 2s
      escalate_levels: 2
    - matchers: ['department=~"grouped-.*"']
      group_by: [rule, department]
      group_wait: 5s
      group_interval: 1s
    - matchers: ['department=~"reminded-.*"']
      repeat_interval: 2s
"""


def routes(quiet_from: datetime, quiet_until: datetime) -> str:
    return ROUTES % {
        "quiet_start": quiet_from.strftime("%H:%M:%S"),
        "quiet_end": quiet_until.strftime("%H:%M:%S"),
    }


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    """This module's own receiver: digests must not reach the other modules' one, whose
    tests read every delivery as a single alert."""
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def wecom() -> Iterator[VendorReceiver]:
    receiver = VendorReceiver("wecom")
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def routes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = tmp_path_factory.mktemp("grouping") / "routes.yaml"
    # Quiet hours in the past: nothing is quiet until a test says so.
    past = datetime.now(UTC) - timedelta(hours=3)
    path.write_text(routes(past, past + timedelta(hours=1)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def grouped(
    tmp_path_factory: pytest.TempPathFactory,
    webhook: WebhookReceiver,
    wecom: VendorReceiver,
    routes_file: Path,
) -> Iterator[Stack]:
    env = {"GOALWATCH_ROUTES_FILE": str(routes_file), "BURST_WECOM_URL": wecom.url}
    with stack_of_its_own(tmp_path_factory, webhook, name="grouping", env=env) as running:
        yield running


def fire(
    stack: Stack, http: httpx.Client, department: str, days: tuple[int, ...] = (1, 2, 3)
) -> str:
    doctor, _head = add_doctor(http, stack.settings.url("goals"))
    events = [rework_event(doctor, d, 0.2, labels={"department": department}) for d in days]
    post_events(http, stack.settings.url("ingestion"), events)
    return doctor


def resolve(stack: Stack, http: httpx.Client, doctor: str, department: str) -> None:
    event = rework_event(doctor, 4, 0.01, labels={"department": department})
    post_events(http, stack.settings.url("ingestion"), [event])


def about(webhook: WebhookReceiver, department: str) -> list[WebhookCall]:
    with webhook._changed:
        return [
            d
            for d in webhook.deliveries
            if any(a.get("labels", {}).get("department") == department for a in d.alerts)
        ]


def states(call: WebhookCall) -> list[tuple[str, str]]:
    return [(a["subject"]["id"], a["state"]) for a in call.alerts]


def groups_left(stack: Stack) -> list[str]:
    with redis.Redis.from_url(stack.settings.redis_url, decode_responses=True) as store:
        return [str(k) for k in store.scan_iter("goalwatch:notifier:group:*")]


def until(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s")
        time.sleep(0.05)  # Redis offers nothing to await here


def test_a_group_is_one_message_then_its_changes_then_it_ends(
    grouped: Stack, webhook: WebhookReceiver
) -> None:
    department = unique("grouped")
    with grouped.client(timeout=10) as http:
        doctors = [fire(grouped, http, department) for _ in range(3)]
        webhook.wait_for(lambda _: len(about(webhook, department)) >= 1)
        [first] = about(webhook, department)
        assert first.digest
        body: dict[str, Any] = first.json
        assert body["reason"] == "group"
        assert body["receiver"] == "room"
        assert body["group_labels"] == {"rule": "report-rework-rate-high", "department": department}
        assert sorted(states(first)) == sorted((d, "firing") for d in doctors)
        assert body["previous_at"] is None
        assert first.headers["idempotency-key"] == body["idempotency_key"]

        resolve(grouped, http, doctors[0], department)
        webhook.wait_for(lambda _: len(about(webhook, department)) >= 2)
        second = about(webhook, department)[1]
        assert second.digest
        # Firing first, then what resolved since the first message.
        assert states(second)[-1] == (doctors[0], "resolved")
        assert sorted(states(second)[:2]) == sorted((d, "firing") for d in doctors[1:])
        assert second.json["previous_at"] is not None

        for doctor in doctors[1:]:
            resolve(grouped, http, doctor, department)
        webhook.wait_for(
            lambda _: any(
                all(state == "resolved" for _, state in states(call))
                for call in about(webhook, department)[2:]
            )
        )
        until(lambda: not groups_left(grouped), "the group's end")
        calls = about(webhook, department)
        resolved = [s for call in calls[2:] for s in states(call)]
        assert sorted(resolved) == sorted((d, "resolved") for d in doctors[1:])
        # Each transition was told once: three firings, then three resolutions.
        told = [s for call in calls for s in states(call) if s[1] == "resolved"]
        assert sorted(told) == sorted((d, "resolved") for d in doctors)

        log = http.get(
            f"{grouped.settings.url('notifier')}/v1/deliveries",
            params={"recipient": doctors[1], "channel": "webhook"},
        ).json()["deliveries"]
        assert {(d["receiver"], d["state"], d["status"]) for d in log} == {
            ("room", "firing", "sent"),
            ("room", "resolved", "sent"),
        }


def test_a_route_with_repeat_interval_reminds_until_the_alert_resolves(
    grouped: Stack, webhook: WebhookReceiver
) -> None:
    department = unique("reminded")
    with grouped.client(timeout=10) as http:
        doctor = fire(grouped, http, department)
        webhook.wait_for(lambda _: len(about(webhook, department)) >= 3)
        first, reminder = about(webhook, department)[:2]
        # The firing goes at once, alone; the reminder is a digest that says so.
        assert not first.digest
        assert first.json["state"] == "firing"
        assert reminder.digest
        assert reminder.json["reason"] == "repeat"
        assert states(reminder) == [(doctor, "firing")]
        resolve(grouped, http, doctor, department)
        webhook.wait_for(
            lambda _: any(states(c) == [(doctor, "resolved")] for c in about(webhook, department))
        )
        until(lambda: not groups_left(grouped), "the group's end")
        after = about(webhook, department)
        assert [states(c) for c in after if (doctor, "resolved") in states(c)] == [
            [(doctor, "resolved")]
        ]


def delivery_log(stack: Stack, http: httpx.Client, recipient: str) -> list[dict[str, Any]]:
    answer = http.get(
        f"{stack.settings.url('notifier')}/v1/deliveries", params={"recipient": recipient}
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["deliveries"])


def test_a_burst_past_the_rate_limit_is_merged_into_one_digest(
    grouped: Stack, wecom: VendorReceiver
) -> None:
    department = unique("burst")
    with grouped.client(timeout=10) as http:
        doctors = [fire(grouped, http, department) for _ in range(5)]
        await_drained(grouped.settings.nats_url)
        # Two go at once, as the limit allows; the other three are held back ...
        held = [
            d
            for doctor in doctors
            for d in delivery_log(grouped, http, doctor)
            if d["status"] == "held"
        ]
        assert len(held) == 3
        assert {d["receiver"] for d in held} == {"burst-room"}
        # ... and arrive as one message when the window has room.
        wecom.wait_for(lambda calls: sum("alerts firing" in c.text for c in calls) >= 1)
        singles = [c for c in wecom.calls if any(d in c.text for d in doctors)]
        digests = [c for c in singles if "alerts firing" in c.text]
        assert len(digests) == 1
        assert "3 alerts firing" in digests[0].text
        assert "Merged" in digests[0].text
        assert len(singles) == 3  # two alone, three in one digest: five alerts, three messages
        for doctor in doctors:
            assert sum(doctor in c.text for c in singles) == 1, doctor
            sent = {d["status"] for d in delivery_log(grouped, http, doctor)}
            assert "sent" in sent


def test_quiet_hours_hold_messages_until_they_end(
    grouped: Stack, webhook: WebhookReceiver, routes_file: Path
) -> None:
    department = unique("quiet")
    now = datetime.now(UTC)
    ends = (now + timedelta(seconds=6)).replace(microsecond=0)  # the file has seconds
    routes_file.write_text(routes(now - timedelta(hours=1), ends), encoding="utf-8")
    notifier = grouped.settings.url("notifier")
    with grouped.client(timeout=10) as http:
        assert http.post(f"{notifier}/v1/routes/reload").status_code == 200
        doctor = fire(grouped, http, department)
        await_drained(grouped.settings.nats_url)
        assert about(webhook, department) == []
        [held] = [d for d in delivery_log(grouped, http, doctor) if d["receiver"] == "quiet-room"]
        assert held["status"] == "held"
        webhook.wait_for(lambda _: len(about(webhook, department)) == 1)
        [message] = about(webhook, department)
        assert message.digest
        assert message.json["reason"] == "quiet_hours"
        assert states(message) == [(doctor, "firing")]
        # Not before the quiet hours ended (the receiver's clock is this machine's).
        assert datetime.now(UTC) >= ends


def chain(stack: Stack, http: httpx.Client) -> tuple[str, str, str, str]:
    """A doctor, their head, the head's director and the director's chief."""
    chief, director, head, doctor = (unique(r) for r in ("chief", "director", "head", "doctor"))
    people = [
        {"id": chief, "name": f"Chief {chief}"},
        {"id": director, "name": f"Director {director}", "manager_id": chief},
        {"id": head, "name": f"Head {head}", "manager_id": director},
        {"id": doctor, "name": f"Dr {doctor}", "manager_id": head},
    ]
    answer = http.post(f"{stack.settings.url('goals')}/v1/people", json=people)
    assert answer.status_code == 200, answer.text
    return doctor, head, director, chief


def test_an_alert_nobody_acknowledges_goes_up_the_manager_chain(
    grouped: Stack, webhook: WebhookReceiver
) -> None:
    department = unique("ignored")
    notifier = grouped.settings.url("notifier")
    with grouped.client(timeout=10) as http:
        doctor, head, director, chief = chain(grouped, http)
        events = [
            rework_event(doctor, d, 0.2, labels={"department": department}) for d in (1, 2, 3)
        ]
        post_events(http, grouped.settings.url("ingestion"), events)
        webhook.wait_for(lambda _: len(about(webhook, department)) >= 3)
        first, up1, up2 = about(webhook, department)[:3]
        assert {r["id"] for r in first.json["recipients"]} == {doctor, head}
        assert first.json["unacknowledged"] is None
        # Nobody acknowledged it in 2 s: the head's manager, then theirs; two levels, no more.
        assert [r["id"] for r in up1.json["recipients"]] == [director]
        assert up1.json["unacknowledged"]["level"] == 1
        assert up1.json["unacknowledged"]["after_seconds"] == 2
        assert [r["id"] for r in up2.json["recipients"]] == [chief]
        assert up2.json["unacknowledged"]["level"] == 2
        assert up1.headers["idempotency-key"] != up2.headers["idempotency-key"]
        [entry] = http.get(f"{notifier}/v1/alerts", params={"recipient": chief}).json()["alerts"]
        passed = [t["to"] for t in entry["timeline"] if t["what"] == "passed_up"]
        assert passed == [director, chief]


def test_an_acknowledged_alert_is_not_passed_up(grouped: Stack, webhook: WebhookReceiver) -> None:
    department = unique("ignored")
    notifier = grouped.settings.url("notifier")
    with grouped.client(timeout=10) as http:
        doctor, head, director, _chief = chain(grouped, http)
        events = [
            rework_event(doctor, d, 0.2, labels={"department": department}) for d in (1, 2, 3)
        ]
        post_events(http, grouped.settings.url("ingestion"), events)
        webhook.wait_for(lambda _: len(about(webhook, department)) >= 1)
        [entry] = http.get(f"{notifier}/v1/alerts", params={"recipient": head}).json()["alerts"]
        acked = http.post(
            f"{notifier}/v1/alerts/{entry['id']}/ack",
            json={"comment": "on it"},
            headers=grouped.auth_headers(head),
        )
        assert acked.status_code == 200, acked.text
        # The pass-up timer falls due, finds it acknowledged, and does nothing.
        until(lambda: not pending_pass_up(grouped, entry["id"]), "the pass-up timer's firing")
        await_drained(grouped.settings.nats_url)
        assert len(about(webhook, department)) == 1
        after = http.get(f"{notifier}/v1/alerts/{entry['id']}").json()
        assert director not in {r["id"] for r in after["recipients"]}


def pending_pass_up(stack: Stack, episode: str) -> bool:
    import asyncio

    import nats

    from goalwatch.timers import TimerKey, Timers

    async def pending() -> bool:
        client = await nats.connect(stack.settings.nats_url)
        try:
            due = await Timers(lambda: client).pending(TimerKey("notifier", "pass-up", episode))
            return due is not None
        finally:
            await client.close()

    return asyncio.run(pending())
