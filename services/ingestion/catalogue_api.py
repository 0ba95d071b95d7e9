"""``GET /v1/metrics``: the metric catalogue ingestion enforces, as JSON."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path

from goalwatch.auth.policies import CATALOGUE_READ
from goalwatch.catalogue import Catalogue
from goalwatch.contracts.catalogue import MetricCatalogue, MetricDefinition
from goalwatch.problems import clip, problem_responses
from services.ingestion.metrics import HANDLER_SECONDS

_DESCRIPTION = """\
Every metric ingestion accepts: its meaning, unit, value range (`min`, `max`, inclusive; null
for no bound), the systems that send it, how often a subject's value is expected (`cadence`,
e.g. `1d`), its owner and the labels its events may carry (each with its allowed values, or
null for any value).

`POST /v1/events` rejects an event whose metric is not listed here, whose value is outside
the metric's range, or that carries a label the metric does not list (or a value the label
does not allow). The catalogue is the reviewed file `catalogue/metrics.yaml` in the
goalwatch repository, read when ingestion starts.
"""


def catalogue_router(*, catalogue: Catalogue) -> APIRouter:
    """The catalogue's read-only HTTP API."""
    router = APIRouter(prefix="/v1", tags=["catalogue"])
    whole = catalogue.model

    @router.get(
        "/metrics",
        summary="The metric catalogue: every metric ingestion accepts",
        description=_DESCRIPTION,
        dependencies=[Depends(CATALOGUE_READ)],
    )
    async def list_metrics() -> MetricCatalogue:
        with HANDLER_SECONDS.labels(service="ingestion", handler="list_metrics").time():
            return whole

    @router.get(
        "/metrics/{name}",
        summary="One catalogued metric",
        responses=problem_responses({404: "The metric is not catalogued."}),
        dependencies=[Depends(CATALOGUE_READ)],
    )
    async def get_metric(
        name: Annotated[str, Path(max_length=200, description="The metric's name.")],
    ) -> MetricDefinition:
        with HANDLER_SECONDS.labels(service="ingestion", handler="get_metric").time():
            metric = catalogue.get(name)
        if metric is None:
            close = catalogue.closest(name)
            raise HTTPException(
                status_code=404,
                detail=f"unknown metric '{clip(name)}'"
                + (f" — did you mean '{close}'?" if close else ";")
                + " GET /v1/metrics lists every catalogued metric",
            )
        return metric

    return router
