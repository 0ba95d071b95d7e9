"""Metric events in over HTTP, alerts out on a webhook and in the inbox, through real servers."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx
import pytest

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack
from tests.integration.conftest import WEBHOOK_SECRET, WebhookCall, WebhookReceiver
from tests.integration.helpers import (
    add_doctor,
    alerts_about,
    await_drained,
    post_events,
    rework_event,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=10.0) as client:
        yield client


def _url(stack: Stack, service: str) -> str:
    return stack.settings.url(service)


def _of_subject(subject: str, state: str) -> object:
    def predicate(deliveries: list[WebhookCall]) -> bool:
        return any(
            d.json["subject"]["id"] == subject and d.json["state"] == state for d in deliveries
        )

    return predicate


def _deliveries(webhook: WebhookReceiver, subject: str) -> list[dict[str, object]]:
    return [d.json for d in webhook.deliveries if d.json["subject"]["id"] == subject]


def test_alert_fires_once_while_breaching_and_resolves(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    doctor, head = add_doctor(http, _url(stack, "goals"))
    ingestion = _url(stack, "ingestion")

    post_events(
        http, ingestion, [rework_event(doctor, d, v) for d, v in [(1, 0.11), (2, 0.09), (3, 0.12)]]
    )
    webhook.wait_for(_of_subject(doctor, "firing"))

    # Still breaching on day 4: no second alert. Day 5 clears it.
    post_events(http, ingestion, [rework_event(doctor, 4, 0.15), rework_event(doctor, 5, 0.02)])
    webhook.wait_for(_of_subject(doctor, "resolved"))

    # Nothing else is on its way: day 4 fired no second alert.
    await_drained(stack.settings.nats_url)
    assert [on for on, _ in alerts_about(stack.settings.nats_url, doctor)] == [
        subjects.ALERTS_FIRED,
        subjects.ALERTS_RESOLVED,
    ]
    states = [d["state"] for d in _deliveries(webhook, doctor)]
    assert states == ["firing", "resolved"]
    fired = _deliveries(webhook, doctor)[0]
    assert fired["rule_id"] == "report-rework-rate-high"
    assert fired["severity"] == "warning"
    assert fired["message"].startswith(f"Dr {doctor}: report rework rate 12% is above 8%")
    assert [o["value"] for o in fired["history"]] == [0.11, 0.09, 0.12]
    recipients = {(r["id"], r["role"]) for r in fired["recipients"]}
    assert recipients == {(doctor, "subject"), (head, "manager")}

    # The manager sees it in the inbox, resolved now, newest first.
    inbox = http.get(f"{_url(stack, 'notifier')}/v1/alerts", params={"recipient": head}).json()
    assert [a["fingerprint"] for a in inbox["alerts"]] == [fired["fingerprint"]]
    assert inbox["alerts"][0]["state"] == "resolved"
    firing_only = http.get(
        f"{_url(stack, 'notifier')}/v1/alerts", params={"recipient": head, "state": "firing"}
    ).json()
    assert firing_only["alerts"] == []


def test_webhook_is_signed_with_the_shared_secret(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    doctor, _ = add_doctor(http, _url(stack, "goals"))
    post_events(http, _url(stack, "ingestion"), [rework_event(doctor, d, 0.2) for d in (1, 2, 3)])
    delivery = next(
        d
        for d in webhook.wait_for(_of_subject(doctor, "firing"))
        if d.json["subject"]["id"] == doctor
    )
    timestamp = delivery.headers["x-goalwatch-timestamp"]
    expected = hmac.new(
        WEBHOOK_SECRET.encode(), timestamp.encode() + b"." + delivery.body, hashlib.sha256
    ).hexdigest()
    assert delivery.headers["x-goalwatch-signature"] == f"sha256={expected}"


def test_two_over_one_under_two_over_does_not_fire(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    ingestion = _url(stack, "ingestion")
    doctor, _ = add_doctor(http, _url(stack, "goals"))
    values = [0.2, 0.2, 0.01, 0.2, 0.2]
    post_events(http, ingestion, [rework_event(doctor, d, v) for d, v in enumerate(values, 1)])

    await_drained(stack.settings.nats_url)
    assert alerts_about(stack.settings.nats_url, doctor) == []
    assert _deliveries(webhook, doctor) == []


def test_backfilled_events_count_by_event_time(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    doctor, _ = add_doctor(http, _url(stack, "goals"))
    # Arrive as day 3, day 1, day 2: consecutive by event time all the same.
    batch = [rework_event(doctor, d, v) for d, v in [(3, 0.13), (1, 0.11), (2, 0.12)]]
    answer = http.post(f"{_url(stack, 'ingestion')}/v1/events", json=batch).json()
    assert answer["accepted"] == 3
    delivered = webhook.wait_for(_of_subject(doctor, "firing"))
    fired = next(d.json for d in delivered if d.json["subject"]["id"] == doctor)
    assert [o["time"][:10] for o in fired["history"]] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert fired["value"] == 0.13


def test_resent_event_is_a_duplicate_and_not_evaluated_twice(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    ingestion = _url(stack, "ingestion")
    doctor, _ = add_doctor(http, _url(stack, "goals"))
    first = http.post(f"{ingestion}/v1/events", json=rework_event(doctor, 1, 0.2)).json()
    assert (first["accepted"], first["duplicated"]) == (1, 0)
    # The same day sent three times must not count as three consecutive days.
    for _ in range(2):
        again = http.post(f"{ingestion}/v1/events", json=rework_event(doctor, 1, 0.2)).json()
        assert (again["accepted"], again["duplicated"]) == (0, 1)
    post_events(http, ingestion, [rework_event(doctor, 2, 0.2)])

    await_drained(stack.settings.nats_url)
    assert alerts_about(stack.settings.nats_url, doctor) == []
    assert _deliveries(webhook, doctor) == []


def test_invalid_events_are_rejected_by_index_with_the_field(
    stack: Stack, http: httpx.Client
) -> None:
    good = rework_event("someone", 1, 0.01)
    no_offset = {**rework_event("someone", 2, 0.01), "time": "2026-11-02T18:00:00"}
    not_a_number = {**rework_event("someone", 3, 0.01), "value": "high"}
    response = http.post(
        f"{_url(stack, 'ingestion')}/v1/events", json=[good, no_offset, not_a_number]
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"] + body["duplicated"], body["rejected"]) == (1, 2)
    by_index = {r["index"]: r for r in body["rejects"]}
    assert set(by_index) == {1, 2}
    assert by_index[1]["errors"][0]["field"] == "time"
    assert "offset" in by_index[1]["errors"][0]["message"]
    assert by_index[2]["errors"][0]["field"] == "value"

    all_bad = http.post(f"{_url(stack, 'ingestion')}/v1/events", json=[no_offset])
    assert all_bad.status_code == 422
    not_json = http.post(
        f"{_url(stack, 'ingestion')}/v1/events",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert not_json.status_code == 400
    assert "JSON" in not_json.text


def test_cloudevents_batches_are_accepted_and_evaluated(
    stack: Stack, http: httpx.Client, webhook: WebhookReceiver
) -> None:
    doctor, _ = add_doctor(http, _url(stack, "goals"))
    envelopes = [
        {
            "specversion": "1.0",
            "id": event["id"],
            "source": "his",
            "type": "goalwatch.metric.recorded.v1",
            "time": event["time"],
            "subject": doctor,
            "datacontenttype": "application/json",
            "data": {"metric": event["metric"], "value": event["value"]},
        }
        for event in (rework_event(doctor, d, 0.3) for d in (1, 2, 3))
    ]
    response = http.post(
        f"{_url(stack, 'ingestion')}/v1/events",
        content=json.dumps(envelopes),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    webhook.wait_for(_of_subject(doctor, "firing"))


def test_rules_are_listed(stack: Stack, http: httpx.Client) -> None:
    rules = http.get(f"{_url(stack, 'evaluator')}/v1/rules").json()
    ids = [r["id"] for r in rules]
    assert "report-rework-rate-high" in ids


def test_label_filters_pick_events_by_a_list_of_values_and_by_values_left_out(
    stack: Stack, http: httpx.Client
) -> None:
    # rules/teacher-feedback-low.yaml: programme: [k12, vocational], campus: {not_in: [training]}
    labels = {
        "k12": {"programme": "k12", "campus": "east"},
        "vocational": {"programme": "vocational"},  # no campus: not on the training campus
        "training": {"programme": "k12", "campus": "training"},
        "adult": {"programme": "adult", "campus": "east"},
    }
    teachers = {case: add_doctor(http, _url(stack, "goals"))[0] for case in labels}
    events = [
        {"id": f"{teacher}-w{week}", "metric": "teacher_feedback_score", "value": 4.0,
         "time": f"2026-09-{4 + 7 * week:02d}T17:00:00+08:00", "subject": teacher,
         "source": "lms", "labels": labels[case]}
        for case, teacher in teachers.items()
        for week in (0, 1)
    ]  # fmt: skip
    post_events(http, _url(stack, "ingestion"), events)
    await_drained(stack.settings.nats_url)
    fired = {case: alerts_about(stack.settings.nats_url, t) for case, t in teachers.items()}
    assert {case: [s for s, _ in found] for case, found in fired.items()} == {
        "k12": [subjects.ALERTS_FIRED],
        "vocational": [subjects.ALERTS_FIRED],
        "training": [],
        "adult": [],
    }
    assert {alert["rule_id"] for found in fired.values() for _, alert in found} == {
        "teacher-feedback-low"
    }
    listed = http.get(f"{_url(stack, 'evaluator')}/v1/rules").json()
    [rule] = [r for r in listed if r["id"] == "teacher-feedback-low"]
    assert rule["where"] == {"programme": ["k12", "vocational"], "campus": {"not_in": ["training"]}}


def test_a_range_rule_fires_outside_its_two_thresholds_and_resolves_within(
    stack: Stack, http: httpx.Client
) -> None:
    # tests/integration/conftest.py RANGE_RULE: outside [0.6, 0.95] on two readings running.
    ward = add_doctor(http, _url(stack, "goals"))[0]
    # High, then low: two outside running fire; 0.95 is within (both ends are) and resolves.
    readings = [0.97, 0.55, 0.58, 0.95, 0.6]
    events = [
        {"id": f"{ward}-r{n}", "metric": "ward_occupancy", "value": value,
         "time": f"2026-11-20T{8 + n:02d}:00:00+08:00", "subject": ward, "source": "his"}
        for n, value in enumerate(readings)
    ]  # fmt: skip
    post_events(http, _url(stack, "ingestion"), events)
    await_drained(stack.settings.nats_url)
    found = alerts_about(stack.settings.nats_url, ward)
    assert [s for s, _ in found] == [subjects.ALERTS_FIRED, subjects.ALERTS_RESOLVED]
    fired = found[0][1]
    assert fired["value"] == 0.55 and fired["message"].endswith("occupancy 55%, outside 60%-95%")
    assert found[1][1]["value"] == 0.95


# What each service depends on, and a metric family only that service defines and observes.
SERVICES = {
    "ingestion": ({"nats"}, "goalwatch_events_accepted_total"),
    "goals": ({"nats", "redis"}, "goalwatch_people_upserted_total"),
    "evaluator": ({"nats", "redis"}, "goalwatch_rule_evaluations_total"),
    "notifier": ({"nats", "redis"}, "goalwatch_notifications_sent_total"),
}


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_service_is_healthy_ready_and_exports_its_own_metrics(
    stack: Stack, http: httpx.Client, service: str
) -> None:
    # Runs after the pipeline tests above: every service has observed something by now.
    base = _url(stack, service)
    assert http.get(f"{base}/healthz").status_code == 200
    ready = http.get(f"{base}/readyz")
    assert ready.status_code == 200
    dependencies, own = SERVICES[service]
    assert ready.json()["checks"] == dict.fromkeys(dependencies, "up")
    metrics = http.get(f"{base}/metrics")
    assert metrics.status_code == 200
    samples = _samples(metrics.text)
    # Observed, not only defined: a sample with a value above zero.
    assert any(name.startswith(own) and value > 0 for name, value in samples), own
    assert any(
        name.startswith("goalwatch_handler_seconds_count") and f'service="{service}"' in name
        for name, value in samples
        if value > 0
    )
    others = {family for name, (_, family) in SERVICES.items() if name != service}
    assert not any(name.startswith(tuple(others)) for name, _ in samples)


def _samples(text: str) -> list[tuple[str, float]]:
    """``(name{labels}, value)`` of every sample in a Prometheus text exposition."""
    samples = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples.append((name, float(value)))
    return samples
