"""``POST /v1/events``: metric events over HTTP, plain JSON or CloudEvents structured mode."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from goalwatch.auth.policies import EVENTS_PUBLISH
from goalwatch.auth.policy import Caller
from goalwatch.contracts import MetricRecorded
from goalwatch.problems import PROBLEM_JSON, problem
from services.ingestion.intake import IngestReport, UncataloguedLog, ingest
from services.ingestion.metrics import EVENTS_REJECTED, HANDLER_SECONDS
from services.ingestion.publisher import Publisher, PublishOutcome
from services.ingestion.schemas import EventRef, IngestRejected, IngestResult, IngestUnavailable
from services.ingestion.validation import BodyError, EventLimits, body_format

# Seconds a client should wait before resending after a 503: long enough for a NATS reconnect.
RETRY_AFTER_SECONDS = 5

_DESCRIPTION = """\
Send one metric event (a JSON object) or a batch (a JSON array).

Content types: `application/json` (a `MetricRecorded` or an array of them),
`application/cloudevents+json` (one CloudEvent of type `goalwatch.metric.recorded.v1`) and
`application/cloudevents-batch+json` (an array of such CloudEvents). A JSON content type is
required: a request with none, or a form or text type, is answered 415.

Each event is also rejected on its own when it is larger than
`GOALWATCH_INGEST_MAX_EVENT_BYTES` (64 KiB) as stored, when its `time` is more than
`GOALWATCH_INGEST_MAX_FUTURE` (10 minutes) ahead of the ingestion clock, or when any field
holds a lone surrogate or an integer literal of more than 310 digits.

Each event is checked against the metric catalogue (`GET /v1/metrics`) and rejected on its own
when its metric is not catalogued (the answer names the closest catalogued one), its value is
outside the metric's range, or it carries a label the metric does not list (or a value the
label does not allow). Sources named in `GOALWATCH_INGEST_ONBOARDING_SOURCES` may send
uncatalogued metrics and labels while they are onboarded.

Each event is validated on its own: valid events are stored even when others in the same
request are rejected. An event whose id was already stored is counted as `duplicated` and is
not evaluated again, so resending a request is always safe.

* **200**: at least one event was accepted or duplicated; `rejects` lists the others by index.
* **422**: every event was rejected; `rejects` says why.
* **400** the body is not JSON or is empty (or the Host is not allowed), **408** the body did
  not arrive within the body timeout, **413** too many events (or too many bytes), **415** no
  or an unsupported content type.
* **503** NATS could not store the events; `published` / `unpublished` say which were stored.
  Retry after `Retry-After` seconds.
