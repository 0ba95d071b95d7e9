"""The audit log through the running services: a change and a refusal are recorded with who,
what, when and from where; HR admins and operators read it, nobody else; a long log is
read page by page, newest first."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import pytest

from goalwatch.contracts import AuditRecorded, subjects
from goalwatch.dev.stack import Stack
from services.goals.audit_api import AuditLog, AuditQuery
from tests.integration.helpers import unique

pytestmark = pytest.mark.integration


def _recorded(stack: Stack, request_id: str, **filters: str) -> dict[str, Any]:
    """The audit record of ``request_id``, read as the HR admin, once it is in the log."""
    goals = stack.settings.url("goals")
    deadline = time.monotonic() + 15
    with stack.client(user="wang-fang", timeout=10.0) as http:
        while True:
            answer = http.get(f"{goals}/v1/audit", params={**filters, "limit": 1000})
            assert answer.status_code == 200, answer.text
            found = [r for r in answer.json()["records"] if r["request_id"] == request_id]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no audit record of request {request_id} in 15 s")
            time.sleep(0.1)


def _silence(subject: str) -> dict[str, Any]:
    ends = datetime.now(UTC) + timedelta(hours=1)
    return {
        "matchers": [{"name": "subject", "value": subject}],
        "ends_at": ends.isoformat(),
        "comment": "private: the ward's night-shift complaint",
    }


def test_an_hr_admins_changes_are_recorded_with_who_what_when_and_where(stack: Stack) -> None:
    notifier = stack.settings.url("notifier")
    made_id, expired_id = unique("req-make"), unique("req-expire")
    before = datetime.now(UTC)
    with stack.client(user="wang-fang", timeout=10.0) as http:
        made = http.post(f"{notifier}/v1/silences", json=_silence(unique("doc")),
                         headers={"X-Request-Id": made_id})  # fmt: skip
        assert made.status_code == 201, made.text
        assert made.headers["X-Request-Id"] == made_id
        silence = made.json()["id"]
        expired = http.delete(
            f"{notifier}/v1/silences/{silence}", headers={"X-Request-Id": expired_id}
        )
        assert expired.status_code == 200, expired.text

    record = _recorded(stack, made_id, who="person:wang-fang", service="notifier")
    assert record["action"] == "POST /v1/silences"
    assert (record["outcome"], record["target"]) == (201, {})
    assert (record["person_id"], record["client_id"]) == ("wang-fang", None)
    assert record["address"] == "127.0.0.1"
    assert before <= datetime.fromisoformat(record["at"]) <= datetime.now(UTC)
    assert "night-shift" not in str(record)  # the body is never recorded
    record = _recorded(stack, expired_id, action="/v1/silences/")
    assert record["action"] == "DELETE /v1/silences/{silence_id}"
    assert record["target"] == {"silence_id": silence}


def test_refused_attempts_are_recorded_and_only_hr_and_operators_read_the_log(
    stack: Stack,
) -> None:
    notifier, goals = stack.settings.url("notifier"), stack.settings.url("goals")
    forbidden, anonymous, peek = unique("req-403"), unique("req-401"), unique("req-peek")
    with httpx.Client(timeout=10.0) as http:
        employee = stack.auth_headers("chen-jie")
        tried = http.post(f"{notifier}/v1/silences", json=_silence(unique("doc")),
                          headers={**employee, "X-Request-Id": forbidden})  # fmt: skip
        assert tried.status_code == 403
        nobody = http.post(f"{notifier}/v1/silences", json=_silence(unique("doc")),
                           headers={"X-Request-Id": anonymous})  # fmt: skip
        assert nobody.status_code == 401
        peeked = http.get(f"{goals}/v1/audit", headers={**employee, "X-Request-Id": peek})
        assert peeked.status_code == 403
        assert http.get(f"{goals}/v1/audit", headers=stack.auth_headers("ops")).status_code == 200

    record = _recorded(stack, forbidden, who="person:chen-jie")
    assert (record["action"], record["outcome"]) == ("POST /v1/silences", 403)
    record = _recorded(stack, anonymous, who="anonymous", service="notifier")
    assert (record["action"], record["outcome"], record["person_id"]) == (
        "POST /v1/silences", 401, None)  # fmt: skip
    record = _recorded(stack, peek, who="person:chen-jie", service="goals")
    assert (record["action"], record["outcome"]) == ("GET /v1/audit", 403)


def test_the_cli_prints_the_log(stack: Stack) -> None:
    notifier = stack.settings.url("notifier")
    request_id = unique("req-cli")
    with stack.client(user="wang-fang", timeout=10.0) as http:
        http.post(f"{notifier}/v1/silences", json=_silence(unique("doc")),
                  headers={"X-Request-Id": request_id})  # fmt: skip
    _recorded(stack, request_id, service="notifier")
    printed = subprocess.run(
        [sys.executable, "-m", "goalwatch.cli", "audit", "--who", "person:wang-fang",
         "--since", "1h", "--service", "notifier", "--goals", stack.settings.url("goals")],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "GOALWATCH_TOKEN": stack.token("ops")},
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    [line] = [line for line in printed.stdout.splitlines() if request_id in line]
    assert "person:wang-fang  POST /v1/silences  201  from 127.0.0.1  notifier" in line


def test_a_since_on_a_whole_second_is_read(stack: Stack) -> None:
    # The server echoes a consumer's start time; one without a fraction of a second was once
    # unreadable to the NATS client, and the whole request failed (500).
    request_id = unique("req-second")
    notifier = stack.settings.url("notifier")
    with stack.client(user="wang-fang", timeout=10.0) as http:
        http.post(f"{notifier}/v1/silences", json=_silence(unique("doc")),
                  headers={"X-Request-Id": request_id})  # fmt: skip
    _recorded(stack, request_id, service="notifier")
    since = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    with stack.client(user="wang-fang", timeout=10.0) as http:
        answer = http.get(
            f"{stack.settings.url('goals')}/v1/audit",
            params={"since": since.isoformat().replace("+00:00", "Z"), "service": "notifier"},
        )
    assert answer.status_code == 200, answer.text
    assert request_id in [record["request_id"] for record in answer.json()["records"]]


def test_a_long_log_is_read_newest_first_page_by_page_within_its_scan_cap(stack: Stack) -> None:
    service = unique("svc").replace("-", "_").lower()[:30]
    asyncio.run(_pages(stack.settings.nats_url, service))


async def _pages(nats_url: str, service: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for index in range(30):
            record = AuditRecorded(
                id=f"{service}-{index}", at=datetime.now(UTC), service=service,
                who=f"person:p{index % 3}", person_id=f"p{index % 3}", client_id=None,
                action="POST /v1/goals", target={}, outcome=200, address="10.0.0.1",
                request_id=str(index),
            )  # fmt: skip
            await js.publish(
                subjects.audit_subject(service),
                record.model_dump_json().encode(),
                stream=subjects.STREAM_AUDIT,
            )
        log = AuditLog(lambda: nc, window=7, scan_cap=20)
        seen: list[str] = []
        cursor: int | None = None
        for _ in range(10):
            page = await log.query(AuditQuery(service=service, limit=4, cursor=cursor))
            assert page.scanned <= 20
            seen += [r.request_id for r in page.records]
            if page.next_cursor is None:
                break
            cursor = int(page.next_cursor)
        assert seen == [str(index) for index in reversed(range(30))]
        only = await log.query(AuditQuery(service=service, who="person:p1", limit=100))
        assert [r.request_id for r in only.records][:3] == ["28", "25", "22"]
    finally:
        await nc.close()
