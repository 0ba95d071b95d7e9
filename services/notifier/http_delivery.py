"""One HTTP attempt at a delivery, and the rules that say whether another is worth making.

Every HTTP channel (the generic webhook, WeCom, DingTalk, Feishu, Slack, Alertmanager) builds
its request and hands it to :class:`HttpDelivery`, so what is retried lives here, once:

- connection errors, timeouts, HTTP 5xx and 429 are worth another attempt; so is an answer a
  channel's :data:`AnswerCheck` calls a :class:`Retryable` failure (a chat vendor's rate-limit
  error code inside an HTTP 200 body);
- any other 4xx, a redirect, or an answer the check calls :class:`Permanent` fails at once: a
  receiver that rejects the request will not change its mind;
- the wait before attempt ``n + 1`` is ``backoff x 2^(n-1)`` plus up to ``backoff`` of jitter,
  or what ``Retry-After`` asks for; never more than ``backoff_max``.

Nothing here sleeps: the result carries ``retry_in`` and the notifier asks JetStream to
redeliver the alert after it. URLs are logged and reported without their credentials.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from goalwatch.contracts import DeliveryStatus
from goalwatch.settings import redacted_url
from services.notifier.channels import DeliveryResult

logger = logging.getLogger(__name__)


class Retryable(Exception):
    """A failure that may pass on a later attempt (``retry_after``: what the receiver asked)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Permanent(Exception):
    """A failure that retrying will not fix."""


AnswerCheck = Callable[[httpx.Response], None]
"""Looks at a 2xx answer and raises :class:`Retryable` or :class:`Permanent` if the vendor
said no inside it (WeCom's ``errcode``, Feishu's ``code``); returns if it is a success."""


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


def masked_url(url: str, *, keep_segments: int) -> str:
    """:func:`redacted_url`, with every path segment after the first ``keep_segments`` masked:
    for vendors whose credential is part of the path (Feishu's hook id, Slack's T/B/X)."""
    redacted = redacted_url(url)
    scheme, rest = redacted.split("://", 1)
    host, _, path = rest.partition("/")
    segments = [s for s in path.split("/") if s]
    if len(segments) <= keep_segments:
        return redacted
    shown = [*segments[:keep_segments], "***"]
    return f"{scheme}://{host}/" + "/".join(shown)


def json_field(response: httpx.Response, *names: str) -> Any:
    """The first of ``names`` present at the top of a JSON object answer, else None (also
    when the answer is not a JSON object: such a vendor answer is checked by its status)."""
    try:
        document = response.json()
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    for name in names:
        if name in document:
            return document[name]
    return None


def error_code_check(
    *,
    code_fields: tuple[str, ...],
    message_fields: tuple[str, ...],
    retry_codes: frozenset[int],
) -> AnswerCheck:
    """A check for vendors that answer HTTP 200 with ``{"errcode": N, "errmsg": "..."}``:
    0 (or no code) is success, a code in ``retry_codes`` is worth another attempt, any other
    code is permanent."""

    def check(response: httpx.Response) -> None:
        code = json_field(response, *code_fields)
        if code is None or code == 0:
            return
        message = json_field(response, *message_fields)
        detail = f"{code_fields[0]} {code}: {str(message)[:200]!r}"
        if isinstance(code, int) and code in retry_codes:
            raise Retryable(detail)
        raise Permanent(detail)

    return check


class HttpDelivery:
    """Makes one POST for a channel and turns its outcome into a :class:`DeliveryResult`."""

    def __init__(
        self,
        *,
        channel: str,
        client: httpx.AsyncClient,
        where: str,
        timeout: float = 5.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """``where`` names the receiver in logs and errors; it must hold no credential."""
        self.channel = channel
        self.where = where
        self._client = client
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._backoff_max = backoff_max
        self.clock = clock
        self._jitter = jitter

    def retry_delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1``: what the receiver asked for, else
        ``backoff x 2^(attempt-1)`` plus up to ``backoff`` of jitter; at most ``backoff_max``."""
        if retry_after is not None:
            return min(retry_after, self._backoff_max)
        delay = self._backoff * 2 ** (attempt - 1) + self._backoff * self._jitter()
        return float(min(delay, self._backoff_max))

    async def post_json(
        self,
        url: str,
        payload: Any,
        *,
        attempt: int,
        fingerprint: str,
        check: AnswerCheck | None = None,
    ) -> DeliveryResult:
        """:meth:`deliver` of ``payload`` as a UTF-8 JSON body (Chinese text as is)."""
        return await self.deliver(
            url=url,
            content=json.dumps(payload, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
            attempt=attempt,
            fingerprint=fingerprint,
            check=check,
        )

    async def deliver(
        self,
        *,
        url: str,
        content: bytes,
        headers: Mapping[str, str],
        attempt: int,
        fingerprint: str,
        check: AnswerCheck | None = None,
    ) -> DeliveryResult:
        """POST ``content`` to ``url`` once; say whether and when another attempt is worth it."""
        try:
            await self._post_once(url, content=content, headers=headers, check=check)
        except Permanent as exc:
            return DeliveryResult(status=DeliveryStatus.FAILED, attempts=attempt, error=str(exc))
        except Retryable as exc:
            if attempt >= self._max_attempts:
                return DeliveryResult(
                    status=DeliveryStatus.FAILED, attempts=attempt, error=str(exc)
                )
            wait = self.retry_delay(attempt, retry_after=exc.retry_after)
            logger.warning(
                "%s attempt %d of %d failed (%s); retrying in %.1fs",
                self.channel,
                attempt,
                self._max_attempts,
                exc,
                wait,
                extra={"fingerprint": fingerprint, "channel": self.channel},
            )
            return DeliveryResult(
                status=DeliveryStatus.FAILED, attempts=attempt, error=str(exc), retry_in=wait
            )
        return DeliveryResult(status=DeliveryStatus.SENT, attempts=attempt)

    async def _post_once(
        self,
        url: str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        check: AnswerCheck | None,
    ) -> None:
        try:
            response = await self._client.post(
                url, content=content, headers=dict(headers), timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            raise Retryable(
                f"POST {self.where} timed out after {self._timeout}s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            # The exception text can quote the URL, credentials and all.
            reason = str(exc).replace(url, self.where)
            raise Retryable(f"POST {self.where} failed: {type(exc).__name__}: {reason}") from exc
        status = response.status_code
        if 200 <= status < 300:
            if check is not None:
                try:
                    check(response)
                except Retryable as exc:
                    raise Retryable(
                        f"POST {self.where} answered HTTP {status} with {exc}",
                        retry_after=exc.retry_after,
                    ) from exc
                except Permanent as exc:
                    raise Permanent(f"POST {self.where} answered HTTP {status} with {exc}") from exc
            return
        detail = f"POST {self.where} answered HTTP {status}: {response.text[:200]!r}"
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self.clock())
            raise Retryable(detail, retry_after=retry_after)
        raise Permanent(detail)
