"""Messages that cross service boundaries, and the NATS subjects they travel on."""

from goalwatch.contracts.alerts import (
    AlertFired,
    AlertResolved,
    AlertState,
    DeadLetter,
    DeliveryStatus,
    ErrorDetail,
    NotificationSent,
    Observation,
    Recipient,
    RecipientRole,
    RuleKind,
    Severity,
)
from goalwatch.contracts.metrics import (
    CLOUDEVENT_TYPE,
    MetricCloudEvent,
    MetricData,
    MetricRecorded,
)
from goalwatch.contracts.notifications import AlertNotification, SubjectRef
from goalwatch.contracts.people import PersonRead, PersonUpsert
from goalwatch.contracts.timers import TimerFired

__all__ = [
    "CLOUDEVENT_TYPE",
    "AlertFired",
    "AlertNotification",
    "AlertResolved",
    "AlertState",
    "DeadLetter",
    "DeliveryStatus",
    "ErrorDetail",
    "MetricCloudEvent",
    "MetricData",
    "MetricRecorded",
    "NotificationSent",
    "Observation",
    "PersonRead",
    "PersonUpsert",
    "Recipient",
    "RecipientRole",
    "RuleKind",
    "Severity",
    "SubjectRef",
    "TimerFired",
]
