"""How the notification for one alert transition is built from the alert that arrived, and
what names a transition.

A transition is a firing, a resolution, or an escalation: an ``AlertFired`` with
``escalated_from`` set, announcing that the alert, still firing in the same episode, rose to
a higher severity. Each is announced once on every channel.
"""

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


def transition_key(notification: AlertNotification) -> tuple[str, ...]:
    """What names the transition ``notification`` announces, for claims and delivery ids:
    fingerprint, state and episode start, and for an escalation the severity it rose to.

    A firing and a resolution are named as they always were, so their claims and ids stay
    the same; an escalation differs from the firing of its episode (and from another rise)
    only by its severity.
    """
    parts = (
        notification.fingerprint,
        notification.state.value,
        notification.started_at.isoformat(),
    )
    if notification.unacknowledged is not None:
        # Passed up the manager chain: a transition of its own per level.
        return (*parts, "up", str(notification.unacknowledged.level))
    if notification.escalated_from is not None:
        return (*parts, notification.severity.value)
    return parts


def headline(notification: AlertNotification) -> str:
    """One short line a manager can read at a glance, e.g.
    ``[CRITICAL] Rework above 8% — Dr Li (escalated from warning)``."""
    who = f"{notification.rule_name} — {notification.subject.name}"
    if notification.state is AlertState.RESOLVED:
        return f"[RESOLVED] {who}"
    line = f"[{notification.severity.value.upper()}] {who}"
    if notification.escalated_from is not None:
        line += f" (escalated from {notification.escalated_from.value})"
    return line


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
        # An escalation's fired_at is when it escalated; when the episode first fired is the
        # inbox's to know (it keeps it from the first firing).
        escalated = alert.escalated_from is not None
        return AlertNotification.model_validate(
            {
                **common,
                "state": AlertState.FIRING,
                "kind": alert.kind,
                "fired_at": None if escalated else alert.fired_at,
                "escalated_from": alert.escalated_from,
                "escalated_at": alert.fired_at if escalated else None,
                "history": alert.history,
                "labels": alert.labels,
            }
        )
    return AlertNotification.model_validate(
        {**common, "state": AlertState.RESOLVED, "resolved_at": alert.resolved_at}
    )
