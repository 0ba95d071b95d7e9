"""Render the message contracts as files other systems can read: JSON Schema and AsyncAPI.

``make contracts`` (``goalwatch contracts write``) writes them into ``contracts/``; a unit test
fails when the files there no longer match the code. Schemas come from the pydantic models in
:mod:`goalwatch.contracts`; the AsyncAPI channels and operations from the subscribers and
publishers the services declare on their brokers (:mod:`goalwatch.contracts.interfaces`); the
OpenAPI documents from the services' apps. Everything is rendered deterministically (sorted
keys, two-space indent, trailing newline).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import goalwatch.contracts as contracts
from goalwatch import __version__
from goalwatch.contracts import subjects
from goalwatch.contracts.interfaces import ServiceDocuments, service_documents

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
_COMPONENT_REF = "#/components/schemas/{model}"


def public_models() -> list[type[BaseModel]]:
    """Every message model :mod:`goalwatch.contracts` exports, by name."""
    models = [getattr(contracts, name) for name in contracts.__all__]
    found = [m for m in models if inspect.isclass(m) and issubclass(m, BaseModel)]
    return sorted(found, key=lambda m: m.__name__)


def render_contracts(documents: ServiceDocuments | None = None) -> dict[str, str]:
    """Every contract file: path relative to ``contracts/`` → file text.

    ``documents`` are the services' OpenAPI documents and brokers (by default, built through
    the service registry).
    """
    documents = documents or service_documents()
    files: dict[str, str] = dict(documents.openapi)
    for model in public_models():
        files[f"schemas/{model.__name__}.json"] = _dump(model_schema(model))
    asyncapi = asyncapi_document(documents.brokers)
    files["asyncapi.json"] = _dump(asyncapi)
    files["README.md"] = _readme(sorted(files), asyncapi)
    return dict(sorted(files.items()))


def write_contracts(directory: Path, documents: ServiceDocuments | None = None) -> list[Path]:
    """Write every contract file under ``directory``; remove schema files of removed models.

    Returns the paths of all contract files, written or already current.
    """
    rendered = render_contracts(documents)
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


def asyncapi_document(brokers: Mapping[str, NatsBroker]) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of what the services' brokers subscribe and publish.

    ``brokers`` maps each service to its broker as its app builds it. FastStream generates
    the channels and operations from the subscribers and publishers declared on them, so the
    document cannot list a subject no service uses, or miss one it does. Messages are then
    pointed at goalwatch's own message components (with their headers and content types): a
    pull batch is fetched as messages of one item each, and a consumer that takes raw bytes
    says in :data:`RAW_PAYLOADS` what it accepts.
    """
    # One broker at a time, to know which service each operation belongs to.
    generated: dict[str, Any] = {"channels": {}, "operations": {}, "components": {}}
    service_of: dict[str, str] = {}
    for service, broker in brokers.items():
        one = _generate(broker)
        generated["channels"].update(one["channels"])
        generated["operations"].update(one["operations"])
        for part, found in one["components"].items():
            generated["components"].setdefault(part, {}).update(found)
        service_of.update(dict.fromkeys(one["operations"], service))
        service_of.update(dict.fromkeys(one["channels"], service))
    messages = _messages()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for key, channel in sorted(generated["channels"].items()):
        address = channel["address"]
        names = _message_names(generated, channel, address)
        channels[key] = {
            "address": address,
            "description": f"{channel.get('description', '')} JetStream stream: "
            f"`{_stream_of(address)}`.".strip(),
            "messages": {
                _lower_first(name): {"$ref": f"#/components/messages/{name}"} for name in names
            },
        }
        # FastStream suffixes the operation of each channel a subscriber of several
        # subjects splits into; goalwatch names every operation after its channel.
        operation = generated["operations"].get(key) or generated["operations"][f"{key}Subscribe"]
        operations[key] = {
            "action": operation["action"],
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"{service_of[key]} {operation['action']}s on {address}.",
            "tags": [{"name": service_of[key]}],
            "messages": [
                {"$ref": f"#/channels/{key}/messages/{_lower_first(name)}"} for name in names
            ],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "goalwatch",
            "version": __version__,
            "description": (
                "NATS subjects of goalwatch, the alerting backbone of performance management. "
                f"Other systems publish metric events on `{subjects.METRICS_IN}` (or POST them "
                "to the ingestion service's `/v1/events`); alerts, notification outcomes and "
                "dead letters can be consumed by anyone. Each channel is one service's "
                "subscriber or publisher, named `<consumer or service>:<subject>`, and names "
                "the JetStream stream that captures its subject. Generated from the services' "
                "brokers and the models in goalwatch/contracts by `make contracts`: do not edit "
                "by hand."
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
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {name: messages[name] for name in sorted(_used(channels, messages))},
            "schemas": component_schemas(),
        },
    }


RAW_PAYLOADS: dict[str, list[str]] = {
    subjects.METRICS_IN: [
        "MetricRecorded",
        "MetricRecordedBatch",
        "MetricCloudEvent",
        "MetricCloudEventBatch",
    ],
}
"""What a consumer that decodes the body itself accepts on its subject, by message name."""

WILDCARD_READS: dict[str, list[str]] = {
    subjects.GOALS_ALL: [
        "GoalCreated",
        "GoalUpdated",
        "GoalStatusChanged",
        "GoalCheckedIn",
        "GoalLinkAdded",
        "GoalLinkRemoved",
    ],
    subjects.DIRECTORY_CHANGED: ["PersonChanged", "OrgUnitChanged"],
}
"""What a consumer of a wildcard subject reads there (it reads each through a lenient view
of its own, the evaluator's ``GoalChange`` or ``DirectoryChange``), by message name."""

