"""The inbox over HTTP: ``GET /v1/alerts`` and ``GET /v1/alerts/{fingerprint}``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Header, HTTPException, Path, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import AwareDatetime, Field

from goalwatch.contracts import (
    AlertState,
    DeliveryStatus,
    NotificationSent,
    RuleKind,
    Severity,
)
from goalwatch.contracts.base import Contract
from goalwatch.problems import clip, problem_responses
from services.notifier.deliveries import DeliveryFilters, DeliveryLog
from services.notifier.inbox import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Filters,
    Inbox,
    InboxAlert,
    InboxPage,
    NotFiring,
)
from services.notifier.pages import CursorError
from services.notifier.silences import Silence, SilenceCreate, Silences, SilenceState

Since = Annotated[
    AwareDatetime | None,
    Query(description="Only those at or after this time (ISO 8601, with zone)."),
]
Until = Annotated[
    AwareDatetime | None, Query(description="Only those before this time (ISO 8601, with zone).")
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Most to return.")]
Cursor = Annotated[
    str | None,
    Query(max_length=200, description="next_cursor of the previous page: the page after it."),
]
"""The paging parameters the inbox and the delivery log share (times: of the latest update)."""


def inbox_router(inbox: Inbox) -> APIRouter:
    """The inbox API, reading ``inbox``."""
    router = APIRouter(prefix="/v1", tags=["inbox"])

    @router.get("/alerts", response_model=InboxPage, summary="Inbox")
    async def list_alerts(
        recipient: Annotated[
            str | None, Query(description="Only alerts addressed to this person id.")
        ] = None,
        rule: Annotated[str | None, Query(description="Only alerts of this rule id.")] = None,
        state: Annotated[
            AlertState | None, Query(description="Only alerts now in this state.")
        ] = None,
        severity: Annotated[
            Severity | None, Query(description="Only alerts at this severity.")
        ] = None,
        kind: Annotated[
            RuleKind | None, Query(description="Only alerts of rules of this kind.")
        ] = None,
        since: Since = None,
        until: Until = None,
        acked: Annotated[
            bool | None,
            Query(description="true: only acknowledged alerts; false: only those nobody has."),
        ] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> InboxPage:
        """Alerts matching every filter given, most recently updated first, a page at a time."""
        filters = Filters(
            recipient=recipient,
            rule=rule,
            state=state,
            severity=severity,
            kind=None if kind is None else kind.value,
            since=since,
            until=until,
            acked=acked,
        )
        try:
            alerts, following = await inbox.page(filters, limit, cursor)
        except CursorError as exc:
            raise HTTPException(status_code=400, detail=f"cursor: {exc}") from exc
        return InboxPage(alerts=alerts, next_cursor=following)

    @router.get(
        "/alerts/stream",
        response_class=EventSourceResponse,
        summary="Inbox changes as they happen (server-sent events)",
    )
    async def stream(
        recipient: Annotated[
            str | None, Query(description="Only alerts addressed to this person id.")
        ] = None,
        rule: Annotated[str | None, Query(description="Only alerts of this rule id.")] = None,
        severity: Annotated[
            Severity | None, Query(description="Only alerts at this severity.")
        ] = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """One event per change to a matching inbox entry (fired, escalated, resolved), from
        the moment the stream opens: ``event`` is the alert's state, ``data`` the entry as
        ``GET /v1/alerts/{fingerprint}`` answers it. A first comment line, ``: listening``,
        says no change from then on will be missed. A comment line comes every 15 s while
        nothing changes, so proxies keep the connection open. For the web inbox: list with
        ``GET /v1/alerts`` first, then follow this."""
        filters = Filters(recipient=recipient, rule=rule, severity=severity)
        async for alert in inbox.updates():
            if alert is None:
                # Said once listening: a change from now on will not be missed.
                yield ServerSentEvent(comment="listening")
            elif filters.match(alert):
                yield ServerSentEvent(
                    data=alert.model_dump(mode="json"),
                    event=alert.state.value,
                    id=f"{alert.fingerprint}:{alert.updated_at.isoformat()}",
                )

    @router.post(
        "/alerts/{fingerprint}/ack",
        response_model=InboxAlert,
        responses=problem_responses(
            {404: "No alert with that fingerprint in the inbox.", 409: "The alert is resolved."}
        ),
        summary="Acknowledge a firing alert: someone is on it",
    )
    async def acknowledge(
        fingerprint: Annotated[str, Path(max_length=64, description="Alert fingerprint.")],
        note: Annotated[AckNote | None, Body()] = None,
        author: Annotated[
            str,
            Header(alias="X-Goalwatch-User", max_length=200, description="Who acknowledges."),
        ] = "anonymous",
    ) -> InboxAlert:
        """Record who took the alert on, when, and what they said; shown in the inbox and
        its stream. The first acknowledgement of a firing stands; it lasts until the alert
        resolves (a new firing starts unacknowledged)."""
        comment = "" if note is None else note.comment
        try:
            alert = await inbox.ack(fingerprint, by=author, comment=comment, at=datetime.now(UTC))
        except NotFiring as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        if alert is None:
            raise HTTPException(
                status_code=404,
                detail=f"no alert with fingerprint {clip(fingerprint)!r} in the inbox; "
                "list them with GET /v1/alerts",
            )
        return alert

    @router.get(
        "/alerts/{fingerprint}",
        response_model=InboxAlert,
        responses=problem_responses({404: "No alert with that fingerprint in the inbox."}),
        summary="One alert",
    )
    async def get_alert(
        fingerprint: Annotated[str, Path(description="Alert fingerprint.")],
    ) -> InboxAlert:
        """The inbox entry of one alert."""
        alert = await inbox.get(fingerprint)
        if alert is None:
            raise HTTPException(
                status_code=404,
                detail=f"no alert with fingerprint {fingerprint!r} in the inbox; "
                "list them with GET /v1/alerts",
            )
        return alert

    return router


class AckNote(Contract):
    """What the person acknowledging says."""

    comment: str = Field("", max_length=1000, description="e.g. 'on it, calling the ward'.")


class DeliveryPage(Contract):
    """``GET /v1/deliveries`` response."""

    deliveries: list[NotificationSent] = Field(
        description="Matching delivery outcomes, newest first."
    )
    next_cursor: str | None = Field(
        default=None,
        description="Pass as ?cursor= (with the same filters) for the next page; null: this "
        "is the last.",
    )


def deliveries_router(log: DeliveryLog) -> APIRouter:
    """The delivery log over HTTP."""
    router = APIRouter(prefix="/v1", tags=["deliveries"])

    @router.get("/deliveries", summary="Delivery log: who was told, when, where, and did it arrive")
    async def list_deliveries(
        recipient: Annotated[
            str | None, Query(description="Only notifications addressed to this person id.")
        ] = None,
        alert: Annotated[
            str | None, Query(description="Only notifications of this alert (fingerprint).")
        ] = None,
        channel: Annotated[
            str | None, Query(description="Only this channel, e.g. webhook.")
        ] = None,
        status: Annotated[
            DeliveryStatus | None, Query(description="Only sent, or only failed.")
        ] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> DeliveryPage:
        """One outcome per notification and channel (an alert transition delivered, or given
        up on after its retries), newest first, kept for GOALWATCH_INBOX_RETENTION."""
        filters = DeliveryFilters(
            recipient=recipient,
            alert=alert,
            channel=channel,
            status=status,
            since=since,
            until=until,
        )
        try:
            found, following = await log.page(filters, limit, cursor)
        except CursorError as exc:
            raise HTTPException(status_code=400, detail=f"cursor: {exc}") from exc
        return DeliveryPage(deliveries=found, next_cursor=following)

    return router


def silences_router(silences: Silences) -> APIRouter:
    """Silences over HTTP: make one, list them, end one."""
    router = APIRouter(prefix="/v1", tags=["silences"])

    def now() -> datetime:
        return datetime.now(UTC)

    @router.post(
        "/silences",
        status_code=201,
        summary="Silence matching alerts on every channel until a time (the inbox keeps them)",
    )
    async def create(
        asked: SilenceCreate,
        author: Annotated[
            str,
            Header(alias="X-Goalwatch-User", max_length=200, description="Who makes the silence."),
        ] = "anonymous",
    ) -> SilenceRead:
        silence = await silences.create(asked, author=author, now=now())
        return SilenceRead.of(silence, now())

    @router.get("/silences", summary="Silences, newest first")
    async def list_silences(
        state: Annotated[
            SilenceState | None, Query(description="Only pending, active or expired ones.")
        ] = None,
    ) -> list[SilenceRead]:
        at = now()
        return [
            SilenceRead.of(s, at)
            for s in await silences.all(at)
            if state is None or s.state_at(at) is state
        ]

    @router.get(
        "/silences/{silence_id}",
        summary="One silence",
        responses=problem_responses({404: "No silence with that id."}),
    )
    async def get_silence(silence_id: Annotated[str, Path(max_length=64)]) -> SilenceRead:
        silence = await silences.get(silence_id)
        if silence is None:
            raise HTTPException(status_code=404, detail=_no_silence(silence_id))
        return SilenceRead.of(silence, now())

    @router.delete(
        "/silences/{silence_id}",
        summary="End a silence now",
        responses=problem_responses({404: "No silence with that id."}),
    )
    async def expire(silence_id: Annotated[str, Path(max_length=64)]) -> SilenceRead:
        silence = await silences.expire(silence_id, now())
        if silence is None:
            raise HTTPException(status_code=404, detail=_no_silence(silence_id))
        return SilenceRead.of(silence, now())

    return router


def _no_silence(silence_id: str) -> str:
    return f"no silence with id {clip(silence_id)!r}; list them with GET /v1/silences"


class SilenceRead(Silence):
    """A silence and where it stands now."""

    state: SilenceState = Field(description="pending, active or expired, now.")

    @classmethod
    def of(cls, silence: Silence, now: datetime) -> SilenceRead:
        """The API view of ``silence`` at ``now``."""
        return cls.model_validate({**dict(silence), "state": silence.state_at(now)})
