"""The inbox over HTTP (``/v1/alerts``: list, stream, one episode, acknowledge, resolve by
hand), the delivery log (``/v1/deliveries``) and silences (``/v1/silences``).

An alert's path segment is an episode id, or a fingerprint, which stands for the alert's
newest episode in the inbox (what the paths took before each episode had an entry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import AwareDatetime, Field

from goalwatch.auth.policies import (
    ALERTS_ACT,
    ALERTS_COMMENT,
    ALERTS_READ,
    DELIVERIES_READ,
    SILENCES_READ,
    SILENCES_WRITE,
)
from goalwatch.auth.policy import Caller
from goalwatch.contracts import (
    AlertState,
    DeliveryStatus,
    NotificationSent,
    RuleKind,
    Severity,
)
from goalwatch.contracts.base import Contract
from goalwatch.problems import clip, problem_responses
from services.notifier.access import AlertAccess
from services.notifier.deliveries import DeliveryFilters, DeliveryLog
from services.notifier.inbox import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Comment,
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
OrgUnit = Annotated[
    str | None,
    Query(
        max_length=200,
        description="Only alerts about someone in this org unit or a unit below it.",
    ),
]
AlertId = Annotated[
    str,
    Path(
        max_length=200,
        description="Episode id (an entry's id), or an alert's fingerprint: its newest episode.",
    ),
]
Cursor = Annotated[
    str | None,
    Query(max_length=200, description="next_cursor of the previous page: the page after it."),
]
"""The paging parameters the inbox and the delivery log share (times: of the latest update)."""


def inbox_router(inbox: Inbox, log: DeliveryLog, access: AlertAccess) -> APIRouter:
    """The inbox API, reading ``inbox`` and, for one episode's deliveries, ``log``; each
    caller sees what ``access`` lets them."""
    router = APIRouter(prefix="/v1", tags=["inbox"])

    @router.get("/alerts", response_model=InboxPage, summary="Inbox")
    async def list_alerts(
        caller: Annotated[Caller, Depends(ALERTS_READ)],
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
        org_unit: OrgUnit = None,
        fingerprint: Annotated[
            str | None,
            Query(max_length=200, description="Only the episodes of this alert (fingerprint)."),
        ] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> InboxPage:
        """Alert episodes (one entry per firing) matching every filter given, most recently
        updated first, a page at a time."""
        filters = Filters(
            recipient=recipient,
            rule=rule,
            state=state,
            severity=severity,
            kind=None if kind is None else kind.value,
            since=since,
            until=until,
            acked=acked,
            org_unit=org_unit,
            fingerprint=fingerprint,
        )
        try:
            alerts, following = await inbox.page(
                filters, limit, cursor, visible=access.filter(caller)
            )
        except CursorError as exc:
            raise HTTPException(status_code=400, detail=f"cursor: {exc}") from exc
        return InboxPage(alerts=alerts, next_cursor=following)

    @router.get(
        "/alerts/stream",
        response_class=EventSourceResponse,
        summary="Inbox changes as they happen (server-sent events)",
    )
    async def stream(
        caller: Annotated[Caller, Depends(ALERTS_READ)],
        recipient: Annotated[
            str | None, Query(description="Only alerts addressed to this person id.")
        ] = None,
        rule: Annotated[str | None, Query(description="Only alerts of this rule id.")] = None,
        severity: Annotated[
            Severity | None, Query(description="Only alerts at this severity.")
        ] = None,
        kind: Annotated[
            RuleKind | None, Query(description="Only alerts of rules of this kind.")
        ] = None,
        org_unit: OrgUnit = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """One event per change to a matching inbox entry (fired, escalated, acknowledged,
        resolved, resolved by hand), from the moment the stream opens: ``event`` is the
        alert's state, ``data`` the entry as ``GET /v1/alerts`` lists it. A first comment
        line, ``: listening``, says no change from then on will be missed. A comment line
        comes every 15 s while nothing changes, so proxies keep the connection open. For the
        web inbox: list with ``GET /v1/alerts`` first, then follow this."""
        filters = Filters(
            recipient=recipient,
            rule=rule,
            severity=severity,
            kind=None if kind is None else kind.value,
            org_unit=org_unit,
        )
        visible = access.filter(caller)
        async for alert in inbox.updates():
            if alert is None:
                # Said once listening: a change from now on will not be missed.
                yield ServerSentEvent(comment="listening")
            elif filters.match(alert) and (visible is None or await visible(alert)):
                yield ServerSentEvent(
                    data=alert.model_dump(mode="json"),
                    event=alert.state.value,
                    id=f"{alert.id}:{alert.updated_at.isoformat()}",
                )

    async def visible_alert(alert_id: str, caller: Caller) -> InboxAlert:
        # Someone else's alert reads as no alert: its existence is not the caller's to learn.
        alert = await inbox.get(alert_id)
        if alert is None or not await access.sees(caller, alert):
            raise missing(alert_id)
        return alert

    def missing(alert_id: str) -> HTTPException:
        return HTTPException(
            status_code=404,
            detail=f"no alert {clip(alert_id)!r} in the inbox (neither an episode id nor a "
            "fingerprint it holds); list them with GET /v1/alerts",
        )

    @router.post(
        "/alerts/{alert_id}/ack",
        response_model=InboxAlert,
        responses=problem_responses(
            {404: "No such alert in the inbox.", 409: "The alert is resolved."}
        ),
        summary="Acknowledge a firing alert: someone is on it",
    )
    async def acknowledge(
        alert_id: AlertId,
        caller: Annotated[Caller, Depends(ALERTS_ACT)],
        note: Annotated[AckNote | None, Body()] = None,
    ) -> InboxAlert:
        """Record who took the alert on, when, and what they said; shown in the inbox, its
        timeline and its stream. The first acknowledgement of an episode stands in
        ``acked_*``; each other person's is added to ``acknowledgements``. It lasts until the
        episode resolves (a new firing is a new episode, unacknowledged)."""
        comment = "" if note is None else note.comment
        await visible_alert(alert_id, caller)
        try:
            alert = await inbox.ack(
                alert_id, by=_name(caller), comment=comment, at=datetime.now(UTC)
            )
        except NotFiring as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        if alert is None:
            raise missing(alert_id)
        return alert

    @router.post(
        "/alerts/{alert_id}/comments",
        status_code=201,
        response_model=Comment,
        responses=problem_responses({404: "No such alert in the inbox."}),
        summary="Comment on an alert: kept with it in the inbox",
    )
    async def add_comment(
        alert_id: AlertId,
        caller: Annotated[Caller, Depends(ALERTS_COMMENT)],
        note: Annotated[CommentCreate, Body()],
    ) -> Comment:
        """Add what the caller says about the episode (firing or resolved) to its
        ``comments``, with their name and the time; the inbox's stream announces the entry
        again, and the audit log records the request. An entry keeps its latest 200
        comments. Whoever may read the alert may comment on it."""
        await visible_alert(alert_id, caller)
        who = _name(caller)
        name = None if caller.person_id is None else await access.name(caller.person_id)
        alert = await inbox.comment(
            alert_id, by=who, name=name, text=note.text, at=datetime.now(UTC)
        )
        if alert is None:
            raise missing(alert_id)
        return alert.comments[-1]

    @router.get(
        "/alerts/{alert_id}/comments",
        response_model=list[Comment],
        responses=problem_responses({404: "No such alert in the inbox."}),
        summary="What people said about an alert, oldest first",
    )
    async def list_comments(
        alert_id: AlertId, caller: Annotated[Caller, Depends(ALERTS_READ)]
    ) -> list[Comment]:
        """The episode's comments, oldest first (also in the entry, as ``comments``)."""
        return (await visible_alert(alert_id, caller)).comments

    @router.post(
        "/alerts/{alert_id}/resolve",
        response_model=InboxAlert,
        responses=problem_responses(
            {404: "No such alert in the inbox.", 409: "The alert is resolved already."}
        ),
        summary="Resolve a firing alert by hand, in the inbox",
    )
    async def resolve(
        alert_id: AlertId,
        caller: Annotated[Caller, Depends(ALERTS_ACT)],
        note: Annotated[ResolveNote | None, Body()] = None,
    ) -> InboxAlert:
        """Mark the episode resolved (``resolved_by``, ``resolve_comment``, ``resolved_at``
        now), in the inbox only: the channels are not told, and the rule still watches the
        metric. When the rule resolves the episode, that is added to its timeline (and sent
        on the channels as any resolution); when it fires again, that is a new episode."""
        comment = "" if note is None else note.comment
        await visible_alert(alert_id, caller)
        try:
            alert = await inbox.resolve(
                alert_id, by=_name(caller), comment=comment, at=datetime.now(UTC)
            )
        except NotFiring as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc
        if alert is None:
            raise missing(alert_id)
        return alert

    @router.get(
        "/alerts/{alert_id}",
        response_model=AlertDetail,
        responses=problem_responses({404: "No such alert in the inbox."}),
        summary="One alert episode: its timeline, acknowledgements and deliveries",
    )
    async def get_alert(
        alert_id: AlertId, caller: Annotated[Caller, Depends(ALERTS_READ)]
    ) -> AlertDetail:
        """The inbox entry of one episode (or of the newest episode of the alert whose
        fingerprint is given), with every delivery of it on every channel, newest first
        (the most recent 500; page through the rest with GET /v1/deliveries?episode=)."""
        alert = await visible_alert(alert_id, caller)
        found, _ = await log.page(DeliveryFilters(episode=alert.id), MAX_LIMIT)
        return AlertDetail.model_validate({**dict(alert), "deliveries": found})

    return router


