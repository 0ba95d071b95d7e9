"""The inbox over HTTP: ``GET /v1/alerts`` and ``GET /v1/alerts/{fingerprint}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from goalwatch.contracts import AlertState
from goalwatch.problems import problem_responses
from services.notifier.inbox import DEFAULT_LIMIT, MAX_LIMIT, Inbox, InboxAlert, InboxPage


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
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Most alerts to return.")
        ] = DEFAULT_LIMIT,
    ) -> InboxPage:
        """Alerts matching every filter given, most recently updated first."""
        alerts = await inbox.list(recipient=recipient, rule=rule, state=state, limit=limit)
        return InboxPage(alerts=alerts)

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
