"""Notifications of every alert kind and transition, for the e-mail channel's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from goalwatch.contracts import AlertNotification

T0 = datetime(2026, 11, 3, 18, 0, tzinfo=UTC)

MANAGER = {
    "id": "head-wang",
    "name": "Wang Fang",
    "email": "wang.fang@example.org",
    "role": "manager",
}
DOCTOR = {"id": "doctor-li", "name": "Dr Li Wei", "email": None, "role": "subject"}


def _affected(i: int) -> dict[str, Any]:
    return {
        "goal_id": f"goal-{i}",
        "title": f"Department goal {i}",
        "type": "key_result",
        "status": "on_track",
        "owner_id": "head-wang",
        "owner_name": "Wang Fang",
        "depth": 1 + i % 3,
        "path": [
            {
                "from_goal": "kr-imaging",
                "to_goal": f"goal-{i}",
                "link": "contributes_to",
                "share": 0.5,
            }
        ],
        "weight": 0.5,
    }


def notification(kind: str, *, transition: str = "firing", **changes: Any) -> AlertNotification:
    """A notification of ``kind`` (threshold, overdue, fraud, dependency_impact) at
    ``transition`` (firing, escalation, resolved)."""
    doc: dict[str, Any] = {
        "state": "firing",
        "fingerprint": f"fp-{kind}",
        "rule_id": f"{kind}-rule",
        "rule_name": f"A {kind} rule",
        "kind": kind,
        "severity": "warning",
        "subject": {"id": "doctor-li", "name": "Dr Li Wei"},
        "metric": "report_rework_rate",
        "value": 0.12,
        "message": "Dr Li Wei: report rework rate 12% is above 8% for 3 consecutive days",
        "started_at": T0 - timedelta(days=2),
        "fired_at": T0,
        "recipients": [MANAGER, DOCTOR],
    }
    if kind == "threshold":
        doc["history"] = [
            {"event_id": f"e{d}", "time": T0 - timedelta(days=2 - d), "value": v}
            for d, v in enumerate((0.09, 0.11, 0.12))
        ]
    if kind == "overdue":
        doc["goal"] = {
            "form": "behind_plan",
            "goal_id": "kr-imaging",
            "title": "Imaging reports within 24 h",
            "type": "key_result",
            "owner_id": "doctor-li",
            "status": "at_risk",
            "due": T0 + timedelta(days=20),
            "progress": 30.0,
            "expected_progress": 55.5,
            "cadence": "weekly",
            "last_check_in_at": T0 - timedelta(days=9),
            "version": 4,
        }
    if kind == "dependency_impact":
        doc["impact"] = {
            "failing_goal": {
                "goal_id": "kr-imaging",
                "title": "Imaging reports within 24 h",
                "type": "key_result",
                "owner_id": "doctor-li",
                "status": "off_track",
                "previous_status": "on_track",
                "changed_at": T0,
                "version": 5,
            },
            "affected": [_affected(i) for i in range(60)],
            "affected_total": 75,
            "owners_total": 3,
        }
    if transition == "escalation":
        doc.update(
            severity="critical",
            escalated_from="warning",
            escalated_at=T0 + timedelta(hours=6),
            fired_at=T0,
        )
    if transition == "resolved":
        doc.update(
            state="resolved",
            resolved_at=T0 + timedelta(days=1),
            history=[],
            value=0.05,
            message="Dr Li Wei: report rework rate back to 5%, within 8%",
        )
    doc.update(changes)
    return AlertNotification.model_validate(doc)
