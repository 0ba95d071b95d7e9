"""contracts/ must be what the models render; the AsyncAPI document must hang together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from faststream.nats import NatsBroker

from goalwatch.contracts import AlertFired, subjects
from goalwatch.contracts.export import (
    asyncapi_document,
    public_models,
    render_contracts,
    write_contracts,
)
from goalwatch.contracts.interfaces import service_documents

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "contracts"


def test_openapi_documents_are_the_served_ones() -> None:
    documents = {name: json.loads(text) for name, text in service_documents().openapi.items()}
    assert set(documents) == {
        f"openapi/{s}.json" for s in ("ingestion", "goals", "evaluator", "notifier", "console")
    }
    assert "/v1/events" in documents["openapi/ingestion.json"]["paths"]
    assert "/v1/people/{person_id}" in documents["openapi/goals.json"]["paths"]
    assert "/v1/rules" in documents["openapi/evaluator.json"]["paths"]
    assert "/v1/alerts" in documents["openapi/notifier.json"]["paths"]
    assert "/config.json" in documents["openapi/console.json"]["paths"]


def test_contracts_directory_is_current() -> None:
    rendered = render_contracts()
    on_disk = {
        path.relative_to(CONTRACTS).as_posix() for path in CONTRACTS.rglob("*") if path.is_file()
    }
    differing = sorted(
        name
        for name, text in rendered.items()
        if not (CONTRACTS / name).is_file() or (CONTRACTS / name).read_text("utf-8") != text
    )
    extra = sorted(on_disk - set(rendered))
    problems = [f"{name} (differs or missing)" for name in differing] + [
        f"{name} (no longer generated)" for name in extra
    ]
    assert not problems, "contracts/ is out of date: run `make contracts`\n  " + "\n  ".join(
        problems
    )


_RENDER = (
    "import json, sys\n"
    "from goalwatch.contracts.export import render_contracts\n"
    "json.dump(render_contracts(), sys.stdout)\n"
)


def test_rendering_does_not_depend_on_hash_order() -> None:
    # Set and str-hash iteration order changes with the hash seed: a document that took its
    # order from one would differ between these processes, so contracts/ would churn.
    here = render_contracts()
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", _RENDER],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        there: dict[str, str] = json.loads(done.stdout)
        assert list(there) == list(here)
        differing = [name for name in here if there[name] != here[name]]
        assert not differing, f"rendered differently with PYTHONHASHSEED={seed}: {differing}"


def test_rendering_is_canonical() -> None:
    for name, text in render_contracts().items():
        assert text.endswith("\n"), name
        if name.endswith(".json"):
            assert (
                json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + ("\n")
                == text
            ), name


def test_write_contracts_writes_and_prunes(tmp_path: Path) -> None:
    stale = tmp_path / "schemas" / "Removed.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}\n")
    paths = write_contracts(tmp_path)
    assert not stale.exists()
    written = {p.relative_to(tmp_path).as_posix(): p.read_text("utf-8") for p in paths}
    assert written == render_contracts()


def test_every_public_model_has_a_schema_file() -> None:
    names = {model.__name__ for model in public_models()}
    assert {"MetricRecorded", "AlertFired", "AlertResolved", "NotificationSent"} <= names
    assert {f"schemas/{name}.json" for name in names} <= set(render_contracts())


def test_every_model_and_field_is_described() -> None:
    undescribed = [
        f"{model.__name__}.{name}"
        for model in public_models()
        for name, field in model.model_fields.items()
        if not field.description
    ] + [model.__name__ for model in public_models() if not model.__doc__]
    assert not undescribed, f"add a description to: {', '.join(undescribed)}"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _asyncapi() -> dict[str, Any]:
    return asyncapi_document(service_documents().brokers)


def test_asyncapi_refs_resolve() -> None:
    document = _asyncapi()
    for ref in _refs(document):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved $ref {ref}"
            node = node[part]


def test_asyncapi_is_what_the_services_subscribe_and_publish() -> None:
    document = _asyncapi()
    seen = {
        (
            operation["tags"][0]["name"],
            operation["action"],
            document["channels"][key]["address"],
        )
        for key, operation in document["operations"].items()
    }
    assert seen == {
        ("ingestion", "receive", subjects.METRICS_IN),
        ("ingestion", "send", subjects.METRICS_RECORDED_PARTITIONS),
        ("ingestion", "send", subjects.DEADLETTER_METRICS),
        ("evaluator", "receive", subjects.METRICS_RECORDED_PARTITIONS),
        ("evaluator", "send", subjects.ALERTS_FIRED),
        ("evaluator", "send", subjects.ALERTS_RESOLVED),
        ("evaluator", "send", subjects.DEADLETTER_METRICS),
        ("evaluator", "receive", subjects.TIMERS_FIRED_EVALUATOR),
        ("evaluator", "send", subjects.DEADLETTER_TIMERS),
        ("evaluator", "receive", subjects.GOAL_STATUS_CHANGED),
        ("evaluator", "receive", subjects.GOALS_ALL),
        ("evaluator", "send", subjects.DEADLETTER_GOALS),
        ("evaluator", "receive", subjects.DIRECTORY_CHANGED),
        ("evaluator", "send", subjects.DEADLETTER_DIRECTORY),
        ("notifier", "receive", subjects.ALERTS_FIRED),
        ("notifier", "receive", subjects.ALERTS_RESOLVED),
        ("notifier", "send", subjects.NOTIFICATIONS_SENT),
        ("notifier", "send", subjects.DEADLETTER_ALERTS),
        ("notifier", "receive", f"{subjects.TIMERS_FIRED_PREFIX}.notifier"),
        ("notifier", "send", subjects.DEADLETTER_TIMERS),
        ("goals", "send", subjects.GOAL_CREATED),
        ("goals", "send", subjects.GOAL_UPDATED),
        ("goals", "send", subjects.GOAL_STATUS_CHANGED),
        ("goals", "send", subjects.GOAL_CHECKED_IN),
        ("goals", "send", subjects.GOAL_LINK_ADDED),
        ("goals", "send", subjects.GOAL_LINK_REMOVED),
        ("goals", "send", subjects.PERSON_CHANGED),
        ("goals", "send", subjects.ORG_UNIT_CHANGED),
        # Every service records its audit log (goalwatch.audit).
        *(
            (name, "send", subjects.audit_subject(name))
            for name in ("ingestion", "evaluator", "notifier", "goals")
        ),
    }


def _messages_on(document: dict[str, Any], key: str) -> list[str]:
    return sorted(
        ref["$ref"].rsplit("/", 1)[-1] for ref in document["channels"][key]["messages"].values()
    )


def test_asyncapi_messages_are_the_contracts() -> None:
    document = _asyncapi()
    # A pull batch is documented per message; raw bytes by what ingestion accepts.
    assert _messages_on(document, f"evaluator-p*:{subjects.METRICS_RECORDED_PARTITIONS}") == [
        "MetricRecorded"
    ]
    assert _messages_on(document, f"goals:{subjects.GOAL_STATUS_CHANGED}") == ["GoalStatusChanged"]
    assert _messages_on(document, f"ingestion:{subjects.METRICS_IN}") == [
        "MetricCloudEvent",
        "MetricCloudEventBatch",
        "MetricRecorded",
        "MetricRecordedBatch",
    ]
    assert _messages_on(document, f"notifier:{subjects.DEADLETTER_ALERTS}") == ["DeadLetter"]
    headers = document["components"]["messages"]["MetricRecorded"]["headers"]
    assert "Nats-Msg-Id" in headers["properties"]


def test_asyncapi_follows_a_new_subscriber() -> None:
    broker = NatsBroker()

    @broker.subscriber(subjects.ALERTS_FIRED, title="audit:" + subjects.ALERTS_FIRED)
    async def audit(alert: AlertFired) -> None: ...

    document = asyncapi_document({"audit": broker})
    assert list(document["channels"]) == ["audit:" + subjects.ALERTS_FIRED]
    assert document["operations"]["audit:" + subjects.ALERTS_FIRED]["action"] == "receive"


def test_asyncapi_refuses_an_undocumented_payload() -> None:
    broker = NatsBroker()

    @broker.subscriber(subjects.ALERTS_FIRED, title="odd:" + subjects.ALERTS_FIRED)
    async def odd(count: int) -> None: ...

    with pytest.raises(ValueError, match="no goalwatch message documents the payload"):
        asyncapi_document({"odd": broker})