class AckNote(Contract):
    """What the person acknowledging says."""

    comment: str = Field("", max_length=1000, description="e.g. 'on it, calling the ward'.")


class CommentCreate(Contract):
    """A comment on an alert."""

    text: str = Field(
        min_length=1,
        max_length=2000,
        description="What the person says, e.g. 'spoke to her; the ward was short-staffed'.",
    )


class ResolveNote(Contract):
    """What the person resolving an alert by hand says."""

    comment: str = Field(
        "", max_length=1000, description="e.g. 'data error: the ward entered it twice'."
    )


class AlertDetail(InboxAlert):
    """``GET /v1/alerts/{id}``: one episode, and what became of its notifications."""

    deliveries: list[NotificationSent] = Field(
        description="Every delivery outcome of this episode on every channel (inbox, webhook, "
        "email, ...): status, attempts, error; newest first, the most recent 500."
    )


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

    @router.get(
        "/deliveries",
        summary="Delivery log: who was told, when, where, and did it arrive",
        dependencies=[Depends(DELIVERIES_READ)],
    )
    async def list_deliveries(
        recipient: Annotated[
            str | None, Query(description="Only notifications addressed to this person id.")
        ] = None,
        alert: Annotated[
            str | None, Query(description="Only notifications of this alert (fingerprint).")
        ] = None,
        episode: Annotated[
            str | None,
            Query(
                max_length=64, description="Only notifications of this episode (inbox entry id)."
            ),
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
            episode=episode,
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
        asked: SilenceCreate, caller: Annotated[Caller, Depends(SILENCES_WRITE)]
    ) -> SilenceRead:
        silence = await silences.create(asked, author=_name(caller), now=now())
        return SilenceRead.of(silence, now())

    @router.get(
        "/silences", summary="Silences, newest first", dependencies=[Depends(SILENCES_READ)]
    )
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
        dependencies=[Depends(SILENCES_READ)],
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
        dependencies=[Depends(SILENCES_WRITE)],
    )
    async def expire(silence_id: Annotated[str, Path(max_length=64)]) -> SilenceRead:
        silence = await silences.expire(silence_id, now())
        if silence is None:
            raise HTTPException(status_code=404, detail=_no_silence(silence_id))
        return SilenceRead.of(silence, now())

    return router


def _name(caller: Caller) -> str:
    """How an acknowledgement, a resolution or a silence records who made it."""
    return caller.person_id or caller.who


def _no_silence(silence_id: str) -> str:
    return f"no silence with id {clip(silence_id)!r}; list them with GET /v1/silences"


class SilenceRead(Silence):
    """A silence and where it stands now."""

    state: SilenceState = Field(description="pending, active or expired, now.")

    @classmethod
    def of(cls, silence: Silence, now: datetime) -> SilenceRead:
        """The API view of ``silence`` at ``now``."""
        return cls.model_validate({**dict(silence), "state": silence.state_at(now)})
