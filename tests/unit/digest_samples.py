"""Digests (several alerts in one message) for the channels' tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from goalwatch.contracts import AlertDigest, AlertNotification, AlertState, Recipient, Severity
from goalwatch.contracts.notifications import SubjectRef

START = datetime(2026, 11, 18, 9, 30, tzinfo=UTC)
PREVIOUS = START + timedelta(hours=25)
RULE = ("report-rework-rate-high", "Report rework rate above 8%")
OTHER_RULE = ("feedback-score-low", "Feedback score below 4.5")
HEAD = Recipient(id="head-wang", name="Wang Fang", email="wang.fang@example.org", role="manager")
HR = Recipient(id="hrbp-zhao", name="Zhao Min", email="zhao.min@example.org", role="hrbp")


def alert(
    name: str,
    *,
    severity: str = "warning",
    state: str = "firing",
    hours: float = 0,
    value: float = 0.11,
    rule: tuple[str, str] = RULE,
    **changes: Any,
) -> AlertNotification:
    """An alert about ``name`` that started ``hours`` after START and fired a minute later;
    resolved alerts resolved two days after they started."""
    subject_id = name.lower().replace(" ", "-")
    started = START + timedelta(hours=hours)
    fields: dict[str, Any] = {
        "state": state,
        "fingerprint": f"fp-{rule[0]}-{subject_id}",
        "rule_id": rule[0],
        "rule_name": rule[1],
        "kind": "threshold",
        "severity": severity,
        "subject": SubjectRef(id=subject_id, name=name),
        "metric": "report_rework_rate",
        "value": value,
        "message": f"{name}: report rework rate {value:.0%} is above 8% for 3 consecutive days",
        "started_at": started,
        "fired_at": started + timedelta(minutes=1),
        "recipients": [HEAD],
        "labels": {"department": "cardiology"},
    }
    if state == AlertState.RESOLVED:
        fields["resolved_at"] = started + timedelta(days=2)
        fields["message"] = f"{name}: report rework rate back to {value:.0%}, within 8%"
    return AlertNotification(**{**fields, **changes})


def digest(alerts: list[AlertNotification] | None = None, **changes: Any) -> AlertDigest:
    """A digest of ``alerts`` (by default three firing, one of them critical, and one
    resolved), grouped by rule and department, sent after a previous message at PREVIOUS:
    Dr Li Na (fired after it) and Dr Chen (resolved after it) are new."""
    if alerts is None:
        alerts = [
            alert("Dr Wang Hui", hours=20),
            alert("Dr Li Na", severity=Severity.CRITICAL, hours=30, value=0.14),
            alert("Dr Zhao Lei", hours=5),
            alert("Dr Chen Jie", state="resolved", value=0.05),
        ]
    fields: dict[str, Any] = {
        "id": "cardiology-rework:7",
        "reason": "group",
        "receiver": "cardiology-heads",
        "group_labels": {"rule": RULE[0], "department": "cardiology"},
        "alerts": alerts,
        "recipients": [HEAD, HR],
        "previous_at": PREVIOUS,
        "created_at": START + timedelta(days=3),
        "idempotency_key": "0123456789abcdef0123456789abcdef",
    }
    return AlertDigest(**{**fields, **changes})


def many(count: int, *, name: str = "Doctor", resolved: int = 0) -> AlertDigest:
    """A digest of ``count`` firing alerts and ``resolved`` resolved ones about people called
    ``name`` and a number."""
    firing = [alert(f"{name} {i:03d}", hours=i) for i in range(count)]
    over = [alert(f"{name} r{i:03d}", state="resolved", hours=i) for i in range(resolved)]
    return digest([*firing, *over], reason="rate_limit")
