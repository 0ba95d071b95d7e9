"""Generic webhook channel: one signed JSON POST per alert transition, retried with backoff.

Request
    ``POST <GOALWATCH_WEBHOOK_URL>`` with the JSON of
    :class:`services.notifier.notification.AlertNotification` as the body and the headers

    - ``Content-Type: application/json``
    - ``X-Goalwatch-Timestamp: <unix seconds when this attempt was signed>``
    - ``X-Goalwatch-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>``

Verifying on the receiving side
    1. Read the raw body bytes *before* parsing JSON (re-serialising changes the bytes).
    2. Compute ``hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()``
       and compare it with the header (after ``sha256=``) in constant time
       (``hmac.compare_digest``).
    3. Reject timestamps more than a few minutes from your clock, so a captured request cannot
       be replayed later; each retry is signed afresh, so honest retries always pass.
    4. De-duplicate on ``fingerprint`` + ``state`` + ``started_at``: a retry after a timeout may
       deliver a request you already processed.

    :func:`goalwatch.contracts.signing.verify_signature` does steps 2 and 3.

Retries
    Connection errors, timeouts, HTTP 5xx and 429 are retried with exponential backoff and
    jitter (``Retry-After`` is honoured, capped); any other 4xx fails at once, because a receiver
    that rejects the request will not change its mind. 2xx is success; redirects are not
    followed (configure the final URL).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from goalwatch.contracts import AlertNotification, DeliveryStatus
from goalwatch.contracts.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from goalwatch.settings import redacted_url
from services.notifier.channels import DeliveryResult

logger = logging.getLogger(__name__)


class _Retryable(Exception):
    """A failure that may pass on a later attempt."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Permanent(Exception):
    """A failure that retrying will not fix."""


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), if usable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class _RetryAfterOrBackoff(wait_base):
    """Wait what the receiver asked for (capped), else exponential backoff with jitter."""

    def __init__(self, *, initial: float, cap: float) -> None:
        self._cap = cap
        self._backoff = wait_exponential_jitter(multiplier=initial, max=cap, jitter=initial)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            return min(error.retry_after, self._cap)
        return float(self._backoff(retry_state))


class WebhookChannel:
    """Posts signed :class:`AlertNotification` JSON to one URL."""

    def __init__(
        self,
        *,
        url: str,
        secret: SecretStr,
        client: httpx.AsyncClient,
        timeout: float = 5.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._where = redacted_url(url)
        self._secret = secret
        self._client = client
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._clock = clock

    @property
    def name(self) -> str:
        """Always ``webhook``."""
        return "webhook"

    async def deliver(self, *, notification: AlertNotification) -> DeliveryResult:
        """POST the notification, retrying transient failures; report the outcome."""
        body = notification.model_dump_json().encode()
        fingerprint = notification.fingerprint

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                "webhook attempt %d of %d failed (%s); retrying in %.1fs",
                state.attempt_number,
                self._max_attempts,
                error,
                wait,
                extra={"fingerprint": fingerprint, "channel": self.name},
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=_RetryAfterOrBackoff(initial=self._backoff, cap=self._backoff_max),
            retry=retry_if_exception_type(_Retryable),
            before_sleep=log_retry,
            sleep=self._sleep,
            reraise=True,
        )
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await self._post_once(body)
        except (_Retryable, _Permanent) as exc:
            return DeliveryResult(status=DeliveryStatus.FAILED, attempts=attempts, error=str(exc))
        return DeliveryResult(status=DeliveryStatus.SENT, attempts=attempts)

    async def _post_once(self, body: bytes) -> None:
        # Signed per attempt: a retry long after the first try must still look fresh.
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret=self._secret, timestamp=timestamp, body=body),
        }
        try:
            response = await self._client.post(
                self._url, content=body, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            raise _Retryable(
                f"POST {self._where} timed out after {self._timeout}s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"POST {self._where} failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = f"POST {self._where} answered HTTP {status}: {response.text[:200]!r}"
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
            raise _Retryable(detail, retry_after=retry_after)
        raise _Permanent(detail)
