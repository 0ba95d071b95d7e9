"""Contract models are strict: unknown fields fail, instances are frozen, times carry an offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from goalwatch.contracts import (
    CLOUDEVENT_TYPE,
    AlertFired,
    MetricCloudEvent,
    MetricRecorded,
    Recipient,
)

EVENT: dict[str, Any] = {
    "id": "evt-1",
    "metric": "report_rework_rate",
    "value": 0.11,
    "time": "2026-11-20T18:00:00+08:00",
    "subject": "li-na",
    "source": "his",
}


def test_valid_event() -> None:
    event = MetricRecorded.model_validate(EVENT)
    assert event.labels == {}
    assert MetricRecorded.model_validate_json(event.model_dump_json()) == event


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        MetricRecorded.model_validate({**EVENT, "unit": "%"})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    assert caught.value.errors()[0]["loc"] == ("unit",)


def test_unknown_field_is_rejected_in_nested_models() -> None:
    alert = {
        "fingerprint": "f",
        "rule_id": "r",
        "rule_name": "R",
        "kind": "threshold",
        "severity": "warning",
        "subject": "s",
        "metric": "m",
        "value": 1,
        "message": "x",
        "notify": ["manager"],
        "started_at": "2026-11-20T18:00:00Z",
        "fired_at": "2026-11-20T18:00:00Z",
        "event_id": "e",
        "history": [{"event_id": "e", "time": "2026-11-20T18:00:00Z", "value": 1, "x": 1}],
    }
    with pytest.raises(ValidationError) as caught:
        AlertFired.model_validate(alert)
    assert caught.value.errors()[0]["loc"] == ("history", 0, "x")


def test_models_are_frozen() -> None:
    event = MetricRecorded.model_validate(EVENT)
    with pytest.raises(ValidationError):
        event.value = 1.0  # type: ignore[misc]


def test_time_needs_an_offset() -> None:
    with pytest.raises(ValidationError) as caught:
        MetricRecorded.model_validate({**EVENT, "time": "2026-11-20T18:00:00"})
    assert caught.value.errors()[0]["type"] == "timezone_aware"
    with pytest.raises(ValidationError):
        MetricRecorded.model_validate({**EVENT, "time": datetime(2026, 11, 20, 18)})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_value_must_be_finite(value: float) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        MetricRecorded.model_validate({**EVENT, "value": value})


def test_cloudevent_type_constant_matches_the_model() -> None:
    assert get_args(MetricCloudEvent.model_fields["type"].annotation) == (CLOUDEVENT_TYPE,)


def test_cloudevent_allows_extensions_and_maps_to_an_event() -> None:
    envelope = MetricCloudEvent.model_validate(
        {
            "specversion": "1.0",
            "id": "evt-1",
            "source": "his",
            "type": CLOUDEVENT_TYPE,
            "subject": "li-na",
            "time": "2026-11-20T18:00:00+08:00",
            "traceparent": "00-abc-def-01",
            "data": {"metric": "report_rework_rate", "value": 0.11},
        }
    )
    assert envelope.to_metric() == MetricRecorded.model_validate(EVENT)


def test_cloudevent_data_is_strict() -> None:
    with pytest.raises(ValidationError) as caught:
        MetricCloudEvent.model_validate(
            {
                "specversion": "1.0",
                "id": "evt-1",
                "source": "his",
                "type": CLOUDEVENT_TYPE,
                "subject": "li-na",
                "time": "2026-11-20T18:00:00+08:00",
                "data": {"metric": "m", "value": 1, "unit": "%"},
            }
        )
    assert caught.value.errors()[0]["loc"] == ("data", "unit")


ALERT: dict[str, Any] = {
    "fingerprint": "f",
    "rule_id": "r",
    "rule_name": "R",
    "kind": "threshold",
    "severity": "critical",
    "subject": "s",
    "metric": "m",
    "value": 1,
    "message": "x",
    "notify": ["manager"],
    "started_at": "2026-11-20T18:00:00Z",
    "fired_at": "2026-11-22T18:00:00Z",
    "event_id": "e",
}


def test_a_first_firing_has_no_escalated_from() -> None:
    assert AlertFired.model_validate(ALERT).escalated_from is None


@pytest.mark.parametrize("source", ["info", "warning"])
def test_an_escalation_rises_from_a_lower_severity(source: str) -> None:
    alert = AlertFired.model_validate({**ALERT, "escalated_from": source})
    assert alert.escalated_from == source


@pytest.mark.parametrize(("source", "severity"), [("critical", "critical"), ("critical", "info")])
def test_an_escalation_that_does_not_rise_is_refused(source: str, severity: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AlertFired.model_validate({**ALERT, "severity": severity, "escalated_from": source})
    message = caught.value.errors()[0]["msg"]
    assert f"escalated_from ({source}) must be a lower severity than severity" in message


def test_a_recipient_stored_before_the_preference_fields_still_reads() -> None:
    old = {"id": "li-na", "name": "Dr. Li Na", "email": None, "role": "manager"}
    recipient = Recipient.model_validate(old)
    assert (recipient.channels, recipient.language, recipient.time_zone) == ([], None, None)
    assert (recipient.group, recipient.org_unit_id) == (None, None)


@pytest.mark.parametrize(
    ("role", "group"), [("group", None), ("manager", "quality-leads"), ("explicit", "x")]
)
def test_a_group_name_goes_with_the_group_role_only(role: str, group: str | None) -> None:
    with pytest.raises(ValidationError, match="group is set exactly when role is group"):
        Recipient.model_validate({"id": "li", "name": "Li", "role": role, "group": group})
    grouped = Recipient(id="li", name="Li", role="group", group="quality-leads")
    assert Recipient.model_validate_json(grouped.model_dump_json()) == grouped
