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
from goalwatch.contracts.audit import AuditPage, AuditRecorded
from goalwatch.contracts.catalogue import MetricCatalogue, MetricDefinition
from goalwatch.contracts.directory_events import OrgUnitChanged, PersonChanged
from goalwatch.contracts.goal_events import (
    GoalCheckedIn,
    GoalCreated,
    GoalLinkAdded,
    GoalLinkRemoved,
    GoalStatusChanged,
    GoalUpdated,
)
from goalwatch.contracts.goals import (
    CheckInCreate,
    CheckInHistory,
    CheckInRead,
    GoalImpact,
    GoalPage,
    GoalRead,
    GoalTree,
    GoalUpsert,
    OrgUnitRead,
    OrgUnitUpsert,
    UpsertReport,
)
from goalwatch.contracts.metrics import (
    CLOUDEVENT_TYPE,
    MetricCloudEvent,
    MetricData,
    MetricRecorded,
)
from goalwatch.contracts.notifications import (
    AlertDigest,
    AlertNotification,
    DigestReason,
    SubjectRef,
    Unacknowledged,
)
from goalwatch.contracts.people import PersonRead, PersonUpsert
from goalwatch.contracts.rules import RuleAction, RuleVersion
from goalwatch.contracts.timers import TimerFired

__all__ = [
    "CLOUDEVENT_TYPE",
    "AlertDigest",
    "AlertFired",
    "AlertNotification",
    "AlertResolved",
    "AlertState",
    "AuditPage",
    "AuditRecorded",
    "CheckInCreate",
    "CheckInHistory",
    "CheckInRead",
    "DeadLetter",
    "DeliveryStatus",
    "DigestReason",
    "ErrorDetail",
    "GoalCheckedIn",
    "GoalCreated",
    "GoalImpact",
    "GoalLinkAdded",
    "GoalLinkRemoved",
    "GoalPage",
    "GoalRead",
    "GoalStatusChanged",
    "GoalTree",
    "GoalUpdated",
    "GoalUpsert",
    "MetricCatalogue",
    "MetricCloudEvent",
    "MetricData",
    "MetricDefinition",
    "MetricRecorded",
    "NotificationSent",
    "Observation",
    "OrgUnitChanged",
    "OrgUnitRead",
    "OrgUnitUpsert",
    "PersonChanged",
    "PersonRead",
    "PersonUpsert",
    "Recipient",
    "RecipientRole",
    "RuleAction",
    "RuleKind",
    "RuleVersion",
    "Severity",
    "SubjectRef",
    "TimerFired",
    "Unacknowledged",
    "UpsertReport",
]
