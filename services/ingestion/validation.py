"""Turn a request or message body into valid metric events and precise rejects.

Pure functions, no I/O. A body is either unreadable as a whole (:class:`BodyError`, nothing in
it is accepted) or a list of events, each of which is accepted or rejected on its own with the
field, the reason and a hint.

Formats:

* plain JSON (``application/json``): one :class:`MetricRecorded` object, or an array of them;
* CloudEvents 1.0 structured mode: ``application/cloudevents+json`` carries one
  :class:`MetricCloudEvent`, ``application/cloudevents-batch+json`` an array of them. The
  ``type`` must be ``goalwatch.metric.recorded.v1``; ``subject`` and ``time`` are required.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from goalwatch.auth.principal import ANY, Principal
from goalwatch.catalogue import Catalogue
from goalwatch.contracts import CLOUDEVENT_TYPE, MetricCloudEvent, MetricData, MetricRecorded
from goalwatch.contracts.metrics import METRIC_NAME_PATTERN, PERSON_ID_PATTERN
from goalwatch.problems import clip
from services.ingestion.catalogue_check import Uncatalogued, catalogue_errors
from services.ingestion.schemas import EventReject, FieldError

EXAMPLE_TIME = "2026-11-20T18:00:00+08:00"
_METRIC_NAME = re.compile(METRIC_NAME_PATTERN)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SURROGATE = re.compile("[\ud800-\udfff]")
# No float is longer than this in decimal digits (1.8e308): a longer integer literal is not a
# number an event can carry, and Python refuses to read one past 4300 digits at all.
MAX_INTEGER_DIGITS = 310
# What one rejected event's answer lists at most; the rest is counted.
MAX_ERRORS_PER_EVENT = 20


class BodyFormat(StrEnum):
    """How a body is laid out."""

    JSON = "application/json"
    CLOUDEVENT = "application/cloudevents+json"
    CLOUDEVENT_BATCH = "application/cloudevents-batch+json"


SUPPORTED_CONTENT_TYPES: tuple[str, ...] = tuple(f.value for f in BodyFormat)


class BodyError(Exception):
    """The body cannot be read as events at all; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int, events: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # How many events the body held, as far as can be told: what the rejected counter counts.
        self.events = events


@dataclass(frozen=True)
class EventLimits:
    """What one event may be beyond its schema: its size, how far ahead its time is, and what
    the metric catalogue allows."""

    max_event_bytes: int | None = None
    """Largest event as stored (its JSON), in bytes: below the NATS ``max_payload``."""
    max_future: timedelta | None = None
    """How far after ``now`` an event's time may be."""
    now: datetime | None = None
    """The ingestion clock; the current time when None."""
    catalogue: Catalogue | None = None
    """The metric catalogue: an event's metric, value and labels must be in it."""
    onboarding_sources: frozenset[str] = frozenset()
    """Sources whose uncatalogued metrics and labels are accepted (and noted) while they are
    onboarded, instead of rejected."""
    sender: Principal | None = None
    """Who sends the events: each must be of a metric and source its publisher grant names."""


@dataclass(frozen=True)
class _LongInteger:
    """Stands in for an integer literal too long to be a number (see MAX_INTEGER_DIGITS)."""

    digits: int


def _integer(text: str) -> int | _LongInteger:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INTEGER_DIGITS else _LongInteger(digits)


@dataclass(frozen=True)
class IndexedEvent:
    """A valid event and its position in the body."""

    index: int
    event: MetricRecorded


@dataclass(frozen=True)
class ParsedBody:
    """The events of one body: the valid ones, and the rejected ones with reasons."""

    events: list[IndexedEvent]
    rejects: list[EventReject]
    batch: bool
    uncatalogued: list[Uncatalogued] = field(default_factory=list)
    """What onboarding sources sent that the catalogue does not know, accepted all the same."""

    @property
    def total(self) -> int:
        """Number of events the body held."""
        return len(self.events) + len(self.rejects)


