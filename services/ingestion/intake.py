"""The one path every event takes, whether it came over HTTP or NATS: validate, store, count."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from goalwatch.contracts import DeadLetter, subjects
from goalwatch.telemetry import EVENTS_ACCEPTED, EVENTS_DUPLICATE, EVENTS_REJECTED
from services.ingestion.publisher import Publisher, PublishOutcome
from services.ingestion.schemas import EventReject
from services.ingestion.validation import (
    BodyError,
    BodyFormat,
    ParsedBody,
    body_format,
    parse_events,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    """What became of every event in one body."""

    parsed: ParsedBody
    outcomes: list[PublishOutcome]

    @property
    def accepted(self) -> int:
        """Events newly stored."""
        return sum(1 for o in self.outcomes if o.stored and not o.duplicate)

    @property
    def duplicated(self) -> int:
        """Events the stream already held (same id)."""
        return sum(1 for o in self.outcomes if o.stored and o.duplicate)

    @property
    def rejects(self) -> list[EventReject]:
        """Events that failed validation."""
        return self.parsed.rejects

    @property
    def failed(self) -> list[PublishOutcome]:
        """Valid events that could not be stored."""
        return [o for o in self.outcomes if not o.stored]


class PublishFailedError(Exception):
    """Some valid events could not be stored; the message must be redelivered."""


async def ingest(
    *, body: bytes, fmt: BodyFormat, max_batch: int, publisher: Publisher, transport: str
) -> IngestReport:
    """Validate ``body`` and store its valid events.

    Raises :class:`BodyError` when the body cannot be read at all. Publishing failures are
    reported in :attr:`IngestReport.failed`, not raised, so the caller can say which events
    were stored.
    """
    try:
        parsed = parse_events(body, fmt=fmt, max_batch=max_batch)
    except BodyError as exc:
        EVENTS_REJECTED.labels(transport=transport).inc(exc.events)
        raise
    outcomes = (
        await publisher.publish_events([item.event for item in parsed.events])
        if parsed.events
        else []
    )
    report = IngestReport(parsed=parsed, outcomes=outcomes)
    _count_and_log(report, transport=transport)
    return report


def _count_and_log(report: IngestReport, *, transport: str) -> None:
    EVENTS_ACCEPTED.labels(transport=transport).inc(report.accepted)
    EVENTS_DUPLICATE.labels(transport=transport).inc(report.duplicated)
    EVENTS_REJECTED.labels(transport=transport).inc(len(report.rejects))
    if logger.isEnabledFor(logging.DEBUG):
        for outcome in report.outcomes:
            state = "failed" if outcome.error else "duplicate" if outcome.duplicate else "accepted"
            logger.debug(
                "event %s", state, extra={"event_id": outcome.event.id, "transport": transport}
            )
        for reject in report.rejects:
            logger.debug(
                "event rejected at index %d: %s",
                reject.index,
                "; ".join(e.message for e in reject.errors),
                extra={"event_id": reject.id, "transport": transport},
            )
    logger.info(
        "ingested %d event(s): %d accepted, %d duplicated, %d rejected, %d not stored",
        report.parsed.total,
        report.accepted,
        report.duplicated,
        len(report.rejects),
        len(report.failed),
        extra={
            "transport": transport,
            "accepted": report.accepted,
            "duplicated": report.duplicated,
            "rejected": len(report.rejects),
        },
    )


async def ingest_message(
    *,
    body: bytes,
    content_type: str | None,
    max_batch: int,
    publisher: Publisher,
    msg_id: str | None,
) -> None:
    """Handle one message from the NATS ingest subject.

    Valid events are stored like HTTP ones; anything rejected goes to the metrics dead-letter
    subject (``msg_id`` keeps a redelivered message from being dead-lettered twice). Raises
    :class:`PublishFailedError` when events could not be stored, so the message is redelivered.
    """
    try:
        # NATS senders often set no or a generic content type: only CloudEvents types matter.
        fmt = body_format(content_type, lenient=True)
        report = await ingest(
            body=body, fmt=fmt, max_batch=max_batch, publisher=publisher, transport="nats"
        )
    except BodyError as exc:
        logger.info("message dead-lettered: %s", exc.message, extra={"transport": "nats"})
        await publisher.publish_dead_letter(
            dead_letter(body=body, reason=exc.message, rejects=[], batch=False), msg_id=msg_id
        )
        return
    if report.failed:
        first = report.failed[0].error
        raise PublishFailedError(
            f"{len(report.failed)} of {len(report.outcomes)} events could not be stored: {first}"
        )
    if report.rejects:
        total = report.parsed.total
        reason = (
            f"{len(report.rejects)} of {total} events rejected"
            + (
                f"; the other {total - len(report.rejects)} were accepted"
                if report.outcomes
                else ""
            )
            + ": "
            + "; ".join(
                f"[{r.index}] {', '.join(e.message for e in r.errors)}" for r in report.rejects[:5]
            )
            + ("; ..." if len(report.rejects) > 5 else "")
        )
        await publisher.publish_dead_letter(
            dead_letter(
                body=body, reason=reason, rejects=report.rejects, batch=report.parsed.batch
            ),
            msg_id=msg_id,
        )


def dead_letter(*, body: bytes, reason: str, rejects: list[EventReject], batch: bool) -> DeadLetter:
    """A dead letter for a message from the ingest subject.

    ``errors`` holds one entry per field error: ``loc`` (``[index].field`` in a batch),
    ``msg`` (message and hint) and ``id`` (the event id, when it had one).
    """
    errors: list[dict[str, str]] = []
    for reject in rejects:
        for error in reject.errors:
            where = f"[{reject.index}]" if batch else ""
            loc = f"{where}.{error.field}" if where and error.field else where or error.field
            entry = {
                "loc": loc,
                "msg": f"{error.message} ({error.hint})" if error.hint else error.message,
            }
            if reject.id is not None:
                entry["id"] = reject.id
            errors.append(entry)
    return DeadLetter(
        origin_subject=subjects.METRICS_IN,
        reason=reason,
        errors=errors,
        payload=body.decode("utf-8", errors="replace"),
        at=datetime.now(UTC),
    )
