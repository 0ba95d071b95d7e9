"""The audit log: one record per change that matters, and pages of the log as queried.

Every service records its own requests on ``goalwatch.audit.v1.<service>`` in
``GOALWATCH_AUDIT`` (:mod:`goalwatch.audit`); goals answers ``GET /v1/audit`` from it.
A record says who did what, when and from where, and how it ended; never what the request
carried (its body can hold secrets and personal data) nor the credentials it came with.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from goalwatch.contracts.base import Contract


class AuditRecorded(Contract):
    """A request that changed something, or tried to, or was refused (401, 403)."""

    id: str = Field(description="Unique id of this record.")
    at: AwareDatetime = Field(description="When the request arrived (UTC).")
    service: str = Field(description="The service that answered it (goals, notifier, ...).")
    who: str = Field(
        description="Who asked: `person:<id>`, `system:<client>`, `anonymous` (no valid "
        "token) or `link` (an acknowledgement link that named nobody)."
    )
    person_id: str | None = Field(description="The person's id in goals, when a person asked.")
    client_id: str | None = Field(description="The system's client id, when a system asked.")
    action: str = Field(
        description="The method and route template, e.g. `POST /v1/rules/{rule_id}/rollback`."
    )
    target: dict[str, str] = Field(
        description='The path parameters, e.g. {"rule_id": "late-reports"}; a parameter '
        "that is a credential (an acknowledgement link's token) reads `[redacted]`."
    )
    outcome: int = Field(description="The HTTP status the request was answered with.")
    address: str | None = Field(
        description="Where the request came from: the client's IP address, or the first "
        "X-Forwarded-For hop when GOALWATCH_AUDIT_TRUST_FORWARDED is set."
    )
    request_id: str = Field(
        description="The request's X-Request-Id (the caller's, or one made for it), also sent "
        "back in the response's X-Request-Id header."
    )


class AuditPage(Contract):
    """Audit records matching a query, newest first."""

    records: list[AuditRecorded] = Field(description="Matching records, newest first.")
    complete: bool = Field(
        description="Whether every record of the time range was looked at; false when the "
        "limit or the scan cap (10,000 records) stopped the search first."
    )
    next_cursor: str | None = Field(
        default=None,
        description="When not complete: pass as `cursor` (with the same filters) to go on "
        "with older records.",
    )
    scanned: int = Field(description="How many stream positions the search covered.")
