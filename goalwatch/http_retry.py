"""One HTTP request to another goalwatch service, tried again while the failure is passing.

Passing: no answer in time, no connection, no token from the identity provider for the
calling service, ``429`` or a ``5xx``. Every other answer, ``404`` and ``403`` included, is
the caller's to read. Retries wait with exponential backoff and jitter (tenacity).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)


class Transient(Exception):
    """The request failed in a way worth another try; after the last try, why it failed."""


async def send_retrying(
    send: Callable[[], Awaitable[httpx.Response]],
    *,
    what: str,
    attempts: int,
    backoff: float,
    max_wait: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> httpx.Response:
    """``send()``'s first answer that is not a passing failure; :class:`Transient` (saying
    what failed last) when each of ``attempts`` tries failed that way. ``what`` names the
    request in the messages (``GET http://goals/v1/people/li-na``)."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=backoff, max=max_wait, jitter=backoff),
        retry=retry_if_exception_type(Transient),
        sleep=sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await _send_once(send, what)
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


async def _send_once(send: Callable[[], Awaitable[httpx.Response]], what: str) -> httpx.Response:
    try:
        response = await send()
    except httpx.TimeoutException as exc:
        raise Transient(f"timed out ({type(exc).__name__}) on {what}") from exc
    except httpx.TransportError as exc:
        raise Transient(f"could not reach {what}: {exc!r}") from exc
    except httpx.HTTPStatusError as exc:  # the identity provider refused the calling service
        raise Transient(f"no token to call {what} with: {exc}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise Transient(f"{what} answered HTTP {response.status_code}")
    return response
