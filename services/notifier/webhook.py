"""Generic webhook channel: one signed JSON POST per alert transition, retried with backoff.

Request
    ``POST <GOALWATCH_WEBHOOK_URL>`` with the JSON of
    :class:`services.notifier.notification.AlertNotification` as the body and the headers

    - ``Content-Type: application/json``
    - ``X-Goalwatch-Timestamp: <unix seconds when this attempt was signed>``
    - ``X-Goalwatch-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>``
    - ``Idempotency-Key: <the notification's idempotency_key>``, the same in every attempt
    - ``X-Goalwatch-Event: alert``; ``digest`` when a route groups alerts (or a rate limit or
      quiet hours held some back) and the body is an :class:`AlertDigest` of several

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
    These rules are shared with the chat channels: :mod:`services.notifier.http_delivery`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import httpx
from pydantic import SecretStr

from goalwatch.contracts import AlertDigest, AlertNotification
from goalwatch.contracts.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from goalwatch.settings import redacted_url
from services.notifier.channels import DeliveryResult
from services.notifier.http_delivery import HttpDelivery, parse_retry_after

__all__ = ["EVENT_HEADER", "IDEMPOTENCY_HEADER", "WebhookChannel", "parse_retry_after"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-Goalwatch-Event"
"""``alert`` (the body is one :class:`AlertNotification`) or ``digest`` (an :class:`AlertDigest`)."""


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
        self._secret = secret
        self._clock = clock
        self._http = HttpDelivery(
            channel=self.name,
            client=client,
            where=redacted_url(url),
            timeout=timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            backoff_max=backoff_max,
            clock=clock,
            jitter=jitter,
        )

    @property
    def name(self) -> str:
        """Always ``webhook``."""
        return "webhook"

    def retry_delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1`` (see :meth:`HttpDelivery.retry_delay`)."""
        return self._http.retry_delay(attempt, retry_after=retry_after)

    async def deliver(self, *, notification: AlertNotification, attempt: int) -> DeliveryResult:
        """POST the notification once; say whether and when another attempt is worth it."""
        return await self._post(
            notification.model_dump_json().encode(),
            event="alert",
            idempotency_key=notification.idempotency_key,
            attempt=attempt,
            fingerprint=notification.fingerprint,
        )

    async def deliver_digest(self, *, digest: AlertDigest, attempt: int) -> DeliveryResult:
        """POST the :class:`AlertDigest` once (``X-Goalwatch-Event: digest``)."""
        return await self._post(
            digest.model_dump_json().encode(),
            event="digest",
            idempotency_key=digest.idempotency_key,
            attempt=attempt,
            fingerprint=digest.id,
        )

    async def _post(
        self,
        body: bytes,
        *,
        event: str,
        idempotency_key: str | None,
        attempt: int,
        fingerprint: str,
    ) -> DeliveryResult:
        # Signed per attempt: a retry long after the first try must still look fresh.
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: event,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret=self._secret, timestamp=timestamp, body=body),
        }
        if idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        return await self._http.deliver(
            url=self._url,
            content=body,
            headers=headers,
            attempt=attempt,
            fingerprint=fingerprint,
        )
