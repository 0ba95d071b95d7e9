"""Goal-based overdue alerts through the running services: one durable timer per (rule, goal).

The stack runs the shipped rules: ``key-result-past-due`` (past its due date, open),
``goal-check-in-missed`` (no check-in for the cadence plus 2 days) and
``key-result-behind-plan`` (more than 20 points behind the line). Each test stores goals for
an owner of its own (with a manager) and waits for the webhook.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack
from tests.integration.conftest import (
    WebhookCall,
    WebhookReceiver,
    stack_of_its_own,
)
from tests.integration.helpers import add_doctor, alerts_about, await_drained, unique

pytestmark = pytest.mark.integration

PAST_DUE = "key-result-past-due"
NO_CHECK_IN = "goal-check-in-missed"
BEHIND = "key-result-behind-plan"
# How far ahead a deadline is set: long enough for the writes before it, short for the test.
AHEAD = timedelta(seconds=3)


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10.0) as client:
        yield client


def key_result(owner: str, **extra: Any) -> dict[str, Any]:
    body = {
        "id": unique("kr"),
        "title": "Review every reworked report",
        "type": "key_result",
        "owner_id": owner,
        "start_value": 0,
        "target_value": 10,
        "current_value": 2,
        "due": (datetime.now(UTC) + timedelta(days=300)).isoformat(),
    }
    return {**body, **extra}


def upsert(http: httpx.Client, stack: Stack, goal: dict[str, Any]) -> None:
    response = http.post(f"{stack.settings.url('goals')}/v1/goals", json=goal)
    assert response.status_code == 200, response.text


def check_in(http: httpx.Client, stack: Stack, goal_id: str, **body: Any) -> None:
    response = http.post(f"{stack.settings.url('goals')}/v1/goals/{goal_id}/check-ins", json=body)
    assert response.status_code in (200, 201), response.text


def arrived(rule_id: str, goal_id: str, state: str) -> Any:
    def predicate(deliveries: list[WebhookCall]) -> bool:
        return bool(calls(deliveries, rule_id, goal_id, state))

    return predicate


def calls(
    deliveries: list[WebhookCall], rule_id: str, goal_id: str, state: str
) -> list[dict[str, Any]]:
    return [
        d.json
        for d in deliveries
        if d.json["rule_id"] == rule_id
        and d.json["state"] == state
        and (d.json.get("goal") or {}).get("goal_id") == goal_id
    ]


def wait_until(at: datetime) -> None:
    """Let the clock pass ``at``: the deadline must fall due meanwhile."""
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 0.2)


def test_a_past_due_key_result_alerts_its_owner_and_manager_at_its_due_date(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    owner, manager = add_doctor(http, stack.settings.url("goals"))
    due = datetime.now(UTC) + AHEAD
    goal = key_result(owner, due=due.isoformat())
    upsert(http, stack, goal)
    webhook.wait_for(arrived(PAST_DUE, goal["id"], "firing"))
    received = datetime.now(UTC)
    [alert] = calls(webhook.deliveries, PAST_DUE, goal["id"], "firing")
    assert received >= due
    assert datetime.fromisoformat(alert["fired_at"]) >= due
    assert datetime.fromisoformat(alert["started_at"]) == due
    assert alert["kind"] == "overdue"
    assert {(r["id"], r["role"]) for r in alert["recipients"]} == {
        (owner, "subject"),
        (manager, "manager"),
    }
    named = alert["goal"]
    assert named["form"] == "past_due"
    assert (named["title"], named["owner_id"], named["progress"]) == (goal["title"], owner, 20.0)
    assert datetime.fromisoformat(named["due"]) == due
    assert alert["message"].startswith(f"{goal['title']} was due ")

    # Done resolves it.
    upsert(http, stack, {**goal, "status": "done"})
    webhook.wait_for(arrived(PAST_DUE, goal["id"], "resolved"))
    [resolved] = calls(webhook.deliveries, PAST_DUE, goal["id"], "resolved")
    assert resolved["started_at"] == alert["started_at"]
    assert resolved["goal"]["status"] == "done"


def test_a_moved_due_date_moves_the_timer_and_fires_once_at_the_new_time(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    owner, _ = add_doctor(http, stack.settings.url("goals"))
    first = datetime.now(UTC) + AHEAD
    goal = key_result(owner, due=first.isoformat())
    upsert(http, stack, goal)
    moved = first + timedelta(seconds=2)
    upsert(http, stack, {**goal, "due": moved.isoformat()})
    assert datetime.now(UTC) < first, "the writes took longer than the first due date"
    webhook.wait_for(arrived(PAST_DUE, goal["id"], "firing"))
    received = datetime.now(UTC)
    await_drained(stack.settings.nats_url)
    [alert] = calls(webhook.deliveries, PAST_DUE, goal["id"], "firing")
    assert received >= moved
    assert datetime.fromisoformat(alert["started_at"]) == moved
    fired = [
        a
        for on, a in alerts_about(stack.settings.nats_url, owner)
        if on == subjects.ALERTS_FIRED and a["rule_id"] == PAST_DUE
    ]
    assert len(fired) == 1


def test_done_before_the_due_date_cancels_the_timer(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    owner, _ = add_doctor(http, stack.settings.url("goals"))
    due = datetime.now(UTC) + AHEAD
    goal = key_result(owner, due=due.isoformat())
    upsert(http, stack, goal)
    upsert(http, stack, {**goal, "status": "done"})
    wait_until(due)
    # A goal due now, armed after the cancelled deadline passed: its alert arriving means the
    # cancelled one would have arrived before it.
    sentinel = key_result(owner, due=datetime.now(UTC).isoformat())
    upsert(http, stack, sentinel)
    webhook.wait_for(arrived(PAST_DUE, sentinel["id"], "firing"))
    await_drained(stack.settings.nats_url)
    assert calls(webhook.deliveries, PAST_DUE, goal["id"], "firing") == []


def test_a_missed_check_in_fires_and_a_check_in_resolves_it(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    owner, manager = add_doctor(http, stack.settings.url("goals"))
    goal = key_result(owner, cadence="weekly")
    upsert(http, stack, goal)
    # The last check-in a week and the rule's 2 days of grace ago, but for a few seconds.
    last = datetime.now(UTC) - timedelta(days=9) + AHEAD
    check_in(http, stack, goal["id"], value=3, by=owner, at=last.isoformat())
    webhook.wait_for(arrived(NO_CHECK_IN, goal["id"], "firing"))
    received = datetime.now(UTC)
    [alert] = calls(webhook.deliveries, NO_CHECK_IN, goal["id"], "firing")
    deadline = last + timedelta(days=9)
    assert received >= deadline
    assert datetime.fromisoformat(alert["started_at"]) == deadline
    assert alert["goal"]["form"] == "no_check_in"
    assert datetime.fromisoformat(alert["goal"]["last_check_in_at"]) == last
    assert {r["id"] for r in alert["recipients"]} == {owner, manager}

    check_in(http, stack, goal["id"], value=4, by=owner)
    webhook.wait_for(arrived(NO_CHECK_IN, goal["id"], "resolved"))
    [resolved] = calls(webhook.deliveries, NO_CHECK_IN, goal["id"], "resolved")
    assert resolved["started_at"] == alert["started_at"]
    assert resolved["goal"]["progress"] == 40.0


def test_behind_the_line_at_a_check_in_fires_and_catching_up_resolves_it(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    owner, _ = add_doctor(http, stack.settings.url("goals"))
    now = datetime.now(UTC)
    # The line runs from the start of last year to tomorrow: it expects nearly 100% now.
    goal = key_result(
        owner,
        period=str(now.year - 1),
        due=(now + timedelta(days=1)).isoformat(),
        current_value=0,
    )
    upsert(http, stack, goal)
    check_in(http, stack, goal["id"], value=1, by=owner)
    webhook.wait_for(arrived(BEHIND, goal["id"], "firing"))
    [alert] = calls(webhook.deliveries, BEHIND, goal["id"], "firing")
    named = alert["goal"]
    assert named["form"] == "behind_plan"
    assert named["progress"] == 10.0
    assert named["expected_progress"] > 99.0
    assert datetime.fromisoformat(alert["started_at"]) == datetime.fromisoformat(
        named["last_check_in_at"]
    )

    check_in(http, stack, goal["id"], value=10, by=owner)
    webhook.wait_for(arrived(BEHIND, goal["id"], "resolved"))
    [resolved] = calls(webhook.deliveries, BEHIND, goal["id"], "resolved")
    assert resolved["started_at"] == alert["started_at"]


@pytest.fixture(scope="module")
def own_stack(
    tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver
) -> Iterator[Stack]:
    """A stack of this module's own: its tests kill the evaluator and nats-server."""
    with stack_of_its_own(tmp_path_factory, webhook, name="goal-restart") as running:
        yield running


