"""Render the message contracts as files other systems can read: JSON Schema and AsyncAPI.

``make contracts`` (``goalwatch contracts write``) writes them into ``contracts/``; a unit test
fails when the files there no longer match the models. Everything is derived from the pydantic
models in :mod:`goalwatch.contracts` and the names in :mod:`goalwatch.contracts.subjects`, and
rendered deterministically (sorted keys, two-space indent, trailing newline).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import goalwatch.contracts as contracts
from goalwatch import __version__
from goalwatch.contracts import subjects

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
_COMPONENT_REF = "#/components/schemas/{model}"


def public_models() -> list[type[BaseModel]]:
    """Every message model :mod:`goalwatch.contracts` exports, by name."""
    models = [getattr(contracts, name) for name in contracts.__all__]
    found = [m for m in models if inspect.isclass(m) and issubclass(m, BaseModel)]
    return sorted(found, key=lambda m: m.__name__)


def render_contracts(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every contract file: path relative to ``contracts/`` → file text.

    ``extra`` adds files rendered elsewhere (the services' OpenAPI documents, which this
    shared module does not import).
    """
    files: dict[str, str] = dict(extra or {})
    for model in public_models():
        files[f"schemas/{model.__name__}.json"] = _dump(model_schema(model))
    files["asyncapi.json"] = _dump(asyncapi_document())
    files["README.md"] = _readme(sorted(files))
    return dict(sorted(files.items()))