def body_format(content_type: str | None, *, lenient: bool = False) -> BodyFormat:
    """The format named by a ``Content-Type``.

    Over HTTP a JSON type is required: a browser sends a cross-site "simple" request only
    with no type or a form or text type, so refusing those keeps web pages from posting
    events. ``lenient`` (for NATS, where senders often set no or a generic content type)
    reads any type that is not CloudEvents as plain JSON.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "" and not lenient:
        raise BodyError(
            "no Content-Type: send the events with Content-Type: application/json (or a "
            "CloudEvents type), e.g. curl -H 'Content-Type: application/json'",
            status=415,
        )
    if media_type in ("", BodyFormat.JSON.value):
        return BodyFormat.JSON
    if media_type == BodyFormat.CLOUDEVENT.value:
        return BodyFormat.CLOUDEVENT
    if media_type == BodyFormat.CLOUDEVENT_BATCH.value:
        return BodyFormat.CLOUDEVENT_BATCH
    if lenient or media_type.endswith("+json"):
        return BodyFormat.JSON
    raise BodyError(
        f"unsupported content type '{clip(media_type)}': send {', '.join(SUPPORTED_CONTENT_TYPES)} "
        "(e.g. curl -H 'Content-Type: application/json')",
        status=415,
    )


def parse_events(
    body: bytes, *, fmt: BodyFormat, max_batch: int, limits: EventLimits | None = None
) -> ParsedBody:
    """Validate every event in ``body``, each against its schema and ``limits``.

    Raises :class:`BodyError` when the body is not JSON, has the wrong shape for ``fmt``, is an
    empty array, or holds more than ``max_batch`` events.
    """
    limits = limits or EventLimits()
    now = limits.now or datetime.now(UTC)
    items, batch = _items(body, fmt=fmt, max_batch=max_batch)
    events: list[IndexedEvent] = []
    rejects: list[EventReject] = []
    uncatalogued: list[Uncatalogued] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        raw_id = item.get("id") if isinstance(item, dict) else None
        reject_id = clip(raw_id, 200) if isinstance(raw_id, str) else None
        notes: list[Uncatalogued] = []
        unreadable = _unreadable(item)
        if unreadable:
            event, errors = None, unreadable
        else:
            event, errors = _validate(item, fmt=fmt)
        if event is not None:
            errors = _beyond_limits(event, limits, now=now)
            event = None if errors else event
        if event is not None and limits.catalogue is not None:
            errors, notes = catalogue_errors(
                event,
                limits.catalogue,
                onboarding=limits.onboarding_sources,
                cloudevent=fmt is not BodyFormat.JSON,
            )
            event = None if errors else event
        if event is not None and event.id in first_index:
            errors = [
                FieldError(
                    field="id",
                    message=f"duplicate id '{event.id}': the event at index "
                    f"{first_index[event.id]} has the same id",
                    hint="give every event its own id; this one was not accepted",
                )
            ]
            event = None
        if event is None:
            rejects.append(EventReject(index=index, id=reject_id, errors=_capped(errors)))
            continue
        first_index[event.id] = index
        events.append(IndexedEvent(index=index, event=event))
        uncatalogued.extend(notes)
    return ParsedBody(events=events, rejects=rejects, batch=batch, uncatalogued=uncatalogued)


def _items(body: bytes, *, fmt: BodyFormat, max_batch: int) -> tuple[list[Any], bool]:
    if not body.strip():
        raise BodyError(
            "body is empty: send one event as a JSON object, or an array of events", status=400
        )
    try:
        document = json.loads(body, parse_int=_integer)
    except json.JSONDecodeError as exc:
        raise BodyError(f"body is not valid JSON: {exc}", status=400) from exc
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not valid UTF-8: {exc}", status=400) from exc
    except RecursionError as exc:
        raise BodyError("body is not valid JSON: it is nested too deeply", status=400) from exc

    if isinstance(document, dict):
        if fmt is BodyFormat.CLOUDEVENT_BATCH:
            raise BodyError(
                f"{fmt.value} must be a JSON array of CloudEvents; send a single event with "
                f"Content-Type: {BodyFormat.CLOUDEVENT.value}",
                status=400,
            )
        return [document], False
    if isinstance(document, list):
        if fmt is BodyFormat.CLOUDEVENT:
            raise BodyError(
                f"{fmt.value} carries one CloudEvent, not an array; send a batch with "
                f"Content-Type: {BodyFormat.CLOUDEVENT_BATCH.value}",
                status=400,
            )
        if not document:
            raise BodyError("no events: the array is empty", status=400, events=0)
        if len(document) > max_batch:
            raise BodyError(
                f"too many events: {len(document)} in one request, at most {max_batch}; "
                f"split them into requests of up to {max_batch} events each",
                status=413,
                events=len(document),
            )
        return document, True
    raise BodyError(
        f"body must be a JSON object (one event) or an array of events, not {_json_kind(document)}",
        status=400,
    )


def _unreadable(item: Any) -> list[FieldError]:
    """What in ``item`` no event can carry, wherever it is: lone surrogates (in keys or
    values) and integer literals longer than any number. Walked without recursion: the JSON
    reader already bounds the depth, this must not add a limit of its own."""
    found: list[FieldError] = []
    stack: list[tuple[str, Any]] = [("", item)]
    while stack and len(found) <= MAX_ERRORS_PER_EVENT:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                where = f"{path}.{clip(key)}" if path else clip(key)
                if _SURROGATE.search(key):
                    found.append(_surrogate_error(where, "a field name"))
                stack.append((where, child))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(value))
        elif isinstance(value, str) and _SURROGATE.search(value):
            found.append(_surrogate_error(path, "the text"))
        elif isinstance(value, _LongInteger):
            found.append(
                FieldError(
                    field=path,
                    message=f"{path or 'the event'} is an integer literal of {value.digits} "
                    f"digits; no number has more than {MAX_INTEGER_DIGITS}",
                    hint="send a number a 64-bit float can hold, e.g. 0.11 or 1.5e9",
                )
            )
    return found


def _surrogate_error(path: str, what: str) -> FieldError:
    return FieldError(
        field=path,
        message=f"{path or 'the event'} is not valid Unicode: {what} holds a lone surrogate "
        "(an unpaired \\ud800-\\udfff escape)",
        hint="send text as valid UTF-8; a character outside the BMP is one pair of escapes",
    )


def _beyond_limits(
    event: MetricRecorded, limits: EventLimits, *, now: datetime
) -> list[FieldError]:
    errors: list[FieldError] = []
    sender = limits.sender
    if sender is not None and not sender.may_publish(metric=event.metric, source=event.source):
        metric_ok = ANY in sender.metrics or event.metric in sender.metrics
        errors.append(
            FieldError(
                field="source" if metric_ok else "metric",
                message=f"{sender.who} may not publish metric '{event.metric}' from source "
                f"'{clip(event.source)}': its grant covers metrics "
                f"{_listed(sender.metrics)} and sources {_listed(sender.sources)}",
                hint="send only what this client is granted, or ask the operator to widen its "
                "grant at the identity provider (claims goalwatch_metrics, goalwatch_sources)",
            )
        )
    if limits.max_future is not None and event.time > now + limits.max_future:
        ahead = event.time - now
        errors.append(
            FieldError(
                field="time",
                message=f"time {event.time.isoformat()} is {_duration(ahead)} ahead of the "
                f"ingestion clock ({now.isoformat(timespec='seconds')}); at most "
                f"{_duration(limits.max_future)} ahead is accepted",
                hint="check the sender's clock and time zone; the bound is "
                "GOALWATCH_INGEST_MAX_FUTURE",
            )
        )
    if limits.max_event_bytes is not None:
        size = len(event.model_dump_json())
        if size > limits.max_event_bytes:
            errors.append(
                FieldError(
                    field="",
                    message=f"the event is {size} bytes as JSON, at most {limits.max_event_bytes}",
                    hint="send fewer or shorter labels; the bound is "
                    "GOALWATCH_INGEST_MAX_EVENT_BYTES",
                )
            )
    return errors


def _listed(names: frozenset[str]) -> str:
    return ", ".join(sorted(names)) if names else "none"


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.4g} {unit}"
    return f"{seconds} s"


def _capped(errors: list[FieldError]) -> list[FieldError]:
    if len(errors) <= MAX_ERRORS_PER_EVENT:
        return errors
    more = len(errors) - MAX_ERRORS_PER_EVENT + 1
    return [
        *errors[: MAX_ERRORS_PER_EVENT - 1],
        FieldError(field="", message=f"and {more} more errors in this event", hint=None),
    ]


def _validate(item: Any, *, fmt: BodyFormat) -> tuple[MetricRecorded | None, list[FieldError]]:
    cloudevent = fmt is not BodyFormat.JSON
    if not isinstance(item, dict):
        what = "a CloudEvent" if cloudevent else "an event"
        return None, [
            FieldError(
                field="",
                message=f"{what} must be a JSON object, not {_json_kind(item)}",
                hint=None,
            )
        ]
    if not cloudevent and "specversion" in item:
        return None, [
            FieldError(
                field="",
                message="this is a CloudEvent (it has specversion), sent as plain JSON",
                hint=f"send it with Content-Type: {BodyFormat.CLOUDEVENT.value}, or an array "
                f"of them with {BodyFormat.CLOUDEVENT_BATCH.value}",
            )
        ]
    # Strict JSON validation: "0.5" or true is not a number, 1700000000 is not a time.
    text = json.dumps(item)
    try:
        if cloudevent:
            return MetricCloudEvent.model_validate_json(text, strict=True).to_metric(), []
        return MetricRecorded.model_validate_json(text, strict=True), []
    except ValidationError as exc:
        model: type[BaseModel] = MetricCloudEvent if cloudevent else MetricRecorded
        errors = [_describe(error, model=model, item=item) for error in exc.errors()]
        return None, errors


def _describe(error: ErrorDetails, *, model: type[BaseModel], item: dict[str, Any]) -> FieldError:
    """A pydantic error in words a sender can act on."""
    loc = [clip(str(part)) for part in error["loc"]]
    field = ".".join(loc)
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    name = loc[-1] if loc else ""
    owner = _owner(model, loc)

    if kind == "missing":
        return FieldError(
            field=field, message=f"{field} is required", hint=_missing_hint(owner, name, item)
        )
    if kind == "extra_forbidden":
        return FieldError(
            field=field,
            message=f"unknown field '{field}'",
            hint=_unknown_hint(owner, name),
        )
    if kind == "timezone_aware":
        return FieldError(
            field=field,
            message=f"{field} must include a UTC offset, e.g. {EXAMPLE_TIME}",
            hint="append Z for UTC, or the sender's offset such as +08:00",
        )
    if kind.startswith("datetime") or kind.startswith("date_"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            hint = "Unix timestamps are not accepted: convert to ISO 8601"
        elif isinstance(value, str) and _DATE_ONLY.match(value.strip()):
            hint = f"a date alone is not a time: send e.g. {value.strip()}T00:00:00+08:00"
        else:
            hint = f"could not read {_what(value)}: {ctx.get('error', error['msg'])}"
        return FieldError(
            field=field,
            message=f"{field} must be an ISO 8601 date-time with a UTC offset, e.g. {EXAMPLE_TIME}",
            hint=hint,
        )
    if kind in ("float_type", "float_parsing", "int_type"):
        return FieldError(
            field=field,
            message=f"{field} must be a JSON number, not {_what(value)}",
            hint=f"send the number without quotes: {clip(value.strip(), 60)}"
            if isinstance(value, str)
            else None,
        )
    if kind == "value_error":
        reason = str(ctx.get("error", error["msg"]))
        return FieldError(field=field, message=reason, hint=None)
    if kind == "string_type":
        if len(loc) >= 2 and loc[-2] == "labels":
            return FieldError(
                field=field,
                message=f"label values must be strings, not {_what(value)}",
                hint=f'send "{name}": "{clip(_plain(value), 60)}"',
            )
        return FieldError(
            field=field, message=f"{field} must be a string, not {_json_kind(value)}", hint=None
        )
    if kind == "string_too_short":
        return FieldError(field=field, message=f"{field} must not be empty", hint=None)
    if kind == "string_too_long":
        length = len(value) if isinstance(value, str) else "?"
        return FieldError(
            field=field,
            message=f"{field} is too long: {length} characters, at most {ctx.get('max_length')}",
            hint=None,
        )
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == PERSON_ID_PATTERN:
        return FieldError(
            field=field,
            message=f"{field} must be a person id: 1 to 128 of A-Z a-z 0-9 . _ @ -, not "
            f"starting with a dot, not {_what(value)}",
            hint="use the id the person has in goals (POST /v1/people takes the same alphabet)",
        )
    if kind == "string_pattern_mismatch":
        suggestion = _snake(value) if isinstance(value, str) else ""
        return FieldError(
            field=field,
            message=f"{field} must be lower snake_case (a-z, 0-9, _; dots between parts), "
            f"not {_what(value)}",
            hint=f"e.g. '{clip(suggestion, 60)}'" if suggestion else "e.g. 'report_rework_rate'",
        )
    if kind == "dict_type":
        return FieldError(
            field=field,
            message=f"{field} must be a JSON object of string values, not {_json_kind(value)}",
            hint='e.g. {"department": "radiology"}',
        )
    if kind in ("model_type", "model_attributes_type"):
        return FieldError(
            field=field,
            message=f"{field} must be a JSON object, not {_json_kind(value)}",
            hint='e.g. {"metric": "report_rework_rate", "value": 0.11}',
        )
    if kind == "literal_error":
        return FieldError(
            field=field, message=f"{field} must be {ctx.get('expected')}", hint=_literal_hint(name)
        )
    return FieldError(field=field, message=f"{field}: {error['msg']}", hint=None)


def _owner(model: type[BaseModel], loc: list[str]) -> type[BaseModel]:
    """The model that holds the last part of ``loc`` (the CloudEvent or its data)."""
    if model is MetricCloudEvent and len(loc) >= 2 and loc[0] == "data":
        return MetricData
    return model


def _missing_hint(owner: type[BaseModel], name: str, item: dict[str, Any]) -> str | None:
    if owner is MetricCloudEvent and name == "data":
        if "data_base64" in item:
            return "binary data (data_base64) is not supported: send data as a JSON object"
        return 'add "data": {"metric": "report_rework_rate", "value": 0.11}'
    if owner is MetricCloudEvent and name == "specversion":
        return 'add "specversion": "1.0"'
    if owner is MetricCloudEvent and name == "type":
        return f'add "type": "{CLOUDEVENT_TYPE}"'
    if owner is MetricCloudEvent and name in ("subject", "time"):
        return (
            f"CloudEvents makes {name} optional, but a metric event needs it: "
            f'add "{name}": {json.dumps(_example(owner, name))}'
        )
    example = _example(owner, name)
    if example is None:
        return None
    return f'add "{name}", e.g. "{name}": {json.dumps(example)}'


def _unknown_hint(owner: type[BaseModel], name: str) -> str:
    allowed = list(owner.model_fields)
    close = difflib.get_close_matches(name, allowed, n=1)
    prefix = f"did you mean '{close[0]}'? " if close else ""
    return f"{prefix}allowed fields: {', '.join(allowed)}"


def _literal_hint(name: str) -> str | None:
    if name == "type":
        return f"this endpoint takes metric events only: type '{CLOUDEVENT_TYPE}'"
    if name == "specversion":
        return "only CloudEvents 1.0 is supported"
    if name == "datacontenttype":
        return "send data as a JSON object, or leave datacontenttype out"
    return None


def _example(owner: type[BaseModel], name: str) -> Any:
    info = owner.model_fields.get(name)
    if info is None or not info.examples:
        return None
    return info.examples[0]


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _what(value: Any) -> str:
    """``a string "0.5"``: the JSON kind of ``value``, and the value itself when it is short."""
    kind = _json_kind(value)
    if isinstance(value, dict | list) or value is None:
        return kind
    text = json.dumps(value)
    return f"{kind} {text if len(text) <= 60 else text[:57] + '...'}"


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _snake(value: str) -> str:
    """A metric name close to ``value`` that matches the pattern, or ``''``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", value.strip())
    text = re.sub(r"[^a-z0-9.]+", "_", text.lower()).strip("_.")
    text = re.sub(r"_*\._*", ".", text)
    return text if _METRIC_NAME.match(text) else ""
