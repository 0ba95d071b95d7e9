"""Property-based fuzzing of every service on the real stack: no input gets a 5xx.

Schemathesis generates requests from each service's live OpenAPI document (valid and
invalid ones); the hypothesis strategies below add what a schema-based generator does not
send: lone surrogates, integer literals of any length and deep nesting, in every field of
the bodies that services read. Both are bounded to fit in ``make test``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from goalwatch.dev.stack import Stack

pytestmark = pytest.mark.integration

SERVICES = ["ingestion", "goals", "evaluator", "notifier", "console"]
FUZZ = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,  # the same cases on every run: a failure is reproducible, not flaky
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("service", SERVICES)
def test_no_generated_request_gets_a_server_error(stack: Stack, service: str) -> None:
    url = stack.settings.url(service)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{service} documents no operation"
    # A stream never ends, so no request to it completes: tests/integration/test_inbox_stream.py
    # opens it, and its filters are plain query parameters like the list's.
    operations = [operation for operation in operations if not _streams(operation)]
    calls = 0
    for operation in operations:
        # Valid requests and invalid ones (wrong types, missing fields, out-of-range values).
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @FUZZ
        @given(case=cases)
        def call(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(base_url=url, checks=[not_a_server_error], timeout=30)

        call()
    assert calls >= len(operations), f"only {calls} requests were generated"


def _streams(operation: Any) -> bool:
    """Whether the operation answers with server-sent events."""
    content = operation.definition.raw["responses"].get("200", {}).get("content", {})
    return "text/event-stream" in content


# --- what schema-based fuzzers miss ---------------------------------------------------------

lone_surrogates = st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\ud83d"])
huge_integers = st.integers(min_value=4301, max_value=20_000).map(lambda n: "9" * n)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _with_raw(document: dict[str, Any], field: str, literal: str) -> bytes:
    """``document`` as JSON with ``field``'s value replaced by a raw JSON ``literal``."""
    marker = "__raw_literal__"
    text = json.dumps({**document, field: marker})
    return text.replace(json.dumps(marker), literal).encode()


EVENT = {
    "id": "fuzz-1",
    "metric": "report_rework_rate",
    "value": 0.1,
    "time": "2026-11-20T18:00:00+08:00",
    "subject": "fuzz-subject",
    "source": "fuzz",
    "labels": {"department": "radiology"},
}
PERSON = {"id": "fuzz-person", "name": "Fuzz", "email": "f@example.org", "manager_id": "m"}
BODIES = {
    ("ingestion", "/v1/events"): EVENT,
    ("goals", "/v1/people"): PERSON,
}

hostile_literals = st.one_of(
    lone_surrogates.map(lambda s: json.dumps(s)),  # json.dumps writes them as \\udXXX escapes
    lone_surrogates.map(lambda s: json.dumps({s: s})),
    huge_integers,
    st.integers(min_value=1000, max_value=200_000).map(_nested),
)


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(timeout=30) as client:
        yield client


@pytest.mark.parametrize(("service", "path"), list(BODIES))
@FUZZ
@given(data=st.data())
def test_hostile_values_in_any_field_get_a_4xx(
    stack: Stack, http: httpx.Client, service: str, path: str, data: st.DataObject
) -> None:
    document = BODIES[(service, path)]
    field = data.draw(st.sampled_from(sorted(document)), label="field")
    literal = data.draw(hostile_literals, label="literal")
    as_batch = data.draw(st.booleans(), label="batch")
    body = _with_raw(document, field, literal)
    if as_batch:
        body = b"[" + body + b"]"
    response = http.post(
        f"{stack.settings.url(service)}{path}",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500, (field, literal[:40], response.text[:300])
    assert response.headers["content-type"] == "application/problem+json"
    assert len(response.content) < 20_000
