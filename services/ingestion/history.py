"""``GET /v1/metrics/{metric}/history/{subject}``: one person's recent values of one metric,
read from ``GOALWATCH_METRICS``.

Ingestion keeps no copy of the events: they are in the metrics stream, where each subject's
events are on one partition subject (:func:`goalwatch.contracts.subjects.metrics_partition`).
A query reads that partition forward from ``since`` (by when events were stored) through a
short-lived consumer (no acks, in memory, filtered by the partition's subject), keeps the
events of the subject and metric whose own time is in ``[since, until)``, and stops at the
end of the stream or after :data:`SCAN_CAP` positions.

**Cost**: the read passes over every event of every subject of that partition stored since
``since``: about (events per day across the installation) x days / partitions positions,
bounded by the cap. With 16 partitions and 100,000 events a day, 30 days is about 190,000
positions, more than the cap: the answer then says ``complete: false`` and holds what the
first :data:`SCAN_CAP` positions had (the oldest part of the range). Ask for a shorter range
(the console asks for 30 days before the alert), or add partitions.

Who may read it: an HR admin anyone's; a person the history of someone in their part of the
org chart (:mod:`goalwatch.auth.scope`, asked of goals as this service), like the alerts
about them; anyone else's answers 404, as for a person with no such history.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

import nats.errors
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import AwareDatetime, Field, ValidationError

from goalwatch.auth.policies import METRIC_HISTORY_READ
from goalwatch.auth.policy import Caller
from goalwatch.auth.scope import Directory, Scope
from goalwatch.contracts import MetricRecorded, OrgUnitRead, PersonRead, subjects
from goalwatch.contracts.base import Contract
from goalwatch.goals_client import GoalsClient
from goalwatch.messaging import start_time
from goalwatch.problems import clip, problem_responses
from services.ingestion.metrics import HANDLER_SECONDS

logger = logging.getLogger(__name__)

SCAN_CAP: Final = 20_000
"""Most stream positions one query looks at."""
WINDOW: Final = 1000
"""Positions fetched at a time."""
DEFAULT_DAYS: Final = 30
MAX_POINTS: Final = 1000
_FETCH_TIMEOUT = 5.0
# A consumer left behind by a query that failed halfway is removed by the server soon.
_INACTIVE = 30.0


class MetricPoint(Contract):
    """One value of the metric for the subject."""

    time: AwareDatetime = Field(description="The event's time.")
    value: float = Field(description="The value.")
    event_id: str = Field(description="The event's id.")


class MetricHistory(Contract):
    """``GET /v1/metrics/{metric}/history/{subject}``'s answer."""

    metric: str = Field(description="The metric.")
    subject: str = Field(description="Whom the values are about (a person id).")
    since: AwareDatetime = Field(description="From this time (events stored since then).")
    until: AwareDatetime = Field(description="Before this time.")
    points: list[MetricPoint] = Field(
        description="The values, oldest first (by event time); the newest `limit` when more."
    )
    complete: bool = Field(
        description="false: the scan cap stopped the read before the end of the stream, so "
        "later values may be missing; ask for a shorter range."
    )
    scanned: int = Field(description="Stream positions looked at.")


class GoalsDirectory:
    """People and org units as :class:`goalwatch.auth.scope.Directory` reads them, asked of
    the goals service (as this service) for each query."""

    def __init__(self, goals: GoalsClient) -> None:
        self._goals = goals

    async def person(self, person_id: str) -> PersonRead | None:
        """The person, with their manager chain."""
        return await self._goals.get_person(person_id)

    async def org_unit(self, unit_id: str) -> OrgUnitRead | None:
        """The org unit."""
        return await self._goals.get_org_unit(unit_id)