UNION_READS: dict[str, list[str]] = {
    subjects.ALERTS_FIRED: ["AlertFired"],
    subjects.ALERTS_RESOLVED: ["AlertResolved"],
}
"""What a consumer of several subjects, decoding each payload into one union of contracts
(the notifier's ``AlertFired | AlertResolved``), takes on each of them, by message name."""


def _generate(broker: NatsBroker) -> dict[str, Any]:
    """FastStream's AsyncAPI document of one broker's subscribers and publishers."""
    specification = AsyncAPI(broker, schema_version=ASYNCAPI_VERSION).to_specification()
    document: dict[str, Any] = specification.to_jsonable()
    return document


def _message_names(generated: dict[str, Any], channel: dict[str, Any], address: str) -> list[str]:
    """The goalwatch message components a generated channel carries."""
    schemas = generated["components"].get("schemas", {})
    contracts_by_name = component_schemas()
    if address in WILDCARD_READS:
        return list(WILDCARD_READS[address])
    names: list[str] = []
    for ref in channel["messages"].values():
        message = _resolve(generated, ref["$ref"])
        # A reference escapes what a subject pattern holds (``*`` as ``%2A``).
        name = unquote(message["payload"]["$ref"].rsplit("/", 1)[-1])
        schema = schemas.get(name, {})
        items = schema.get("items", {})
        if name in contracts_by_name:
            names.append(name)
        elif schema.get("type") == "array" and "$ref" in items:
            names.append(items["$ref"].rsplit("/", 1)[-1])
        elif schema.get("type") == "array" and "anyOf" in items and address in UNION_READS:
            members = {ref["$ref"].rsplit("/", 1)[-1] for ref in items["anyOf"]}
            if not set(UNION_READS[address]) <= members:
                raise ValueError(f"{address} is said to carry {UNION_READS[address]}: {schema}")
            names.extend(UNION_READS[address])
        elif schema.get("format") == "binary" and address in RAW_PAYLOADS:
            names.extend(RAW_PAYLOADS[address])
        else:
            raise ValueError(f"no goalwatch message documents the payload on {address}: {schema}")
    return names


def _resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = document
    # A JSON pointer in a URI fragment is percent-encoded (a wildcard subject's * is %2A).
    for part in ref.removeprefix("#/").split("/"):
        node = node[unquote(part).replace("~1", "/").replace("~0", "~")]
    return dict(node)


def _used(channels: dict[str, Any], messages: dict[str, Any]) -> set[str]:
    used = {
        ref["$ref"].rsplit("/", 1)[-1]
        for channel in channels.values()
        for ref in channel["messages"].values()
    }
    return used & set(messages)


def _stream_of(address: str) -> str:
    from goalwatch.messaging import STREAMS  # messaging imports the contracts

    for config in STREAMS:
        # A wildcard address (a consumer's filter) is read from the stream whose subjects it
        # covers; a concrete one from the stream that captures it.
        if any(
            subjects.matches(pattern, address) or subjects.matches(address, pattern)
            for pattern in config.subjects or []
        ):
            return str(config.name)
    raise ValueError(f"no JetStream stream captures {address}")


_OUTBOX_EVENTS: tuple[type[BaseModel], ...] = (
    contracts.GoalCreated,
    contracts.GoalUpdated,
    contracts.GoalStatusChanged,
    contracts.GoalCheckedIn,
    contracts.GoalLinkAdded,
    contracts.GoalLinkRemoved,
    contracts.PersonChanged,
    contracts.OrgUnitChanged,
)


def _messages() -> dict[str, Any]:
    def ref(name: str) -> dict[str, str]:
        return {"$ref": _COMPONENT_REF.format(model=name)}

    def batch(name: str) -> dict[str, Any]:
        return {"type": "array", "items": ref(name), "minItems": 1}

    messages: dict[str, Any] = {}
    published: tuple[type[BaseModel], ...] = (
        contracts.MetricRecorded,
        contracts.MetricCloudEvent,
        contracts.AlertFired,
        contracts.AlertResolved,
        contracts.NotificationSent,
        contracts.DeadLetter,
        contracts.TimerFired,
        contracts.AuditRecorded,
        *_OUTBOX_EVENTS,
    )
    for model in published:
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
                f"{subjects.METRICS_RECORDED_PARTITIONS}, so JetStream stores a resent "
                "event once.",
            }
        },
    }
    for model in _OUTBOX_EVENTS:
        messages[model.__name__]["headers"] = {
            "type": "object",
            "properties": {
                "Nats-Msg-Id": {
                    "type": "string",
                    "description": "The event's event_id: a change relayed again is stored once.",
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


def _readme(files: list[str], asyncapi: dict[str, Any]) -> str:
    schema_lines = [
        f"- [`{name}`]({name}): {_summary(getattr(contracts, Path(name).stem))}"
        for name in files
        if name.startswith("schemas/")
    ]
    openapi_lines = [f"- [`{name}`]({name})" for name in files if name.startswith("openapi/")]
    channel_lines = [
        f"- `{key}` ({operation['action']}): {asyncapi['channels'][key]['description']}"
        for key, operation in asyncapi["operations"].items()
    ]
    return "\n".join(
        [
            "# goalwatch contracts",
            "",
            "Generated from the pydantic models in `goalwatch/contracts/` and the services' apps:",
            "do not edit these files by hand. `make contracts` regenerates them, and the unit",
            "tests fail when they no longer match the code.",
            "",
            "- [`asyncapi.json`](asyncapi.json): AsyncAPI 3.0 document of what each service",
            "  subscribes and publishes on NATS, generated from the services' brokers.",
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
            "## Subscribers and publishers",
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
