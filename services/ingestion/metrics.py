"""The ingestion service's Prometheus metrics, on its own registry."""

from prometheus_client import Counter

from goalwatch.telemetry import dead_letters, handler_seconds, service_registry

REGISTRY = service_registry()
EVENTS_ACCEPTED = Counter(
    "goalwatch_events_accepted_total",
    "Metric events accepted by ingestion.",
    ["transport"],
    registry=REGISTRY,
)
EVENTS_DUPLICATE = Counter(
    "goalwatch_events_duplicate_total",
    "Metric events recognised as resends.",
    ["transport"],
    registry=REGISTRY,
)
EVENTS_REJECTED = Counter(
    "goalwatch_events_rejected_total",
    "Metric events rejected as invalid.",
    ["transport"],
    registry=REGISTRY,
)
EVENTS_UNCATALOGUED = Counter(
    "goalwatch_events_uncatalogued_total",
    "Events accepted from an onboarding source (GOALWATCH_INGEST_ONBOARDING_SOURCES) with a "
    "metric, or a label, the catalogue does not know yet: what still needs cataloguing.",
    ["source", "metric", "what"],
    registry=REGISTRY,
)
HANDLER_SECONDS = handler_seconds(REGISTRY)
DEAD_LETTERS = dead_letters(REGISTRY)