@pytest.fixture(scope="module")
def own_http(own_stack: Stack) -> Iterator[httpx.Client]:
    """Signed in to the module's own stack (its own identity provider)."""
    with own_stack.client(timeout=10.0) as client:
        yield client


@pytest.mark.parametrize("killed", ["evaluator", "nats"])
def test_a_due_date_that_passes_while_a_process_is_down_fires_when_it_is_back(
    own_stack: Stack, own_http: httpx.Client, webhook: WebhookReceiver, killed: str
) -> None:
    http = own_http
    owner, _ = add_doctor(http, own_stack.settings.url("goals"))
    due = datetime.now(UTC) + timedelta(seconds=4)
    goal = key_result(owner, due=due.isoformat())
    upsert(http, own_stack, goal)
    # Handled (the timer is armed) before anything is killed.
    await_drained(own_stack.settings.nats_url)
    own_stack.kill(killed)
    wait_until(due)
    assert calls(webhook.deliveries, PAST_DUE, goal["id"], "firing") == []
    own_stack.restart(killed)
    webhook.wait_for(arrived(PAST_DUE, goal["id"], "firing"), timeout=60)
    [alert] = calls(webhook.deliveries, PAST_DUE, goal["id"], "firing")
    assert datetime.fromisoformat(alert["started_at"]) == due
