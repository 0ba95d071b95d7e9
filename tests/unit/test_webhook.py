"""Webhook channel: signature, verification, and which failures are retried."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from goalwatch.contracts import (
    AlertNotification,
    AlertState,
    DeliveryStatus,
    Recipient,
    Severity,
    SubjectRef,
)
from goalwatch.contracts.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify_signature,
)
from services.notifier.channels import DeliveryResult
from services.notifier.webhook import WebhookChannel, parse_retry_after

SECRET = "s3cret"
NOW = 1_790_000_000.0


def notification() -> AlertNotification:
    return AlertNotification(
        state=AlertState.FIRING,
        fingerprint="fp-1",
        rule_id="rework-high",
        rule_name="Rework above 8%",
        kind="threshold",
        severity=Severity.WARNING,
        subject=SubjectRef(id="emp-1", name="Dr Li"),
        metric="report_rework_rate",
        value=0.11,
        message="Dr Li: rework 11%",
        started_at=datetime(2026, 11, 18, tzinfo=UTC),
        fired_at=datetime(2026, 11, 20, tzinfo=UTC),
        recipients=[Recipient(id="emp-1", name="Dr Li", role="subject")],
    )


class Recorder:
    """Answers requests from a script of responses (or exceptions) and keeps what it got."""

    def __init__(self, *answers: int | httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return httpx.Response(answer, text="ok" if answer < 300 else "nope")
        return answer


def channel(recorder: Recorder, *, max_attempts: int = 5) -> WebhookChannel:
    return WebhookChannel(
        url="http://receiver.test/hook?token=abc",
        secret=SecretStr(SECRET),
        client=httpx.AsyncClient(transport=httpx.MockTransport(recorder)),
        max_attempts=max_attempts,
        backoff=0.5,
        clock=lambda: NOW,
        jitter=lambda: 0.5,
    )


def test_signature_matches_an_independent_hmac() -> None:
    body = b'{"a": 1}'
    expected = hmac.new(b"s3cret", b"1790000000." + body, hashlib.sha256).hexdigest()
    assert sign(secret=SECRET, timestamp=1790000000, body=body) == f"sha256={expected}"


def test_verify_accepts_fresh_and_rejects_tampering_and_replays() -> None:
    body = b'{"state": "firing"}'
    ts = int(NOW)
    good = sign(secret=SECRET, timestamp=ts, body=body)
    assert verify_signature(secret=SECRET, timestamp=str(ts), body=body, signature=good, now=NOW)
    assert not verify_signature(
        secret=SECRET, timestamp=ts, body=body + b" ", signature=good, now=NOW
    )
    assert not verify_signature(secret="other", timestamp=ts, body=body, signature=good, now=NOW)
    assert not verify_signature(secret=SECRET, timestamp=ts + 1, body=body, signature=good, now=NOW)
    # A genuine signature presented ten minutes later is a replay.
    assert not verify_signature(
        secret=SECRET, timestamp=ts, body=body, signature=good, now=NOW + 600
    )
    assert not verify_signature(
        secret=SECRET, timestamp="yesterday", body=body, signature=good, now=NOW
    )
    assert not verify_signature(
        secret=SECRET, timestamp=ts, body=body, signature=good.removeprefix("sha256="), now=NOW
    )


async def test_post_is_signed_json_of_the_notification_with_its_key() -> None:
    recorder = Recorder(204)
    keyed = notification().model_copy(update={"idempotency_key": "k-1"})
    result = await channel(recorder).deliver(notification=keyed, attempt=1)
    assert result == DeliveryResult(status=DeliveryStatus.SENT, attempts=1)
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == "k-1"
    body = request.content
    assert verify_signature(
        secret=SECRET,
        timestamp=request.headers[TIMESTAMP_HEADER],
        body=body,
        signature=request.headers[SIGNATURE_HEADER],
        now=NOW,
    )
    payload = json.loads(body)
    assert payload["version"] == "1"
    assert payload["state"] == "firing"
    assert payload["idempotency_key"] == "k-1"
    assert payload["subject"] == {"id": "emp-1", "name": "Dr Li"}
    assert payload["recipients"][0]["role"] == "subject"


@pytest.mark.parametrize("answer", [503, 502, 429, httpx.ReadTimeout("slow")])
async def test_a_failure_that_may_pass_makes_one_attempt_and_asks_for_another(
    answer: int | Exception,
) -> None:
    recorder = Recorder(answer)
    result = await channel(recorder).deliver(notification=notification(), attempt=1)
    assert len(recorder.requests) == 1  # no waiting, no second request inside the call
    assert result.status is DeliveryStatus.FAILED and result.attempts == 1
    assert result.retry_in == 0.75  # 0.5 x 2^0, plus half of 0.5 of jitter


def test_retry_delays_double_with_jitter_up_to_the_cap() -> None:
    webhook = channel(Recorder(200))
    assert [webhook.retry_delay(n) for n in (1, 2, 3, 4, 8)] == [0.75, 1.25, 2.25, 4.25, 30.0]


async def test_client_error_is_not_retried() -> None:
    recorder = Recorder(400)
    result = await channel(recorder).deliver(notification=notification(), attempt=1)
    assert result.status is DeliveryStatus.FAILED
    assert result.retry_in is None
    assert result.error is not None and "HTTP 400" in result.error
    # The URL's query may hold a token: it never appears in errors.
    assert "token" not in result.error


async def test_too_many_requests_honours_retry_after() -> None:
    limited = httpx.Response(429, headers={"Retry-After": "7"})
    result = await channel(Recorder(limited)).deliver(notification=notification(), attempt=1)
    assert result.retry_in == 7.0


async def test_retry_after_is_capped() -> None:
    limited = httpx.Response(429, headers={"Retry-After": "3600"})
    result = await channel(Recorder(limited)).deliver(notification=notification(), attempt=2)
    assert result.retry_in == 30.0


async def test_the_last_attempt_gives_up() -> None:
    recorder = Recorder(httpx.ConnectError("connection refused"))
    webhook = channel(recorder, max_attempts=3)
    second = await webhook.deliver(notification=notification(), attempt=2)
    assert second.retry_in is not None
    last = await webhook.deliver(notification=notification(), attempt=3)
    assert last.status is DeliveryStatus.FAILED and last.attempts == 3
    assert last.retry_in is None
    assert last.error is not None and "ConnectError" in last.error


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("12", 12.0),
        (None, None),
        ("soon", None),
        ("Wed, 23 Sep 2026 08:53:40 GMT", 20.0),
        ("Wed, 23 Sep 2026 08:52:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = datetime(2026, 9, 23, 8, 53, 20, tzinfo=UTC).timestamp()
    assert parse_retry_after(header, now=now) == expected
