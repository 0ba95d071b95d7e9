"""Demo data loaded by ``goalwatch up``: a radiology department and three days of rework rates.

Event ids are derived from the date, so loading the demo twice on the same day changes nothing
(the resends are recognised as duplicates).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

PEOPLE: list[dict[str, Any]] = [
    {"id": "zhang-wei", "name": "Dr. Zhang Wei", "email": "zhang.wei@example.org",
     "department": "radiology"},
    {"id": "li-na", "name": "Dr. Li Na", "email": "li.na@example.org",
     "manager_id": "zhang-wei", "department": "radiology"},
    {"id": "chen-jie", "name": "Dr. Chen Jie", "email": "chen.jie@example.org",
     "manager_id": "zhang-wei", "department": "radiology"},
]  # fmt: skip

# Daily report rework rates for the last three days: Li Na breaches 8% every day, Chen Jie never.
RATES = {"li-na": [0.11, 0.09, 0.12], "chen-jie": [0.03, 0.05, 0.04]}


def demo_events(today: datetime) -> list[dict[str, Any]]:
    """Three days of ``report_rework_rate`` events per demo doctor, ending yesterday."""
    events = []
    for subject, rates in RATES.items():
        for days_ago, rate in zip((3, 2, 1), rates, strict=True):
            day = (today - timedelta(days=days_ago)).replace(
                hour=18, minute=0, second=0, microsecond=0
            )
            events.append(
                {
                    "id": f"demo-{subject}-{day:%Y-%m-%d}",
                    "metric": "report_rework_rate",
                    "value": rate,
                    "time": day.isoformat(),
                    "subject": subject,
                    "source": "demo-his",
                    "labels": {"department": "radiology"},
                }
            )
    return events


def load_demo(*, goals_url: str, ingestion_url: str) -> dict[str, Any]:
    """Post the demo people and events; returns ingestion's answer."""
    with httpx.Client(timeout=10.0) as client:
        client.post(f"{goals_url}/v1/people", json=PEOPLE).raise_for_status()
        response = client.post(f"{ingestion_url}/v1/events", json=demo_events(datetime.now(UTC)))
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