class MetricReader:
    """Reads one subject's events from ``GOALWATCH_METRICS`` over ``connection()``."""

    def __init__(
        self,
        connection: Callable[[], Client],
        *,
        partitions: int,
        scan_cap: int = SCAN_CAP,
        window: int = WINDOW,
    ) -> None:
        self._connection = connection
        self._partitions = partitions
        self._scan_cap = scan_cap
        self._window = window

    async def history(
        self, *, subject: str, metric: str, since: datetime, until: datetime, limit: int
    ) -> MetricHistory:
        """``subject``'s values of ``metric`` in ``[since, until)``, oldest first."""
        js = self._connection().jetstream()
        partition = subjects.metrics_partition_subject(
            subjects.metrics_partition(subject, self._partitions)
        )
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=start_time(since.astimezone(UTC)),
            ack_policy=AckPolicy.NONE,
            filter_subject=partition,
            inactive_threshold=_INACTIVE,
            mem_storage=True,
            num_replicas=1,
        )
        points: list[MetricPoint] = []
        scanned = 0
        complete = True
        try:
            info = await js.add_consumer(subjects.STREAM_METRICS, config)
        except NotFoundError:
            info = None
        if info is not None and info.name is not None:
            try:
                if info.num_pending:
                    scanned, complete = await self._read(
                        js, info.name, points, subject=subject, metric=metric, window=(since, until)
                    )
            finally:
                # Left behind, it is gone by itself after _INACTIVE: not worth failing the answer.
                with contextlib.suppress(NotFoundError, nats.errors.TimeoutError):
                    await js.delete_consumer(subjects.STREAM_METRICS, info.name)
        points.sort(key=lambda point: point.time)
        return MetricHistory(
            metric=metric,
            subject=subject,
            since=since,
            until=until,
            points=points[-limit:],
            complete=complete,
            scanned=scanned,
        )

    async def _read(
        self,
        js: JetStreamContext,
        consumer: str,
        points: list[MetricPoint],
        *,
        subject: str,
        metric: str,
        window: tuple[datetime, datetime],
    ) -> tuple[int, bool]:
        """Fetch until the stream's end or the cap; the positions looked at, and whether the
        end was reached."""
        pull = await js.pull_subscribe_bind(consumer, stream=subjects.STREAM_METRICS)
        scanned = 0
        try:
            while scanned < self._scan_cap:
                batch = min(self._window, self._scan_cap - scanned)
                try:
                    fetched = await pull.fetch(batch, timeout=_FETCH_TIMEOUT)
                except nats.errors.TimeoutError:
                    return scanned, True  # nothing more stored
                scanned += len(fetched)
                for message in fetched:
                    point = _point(message, subject=subject, metric=metric, window=window)
                    if point is not None:
                        points.append(point)
                if not fetched[-1].metadata.num_pending:
                    return scanned, True
            return scanned, False
        finally:
            await pull.unsubscribe()


def _point(
    message: Msg, *, subject: str, metric: str, window: tuple[datetime, datetime]
) -> MetricPoint | None:
    try:
        event = MetricRecorded.model_validate_json(message.data)
    except ValidationError as exc:
        logger.error("metric event at %d skipped: %s", message.metadata.sequence.stream, exc)
        return None
    if event.subject != subject or event.metric != metric:
        return None
    if not window[0] <= event.time < window[1]:
        return None
    return MetricPoint(time=event.time, value=event.value, event_id=event.id)


async def _sees(caller: Caller, subject: str, directory: Directory) -> bool:
    if caller.person_id is None:
        return False
    return await Scope(caller.person_id, directory).sees_person_id(subject)


def history_router(*, reader: MetricReader, directory: Directory) -> APIRouter:
    """The metric history's HTTP API."""
    router = APIRouter(prefix="/v1", tags=["catalogue"])

    @router.get(
        "/metrics/{metric}/history/{subject}",
        summary="One person's recent values of one metric",
        responses=problem_responses({404: "No such person in the caller's part of the org chart."}),
    )
    async def metric_history(
        metric: Annotated[str, Path(max_length=200, description="The metric's name.")],
        subject: Annotated[str, Path(max_length=200, description="The person's id.")],
        caller: Annotated[Caller, Depends(METRIC_HISTORY_READ)],
        since: Annotated[
            AwareDatetime | None,
            Query(
                description=f"From this time (ISO 8601, with zone); default {DEFAULT_DAYS} "
                "days before until."
            ),
        ] = None,
        until: Annotated[
            AwareDatetime | None,
            Query(description="Before this time (ISO 8601, with zone); default now."),
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_POINTS, description="Most values (the newest).")
        ] = 500,
    ) -> MetricHistory:
        """The subject's values of the metric whose time is in ``[since, until)``, oldest
        first, read from the metrics stream: a bounded read of the subject's partition from
        ``since`` (events stored before ``since`` are not read), at most 20,000 stream
        positions (``complete`` false when the cap stopped it). Whom the caller may read:
        as ``GET /v1/alerts`` (an HR admin anyone; a person their part of the org chart)."""
        if not caller.org_wide and not await _sees(caller, subject, directory):
            raise HTTPException(
                status_code=404,
                detail=f"no person {clip(subject)!r} among those you may see; "
                "GET /v1/alerts lists the alerts about them",
            )
        end = until or datetime.now(UTC)
        start = since or end - timedelta(days=DEFAULT_DAYS)
        if start >= end:
            raise HTTPException(status_code=422, detail="since must be before until")
        with HANDLER_SECONDS.labels(service="ingestion", handler="metric_history").time():
            return await reader.history(
                subject=subject, metric=metric, since=start, until=end, limit=limit
            )

    return router
