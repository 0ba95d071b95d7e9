"""contracts/ must be what the models render; the AsyncAPI document must hang together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from goalwatch.contracts import subjects
from goalwatch.contracts.export import (
    asyncapi_document,
    public_models,
    render_contracts,
    write_contracts,
)
from goalwatch.contracts.openapi import render_openapi

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "contracts"


def test_openapi_documents_are_the_served_ones() -> None:
    documents = {name: json.loads(text) for name, text in render_openapi().items()}
    assert set(documents) == {
        f"openapi/{s}.json" for s in ("ingestion", "goals", "evaluator", "notifier")
    }
    assert "/v1/events" in documents["openapi/ingestion.json"]["paths"]
    assert "/v1/people/{person_id}" in documents["openapi/goals.json"]["paths"]
    assert "/v1/rules" in documents["openapi/evaluator.json"]["paths"]
    assert "/v1/alerts" in documents["openapi/notifier.json"]["paths"]


def test_contracts_directory_is_current() -> None:
    rendered = render_contracts(render_openapi())
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
    "from goalwatch.contracts.openapi import render_openapi\n"
    "json.dump(render_contracts(render_openapi()), sys.stdout)\n"
)


def test_rendering_does_not_depend_on_hash_order() -> None:
    # Set and str-hash iteration order changes with the hash seed: a document that took its
    # order from one would differ between these processes, so contracts/ would churn.
    here = render_contracts(render_openapi())
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


def test_asyncapi_refs_resolve() -> None:
    document = asyncapi_document()
    for ref in _refs(document):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved $ref {ref}"
            node = node[part]


def test_asyncapi_covers_every_subject() -> None:
    document = asyncapi_document()
    addresses = {channel["address"] for channel in document["channels"].values()}
    for subject in (
        subjects.METRICS_IN,
        subjects.METRICS_RECORDED,
        subjects.ALERTS_FIRED,
        subjects.ALERTS_RESOLVED,
        subjects.NOTIFICATIONS_SENT,
    ):
        assert subject in addresses
    dead_letters = document["channels"]["deadLetters"]
    assert dead_letters["address"] == f"{subjects.DEADLETTER_PREFIX}.{{origin}}"
    assert set(dead_letters["parameters"]["origin"]["enum"]) == {"metrics", "alerts"}
    for operation in document["operations"].values():
        assert operation["action"] in ("send", "receive")
