"""The goals service's Prometheus metrics, on its own registry."""

from prometheus_client import Counter

from goalwatch.telemetry import handler_seconds, service_registry

REGISTRY = service_registry()
PEOPLE_UPSERTED = Counter(
    "goalwatch_people_upserted_total",
    "People created or replaced through POST /v1/people.",
    registry=REGISTRY,
)
HANDLER_SECONDS = handler_seconds(REGISTRY)
