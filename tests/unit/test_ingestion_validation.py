"""Validation of request/message bodies: shapes, per-event errors, CloudEvents mapping."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from services.ingestion.schemas import EventReject, FieldError
from services.ingestion.validation import (
    BodyError,
    BodyFormat,
    ParsedBody,
    body_format,
    parse_events,
)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "evt-1",
        "metric": "report_rework_rate",
        "value": 0.11,
        "time": "2026-11-20T18:00:00+08:00",
        "subject": "li-na",
        "source": "his",
        "labels": {"department": "radiology"},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def cloudevent(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "his",
        "type": "goalwatch.metric.recorded.v1",
        "subject": "li-na",
        "time": "2026-11-20T18:00:00+08:00",
        "datacontenttype": "application/json",
        "data": {"metric": "report_rework_rate", "value": 0.11, "labels": {"dept": "radiology"}},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def parse(document: Any, fmt: BodyFormat = BodyFormat.JSON, max_batch: int = 1000) -> ParsedBody:
    return parse_events(json.dumps(document).encode(), fmt=fmt, max_batch=max_batch)


def only_error(parsed: ParsedBody) -> FieldError:
    assert len(parsed.rejects) == 1, parsed.rejects
    assert len(parsed.rejects[0].errors) == 1, parsed.rejects[0].errors
    return parsed.rejects[0].errors[0]


def body_error(body: bytes, fmt: BodyFormat = BodyFormat.JSON, max_batch: int = 1000) -> BodyError:
    with pytest.raises(BodyError) as caught:
        parse_events(body, fmt=fmt, max_batch=max_batch)
    return caught.value


# --- shapes -------------------------------------------------------------------------------


def test_single_object_is_one_event() -> None:
    parsed = parse(event())
    assert not parsed.batch and not parsed.rejects
    [item] = parsed.events
    assert item.index == 0
    assert item.event.id == "evt-1"
    assert item.event.time == datetime(2026, 11, 20, 18, tzinfo=timezone(timedelta(hours=8)))
    assert item.event.labels == {"department": "radiology"}


def test_array_is_a_batch_and_keeps_indexes() -> None:
    parsed = parse([event(id="a"), event(id="b", value="x"), event(id="c")])
    assert parsed.batch
    assert [(i.index, i.event.id) for i in parsed.events] == [(0, "a"), (2, "c")]
    assert [(r.index, r.id) for r in parsed.rejects] == [(1, "b")]
    assert parsed.total == 3


def test_body_not_json_names_line_and_column() -> None:
    error = body_error(b'{\n  "id": "a",\n  "value": 1,,\n}')
    assert error.status == 400
    assert error.message.startswith("body is not valid JSON: ")
    assert "line 3 column" in error.message


@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_empty_body(body: bytes) -> None:
    error = body_error(body)
    assert error.status == 400
    assert "body is empty" in error.message


def test_empty_array_is_no_events() -> None:
    error = body_error(b"[]")
    assert (error.status, error.message) == (400, "no events: the array is empty")


def test_batch_too_large_says_how_to_split() -> None:
    error = body_error(json.dumps([event(id=str(i)) for i in range(4)]).encode(), max_batch=3)
    assert error.status == 413
    assert error.events == 4
    assert "4 in one request, at most 3" in error.message
    assert "split them into requests of up to 3 events" in error.message


def test_scalar_body_is_rejected_whole() -> None:
    error = body_error(b'"hello"')
    assert error.status == 400
    assert "JSON object (one event) or an array of events, not a string" in error.message


def test_array_element_that_is_not_an_object() -> None:
    parsed = parse([event(), 42])
    assert only_error(parsed) == FieldError(
        field="", message="an event must be a JSON object, not a number", hint=None
    )
    assert parsed.rejects[0].index == 1


# --- per-event errors ---------------------------------------------------------------------


def test_time_without_offset() -> None:
    error = only_error(parse(event(time="2026-11-20T18:00:00")))
    assert error.field == "time"
    assert error.message == "time must include a UTC offset, e.g. 2026-11-20T18:00:00+08:00"
    assert error.hint is not None and "Z" in error.hint


def test_time_as_unix_timestamp() -> None:
    error = only_error(parse(event(time=1_700_000_000)))
    assert error.field == "time"
    assert "ISO 8601" in error.message
    assert error.hint == "Unix timestamps are not accepted: convert to ISO 8601"


def test_date_without_time() -> None:
    error = only_error(parse(event(time="2026-11-20")))
    assert error.hint == "a date alone is not a time: send e.g. 2026-11-20T00:00:00+08:00"


def test_time_unreadable() -> None:
    error = only_error(parse(event(time="yesterday")))
    assert error.field == "time"
    assert error.hint is not None and '"yesterday"' in error.hint


def test_nan_value() -> None:
    parsed = parse_events(
        b'{"id": "a", "metric": "m", "value": NaN, "time": "2026-11-20T18:00:00Z", '
        b'"subject": "s", "source": "x"}',
        fmt=BodyFormat.JSON,
        max_batch=10,
    )
    assert only_error(parsed) == FieldError(
        field="value", message="value must be a finite number (not NaN or infinity)", hint=None
    )


def test_string_value_is_not_a_number() -> None:
    error = only_error(parse(event(value="0.5")))
    assert error.field == "value"
    assert error.message == 'value must be a JSON number, not a string "0.5"'
    assert error.hint == "send the number without quotes: 0.5"


def test_boolean_value_is_not_a_number() -> None:
    error = only_error(parse(event(value=True)))
    assert error.message == "value must be a JSON number, not a boolean true"


def test_integer_value_is_fine() -> None:
    assert parse(event(value=3)).events[0].event.value == 3.0


def test_unknown_field_is_named_with_a_suggestion() -> None:
    error = only_error(parse(event(metirc="x")))
    assert error.field == "metirc"
    assert error.message == "unknown field 'metirc'"
    assert error.hint is not None
    assert error.hint.startswith("did you mean 'metric'?")
    assert "allowed fields: id, metric, value, time, subject, source, labels" in error.hint


def test_missing_field_shows_an_example() -> None:
    error = only_error(parse(event(subject=...)))
    assert error.field == "subject"
    assert error.message == "subject is required"
    assert error.hint == 'add "subject", e.g. "subject": "emp-1042"'


def test_metric_name_suggests_snake_case() -> None:
    error = only_error(parse(event(metric="Report Rework-Rate")))
    assert error.field == "metric"
    assert "lower snake_case" in error.message
    assert error.hint == "e.g. 'report_rework_rate'"


def test_label_value_must_be_a_string() -> None:
    error = only_error(parse(event(labels={"floor": 3})))
    assert error.field == "labels.floor"
    assert error.message == "label values must be strings, not a number 3"
    assert error.hint == 'send "floor": "3"'


def test_empty_subject() -> None:
    error = only_error(parse(event(subject="")))
    assert (error.field, error.message) == ("subject", "subject must not be empty")


@pytest.mark.parametrize("subject", ["  ", "a/b", "..", ".", "li na", "x" * 129, "é"])
def test_subject_outside_the_person_id_alphabet_is_rejected(subject: str) -> None:
    error = only_error(parse(event(subject=subject)))
    assert error.field == "subject"
    assert "person id" in error.message or "too long" in error.message


def test_every_error_of_an_event_is_reported() -> None:
    parsed = parse(event(value="x", time="2026-11-20", extra=1))
    assert [e.field for e in parsed.rejects[0].errors] == ["value", "time", "extra"]


def test_reject_without_string_id_has_no_id() -> None:
    parsed = parse(event(id=7))
    assert parsed.rejects == [
        EventReject(
            index=0,
            id=None,
            errors=[FieldError(field="id", message="id must be a string, not a number")],
        )
    ]


def test_duplicate_id_in_a_batch_rejects_the_second() -> None:
    parsed = parse([event(id="a"), event(id="b"), event(id="a", value=2)])
    assert [i.index for i in parsed.events] == [0, 1]
    [reject] = parsed.rejects
    assert (reject.index, reject.id) == (2, "a")
    assert reject.errors[0].field == "id"
    assert reject.errors[0].message == "duplicate id 'a': the event at index 0 has the same id"


def test_cloudevent_sent_as_plain_json_is_explained() -> None:
    error = only_error(parse(cloudevent()))
    assert "CloudEvent" in error.message
    assert error.hint is not None and "application/cloudevents+json" in error.hint


# --- CloudEvents --------------------------------------------------------------------------


def test_cloudevent_maps_to_metric_recorded() -> None:
    parsed = parse(cloudevent(traceparent="00-abc"), BodyFormat.CLOUDEVENT)
    assert not parsed.rejects and not parsed.batch
    recorded = parsed.events[0].event
    assert recorded.model_dump(mode="json") == {
        "id": "ce-1",
        "metric": "report_rework_rate",
        "value": 0.11,
        "time": "2026-11-20T18:00:00+08:00",
        "subject": "li-na",
        "source": "his",
        "labels": {"dept": "radiology"},
    }


def test_cloudevent_batch() -> None:
    parsed = parse(
        [cloudevent(id="a"), cloudevent(id="b", type="com.example.other")],
        BodyFormat.CLOUDEVENT_BATCH,
    )
    assert [i.event.id for i in parsed.events] == ["a"]
    error = only_error(parsed)
    assert error.field == "type"
    assert error.message == "type must be 'goalwatch.metric.recorded.v1'"


def test_cloudevent_requires_time_and_subject() -> None:
    parsed = parse(cloudevent(time=..., subject=...), BodyFormat.CLOUDEVENT)
    errors = {e.field: e for e in parsed.rejects[0].errors}
    assert set(errors) == {"subject", "time"}
    assert errors["time"].message == "time is required"
    assert errors["time"].hint is not None
    assert "CloudEvents makes time optional" in errors["time"].hint


def test_cloudevent_wrong_specversion() -> None:
    error = only_error(parse(cloudevent(specversion="0.3"), BodyFormat.CLOUDEVENT))
    assert (error.field, error.message) == ("specversion", "specversion must be '1.0'")


def test_cloudevent_data_errors_are_prefixed() -> None:
    parsed = parse(cloudevent(data={"metric": "m", "valu": 1}), BodyFormat.CLOUDEVENT)
    errors = {e.field: e for e in parsed.rejects[0].errors}
    assert set(errors) == {"data.value", "data.valu"}
    assert errors["data.valu"].hint is not None
    assert errors["data.valu"].hint.startswith("did you mean 'value'?")


def test_cloudevent_binary_data_is_explained() -> None:
    error = only_error(parse(cloudevent(data=..., data_base64="AAE="), BodyFormat.CLOUDEVENT))
    assert error.field == "data"
    assert error.hint is not None and "data_base64" in error.hint


def test_cloudevent_content_type_and_shape_must_agree() -> None:
    assert body_error(json.dumps([cloudevent()]).encode(), BodyFormat.CLOUDEVENT).status == 400
    error = body_error(json.dumps(cloudevent()).encode(), BodyFormat.CLOUDEVENT_BATCH)
    assert "must be a JSON array" in error.message


# --- content types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json; charset=utf-8", BodyFormat.JSON),
        ("Application/CloudEvents+JSON", BodyFormat.CLOUDEVENT),
        ("application/cloudevents-batch+json", BodyFormat.CLOUDEVENT_BATCH),
        ("application/vnd.example+json", BodyFormat.JSON),
    ],
)
def test_body_format(content_type: str | None, expected: BodyFormat) -> None:
    assert body_format(content_type) is expected


def test_no_content_type_is_refused_over_http_and_read_as_json_on_nats() -> None:
    with pytest.raises(BodyError) as caught:
        body_format(None)
    assert caught.value.status == 415
    assert "Content-Type: application/json" in caught.value.message
    assert body_format(None, lenient=True) is BodyFormat.JSON


def test_unsupported_content_type_names_the_supported_ones() -> None:
    with pytest.raises(BodyError) as caught:
        body_format("application/x-www-form-urlencoded")
    assert caught.value.status == 415
    for supported in (
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
    ):
        assert supported in caught.value.message


def test_lenient_format_reads_anything_else_as_json() -> None:
    assert body_format("text/plain", lenient=True) is BodyFormat.JSON
