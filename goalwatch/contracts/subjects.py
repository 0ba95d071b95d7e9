"""NATS subject and JetStream stream names: the one place they are spelled out."""

from typing import Final

# Raw metric events published straight to NATS by other systems (validated by ingestion).
METRICS_IN: Final = "goalwatch.metrics.in.v1"
# Validated metric events; the evaluator consumes these.
METRICS_RECORDED: Final = "goalwatch.metrics.recorded.v1"
ALERTS_FIRED: Final = "goalwatch.alerts.fired.v1"
ALERTS_RESOLVED: Final = "goalwatch.alerts.resolved.v1"
NOTIFICATIONS_SENT: Final = "goalwatch.notifications.sent.v1"
# Dead letters: ``goalwatch.deadletter.v1.<origin>``, e.g. ``...metrics`` for rejected events.
DEADLETTER_PREFIX: Final = "goalwatch.deadletter.v1"
DEADLETTER_METRICS: Final = f"{DEADLETTER_PREFIX}.metrics"
DEADLETTER_ALERTS: Final = f"{DEADLETTER_PREFIX}.alerts"

STREAM_INGEST: Final = "GOALWATCH_INGEST"
STREAM_METRICS: Final = "GOALWATCH_METRICS"
STREAM_ALERTS: Final = "GOALWATCH_ALERTS"
STREAM_NOTIFICATIONS: Final = "GOALWATCH_NOTIFICATIONS"
STREAM_DEADLETTER: Final = "GOALWATCH_DEADLETTER"


def dead_letter_subject(origin_subject: str) -> str:
    """Where a message from ``origin_subject`` goes when it cannot be processed."""
    if origin_subject.startswith("goalwatch.alerts."):
        return DEADLETTER_ALERTS
    return DEADLETTER_METRICS
