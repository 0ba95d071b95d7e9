"""Messages that cross service boundaries, and the NATS subjects they travel on."""

from goalwatch.contracts.alerts import (
    AlertFired,
    AlertResolved,
    AlertState,
    DeadLetter,
    DeliveryStatus,
    NotificationSent,
    Observation,
    Recipient,
    RuleKind,
    Severity,
)
from goalwatch.contracts.metrics import (
    CLOUDEVENT_TYPE,
    MetricCloudEvent,
    MetricData,
    MetricRecorded,
)
from goalwatch.contracts.people import PersonRead, PersonUpsert

__all__ = [
    "CLOUDEVENT_TYPE",
    "AlertFired",
    "AlertResolved",
    "AlertState",
    "DeadLetter",
    "DeliveryStatus",
    "MetricCloudEvent",
    "MetricData",
    "MetricRecorded",
    "NotificationSent",
    "Observation",
    "PersonRead",
    "PersonUpsert",
    "Recipient",
    "RuleKind",
    "Severity",
]
