"""How the notification for one alert transition is built from the alert that arrived."""

from __future__ import annotations

from goalwatch.contracts import (
    AlertFired,
    AlertNotification,
    AlertResolved,
    AlertState,
    Recipient,
    SubjectRef,
)

Alert = AlertFired | AlertResolved


def build_notification(
    *, alert: Alert, subject: SubjectRef, recipients: list[Recipient]
) -> AlertNotification:
    """The notification for ``alert`` as it arrived, before anything stored is merged in."""
    common = {
        "fingerprint": alert.fingerprint,
        "rule_id": alert.rule_id,
        "rule_name": alert.rule_name,
        "severity": alert.severity,
        "subject": subject,
        "metric": alert.metric,
        "value": alert.value,
        "message": alert.message,
        "started_at": alert.started_at,
        "impact": alert.impact,
        "goal": alert.goal,
        "recipients": recipients,
    }
    if isinstance(alert, AlertFired):
        return AlertNotification.model_validate(
            {
                **common,
                "state": AlertState.FIRING,
                "kind": alert.kind,
                "fired_at": alert.fired_at,
                "history": alert.history,
                "labels": alert.labels,
            }
        )
    return AlertNotification.model_validate(
        {**common, "state": AlertState.RESOLVED, "resolved_at": alert.resolved_at}
    )
