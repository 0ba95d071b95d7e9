"""What ``POST /v1/events`` answers: counts, and every rejected event with the reason."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FieldError(BaseModel):
    """One thing wrong with one event."""

    field: str = Field(
        description="Dotted path of the field, e.g. time, labels.floor or data.metric; "
        "empty when the event as a whole is wrong.",
        examples=["time"],
    )
    message: str = Field(
        description="What is wrong, in words.",
        examples=["time must include a UTC offset, e.g. 2026-11-20T18:00:00+08:00"],
    )
    hint: str | None = Field(
        default=None,
        description="How to fix it, when there is more to say than the message.",
        examples=["append Z for UTC, or the sender's offset such as +08:00"],
    )


class EventReject(BaseModel):
    """An event that was not accepted, and why."""

    index: int = Field(description="Position of the event in the request; 0 for a single event.")
    id: str | None = Field(default=None, description="The event's id, if it had a readable one.")
    errors: list[FieldError] = Field(description="Everything wrong with the event.")


class IngestResult(BaseModel):
    """Outcome of ``POST /v1/events``.

    ``accepted + duplicated + rejected`` is the number of events in the request.
    """

    accepted: int = Field(description="Events stored for evaluation by this request.")
    duplicated: int = Field(
        description="Events already stored earlier (same id): recognised as resends, not "
        "evaluated again."
    )
    rejected: int = Field(description="Events that failed validation; see rejects.")
    rejects: list[EventReject] = Field(
        default_factory=list, description="Why each rejected event was rejected, by index."
    )


class EventRef(BaseModel):
    """Position and id of an event in the request."""

    index: int = Field(description="Position of the event in the request.")
    id: str = Field(description="The event's id.")


class IngestRejected(IngestResult):
    """Answer when every event was rejected (HTTP 422): a problem+json body with the counts."""

    type: str = Field("about:blank", description="Problem type (RFC 9457).")
    title: str = Field("Unprocessable Entity", description="HTTP reason.")
    status: int = Field(422, description="HTTP status.")
    detail: str = Field(description="What was wrong, in words.")


class IngestUnavailable(BaseModel):
    """Answer when NATS could not store the events (HTTP 503), as problem+json.

    Resending the whole request is safe: events already stored are recognised by their id.
    """

    type: str = Field("about:blank", description="Problem type (RFC 9457).")
    title: str = Field("Service Unavailable", description="HTTP reason.")
    status: int = Field(503, description="HTTP status.")
    detail: str = Field(description="What failed and what to do.")
    published: list[EventRef] = Field(
        description="Events stored (or recognised as resends) before the failure."
    )
    unpublished: list[EventRef] = Field(description="Events that were not stored.")
    rejects: list[EventReject] = Field(
        default_factory=list, description="Events that failed validation, as for a 200 answer."
    )
