"""API keys checked by asking the goals service, which owns them, with answers kept a while.

Every service but goals verifies a presented key with ``POST /v1/api-keys/verify`` on goals,
signed in as itself (:func:`goalwatch.goals_client.service_auth`), and keeps the answer for
``GOALWATCH_API_KEY_CACHE_TTL`` seconds (30 by default). So a key that is revoked keeps
working on a service that has just checked it for at most that long; a key's expiry is kept
exactly (an answer is never kept past it). Refusals are kept as long, so a bad key sent over
and over costs goals one question per service per TTL; a key that is not written as a key
never leaves the service. The cache holds hashes of keys, not keys.

Network trouble, a timeout, 429 or a 5xx is retried once after a short pause (a request is
waiting), then answered 503 with ``Retry-After``; nothing is cached then.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from pydantic import ValidationError

from goalwatch.auth.api_keys import (
    ApiKeyCheck,
    ApiKeysUnavailable,
    ApiKeyVerdict,
    InvalidApiKey,
    parse_key,
)
from goalwatch.auth.principal import Principal
from goalwatch.http_retry import Transient, send_retrying

VERIFY_PATH = "/v1/api-keys/verify"
MAX_ENTRIES = 10_000
"""Answers kept at most; the oldest go first (a flood of made-up keys cannot grow it)."""


@dataclass(frozen=True)
class _Answer:
    until: float  # on the verifier's clock
    principal: Principal | None
    reason: str


class HttpApiKeyVerifier:
    """Verifies keys with the goals service at ``base_url``, signed in with ``auth``, and
    keeps each answer for ``ttl`` seconds (see the module's description)."""

    def __init__(
        self,
        *,
        base_url: str,
        auth: httpx.Auth | None,
        ttl: float,
        http: httpx.AsyncClient | None = None,
        attempts: int = 2,
        backoff: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}{VERIFY_PATH}"
        self._auth = auth
        self._ttl = ttl
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
        self._attempts = attempts
        self._backoff = backoff
        self._clock = clock
        self._now = now
        self._sleep = sleep
        self._answers: OrderedDict[str, _Answer] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[_Answer]] = {}

    async def verify(self, key: str) -> Principal:
        """The principal ``key`` signs in as; :class:`InvalidApiKey` if goals refuses it,
        :class:`ApiKeysUnavailable` if goals cannot be asked now."""
        parse_key(key)  # a malformed key is refused here, without asking goals
        kept = hashlib.sha256(key.encode()).hexdigest()
        answer = self._answers.get(kept)
        if answer is None or answer.until <= self._clock():
            answer = await self._ask_once(kept, key)
        if answer.principal is None:
            raise InvalidApiKey(answer.reason)
        return answer.principal

    async def _ask_once(self, kept: str, key: str) -> _Answer:
        """Ask goals; requests with the same key meanwhile wait for this one answer."""
        waiting = self._in_flight.get(kept)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._in_flight[kept] = future
        try:
            answer = self._remember(kept, await self._ask(key))
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            self._in_flight.pop(kept, None)
        future.set_result(answer)
        return answer

    def _remember(self, kept: str, verdict: ApiKeyVerdict) -> _Answer:
        until = self._clock() + self._ttl
        grant = verdict.grant
        if verdict.valid and grant is not None:
            if grant.expires_at is not None:
                # Never kept past the key's expiry.
                left = (grant.expires_at - self._now()).total_seconds()
                until = min(until, self._clock() + max(left, 0.0))
            answer = _Answer(until, grant.principal(), "")
        else:
            answer = _Answer(until, None, verdict.reason or "the API key was refused")
        self._answers[kept] = answer
        self._answers.move_to_end(kept)
        while len(self._answers) > MAX_ENTRIES:
            self._answers.popitem(last=False)
        return answer

    async def _ask(self, key: str) -> ApiKeyVerdict:
        if self._auth is None:
            raise ApiKeysUnavailable(
                "this service cannot check API keys: it has no client of its own at the "
                "identity provider to ask goals with (set GOALWATCH_OIDC_CLIENT_ID and "
                "GOALWATCH_OIDC_CLIENT_SECRET)"
            )
        auth = self._auth
        body = ApiKeyCheck(key=key).model_dump()
        try:
            response = await send_retrying(
                lambda: self._http.post(self._url, json=body, auth=auth),
                what=f"POST {self._url}",
                attempts=self._attempts,
                backoff=self._backoff,
                max_wait=1.0,
                sleep=self._sleep,
            )
        except Transient as exc:
            raise ApiKeysUnavailable(
                f"the API key could not be checked: goals did not answer {self._url} after "
                f"{self._attempts} attempts ({exc})"
            ) from None
        status = response.status_code
        if status != 200:
            raise ApiKeysUnavailable(
                f"the API key could not be checked: goals answered {self._url} with HTTP "
                f"{status} (is this service's client granted the role service?)"
            )
        try:
            return ApiKeyVerdict.model_validate_json(response.content)
        except ValidationError as exc:
            raise ApiKeysUnavailable(
                f"the API key could not be checked: goals answered {self._url} with a body "
                f"that is not an ApiKeyVerdict ({exc.error_count()} errors)"
            ) from None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()
