"""What every service's HTTP API refuses before a route sees the request.

Four limits, the same in every service, each answered as RFC 9457 problem+json:

- a query parameter the route does not take (:func:`known_query_parameters`, 400, naming the
  ones it takes): a misspelt filter (``?manger=``) would otherwise be ignored and answer
  with everything;
- a ``Host`` header that is not on the allow-list (:class:`HostAllowList`, 400): a web page
  whose name was re-pointed at a goalwatch address (DNS rebinding) is not served;
- a body larger than the service's limit (:class:`BodyLimits`, 413), refused from its
  ``Content-Length`` at once, or as soon as more bytes arrive than it may have;
- a body that stops arriving before it is complete (408): the whole body must be in within
  the timeout, so a client that promises more than it sends does not hold a worker forever.

The body limits wrap the ASGI ``receive`` channel, so they hold whoever reads the body
(FastAPI's request parsing, or a route reading ``request.body()``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from fastapi import Request
from fastapi.dependencies.models import Dependant
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from goalwatch.problems import clip, problem

LOOPBACK_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
"""The host names every service answers to whatever the allow-list says."""


class BodyTooLarge(HTTPException):
    """The request body is larger than the service accepts (413)."""

    def __init__(self, *, limit: int, size: int | None = None) -> None:
        got = f"{size} bytes" if size is not None else "more bytes"
        super().__init__(
            413,
            f"request body too large: {got}, at most {limit} bytes; send less per request "
            "(split a batch into smaller ones)",
        )


class BodyTimedOut(HTTPException):
    """The request body did not arrive in full within the timeout (408)."""

    def __init__(self, *, timeout: float, received: int, declared: str | None) -> None:
        promised = f" of the {declared} its Content-Length promised" if declared else ""
        super().__init__(
            408,
            f"the request body did not arrive within {timeout:g} s: {received} bytes"
            f"{promised}; send the whole body at once, with a Content-Length that matches it",
        )


def host_of(header: str) -> str:
    """The host part of a ``Host`` header, lower case, without port or IPv6 brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts(configured: Sequence[str], *, listen_host: str) -> list[str]:
    """The names a service answers to: the loopback names, ``listen_host``, and ``configured``.

    ``*`` allows any host; ``*.example.com`` any name under ``example.com``.
    """
    names = [*LOOPBACK_HOSTS, host_of(listen_host), *(host_of(h) for h in configured)]
    return list(dict.fromkeys(name for name in names if name))


class HostAllowList:
    """ASGI middleware: answer 400 to a request whose ``Host`` is not an allowed name."""

    def __init__(self, app: ASGIApp, *, hosts: Sequence[str]) -> None:
        self.app = app
        self.hosts = [h.lower() for h in hosts]
        self.any = "*" in self.hosts

    def allows(self, host: str) -> bool:
        """Whether ``host`` (as :func:`host_of` returns it) may be served."""
        return self.any or any(
            host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
            for pattern in self.hosts
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass allowed requests on; refuse the others."""
        if scope["type"] != "http" or self.any:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("host")
        if header is not None and self.allows(host_of(header)):
            await self.app(scope, receive, send)
            return
        shown = "no Host header" if header is None else f"Host {header[:100]!r}"
        response = problem(
            400,
            f"{shown} is not a name this service answers to; use one of "
            f"{', '.join(self.hosts)}, or add the name to GOALWATCH_ALLOWED_HOSTS",
        )
        await response(scope, receive, send)


SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # No page of a service is to be framed (clickjacking of the acknowledgement pages).
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)
"""Headers every answer carries, unless the route set its own."""
HSTS = (b"strict-transport-security", b"max-age=31536000")
"""Added to answers served over TLS: browsers keep to HTTPS for a year."""


class SecurityHeaders:
    """ASGI middleware: the browser protections of :data:`SECURITY_HEADERS` on every answer,
    and HSTS on those served over TLS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the start of each response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = SECURITY_HEADERS + ((HSTS,) if scope.get("scheme") == "https" else ())

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in wanted if pair[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimits:
    """ASGI middleware: a body beyond ``max_bytes`` is 413, one slower than ``timeout`` is 408.

    ``timeout`` bounds the whole body, from the first read to the last byte.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an oversized body at once, else watch it as it is read."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _answer(BodyTooLarge(limit=self.max_bytes, size=int(declared)), scope, send)
            return
        await self.app(scope, self._watched(receive, declared), send)

    def _watched(self, receive: Receive, declared: str | None) -> Receive:
        received = 0
        deadline: float | None = None
        complete = False

        async def watched() -> Message:
            nonlocal received, deadline, complete
            if complete:  # after the body: a disconnect, waited for without a deadline
                return await receive()
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + self.timeout
            try:
                async with asyncio.timeout(max(deadline - now, 0.0)):
                    message = await receive()
            except TimeoutError:
                raise BodyTimedOut(
                    timeout=self.timeout, received=received, declared=declared
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(limit=self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        return watched


async def _answer(exc: HTTPException, scope: Scope, send: Send) -> None:
    async def nothing() -> Message:  # the body is not read: the answer does not need it
        return {"type": "http.disconnect"}

    await problem(exc.status_code, str(exc.detail))(scope, nothing, send)


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


async def known_query_parameters(request: Request) -> None:
    """Refuse (400) a request with a query parameter its route does not take, naming the ones
    it does: an app-wide dependency (``FastAPI(dependencies=...)``)."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        named = ", ".join(repr(clip(name)) for name in unknown[:5])
        takes = ", ".join(sorted(known)) if known else "no query parameters"
        raise HTTPException(
            status_code=400,
            detail=f"unknown query parameter{'s' if len(unknown) != 1 else ''} {named}; "
            f"{request.url.path} takes: {takes}",
        )
