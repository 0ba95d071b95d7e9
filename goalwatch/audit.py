"""The audit log: every change that matters, and every refused attempt, written down once.

One ASGI middleware (:class:`AuditTrail`, installed by :func:`goalwatch.service.service_app`
in every service) records, after the answer is sent, each request that:

- changes something: any method but GET, HEAD and OPTIONS, on a route whose policy is
  ``audited`` (all but ``POST /v1/events``, whose metric data has a stream of its own and
  would drown the changes), whatever the answer (a 422 is an attempt worth knowing of too);
- or was refused, on any route and by any method: 401 (no valid token) and 403 (not
  allowed, or a forged acknowledgement link). Reads that succeed are not recorded.

A record (:class:`~goalwatch.contracts.AuditRecorded`) names who asked, the route template
and its path parameters, the status, the address and the request id. Never the body of the
request (it can carry secrets and personal data), nor its query, nor any token: a path
parameter that is a credential (:data:`SECRET_PARAMETERS`) is recorded as ``[redacted]``.

Records go to ``goalwatch.audit.v1.<service>`` in ``GOALWATCH_AUDIT``. The request never
waits for it or fails because of it: the answer is already sent, JetStream gets
``GOALWATCH_AUDIT_PUBLISH_TIMEOUT`` to store the record, and if NATS is down the record is
logged at WARNING instead, and counted, in ``goalwatch_audit_records_total{outcome="lost"}``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from weakref import WeakKeyDictionary

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry, Counter
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from goalwatch.auth.policy import Access, Public, route_access
from goalwatch.auth.principal import Principal
from goalwatch.consumers import provisioned
from goalwatch.contracts import AuditRecorded, subjects

logger = logging.getLogger(__name__)

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: recorded only when refused."""
REFUSED: Final = frozenset({401, 403})
"""Statuses recorded on every route and method: someone tried, and was turned away."""
SECRET_PARAMETERS: Final = frozenset({"token"})
"""Path parameters that are credentials (an acknowledgement link's signed token)."""
REDACTED: Final = "[redacted]"
ANONYMOUS: Final = "anonymous"
LINK: Final = "link"
REQUEST_ID: Final = "X-Request-Id"
_REQUEST_ID_FORM = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_ACTOR = "audit_actor"
_MAX_ADDRESS = 100
_MAX_PARAMETER = 256


@dataclass(frozen=True)
class Actor:
    """Who a record names: ``who`` and, when known, the person's or the system's id."""

    who: str
    person_id: str | None = None
    client_id: str | None = None


def act_as(request: Request, *, person_id: str) -> None:
    """Name the person a route without sign-in acts for (an acknowledgement link's person),
    so that the audit log says who, not ``link``."""
    setattr(request.state, _ACTOR, Actor(f"person:{person_id}", person_id=person_id))


def audited(method: str, status: int, access: Access) -> bool:
    """Whether a request by ``method`` to a route declaring ``access``, answered with
    ``status``, goes into the audit log."""
    if status in REFUSED:
        return True
    return method not in SAFE_METHODS and access.audited


def request_id_from(headers: Headers) -> str:
    """The caller's ``X-Request-Id`` when it is a plain token (letters, digits, ``._:-``, at
    most 128), else a new one: whatever goes into logs and records must not forge lines."""
    given = headers.get(REQUEST_ID, "").strip()
    return given if _REQUEST_ID_FORM.fullmatch(given) else uuid.uuid4().hex


def client_address(scope: Scope, *, trust_forwarded: bool) -> str | None:
    """Where the request came from: the connecting address, or, with ``trust_forwarded``
    (behind a proxy that writes the header itself), the first ``X-Forwarded-For`` hop."""
    if trust_forwarded:
        forwarded = Headers(scope=scope).get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first[:_MAX_ADDRESS]
    client = scope.get("client")
    return str(client[0]) if client else None


def actor_of(state: Mapping[str, Any], access: Access) -> Actor:
    """Who asked, from what sign-in left in the request's state."""
    principal = state.get("principal")
    if isinstance(principal, Principal):
        return Actor(principal.who, principal.person_id, principal.client_id)
    named = state.get(_ACTOR)
    if isinstance(named, Actor):
        return named
    # A route without sign-in is a link (the link is the credential); else nobody signed in.
    return Actor(LINK if isinstance(access, Public) else ANONYMOUS)


def _template(scope: Scope, route: APIRoute, params: Mapping[str, str]) -> str:
    """The route template as the caller addressed it: with the prefix the route's router was
    included under (the route itself knows only its own part)."""
    try:
        own = route.path_format.format(**params)
    except (KeyError, IndexError, ValueError):
        return route.path
    path = str(scope.get("path", ""))
    return path[: -len(own)] + route.path if own and path.endswith(own) else route.path


