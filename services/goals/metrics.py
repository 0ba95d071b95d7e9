"""The goals service's Prometheus metrics, on its own registry."""

from prometheus_client import Counter, Gauge

from goalwatch.telemetry import handler_seconds, service_registry

REGISTRY = service_registry()
PEOPLE_UPSERTED = Counter(
    "goalwatch_people_upserted_total",
    "People created or replaced through POST /v1/people.",
    registry=REGISTRY,
)
HANDLER_SECONDS = handler_seconds(REGISTRY)
EVENTS_PUBLISHED = Counter(
    "goalwatch_goal_events_published_total",
    "Goal events acknowledged by JetStream, by event type.",
    ["event"],
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge(
    "goalwatch_goal_outbox_pending",
    "Goal change records stored but not yet published (after a failed publish).",
    registry=REGISTRY,
)
DIRECTORY_OUTBOX_PENDING = Gauge(
    "goalwatch_directory_outbox_pending",
    "People and org unit change records stored but not yet published (after a failed publish).",
    registry=REGISTRY,
)
GOALS_UPSERTED = Counter(
    "goalwatch_goals_upserted_total",
    "Goals, org units and people created or replaced, by kind.",
    ["kind"],
    registry=REGISTRY,
)
