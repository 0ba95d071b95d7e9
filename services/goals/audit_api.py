"""``GET /v1/audit``: the audit log of every service, read from ``GOALWATCH_AUDIT``.

JetStream reads forwards only, and the newest records are the ones asked for, so the log is
read backwards in windows of :data:`WINDOW` stream positions: each window through a
short-lived consumer (no acks, in memory, filtered by the service's subject when one is
asked for) that starts at the window's first position; its matches are taken newest first.
``since`` and ``until`` are turned into positions the same way, by a consumer starting at
that time (``opt_start_time``).

One query is bounded: it returns at most ``limit`` records and looks at no more than
:data:`SCAN_CAP` positions. When either stops it before the start of the range, the page
says so (``complete`` false) and where to go on (``next_cursor``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

import nats.errors
from fastapi import APIRouter, Depends, HTTPException, Query
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import AwareDatetime, ValidationError

from goalwatch.auth.policies import AUDIT_READ
from goalwatch.contracts import AuditPage, AuditRecorded, subjects
from goalwatch.messaging import start_time
from goalwatch.problems import RETRY_AFTER_SECONDS, problem_responses

logger = logging.getLogger(__name__)

WINDOW: Final = 500
"""Stream positions read per consumer."""
SCAN_CAP: Final = 10_000
"""Most stream positions one query looks at."""
MAX_LIMIT: Final = 1000
_FETCH_TIMEOUT = 5.0
# A consumer left behind by a query that failed halfway is removed by the server soon.
_INACTIVE = 30.0


@dataclass(frozen=True)
class AuditQuery:
    """What to look for: exact ``who``, one ``service``, ``action`` containing a text, the
    time range (when the records were stored), at most ``limit``."""

    who: str | None = None
    service: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    cursor: int | None = None
    """Only positions before this one (a page's ``next_cursor``)."""

    def matches(self, record: AuditRecorded) -> bool:
        """Whether ``record`` is one the query asks for (the time range aside)."""
        if self.who is not None and record.who != self.who:
            return False
        if self.service is not None and record.service != self.service:
            return False
        return self.action is None or self.action.lower() in record.action.lower()


class AuditLog:
    """Reads ``GOALWATCH_AUDIT`` over the connection ``connection`` returns."""

    def __init__(
        self, connection: Callable[[], Client], *, window: int = WINDOW, scan_cap: int = SCAN_CAP
    ) -> None:
        self._connection = connection
        self._window = window
        self._scan_cap = scan_cap

    async def query(self, query: AuditQuery) -> AuditPage:
        """The newest records matching ``query``, newest first."""
        js = self._connection().jetstream()
        subject = subjects.audit_subject(query.service) if query.service else subjects.AUDIT_ALL
        try:
            state = (await js.stream_info(subjects.STREAM_AUDIT)).state
        except NotFoundError:
            return AuditPage(records=[], complete=True, scanned=0)
        first = state.first_seq
        # Positions below ``resume`` are still to be looked at (a cursor: a position).
        resume = state.last_seq + 1
        if query.cursor is not None:
            resume = min(resume, query.cursor)
        if query.until is not None:
            resume = min(resume, await self._first_at(js, subject, query.until, end=resume))
        if query.since is not None:
            first = max(first, await self._first_at(js, subject, query.since, end=resume))
        found: list[AuditRecorded] = []
        scanned = 0
        while resume > first and len(found) < query.limit and scanned < self._scan_cap:
            low = max(first, resume - min(self._window, self._scan_cap - scanned))
            messages = await self._read(js, subject, low, resume - 1)
            scanned += resume - low
            resume = low
            for message in reversed(messages):
                record = _decode(message)
                if record is not None and query.matches(record):
                    found.append(record)
                    if len(found) == query.limit:
                        resume = message.metadata.sequence.stream
                        break
        complete = resume <= first
        return AuditPage(
            records=found,
            complete=complete,
            next_cursor=None if complete else str(resume),
            scanned=scanned,
        )

    async def _first_at(self, js: JetStreamContext, subject: str, at: datetime, *, end: int) -> int:
        """The first position of ``subject`` stored at or after ``at``; ``end`` when none."""
        config = self._config(subject, DeliverPolicy.BY_START_TIME, opt_start_time=start_time(at))
        messages = await self._consume(js, config, batch=1)
        return min(end, messages[0].metadata.sequence.stream) if messages else end

    async def _read(self, js: JetStreamContext, subject: str, low: int, high: int) -> list[Msg]:
        """The messages of ``subject`` at positions ``low`` to ``high``, in stream order."""
        config = self._config(subject, DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=low)
        return [
            message
            for message in await self._consume(js, config, batch=high - low + 1, last=high)
            if message.metadata.sequence.stream <= high
        ]

    @staticmethod
    def _config(subject: str, policy: DeliverPolicy, **start: object) -> ConsumerConfig:
        return ConsumerConfig(
            deliver_policy=policy,
            ack_policy=AckPolicy.NONE,
            filter_subject=subject,
            inactive_threshold=_INACTIVE,
            mem_storage=True,
            num_replicas=1,
            **start,  # type: ignore[arg-type]
        )

    @staticmethod
    async def _consume(
        js: JetStreamContext, config: ConsumerConfig, *, batch: int, last: int | None = None
    ) -> list[Msg]:
        """Up to ``batch`` messages from a new consumer of ``config``, stopping at position
        ``last`` (or after one fetch); the consumer is deleted after."""
        info = await js.add_consumer(subjects.STREAM_AUDIT, config)
        assert info.name is not None
        try:
            if not info.num_pending:
                return []  # nothing to fetch: a fetch would wait for new messages
            pull = await js.pull_subscribe_bind(info.name, stream=subjects.STREAM_AUDIT)
            got: list[Msg] = []
            try:
                while len(got) < batch:
                    fetched = await pull.fetch(batch - len(got), timeout=_FETCH_TIMEOUT)
                    got += fetched
                    newest = fetched[-1].metadata
                    if last is None or newest.sequence.stream >= last or not newest.num_pending:
                        break
            finally:
                await pull.unsubscribe()
            return got
        finally:
            # Left behind, it is gone by itself after _INACTIVE: not worth failing the answer.
            with contextlib.suppress(NotFoundError, nats.errors.TimeoutError):
                await js.delete_consumer(subjects.STREAM_AUDIT, info.name)


def _decode(message: Msg) -> AuditRecorded | None:
    try:
        return AuditRecorded.model_validate_json(message.data)
    except ValidationError as exc:
        logger.error("audit record at %d skipped: %s", message.metadata.sequence.stream, exc)
        return None


def audit_router(log: AuditLog) -> APIRouter:
    """``GET /v1/audit`` over ``log``."""
    router = APIRouter(prefix="/v1", tags=["audit"])

    @router.get(
        "/audit",
        response_model=AuditPage,
        responses=problem_responses(
            {422: "A filter is not well formed.", 503: "NATS did not answer; retry later."}
        ),
        summary="The audit log: who changed what, when, from where; newest first",
        dependencies=[Depends(AUDIT_READ)],
    )
    async def audit(
        who: Annotated[
            str | None,
            Query(
                max_length=200,
                description="Only this caller: person:<id>, system:<client>, anonymous or link.",
            ),
        ] = None,
        service: Annotated[
            str | None,
            Query(
                pattern=r"^[a-z][a-z0-9_-]{0,31}$",
                description="Only requests to this service (goals, evaluator, ...).",
            ),
        ] = None,
        action: Annotated[
            str | None,
            Query(
                max_length=200,
                description="Only actions containing this text, e.g. "
                "`/v1/rules` or `DELETE` (any case).",
            ),
        ] = None,
        since: Annotated[
            AwareDatetime | None, Query(description="Only records stored at or after this.")
        ] = None,
        until: Annotated[
            AwareDatetime | None, Query(description="Only records stored before this.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Most records.")] = 100,
        cursor: Annotated[
            str | None,
            Query(
                pattern=r"^[1-9][0-9]{0,18}$",
                description="A page's next_cursor: go on with older records.",
            ),
        ] = None,
    ) -> AuditPage:
        """The newest audit records matching every filter given (docs/audit.md). One answer
        looks at no more than 10,000 records; when it stopped (there, or at ``limit``)
        before the start of the time range, ``complete`` is false and ``next_cursor`` goes
        on from there."""
        wanted = AuditQuery(who=who, service=service, action=action, since=since,
                            until=until, limit=limit, cursor=int(cursor) if cursor else None)  # fmt: skip
        try:
            return await log.query(wanted)
        except (nats.errors.Error, TimeoutError) as exc:
            logger.warning("audit log not read: NATS did not answer: %r", exc)
            raise HTTPException(
                503,
                f"the audit log (NATS JetStream) did not answer; retry after "
                f"{RETRY_AFTER_SECONDS} s",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None

    return router
