"""An alert whose severity rises, through the real notifier: the firing, its escalation and its
resolution published onto the alerts stream as the evaluator publishes them, delivered to a
real webhook receiver and kept in the inbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import nats
import pytest

from goalwatch.contracts import AlertFired, AlertResolved, Severity, subjects
from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookCall, WebhookReceiver
from tests.integration.helpers import add_doctor, await_drained, unique

pytestmark = pytest.mark.integration

STARTED = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
FIRED = datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC)
ESCALATED = FIRED + timedelta(days=2)
RESOLVED = FIRED + timedelta(days=3)


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10.0) as client:
        yield client


def _fired(fingerprint: str, doctor: str) -> AlertFired:
    return AlertFired(
        fingerprint=fingerprint,
        rule_id="report-rework-rate-high",
        rule_name="Report rework rate above 8%",
        kind="threshold",
        severity=Severity.WARNING,
        subject=doctor,
        subject_name=f"Dr {doctor}",
        metric="report_rework_rate",
        value=0.11,
        message=f"Dr {doctor}: rework rate 11% for 3 days",
        notify=["subject", "manager"],
        labels={"department": "radiology"},
        started_at=STARTED,
        fired_at=FIRED,
        event_id=f"{doctor}-d3",
    )


def _escalated(alert: AlertFired) -> AlertFired:
    """What the evaluator publishes when the alert is still breaching two days later."""
    return alert.model_copy(
        update={
            "severity": Severity.CRITICAL,
            "escalated_from": Severity.WARNING,
            "value": 0.15,
            "message": f"{alert.subject_name}: rework rate 15% for 5 days",
            "fired_at": ESCALATED,
            "event_id": f"{alert.subject}-d5",
        }
    )


def _resolved(alert: AlertFired) -> AlertResolved:
    return AlertResolved(
        fingerprint=alert.fingerprint,
        rule_id=alert.rule_id,
        rule_name=alert.rule_name,
        severity=Severity.WARNING,  # the rule's; the episode got to critical
        subject=alert.subject,
        subject_name=alert.subject_name,
        metric=alert.metric,
        value=0.04,
        message=f"{alert.subject_name}: rework rate back to 4%",
        notify=alert.notify,
        started_at=alert.started_at,
        resolved_at=RESOLVED,
        event_id=f"{alert.subject}-d6",
    )


def _publish(stack: Stack, alert: AlertFired | AlertResolved) -> None:
    """Onto the alerts stream, as the evaluator does, under a Nats-Msg-Id of its own (so a
    second call is a second message, as a republished escalation would be)."""
    subject = subjects.ALERTS_FIRED if isinstance(alert, AlertFired) else subjects.ALERTS_RESOLVED

    async def publish() -> None:
        nc = await nats.connect(stack.settings.nats_url)
        try:
            await nc.jetstream().publish(
                subject,
                alert.model_dump_json().encode(),
                headers={"Nats-Msg-Id": unique("escalation-test")},
            )
        finally:
            await nc.close()

    asyncio.run(publish())


def _count(doctor: str, n: int) -> Callable[[list[WebhookCall]], bool]:
    return lambda calls: sum(c.json["subject"]["id"] == doctor for c in calls) >= n


def _escalations_sent(http: httpx.Client, stack: Stack) -> float:
    """``goalwatch_notifier_escalations_sent_total{channel="webhook"}`` now."""
    text = http.get(f"{stack.settings.url('notifier')}/metrics").text
    prefix = 'goalwatch_notifier_escalations_sent_total{channel="webhook"} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def _entry(http: httpx.Client, stack: Stack, fingerprint: str) -> dict[str, object]:
    response = http.get(f"{stack.settings.url('notifier')}/v1/alerts/{fingerprint}")
    assert response.status_code == 200, response.text
    entry: dict[str, object] = response.json()
    return entry


def test_a_rise_in_severity_is_announced_once_between_firing_and_resolution(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    doctor, head = add_doctor(http, stack.settings.url("goals"))
    fingerprint = unique("fp-rising")
    alert = _fired(fingerprint, doctor)
    escalations_before = _escalations_sent(http, stack)

    _publish(stack, alert)
    webhook.wait_for(_count(doctor, 1))
    _publish(stack, _escalated(alert))
    webhook.wait_for(_count(doctor, 2))

    entry = _entry(http, stack, fingerprint)
    assert (entry["state"], entry["severity"]) == ("firing", "critical")
    assert entry["escalated_from"] == "warning"
    assert entry["escalated_at"] == "2026-11-22T10:00:05Z"
    assert entry["fired_at"] == "2026-11-20T10:00:05Z"  # the first firing's
    assert entry["updated_at"] == "2026-11-22T10:00:05Z"
    assert entry["message"] == f"Dr {doctor}: rework rate 15% for 5 days"

    # The same escalation published again, under another Nats-Msg-Id: handled, not sent.
    _publish(stack, _escalated(alert))
    await_drained(stack.settings.nats_url)
    assert len(webhook.about(doctor)) == 2

    _publish(stack, _resolved(alert))
    webhook.wait_for(_count(doctor, 3))
    await_drained(stack.settings.nats_url)

    calls = webhook.about(doctor)
    assert [c.status for c in calls] == [200, 200, 200]  # one POST per transition, no more
    fired, escalated, resolved = (c.json for c in calls)
    assert (fired["state"], fired["severity"], fired["escalated_from"]) == (
        "firing",
        "warning",
        None,
    )
    assert (escalated["state"], escalated["severity"], escalated["escalated_from"]) == (
        "firing",
        "critical",
        "warning",
    )
    assert escalated["escalated_at"] == "2026-11-22T10:00:05Z"
    assert escalated["fired_at"] == "2026-11-20T10:00:05Z"
    assert {r["id"] for r in escalated["recipients"]} == {doctor, head}
    assert (resolved["state"], resolved["severity"], resolved["escalated_from"]) == (
        "resolved",
        "critical",
        None,
    )
    keys = [c.headers["idempotency-key"] for c in calls]
    assert len(set(keys)) == 3
    assert [c.json["idempotency_key"] for c in calls] == keys

    entry = _entry(http, stack, fingerprint)
    assert (entry["state"], entry["severity"]) == ("resolved", "critical")
    assert entry["escalated_at"] == "2026-11-22T10:00:05Z"
    assert _escalations_sent(http, stack) == escalations_before + 1


def test_an_escalation_arriving_after_the_resolution_is_not_announced(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    doctor, _ = add_doctor(http, stack.settings.url("goals"))
    fingerprint = unique("fp-late-rise")
    alert = _fired(fingerprint, doctor)

    _publish(stack, alert)
    webhook.wait_for(_count(doctor, 1))
    _publish(stack, _resolved(alert))
    webhook.wait_for(_count(doctor, 2))

    _publish(stack, _escalated(alert))
    await_drained(stack.settings.nats_url)

    assert [c.json["state"] for c in webhook.about(doctor)] == ["firing", "resolved"]
    entry = _entry(http, stack, fingerprint)
    assert entry["state"] == "resolved"
    assert entry["resolved_at"] == "2026-11-23T10:00:05Z"
    assert entry["escalated_from"] is None
