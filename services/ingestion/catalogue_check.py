"""Events checked against the metric catalogue: a catalogued metric, in range, with its labels.

Pure, like the rest of validation: what is wrong comes back as field errors, and what an
onboarding source may send uncatalogued comes back as :class:`Uncatalogued` notes for the
caller to count and log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from goalwatch.catalogue import Catalogue
from goalwatch.contracts import MetricRecorded
from services.ingestion.schemas import FieldError

CATALOGUE_ROUTE: Final = "GET /v1/metrics"
CATALOGUE_FILE: Final = "catalogue/metrics.yaml in the goalwatch repository"
# How many catalogued names an unknown metric's hint lists.
LISTED_NAMES: Final = 8


@dataclass(frozen=True)
class Uncatalogued:
    """Something an onboarding source sent that the catalogue does not know, accepted."""

    event_id: str
    source: str
    metric: str
    label: str | None = None
    """The uncatalogued label (or label with an uncatalogued value); None: the metric itself."""


def catalogue_errors(
    event: MetricRecorded,
    catalogue: Catalogue,
    *,
    onboarding: frozenset[str] = frozenset(),
    cloudevent: bool = False,
) -> tuple[list[FieldError], list[Uncatalogued]]:
    """What the catalogue refuses in ``event``, and what it lets through from a source in
    ``onboarding``. A value out of range is refused from every source: the range is part of
    what the catalogue knows about a metric, not something still to be catalogued."""
    prefix = "data." if cloudevent else ""
    relaxed = event.source in onboarding
    metric = catalogue.get(event.metric)
    if metric is None:
        if relaxed:
            return [], [Uncatalogued(event_id=event.id, source=event.source, metric=event.metric)]
        close = catalogue.closest(event.metric)
        message = catalogue.unknown_metric(event.metric) + (" " if close else ": ")
        return [
            FieldError(
                field=f"{prefix}metric",
                message=f"{message}see {CATALOGUE_ROUTE}",
                hint=_catalogued(catalogue),
            )
        ], []
    errors: list[FieldError] = []
    notes: list[Uncatalogued] = []
    entry = f"{CATALOGUE_ROUTE}/{metric.name}"
    out_of_range = catalogue.range_problem(metric.name, event.value)
    if out_of_range is not None:
        errors.append(
            FieldError(
                field=f"{prefix}value",
                message=f"{out_of_range}; see {entry}",
                hint="check the unit: a ratio is a fraction, e.g. 0.11 for 11%"
                if metric.unit == "ratio"
                else None,
            )
        )
    for problem in catalogue.label_problems(metric.name, event.labels):
        if relaxed:
            notes.append(
                Uncatalogued(
                    event_id=event.id,
                    source=event.source,
                    metric=metric.name,
                    label=problem.label,
                )
            )
            continue
        errors.append(
            FieldError(
                field=f"{prefix}labels.{problem.label}",
                message=f"{problem.message}; see {entry}",
                hint=None
                if problem.known_label
                else f"leave the label out, or have it added to the metric's labels in "
                f"{CATALOGUE_FILE}",
            )
        )
    return errors, notes


def _catalogued(catalogue: Catalogue) -> str:
    names = catalogue.names
    listed = ", ".join(names[:LISTED_NAMES]) + (
        f", … ({len(names)} in all)" if len(names) > LISTED_NAMES else ""
    )
    return f"catalogued: {listed}; a new metric is added to {CATALOGUE_FILE}"
