"""The pages behind an acknowledgement link: ``GET`` and ``POST /v1/ack/{token}``.

``GET`` only shows what the link is for (the alert, who it acknowledges as, a button): mail
scanners and chat link previews open links on their own, so opening one must change nothing.
The button ``POST``\\ s a form to the same URL, which acknowledges: as the person the link
was made for, or, for a link shared by several people, as the recipient the form names. A
link that is not genuine, has expired, or whose alert is gone or resolved gets a page that
says so, with a 4xx status.

Pages speak the recipient's language (zh or en) when the directory told it (a shared link:
when every recipient reads the same one), else English. Every text that came from people or
rules is escaped (the template autoescapes). The responses are kept out of caches, frames
and ``Referer`` headers: the URL is the credential.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from goalwatch.audit import act_as
from goalwatch.auth.policies import ACK_LINK
from goalwatch.contracts import AlertState, Recipient
from services.notifier.inbox import AckVia, Inbox, InboxAlert, NotFiring
from services.notifier.links import AckLinks, Grant, LinkExpired, LinkInvalid
from services.notifier.messages import when
from services.notifier.templates import ENVIRONMENT, Language

MAX_COMMENT: Final = 1000
MAX_FORM_BYTES: Final = 16_384

HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex",
    # Inline styles only; the form posts back to this URL; nothing may frame the page.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

STATUS: Final = {
    "invalid": 403,
    "expired": 410,
    "unknown": 404,
    "resolved": 409,
    "off": 404,
    "form": 400,
    "comment": 400,
}
"""The status of each refusal page."""

_HTML: Final = {"text/html": {"schema": {"type": "string"}}}


def language_of(alert: InboxAlert | None, grant: Grant | None) -> Language:
    """The language of the pages for ``grant`` on ``alert``: its recipient's, or the one
    every recipient shares; English when not known."""
    if alert is None:
        return "en"
    people = [
        r for r in alert.recipients if grant is None or grant.shared or r.id == grant.recipient
    ]
    spoken = {None if r.language is None else r.language.value for r in people}
    if len(spoken) == 1:
        only = spoken.pop()
        if only == "zh":
            return "zh"
    return "en"


def page(
    view: str,
    *,
    language: Language,
    status: int = 200,
    alert: InboxAlert | None = None,
    **context: Any,
) -> HTMLResponse:
    """One page of ``ack.html.<language>.j2``."""
    names = {} if alert is None else {r.id: r.name for r in alert.recipients}
    defaults: dict[str, Any] = {
        "reason": None,
        "detail": None,
        "person": None,
        "choices": [],
        "expires_at": None,
        "acked": None,
        "by_name": None,
    }
    html = ENVIRONMENT.get_template(f"ack.html.{language}.j2").render(
        view=view, alert=alert, names=names, when=when, **{**defaults, **context}
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def refused(
    reason: str, *, alert: InboxAlert | None = None, grant: Grant | None = None, detail: str = ""
) -> HTMLResponse:
    """The page saying why the link does nothing, with its 4xx status."""
    return page(
        "refused",
        language=language_of(alert, grant),
        status=STATUS[reason],
        alert=alert,
        reason=reason,
        detail=detail or None,
    )


def _person(alert: InboxAlert, person_id: str) -> Recipient:
    found = next((r for r in alert.recipients if r.id == person_id), None)
    return found or Recipient.model_validate(
        {"id": person_id, "name": person_id, "role": "explicit"}
    )


def ack_router(
    inbox: Inbox,
    links: AckLinks | None,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> APIRouter:
    """The acknowledgement link's pages; with ``links`` None (no public URL or secret) every
    link is refused."""
    router = APIRouter(prefix="/v1", tags=["acknowledgement links"])
    responses: dict[int | str, dict[str, Any]] = {
        code: {"description": description, "content": _HTML}
        for code, description in (
            (403, "Not a link this notifier made, or changed."),
            (404, "The alert is no longer in the inbox, or links are off."),
            (409, "The alert is resolved."),
            (410, "The link has expired."),
        )
    }

    async def checked(token: str) -> tuple[Grant, InboxAlert] | HTMLResponse:
        if links is None:
            return refused("off")
        try:
            grant = links.verify(token, now=clock())
        except LinkExpired as exc:
            return refused("expired", alert=await inbox.episode(exc.grant.episode), grant=exc.grant)
        except LinkInvalid as exc:
            return refused("invalid", detail=str(exc))
        alert = await inbox.episode(grant.episode)
        if alert is None:
            return refused("unknown", grant=grant)
        if alert.state is not AlertState.FIRING:
            return refused("resolved", alert=alert, grant=grant)
        return grant, alert

    @router.get(
        "/ack/{token}",
        response_class=HTMLResponse,
        responses=responses,
        summary="The page of an acknowledgement link: what it acknowledges (changes nothing)",
        dependencies=[Depends(ACK_LINK)],
    )
    async def confirm(token: str) -> HTMLResponse:
        """An HTML page naming the alert and who the link acknowledges as (or, for a link
        sent to several people, asking which of them), with the button that acknowledges.
        Opening it acknowledges nothing: link previews and mail scanners open links too."""
        result = await checked(token)
        if isinstance(result, HTMLResponse):
            return result
        grant, alert = result
        return page(
            "confirm",
            language=language_of(alert, grant),
            alert=alert,
            person=None if grant.shared else _person(alert, grant.recipient or ""),
            choices=alert.recipients,
            expires_at=grant.expires_at,
        )

    @router.post(
        "/ack/{token}",
        response_class=HTMLResponse,
        responses={**responses, 400: {"description": "The form names no recipient of the alert, "
                                      "or its comment is too long.", "content": _HTML}},
        summary="Acknowledge by link (the confirmation page's button)",
        dependencies=[Depends(ACK_LINK)],
    )  # fmt: skip
    async def acknowledge(token: str, request: Request) -> HTMLResponse:
        """Acknowledge the alert as the link's person (a shared link: as the recipient the
        form's ``recipient`` names), with the form's optional ``comment``
        (``application/x-www-form-urlencoded``); answers a page saying it is done."""
        result = await checked(token)
        if isinstance(result, HTMLResponse):
            return result
        grant, alert = result
        body = await request.body()
        form = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), max_num_fields=10)
        comment = form.get("comment", [""])[0].strip()
        if len(comment) > MAX_COMMENT:
            return refused("comment", alert=alert, grant=grant)
        if grant.recipient is not None:
            who, via = grant.recipient, AckVia.LINK
        else:
            who, via = form.get("recipient", [""])[0], AckVia.SHARED_LINK
            if who not in {r.id for r in alert.recipients}:
                return refused("form", alert=alert, grant=grant)
        act_as(request, person_id=who)  # the audit log names the person, not "link"
        try:
            entry = await inbox.ack(grant.episode, by=who, comment=comment, at=clock(), via=via)
        except NotFiring:
            return refused("resolved", alert=await inbox.episode(grant.episode), grant=grant)
        if entry is None:
            return refused("unknown", grant=grant)
        acked = next(a for a in entry.acknowledgements if a.by == who)
        return page(
            "done",
            language=language_of(entry, grant),
            alert=entry,
            acked=acked,
            by_name=_person(entry, who).name,
        )

    return router
