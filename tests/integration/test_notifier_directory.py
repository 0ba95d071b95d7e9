"""The notifier's directory cache on the real stack: recipients looked up in goals once, then
answered from memory, and a change made through the goals API reaching the next alert at once
(its change event, not the TTL, which is set to an hour here).

A stack of its own: the test counts the notifier's lookups, which no other test may add to.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookCall, WebhookReceiver, stack_of_its_own
from tests.integration.helpers import await_drained, post_events, unique

pytestmark = pytest.mark.integration

RULE = """\
id: {rule_id}
name: Call bells unanswered on a ward
kind: threshold
metric: ward_call_bells
condition: {{op: ">=", value: 5}}
severity: warning
notify: [subject, manager]
message: "{{subject_name}}: {{value:g}} call bells unanswered"
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver) -> Iterator[Stack]:
    env = {"GOALWATCH_DIRECTORY_CACHE_TTL": "1h"}
    with stack_of_its_own(tmp_path_factory, webhook, name="directory", env=env) as running:
        yield running


def counter(client: httpx.Client, url: str, name: str, **labels: str) -> float:
    """The sum of the samples of counter ``name`` with ``labels`` on ``url``'s /metrics."""
    total = 0.0
    for family in text_string_to_metric_families(client.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def changes_applied(client: httpx.Client, notifier: str, at_least: float) -> float:
    """Wait until the notifier has applied ``at_least`` directory change events."""
    deadline = time.monotonic() + 30
    while True:
        applied = counter(client, notifier, "goalwatch_notifier_directory_changes_total")
        if applied >= at_least:
            return applied
        assert time.monotonic() < deadline, f"{applied} changes applied, not {at_least}"
        time.sleep(0.02)  # the notifier's counter over HTTP: there is no event to await here


def bells(subject: str, value: float, at: datetime) -> dict[str, Any]:
    return {
        "id": unique("bells"),
        "metric": "ward_call_bells",
        "value": value,
        "time": at.isoformat(),
        "subject": subject,
        "source": "his",
    }


def told(
    webhook: WebhookReceiver, subject: str, state: str, started_at: datetime
) -> list[tuple[str, str, Any, str]]:
    """Who the notification about ``subject``'s alert that started at ``started_at`` and is
    now ``state`` went to (id, name, e-mail, role), once it arrives. Matched by what it says,
    not by its place among the calls: a delivery may be repeated (with its idempotency key)."""

    def wanted(call: WebhookCall) -> bool:
        body = call.json
        return body["state"] == state and datetime.fromisoformat(body["started_at"]) == started_at

    webhook.wait_for(lambda _: any(wanted(call) for call in webhook.about(subject)))
    call = next(call for call in webhook.about(subject) if wanted(call))
    return [(r["id"], r["name"], r["email"], r["role"]) for r in call.json["recipients"]]


def add_rule(client: httpx.Client, evaluator: str) -> None:
    rule_id = unique("bells").lower()
    created = client.post(
        f"{evaluator}/v1/rules", json={"source": RULE.format(rule_id=rule_id), "comment": "test"}
    )
    assert created.status_code == 201, created.text


def test_recipients_are_looked_up_once_and_a_rename_reaches_the_next_alert(
    stack: Stack, webhook: WebhookReceiver
) -> None:
    goals, notifier = stack.settings.url("goals"), stack.settings.url("notifier")
    ingestion = stack.settings.url("ingestion")
    nurse, sister = unique("nurse"), unique("sister")
    start = datetime.now(UTC)
    with stack.client(timeout=10.0) as client:
        changes = counter(client, notifier, "goalwatch_notifier_directory_changes_total")
        people = [
            {"id": sister, "name": "Sister Gao", "email": "gao@example.org"},
            {"id": nurse, "name": "Nurse Xu", "manager_id": sister},
        ]
        assert client.post(f"{goals}/v1/people", json=people).status_code == 200
        # Both creations applied: no lookup below can race them.
        changes = changes_applied(client, notifier, changes + 2)
        add_rule(client, stack.settings.url("evaluator"))

        def lookups(outcome: str) -> float:
            name = "goalwatch_notifier_directory_lookups_total"
            return counter(client, notifier, name, kind="person", outcome=outcome)

        hits, misses = lookups("hit"), lookups("miss")

        # Fired, then resolved: two alert transitions, each to the nurse and her manager.
        post_events(client, ingestion, [bells(nurse, 7, start)])
        assert told(webhook, nurse, "firing", start) == [
            (nurse, "Nurse Xu", None, "subject"),
            (sister, "Sister Gao", "gao@example.org", "manager"),
        ]
        post_events(client, ingestion, [bells(nurse, 1, start + timedelta(seconds=1))])
        assert told(webhook, nurse, "resolved", start) == told(webhook, nurse, "firing", start)
        # One goals lookup per person; the resolution was answered from the cache.
        assert (lookups("miss") - misses, lookups("hit") - hits) == (2, 2)

        # Renamed, with a new address, through the goals API: the change event drops her.
        renamed = {"id": sister, "name": "Matron Gao", "email": "matron.gao@example.org"}
        assert client.post(f"{goals}/v1/people", json=renamed).status_code == 200
        changes_applied(client, notifier, changes + 1)
        again = start + timedelta(seconds=2)
        post_events(client, ingestion, [bells(nurse, 8, again)])
        assert told(webhook, nurse, "firing", again) == [
            (nurse, "Nurse Xu", None, "subject"),
            (sister, "Matron Gao", "matron.gao@example.org", "manager"),
        ]
        # Only she was asked for again: the nurse's record does not derive from her name.
        assert (lookups("miss") - misses, lookups("hit") - hits) == (3, 3)


def test_changes_are_followed_again_after_nats_restarts(
    stack: Stack, webhook: WebhookReceiver
) -> None:
    goals, notifier = stack.settings.url("goals"), stack.settings.url("notifier")
    ingestion = stack.settings.url("ingestion")
    nurse, sister = unique("nurse"), unique("sister")
    start = datetime.now(UTC)
    with stack.client(timeout=10.0) as client:
        changes = counter(client, notifier, "goalwatch_notifier_directory_changes_total")
        people = [
            {"id": sister, "name": "Sister Gao"},
            {"id": nurse, "name": "Nurse Xu", "manager_id": sister},
        ]
        assert client.post(f"{goals}/v1/people", json=people).status_code == 200
        changes = changes_applied(client, notifier, changes + 2)
        add_rule(client, stack.settings.url("evaluator"))
        post_events(client, ingestion, [bells(nurse, 7, start)])
        assert told(webhook, nurse, "firing", start)[1][:2] == (sister, "Sister Gao")
        # Settled first: the restart is about the changes consumer, not a delivery cut short.
        await_drained(stack.settings.nats_url)

        # The notifier's consumer of the changes lived in the server's memory: it is gone.
        stack.kill("nats")
        stack.restart("nats")
        renamed = {"id": sister, "name": "Matron Gao"}
        assert client.post(f"{goals}/v1/people", json=renamed).status_code == 200
        changes_applied(client, notifier, changes + 1)
        post_events(client, ingestion, [bells(nurse, 1, start + timedelta(seconds=1))])
        assert told(webhook, nurse, "resolved", start)[1][:2] == (sister, "Matron Gao")