"""


def events_router(
    *,
    publisher: Publisher,
    max_batch: int,
    max_body_bytes: int,
    limits: EventLimits | None = None,
    uncatalogued: UncataloguedLog | None = None,
) -> APIRouter:
    """The ingestion HTTP API, publishing through ``publisher``."""
    router = APIRouter(prefix="/v1", tags=["events"])

    @router.post(
        "/events",
        summary="Send metric events (one or a batch)",
        description=_DESCRIPTION,
        response_model=IngestResult,
        responses={
            400: _problem_doc("The body is not JSON, or is empty."),
            408: _problem_doc("The body did not arrive in full within the body timeout."),
            413: _problem_doc("Too many events or bytes in one request."),
            415: _problem_doc("No or an unsupported content type."),
            422: _problem_doc("Every event was rejected.", IngestRejected),
            503: _problem_doc("NATS could not store events.", IngestUnavailable),
        },
        openapi_extra={"requestBody": _request_body()},
    )
    async def post_events(
        request: Request, caller: Annotated[Caller, Depends(EVENTS_PUBLISH)]
    ) -> JSONResponse:
        with HANDLER_SECONDS.labels(service="ingestion", handler="post_events").time():
            return await _handle(request, replace(limits or EventLimits(), sender=caller.principal))

    async def _handle(request: Request, limits: EventLimits) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            return _refused(BodyError(_too_big(int(declared), max_body_bytes), status=413))
        body = await request.body()
        if len(body) > max_body_bytes:
            return _refused(BodyError(_too_big(len(body), max_body_bytes), status=413))
        try:
            fmt = body_format(request.headers.get("content-type"))
        except BodyError as exc:
            return _refused(exc)
        try:
            # ingest counts the events of a body it cannot read itself.
            report = await ingest(
                body=body,
                fmt=fmt,
                max_batch=max_batch,
                publisher=publisher,
                transport="http",
                limits=limits,
                uncatalogued=uncatalogued,
            )
        except BodyError as exc:
            return problem(exc.status, exc.message)

        if report.failed:
            unavailable = IngestUnavailable(
                status=503,
                detail=f"NATS did not store {len(report.failed)} of {len(report.outcomes)} "
                f"valid events. Resend the request after {RETRY_AFTER_SECONDS} s: events "
                "already stored are recognised by their id.",
                published=[_ref(i, o.event.id) for i, o in _indexed(report) if o.stored],
                unpublished=[_ref(i, o.event.id) for i, o in _indexed(report) if not o.stored],
                rejects=report.rejects,
            )
            return _problem_of(unavailable, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        if not report.outcomes:
            count = len(report.rejects)
            return _problem_of(
                IngestRejected(
                    status=422,
                    detail=f"{'the event was' if count == 1 else f'all {count} events were'} "
                    "rejected; rejects says why, by index and field",
                    accepted=0,
                    duplicated=0,
                    rejected=count,
                    rejects=report.rejects,
                )
            )
        result = IngestResult(
            accepted=report.accepted,
            duplicated=report.duplicated,
            rejected=len(report.rejects),
            rejects=report.rejects,
        )
        return JSONResponse(result.model_dump(mode="json"))

    return router


_REF = "#/components/schemas/{model}"


def _request_body() -> dict[str, Any]:
    def one_or_many(name: str) -> dict[str, Any]:
        ref = {"$ref": _REF.format(model=name)}
        return {"oneOf": [ref, {"type": "array", "items": ref, "minItems": 1}]}

    example = MetricRecorded.model_json_schema()["properties"]
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": one_or_many("MetricRecorded"),
                "example": {name: field["examples"][0] for name, field in example.items()},
            },
            "application/cloudevents+json": {
                "schema": {"$ref": _REF.format(model="MetricCloudEvent")}
            },
            "application/cloudevents-batch+json": {
                "schema": {
                    "type": "array",
                    "items": {"$ref": _REF.format(model="MetricCloudEvent")},
                    "minItems": 1,
                }
            },
        },
    }


def _indexed(report: IngestReport) -> list[tuple[int, PublishOutcome]]:
    return [
        (item.index, outcome)
        for item, outcome in zip(report.parsed.events, report.outcomes, strict=True)
    ]


def _ref(index: int, event_id: str) -> EventRef:
    return EventRef(index=index, id=event_id)


def _too_big(size: int, limit: int) -> str:
    return (
        f"body too large: {size} bytes, at most {limit}; split the events into smaller "
        "requests (or raise GOALWATCH_INGEST_MAX_BODY_BYTES)"
    )


def _refused(error: BodyError) -> JSONResponse:
    """A request refused before its events could be read: counted as rejected, then answered."""
    EVENTS_REJECTED.labels(transport="http").inc(error.events)
    return problem(error.status, error.message)


def _problem_of(answer: IngestRejected | IngestUnavailable, **kwargs: Any) -> JSONResponse:
    members = answer.model_dump(mode="json", exclude={"status", "detail", "type", "title"})
    return problem(answer.status, answer.detail, **kwargs, **members)


def _problem_doc(description: str, model: type[Any] | None = None) -> dict[str, Any]:
    name = model.__name__ if model is not None else "Problem"
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": _REF.format(model=name)}}},
    }
