"""The one path every event takes, whether it came over HTTP or NATS: validate, store, count."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from goalwatch.consumers import ACK, Received, RedeliveryPolicy, Reject, Verdict
from goalwatch.contracts import ErrorDetail
from goalwatch.problems import clip
from services.ingestion.catalogue_check import Uncatalogued
from services.ingestion.metrics import (
    EVENTS_ACCEPTED,
    EVENTS_DUPLICATE,
    EVENTS_REJECTED,
    EVENTS_UNCATALOGUED,
)
from services.ingestion.publisher import Publisher, PublishOutcome
from services.ingestion.schemas import EventReject
from services.ingestion.validation import (
    BodyError,
    BodyFormat,
    EventLimits,
    ParsedBody,
    body_format,
    parse_events,
)

logger = logging.getLogger(__name__)

# Each uncatalogued metric or label is logged once per process; past this many, only counted.
MAX_LOGGED_UNCATALOGUED = 10_000


class UncataloguedLog:
    """Counts what onboarding sources sent uncatalogued and logs each new metric or label once,
    so operators see what still needs cataloguing without a log line per event."""

    def __init__(self) -> None:
        self._logged: set[tuple[str, str, str | None]] = set()

    def record(self, notes: list[Uncatalogued], *, stored: set[str]) -> None:
        """Count and log the ``notes`` of events newly stored (their ids in ``stored``)."""
        for note in notes:
            if note.event_id not in stored:
                continue
            what = "metric" if note.label is None else "label"
            EVENTS_UNCATALOGUED.labels(source=note.source, metric=note.metric, what=what).inc()
            key = (note.source, note.metric, note.label)
            if key in self._logged or len(self._logged) >= MAX_LOGGED_UNCATALOGUED:
                continue
            self._logged.add(key)
            thing = (
                f"metric '{note.metric}'"
                if note.label is None
                else f"label '{clip(note.label)}' (or its value) of metric '{note.metric}'"
            )
            logger.warning(
                "accepted uncatalogued %s from onboarding source '%s'; catalogue it, then take "
                "the source out of GOALWATCH_INGEST_ONBOARDING_SOURCES",
                thing,
                note.source,
                extra={"source": note.source, "metric": note.metric, "label": note.label},
            )


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


async def ingest(
    *,
    body: bytes,
    fmt: BodyFormat,
    max_batch: int,
    publisher: Publisher,
    transport: str,
    limits: EventLimits | None = None,
    uncatalogued: UncataloguedLog | None = None,
) -> IngestReport:
    """Validate ``body`` (each event against ``limits`` too) and store its valid events;
    what onboarding sources sent uncatalogued goes to ``uncatalogued``.

    Raises :class:`BodyError` when the body cannot be read at all. Publishing failures are
    reported in :attr:`IngestReport.failed`, not raised, so the caller can say which events
    were stored.
    """
    try:
        parsed = parse_events(body, fmt=fmt, max_batch=max_batch, limits=limits)
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
    if uncatalogued is not None and parsed.uncatalogued:
        stored = {o.event.id for o in outcomes if o.stored and not o.duplicate}
        uncatalogued.record(parsed.uncatalogued, stored=stored)
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


class MessageIntake:
    """Handles messages from the NATS ingest subject, as HTTP requests are handled.

    Valid events are stored like HTTP ones. A body that cannot be read, or one with rejected
    events, is kept whole as a dead letter with every reject named (the events of it that were
    accepted are recognised by their id if it is replayed). Events that could not be stored are
    retried by the consumer's policy: the message is redelivered.
    """

    def __init__(
        self,
        *,
        publisher: Publisher,
        max_batch: int,
        policy: RedeliveryPolicy,
        limits: EventLimits | None = None,
        uncatalogued: UncataloguedLog | None = None,
    ) -> None:
        self._publisher = publisher
        self._max_batch = max_batch
        self._policy = policy
        self._limits = limits
        self._uncatalogued = uncatalogued

    async def handle(self, message: bytes, received: Received) -> Verdict:
        """What becomes of one ingest message."""
        # NATS senders often set no or a generic content type: only CloudEvents types matter.
        fmt = body_format(received.header("content-type"), lenient=True)
        try:
            report = await ingest(
                body=message,
                fmt=fmt,
                max_batch=self._max_batch,
                publisher=self._publisher,
                transport="nats",
                limits=self._limits,
                uncatalogued=self._uncatalogued,
            )
        except BodyError as exc:
            return Reject(reason=exc.message)
        if report.failed:
            first = report.failed[0].error
            return self._policy.on_failure(
                deliveries=received.deliveries,
                reason=f"{len(report.failed)} of {len(report.outcomes)} events could not be "
                f"stored: {first}",
            )
        if report.rejects:
            return Reject(reason=_rejects_reason(report), errors=tuple(reject_errors(report)))
        return ACK


def _rejects_reason(report: IngestReport) -> str:
    total, rejects = report.parsed.total, report.rejects
    return (
        f"{len(rejects)} of {total} events rejected"
        + (f"; the other {total - len(rejects)} were accepted" if report.outcomes else "")
        + ": "
        + "; ".join(f"[{r.index}] {', '.join(e.message for e in r.errors)}" for r in rejects[:5])
        + ("; ..." if len(rejects) > 5 else "")
    )


def reject_errors(report: IngestReport) -> list[ErrorDetail]:
    """One error per field error: ``loc`` is ``[index].field`` in a batch, ``field`` alone."""
    errors: list[ErrorDetail] = []
    for reject in report.rejects:
        for error in reject.errors:
            where = f"[{reject.index}]" if report.parsed.batch else ""
            loc = f"{where}.{error.field}" if where and error.field else where or error.field
            errors.append(
                ErrorDetail(
                    loc=loc or "$",
                    msg=f"{error.message} ({error.hint})" if error.hint else error.message,
                    event_id=reject.id,
                )
            )
    return errors