def record_of(
    scope: Scope,
    *,
    status: int,
    service: str,
    at: datetime,
    request_id: str,
    trust_forwarded: bool = False,
) -> AuditRecorded | None:
    """The audit record of the request ``scope`` answered with ``status``, or None when it is
    not one to record (no route matched, a read, a route that is not audited)."""
    route = scope.get("route")
    method = str(scope.get("method", ""))
    if not isinstance(route, APIRoute) or method not in (route.methods or ()):
        return None  # an unknown path (404) or method (405): no route to name
    if method in SAFE_METHODS and status not in REFUSED:
        return None  # most requests: decided without looking at the route's policy
    declared = route_access(route)
    access = declared[0] if len(declared) == 1 else None
    if access is None or not audited(method, status, access):
        return None
    # A refused caller chose these freely: keep a record's size bounded.
    params = {
        name: str(value)[:_MAX_PARAMETER] for name, value in scope.get("path_params", {}).items()
    }
    actor = actor_of(scope.get("state", {}), access)
    return AuditRecorded(
        id=uuid.uuid4().hex,
        at=at,
        service=service,
        who=actor.who,
        person_id=actor.person_id,
        client_id=actor.client_id,
        action=f"{method} {_template(scope, route, params)}",
        target={
            name: REDACTED if name in SECRET_PARAMETERS else value for name, value in params.items()
        },
        outcome=status,
        address=client_address(scope, trust_forwarded=trust_forwarded),
        request_id=request_id,
    )


Record = Callable[[AuditRecorded], Awaitable[None]]
"""Stores one record; never raises."""


class AuditTrail:
    """ASGI middleware: gives every request an id (echoed in ``X-Request-Id``) and, once
    the answer is sent, hands the ones to audit to ``record``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        record: Record,
        trust_forwarded: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.app = app
        self.service = service
        self.record = record
        self.trust_forwarded = trust_forwarded
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        at = self.clock()
        request_id = request_id_from(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = request_id
        status: int | None = None

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = MutableHeaders(scope=message)
                if REQUEST_ID not in headers:
                    headers.append(REQUEST_ID, request_id)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            # Unless an answer had begun, the server's error handler answers 500.
            await self._after(scope, status or 500, at, request_id)
            raise
        await self._after(scope, status or 500, at, request_id)

    async def _after(self, scope: Scope, status: int, at: datetime, request_id: str) -> None:
        try:
            record = record_of(
                scope,
                status=status,
                service=self.service,
                at=at,
                request_id=request_id,
                trust_forwarded=self.trust_forwarded,
            )
        except Exception:  # a record that cannot be made must not turn into a failed request
            logger.exception("audit record of request %s not made", request_id)
            return
        if record is not None:
            await self.record(record)


_COUNTERS: WeakKeyDictionary[CollectorRegistry, Counter] = WeakKeyDictionary()


def records_counter(registry: CollectorRegistry) -> Counter:
    """``goalwatch_audit_records_total{outcome}`` on ``registry`` (one per registry, however
    many apps are built on it): ``recorded`` or ``lost``."""
    counter = _COUNTERS.get(registry)
    if counter is None:
        counter = Counter(
            "goalwatch_audit_records_total",
            "Audit records stored in JetStream (recorded) or not stored because NATS did not "
            "confirm them in time (lost; the record is in the service's log at WARNING).",
            ["outcome"],
            registry=registry,
        )
        _COUNTERS[registry] = counter
    return counter


def stream_recorder(
    broker: NatsBroker, *, service: str, timeout: float, registry: CollectorRegistry
) -> Record:
    """A :data:`Record` that stores records of ``service`` in ``GOALWATCH_AUDIT``."""
    subject = subjects.audit_subject(service)
    publisher = broker.publisher(
        subject,
        stream=provisioned(subjects.STREAM_AUDIT),
        schema=AuditRecorded,
        title=f"{service}:{subject}",
        description="Audit records of the service's changes and refused requests.",
    )
    counter = records_counter(registry)

    async def record(entry: AuditRecorded) -> None:
        body = entry.model_dump_json()
        try:
            async with asyncio.timeout(timeout):
                await publisher.publish(
                    body,
                    # A record published twice (a retried ack) is stored once.
                    headers={"Nats-Msg-Id": entry.id, "content-type": "application/json"},
                    timeout=timeout,
                )
        except Exception as exc:  # NATS down, or the broker not started: never the request's
            counter.labels(outcome="lost").inc()
            logger.warning("audit record not stored in JetStream (%r): %s", exc, body)
            return
        counter.labels(outcome="recorded").inc()

    return record


def install_audit(
    app: FastAPI,
    *,
    service: str,
    broker: NatsBroker | None,
    registry: CollectorRegistry,
    timeout: float,
    trust_forwarded: bool,
) -> None:
    """Add :class:`AuditTrail` to ``app`` (a FastAPI app), storing records in JetStream
    through ``broker`` (without one, in the log only)."""
    if broker is not None:
        record = stream_recorder(broker, service=service, timeout=timeout, registry=registry)
    else:

        async def record(entry: AuditRecorded) -> None:
            logger.info("audit record (no broker): %s", entry.model_dump_json())

    app.add_middleware(AuditTrail, service=service, record=record, trust_forwarded=trust_forwarded)