def write_contracts(directory: Path, extra: Mapping[str, str] | None = None) -> list[Path]:
    """Write every contract file under ``directory``; remove schema files of removed models.

    Returns the paths of all contract files, written or already current.
    """
    rendered = render_contracts(extra)
    paths: list[Path] = []
    for name, text in rendered.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    schemas = directory / "schemas"
    for stale in sorted(schemas.glob("*.json")):
        if stale.relative_to(directory).as_posix() not in rendered:
            stale.unlink()
    return paths


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A standalone JSON Schema (draft 2020-12) of ``model``, as it is validated."""
    return {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema()}


def component_schemas() -> dict[str, Any]:
    """Every public model and what it refers to, keyed by name, referring to each other as
    ``#/components/schemas/<Name>``."""
    _, document = models_json_schema(
        [(model, "validation") for model in public_models()], ref_template=_COMPONENT_REF
    )
    schemas: dict[str, Any] = document["$defs"]
    return schemas


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every NATS subject goalwatch uses.

    Operations are seen from goalwatch as one application: it receives raw metric events and
    sends alerts, notifications and dead letters; its internal subjects appear on both sides,
    tagged with the service that sends or receives.
    """
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "goalwatch",
            "version": __version__,
            "description": (
                "NATS subjects of goalwatch, the alerting backbone of performance management. "
                "Other systems publish metric events on `goalwatch.metrics.in.v1` (or POST them "
                "to the ingestion service's `/v1/events`); alerts, notification outcomes and "
                "dead letters can be consumed by anyone. Every subject is captured by a "
                "JetStream stream, named in each channel's description. Generated from the "
                "models in goalwatch/contracts by `make contracts`: do not edit by hand."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The nats-server that `make run` starts.",
            }
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {"messages": _messages(), "schemas": component_schemas()},
    }


def _channels() -> dict[str, Any]:
    origins = [
        subject.removeprefix(f"{subjects.DEADLETTER_PREFIX}.")
        for subject in (subjects.DEADLETTER_METRICS, subjects.DEADLETTER_ALERTS)
    ]
    return {
        "metricsIn": _channel(
            subjects.METRICS_IN,
            subjects.STREAM_INGEST,
            "Raw metric events from other systems, waiting for validation by ingestion. A "
            "message holds one event or an array; with a `content-type` header of "
            "`application/cloudevents+json` (or `application/cloudevents-batch+json`) it holds "
            "CloudEvents. Invalid events go to the metrics dead-letter subject.",
            ["MetricRecorded", "MetricRecordedBatch", "MetricCloudEvent", "MetricCloudEventBatch"],
        ),
        "metricsRecorded": _channel(
            subjects.METRICS_RECORDED,
            subjects.STREAM_METRICS,
            "Validated metric events, one per message, de-duplicated by event id "
            "(the `Nats-Msg-Id` header).",
            ["MetricRecorded"],
        ),
        "alertsFired": _channel(
            subjects.ALERTS_FIRED,
            subjects.STREAM_ALERTS,
            "A rule's condition started to hold for a subject.",
            ["AlertFired"],
        ),
        "alertsResolved": _channel(
            subjects.ALERTS_RESOLVED,
            subjects.STREAM_ALERTS,
            "A firing alert's condition stopped holding.",
            ["AlertResolved"],
        ),
        "notificationsSent": _channel(
            subjects.NOTIFICATIONS_SENT,
            subjects.STREAM_NOTIFICATIONS,
            "Outcome of delivering an alert to a channel.",
            ["NotificationSent"],
        ),
        "deadLetters": {
            **_channel(
                f"{subjects.DEADLETTER_PREFIX}.{{origin}}",
                subjects.STREAM_DEADLETTER,
                "Messages that could not be processed, with the reason, kept for an operator "
                "to inspect and replay.",
                ["DeadLetter"],
            ),
            "parameters": {
                "origin": {
                    "enum": origins,
                    "description": "What kind of message was dead-lettered: "
                    + ", ".join(origins)
                    + ".",
                }
            },
        },
    }


def _channel(address: str, stream: str, description: str, messages: list[str]) -> dict[str, Any]:
    return {
        "address": address,
        "description": f"{description} JetStream stream: `{stream}`.",
        "messages": {
            _lower_first(name): {"$ref": f"#/components/messages/{name}"} for name in messages
        },
    }


def _operations() -> dict[str, Any]:
    def operation(
        action: str, channel: str, service: str, summary: str, names: list[str]
    ) -> dict[str, Any]:
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "tags": [{"name": service}],
            "messages": [
                {"$ref": f"#/channels/{channel}/messages/{_lower_first(name)}"} for name in names
            ],
        }

    return {
        "receiveMetricsIn": operation(
            "receive",
            "metricsIn",
            "ingestion",
            "Ingestion validates raw metric events (durable pull consumer `ingestion`).",
            ["MetricRecorded", "MetricRecordedBatch", "MetricCloudEvent", "MetricCloudEventBatch"],
        ),
        "sendMetricsRecorded": operation(
            "send",
            "metricsRecorded",
            "ingestion",
            "Ingestion stores each valid event.",
            ["MetricRecorded"],
        ),
        "receiveMetricsRecorded": operation(
            "receive",
            "metricsRecorded",
            "evaluator",
            "The evaluator runs the rules on events.",
            ["MetricRecorded"],
        ),
        "sendAlertsFired": operation(
            "send", "alertsFired", "evaluator", "The evaluator fires an alert.", ["AlertFired"]
        ),
        "receiveAlertsFired": operation(
            "receive",
            "alertsFired",
            "notifier",
            "The notifier routes and delivers alerts.",
            ["AlertFired"],
        ),
        "sendAlertsResolved": operation(
            "send",
            "alertsResolved",
            "evaluator",
            "The evaluator resolves an alert.",
            ["AlertResolved"],
        ),
        "receiveAlertsResolved": operation(
            "receive",
            "alertsResolved",
            "notifier",
            "The notifier tells who was alerted.",
            ["AlertResolved"],
        ),
        "sendNotificationsSent": operation(
            "send",
            "notificationsSent",
            "notifier",
            "The notifier records a delivery outcome.",
            ["NotificationSent"],
        ),
        "sendDeadLetters": operation(
            "send",
            "deadLetters",
            "ingestion",
            "A service dead-letters what it cannot process: ingestion and the evaluator invalid "
            "metric events (origin metrics), the notifier alerts it could not deliver (origin "
            "alerts).",
            ["DeadLetter"],
        ),
    }


def _messages() -> dict[str, Any]:
    def ref(name: str) -> dict[str, str]:
        return {"$ref": _COMPONENT_REF.format(model=name)}

    def batch(name: str) -> dict[str, Any]:
        return {"type": "array", "items": ref(name), "minItems": 1}

    messages: dict[str, Any] = {}
    for model in (
        contracts.MetricRecorded,
        contracts.MetricCloudEvent,
        contracts.AlertFired,
        contracts.AlertResolved,
        contracts.NotificationSent,
        contracts.DeadLetter,
    ):
        messages[model.__name__] = {
            "name": model.__name__,
            "title": model.__name__,
            "summary": _summary(model),
            "contentType": "application/json",
            "payload": ref(model.__name__),
        }
    messages["MetricRecorded"]["headers"] = {
        "type": "object",
        "properties": {
            "Nats-Msg-Id": {
                "type": "string",
                "description": "The event id. Ingestion always sets it on "
                f"{subjects.METRICS_RECORDED}, so JetStream stores a resent event once.",
            }
        },
    }
    messages["MetricCloudEvent"]["contentType"] = "application/cloudevents+json"
    messages["MetricRecordedBatch"] = {
        "name": "MetricRecordedBatch",
        "title": "MetricRecorded batch",
        "summary": "An array of metric events in one message (at most 1000 by default).",
        "contentType": "application/json",
        "payload": batch("MetricRecorded"),
    }
    messages["MetricCloudEventBatch"] = {
        "name": "MetricCloudEventBatch",
        "title": "MetricCloudEvent batch",
        "summary": "An array of metric CloudEvents in one message (CloudEvents batch mode).",
        "contentType": "application/cloudevents-batch+json",
        "payload": batch("MetricCloudEvent"),
    }
    return dict(sorted(messages.items()))


def _summary(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or model.__name__
    return doc.split("\n\n", 1)[0].replace("\n", " ")


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _readme(files: list[str]) -> str:
    schema_lines = [
        f"- [`{name}`]({name}): {_summary(getattr(contracts, Path(name).stem))}"
        for name in files
        if name.startswith("schemas/")
    ]
    openapi_lines = [f"- [`{name}`]({name})" for name in files if name.startswith("openapi/")]
    channel_lines = [
        f"- `{channel['address']}` — {channel['description']}" for channel in _channels().values()
    ]
    return "\n".join(
        [
            "# goalwatch contracts",
            "",
            "Generated from the pydantic models in `goalwatch/contracts/`: do not edit these files",
            "by hand. `make contracts` regenerates them, and the unit tests fail when they no",
            "longer match the models.",
            "",
            "- [`asyncapi.json`](asyncapi.json): AsyncAPI 3.0 document of every NATS subject,",
            "  who sends and receives on it, and the messages it carries.",
            "- `schemas/`: one JSON Schema (draft 2020-12) per message model:",
            "",
            *schema_lines,
            "",
            *(
                [
                    "- `openapi/`: the OpenAPI document of each service's HTTP API:",
                    "",
                    *openapi_lines,
                    "",
                ]
                if openapi_lines
                else []
            ),
            "## Subjects",
            "",
            *channel_lines,
            "",
            "Metric events can also be sent over HTTP to the ingestion service's `POST /v1/events`",
            "(`application/json`, `application/cloudevents+json` or",
            "`application/cloudevents-batch+json`).",
            "",
        ]
    )


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
