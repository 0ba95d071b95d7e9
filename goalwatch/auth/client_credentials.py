"""Bearer tokens for a system's own calls: OAuth 2.0 client credentials (RFC 6749 §4.4) as an
``httpx.Auth``.

    auth = ClientCredentials(issuer, client_id, client_secret)
    httpx.AsyncClient(base_url=goals_url, auth=auth)   # or httpx.Client: both work

The token endpoint is found through the provider's discovery document; a token is fetched on
first use, kept until shortly before it expires, fetched again then, and once more when a
server answers 401 (it may have been revoked, or the provider's key rotated); the request is
then repeated once. One fetch at a time: requests waiting for a token wait for that fetch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from urllib.parse import quote_plus

import httpx

DISCOVERY_PATH = "/.well-known/openid-configuration"


class TokenError(httpx.HTTPStatusError):
    """The provider refused to issue a token; the message says what it answered.

    An ``httpx.HTTPStatusError``, so code that treats a failed call as an HTTP error (retries,
    problem reports) treats a refused token the same way.
    """


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # on the auth's clock


class ClientCredentials(httpx.Auth):
    """Adds ``Authorization: Bearer <token>`` for a client of the provider at ``issuer``.

    ``refresh_margin``: seconds before expiry to fetch a new token (at most half its
    lifetime). ``transport`` / ``async_transport``: how to reach the provider (tests pass an
    ASGI or mock transport); by default the network. Async use is bound to one event loop.
    """

    # The request is sent again after a 401, so its body must be kept.
    requires_request_body = True

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        refresh_margin: float = 60.0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._margin = refresh_margin
        self._timeout = timeout
        self._transport = transport
        self._async_transport = async_transport
        self._clock = clock
        self._token_endpoint: str | None = None
        self._token: _Token | None = None
        self._sync_lock = threading.Lock()
        self._async_lock = asyncio.Lock()

    def __repr__(self) -> str:  # never the secret
        return f"ClientCredentials(issuer={self.issuer!r}, client_id={self.client_id!r})"

    # the flows: the same steps, with the token fetched by a sync or an async client

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """Send ``request`` with a token; on 401, once more with a new one."""
        request.read()
        token = self._sync_token()
        response = yield _with(request, token)
        if response.status_code == 401:
            yield _with(request, self._sync_token(stale=token))

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Send ``request`` with a token; on 401, once more with a new one."""
        await request.aread()
        token = await self._async_token()
        response = yield _with(request, token)
        if response.status_code == 401:
            yield _with(request, await self._async_token(stale=token))

    # the cache

    def _cached(self, stale: str | None) -> str | None:
        """The kept token, unless it is due for refresh or is the one a server refused."""
        token = self._token
        if token is None or token.value == stale or self._clock() >= token.refresh_at:
            return None
        return token.value

    def _sync_token(self, stale: str | None = None) -> str:
        with self._sync_lock:
            cached = self._cached(stale)
            if cached is not None:
                return cached
            with httpx.Client(transport=self._transport, timeout=self._timeout) as http:
                if self._token_endpoint is None:
                    self._token_endpoint = _token_endpoint(http.get(self._discovery_url))
                return self._keep(http.send(self._token_request(self._token_endpoint)))

    async def _async_token(self, stale: str | None = None) -> str:
        async with self._async_lock:
            cached = self._cached(stale)
            if cached is not None:
                return cached
            async with httpx.AsyncClient(
                transport=self._async_transport, timeout=self._timeout
            ) as http:
                if self._token_endpoint is None:
                    self._token_endpoint = _token_endpoint(await http.get(self._discovery_url))
                return self._keep(await http.send(self._token_request(self._token_endpoint)))

    @property
    def _discovery_url(self) -> str:
        return f"{self.issuer}{DISCOVERY_PATH}"

    def _token_request(self, endpoint: str) -> httpx.Request:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        request = httpx.Request("POST", endpoint, data=form)
        # client_secret_basic, which every provider supports; the id and secret are
        # form-encoded before Basic encoding (RFC 6749 §2.3.1).
        basic = httpx.BasicAuth(quote_plus(self.client_id), quote_plus(self._secret))
        return next(basic.auth_flow(request))

    def _keep(self, response: httpx.Response) -> str:
        if response.status_code != 200:
            raise TokenError(
                f"{response.request.url} refused a token to client {self.client_id}: "
                f"{response.status_code} {_reason(response)}",
                request=response.request,
                response=response,
            )
        body = response.json()
        lifetime = float(body.get("expires_in", 300))
        value = str(body["access_token"])
        # Fetched again a margin before expiry (never later than half-way through), so a
        # request is not sent with a token that expires on its way.
        self._token = _Token(value, self._clock() + max(lifetime - self._margin, lifetime / 2))
        return value


def _with(request: httpx.Request, token: str) -> httpx.Request:
    request.headers["Authorization"] = f"Bearer {token}"
    return request


def _token_endpoint(response: httpx.Response) -> str:
    if response.status_code != 200:
        raise TokenError(
            f"{response.request.url}: no OpenID Connect discovery document "
            f"({response.status_code} {_reason(response)})",
            request=response.request,
            response=response,
        )
    return str(response.json()["token_endpoint"])


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "error" in body:
        return f"{body['error']}: {body.get('error_description', '')}".rstrip(": ")
    return response.text[:200]
