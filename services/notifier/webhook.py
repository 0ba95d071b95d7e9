"""Generic webhook channel: one signed JSON POST per alert transition, retried with backoff.

Request
    ``POST <GOALWATCH_WEBHOOK_URL>`` with the JSON of
    :class:`services.notifier.notification.AlertNotification` as the body and the headers

    - ``Content-Type: application/json``
    - ``X-Goalwatch-Timestamp: <unix seconds when this attempt was signed>``
    - ``X-Goalwatch-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>``
    - ``Idempotency-Key: <the notification's idempotency_key>``, the same in every attempt

Verifying on the receiving side
    1. Read the raw body bytes *before* parsing JSON (re-serialising changes the bytes).
    2. Compute ``hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()``
       and compare it with the header (after ``sha256=``) in constant time
       (``hmac.compare_digest``).
    3. Reject timestamps more than a few minutes from your clock, so a captured request cannot
       be replayed later; each retry is signed afresh, so honest retries always pass.
    4. De-duplicate on ``Idempotency-Key``: a retry after a timeout, or after the notifier
       died before recording your answer, repeats a request you already processed.

    :func:`goalwatch.contracts.signing.verify_signature` does steps 2 and 3.

Retries
    Each call makes one attempt. Connection errors, timeouts, HTTP 5xx and 429 are worth
    another after exponential backoff with jitter (``Retry-After`` is honoured, capped), until
    the attempts run out; any other 4xx fails at once, because a receiver that rejects the
    request will not change its mind. 2xx is success; redirects are not followed (configure
    the final URL). The waiting is JetStream's: the notifier naks the alert with the delay.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx
from pydantic import SecretStr

from goalwatch.contracts import AlertNotification, DeliveryStatus
from goalwatch.contracts.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from goalwatch.settings import redacted_url
from services.notifier.channels import DeliveryResult

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"


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
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._url = url
        self._where = redacted_url(url)
        self._secret = secret
        self._client = client
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._clock = clock
        self._jitter = jitter

    @property
    def name(self) -> str:
        """Always ``webhook``."""
        return "webhook"

    def retry_delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1``: what the receiver asked for, else
        ``backoff x 2^(attempt-1)`` plus up to ``backoff`` of jitter; at most ``backoff_max``."""
        if retry_after is not None:
            return min(retry_after, self._backoff_max)
        delay = self._backoff * 2 ** (attempt - 1) + self._backoff * self._jitter()
        return float(min(delay, self._backoff_max))

    async def deliver(self, *, notification: AlertNotification, attempt: int) -> DeliveryResult:
        """POST the notification once; say whether and when another attempt is worth it."""
        body = notification.model_dump_json().encode()
        extra = {"fingerprint": notification.fingerprint, "channel": self.name}
        try:
            await self._post_once(body, key=notification.idempotency_key)
        except _Permanent as exc:
            return DeliveryResult(status=DeliveryStatus.FAILED, attempts=attempt, error=str(exc))
        except _Retryable as exc:
            if attempt >= self._max_attempts:
                return DeliveryResult(
                    status=DeliveryStatus.FAILED, attempts=attempt, error=str(exc)
                )
            wait = self.retry_delay(attempt, retry_after=exc.retry_after)
            logger.warning(
                "webhook attempt %d of %d failed (%s); retrying in %.1fs",
                attempt,
                self._max_attempts,
                exc,
                wait,
                extra=extra,
            )
            return DeliveryResult(
                status=DeliveryStatus.FAILED, attempts=attempt, error=str(exc), retry_in=wait
            )
        return DeliveryResult(status=DeliveryStatus.SENT, attempts=attempt)

    async def _post_once(self, body: bytes, *, key: str | None) -> None:
        # Signed per attempt: a retry long after the first try must still look fresh.
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret=self._secret, timestamp=timestamp, body=body),
        }
        if key is not None:
            headers[IDEMPOTENCY_HEADER] = key
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
