"""Grouping and reminders through the running services: a route that groups alerts sends
them as one message after group_wait, again after group_interval when they change, and ends
the group once its alerts resolved; a route with repeat_interval reminds of an alert that
still fires. Timers are the real JetStream message schedules; the receiver is the real signed
webhook receiver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookCall, WebhookReceiver, stack_of_its_own
from tests.integration.helpers import add_doctor, post_events, rework_event, unique

pytestmark = pytest.mark.integration

ROUTES = """\
receivers:
  - name: room
    webhook: {url: "${GOALWATCH_WEBHOOK_URL}", secret: "${GOALWATCH_WEBHOOK_SECRET}"}
route:
  receiver: room
  routes:
    - matchers: ['department=~"grouped-.*"']
      group_by: [rule, department]
      group_wait: 5s
      group_interval: 1s
    - matchers: ['department=~"reminded-.*"']
      repeat_interval: 2s
"""


@pytest.fixture(scope="module")
def grouped(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver) -> Iterator[Stack]:
    path: Path = tmp_path_factory.mktemp("grouping") / "routes.yaml"
    path.write_text(ROUTES, encoding="utf-8")
    env = {"GOALWATCH_ROUTES_FILE": str(path)}
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
    with httpx.Client(timeout=10) as http:
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
    with httpx.Client(timeout=10) as http:
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
