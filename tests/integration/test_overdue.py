"""Overdue (absence) alerts through the running services: a durable timer per subject.

The stack's rules include ``ward-round-missing`` (conftest): a subject that logged a ward
round and then nothing for a few seconds. Each test logs rounds for a doctor of its own and
waits for the webhook; an alert must arrive, and not before its deadline.
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
    ABSENCE_METRIC,
    ABSENCE_SECONDS,
    WebhookCall,
    WebhookReceiver,
    stack_of_its_own,
)
from tests.integration.helpers import add_doctor, alerts_about, await_drained, post_events

pytestmark = pytest.mark.integration

GAP = timedelta(seconds=ABSENCE_SECONDS)


def round_logged(subject: str, n: int, at: datetime) -> dict[str, Any]:
    return {
        "id": f"{subject}-round-{n}",
        "metric": ABSENCE_METRIC,
        "value": 1,
        "time": at.isoformat(),
        "subject": subject,
        "source": "his",
    }


def arrived(subject: str, state: str) -> Any:
    def predicate(deliveries: list[WebhookCall]) -> bool:
        return any(
            d.json["subject"]["id"] == subject
            and d.json["state"] == state
            and d.json["rule_id"] == "ward-round-missing"
            for d in deliveries
        )

    return predicate


def firing(webhook: WebhookReceiver, subject: str) -> list[dict[str, Any]]:
    return [d.json for d in webhook.about(subject) if d.json["state"] == "firing"]


def wait_until(at: datetime) -> None:
    """Let the clock pass ``at``: the deadline must fall due while something is down."""
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 0.2)


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10.0) as client:
        yield client


def test_an_absence_alert_arrives_at_its_deadline_and_the_next_report_resolves_it(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    doctor, head = add_doctor(http, stack.settings.url("goals"))
    seen = datetime.now(UTC)
    post_events(http, stack.settings.url("ingestion"), [round_logged(doctor, 1, seen)])
    webhook.wait_for(arrived(doctor, "firing"))
    received = datetime.now(UTC)
    [alert] = firing(webhook, doctor)
    deadline = seen + GAP
    assert received >= deadline
    assert datetime.fromisoformat(alert["fired_at"]) >= deadline
    assert datetime.fromisoformat(alert["started_at"]) == deadline
    assert alert["kind"] == "overdue"
    assert {(r["id"], r["role"]) for r in alert["recipients"]} == {
        (doctor, "subject"),
        (head, "manager"),
    }
    assert alert["message"] == f"Dr {doctor}: no ward round since {seen:%H:%M:%S}"

    post_events(http, stack.settings.url("ingestion"), [round_logged(doctor, 2, datetime.now(UTC))])
    webhook.wait_for(arrived(doctor, "resolved"))
    [resolved] = [d.json for d in webhook.about(doctor) if d.json["state"] == "resolved"]
    assert resolved["started_at"] == alert["started_at"]


def test_a_new_report_moves_the_deadline(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    doctor, _ = add_doctor(http, stack.settings.url("goals"))
    ingestion = stack.settings.url("ingestion")
    first = datetime.now(UTC)
    post_events(http, ingestion, [round_logged(doctor, 1, first)])
    # A second round before the first deadline: the deadline moves to second + GAP.
    second = datetime.now(UTC)
    assert second < first + GAP, "the first post took longer than the rule's gap"
    post_events(http, ingestion, [round_logged(doctor, 2, second)])
    webhook.wait_for(arrived(doctor, "firing"))
    received = datetime.now(UTC)
    await_drained(stack.settings.nats_url)
    [alert] = firing(webhook, doctor)
    assert datetime.fromisoformat(alert["started_at"]) == second + GAP
    assert received >= second + GAP
    assert [on for on, _ in alerts_about(stack.settings.nats_url, doctor)] == [
        subjects.ALERTS_FIRED
    ]


@pytest.fixture(scope="module")
def own_stack(
    tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver
) -> Iterator[Stack]:
    """A stack of this module's own: its tests kill the evaluator and nats-server."""
    with stack_of_its_own(tmp_path_factory, webhook, name="restart") as running:
        yield running


@pytest.fixture(scope="module")
def own_http(own_stack: Stack) -> Iterator[httpx.Client]:
    """Signed in to the module's own stack (its own identity provider)."""
    with own_stack.client(timeout=10.0) as client:
        yield client


@pytest.mark.parametrize("killed", ["evaluator", "nats"])
def test_a_deadline_that_passes_while_a_process_is_down_fires_when_it_is_back(
    own_stack: Stack, own_http: httpx.Client, webhook: WebhookReceiver, killed: str
) -> None:
    http = own_http
    doctor, _ = add_doctor(http, own_stack.settings.url("goals"))
    seen = datetime.now(UTC)
    post_events(http, own_stack.settings.url("ingestion"), [round_logged(doctor, 1, seen)])
    # Handled (the timer is armed) before anything is killed.
    await_drained(own_stack.settings.nats_url)
    own_stack.kill(killed)
    wait_until(seen + GAP)
    assert firing(webhook, doctor) == []
    own_stack.restart(killed)
    webhook.wait_for(arrived(doctor, "firing"), timeout=60)
    [alert] = firing(webhook, doctor)
    assert datetime.fromisoformat(alert["started_at"]) == seen + GAP
