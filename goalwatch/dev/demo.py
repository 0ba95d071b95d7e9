"""Demo data loaded by ``goalwatch up``: a small company, its goal tree, three days of
rework rates and a burst of visit records.

It is loaded only into an empty store: if goals already holds people, org units or goals
(the demo's from an earlier run, or anything a user stored, under whatever id), nothing is
posted, so a user's ``chen-jie`` never becomes the demo's. Event ids are derived from the date,
so the events of a day are stored once.

The company: two departments (radiology, supply chain) with a team each, a dozen people, a
three-level goal tree (company objective → department objectives → key results), one
cross-team dependency (radiology's reporting key result depends on supply chain's store
expansion), that store expansion checked in on for five weeks and then marked invalid (the
goal-dependency impact alert and the console's impact view), and one key result due a
minute after the demo is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

ORG_UNITS: list[dict[str, Any]] = [
    {"id": "acme", "name": "Acme Health", "kind": "company", "head_id": "qian-yu",
     "hrbp_id": "sun-li"},
    {"id": "radiology", "name": "Radiology", "kind": "department", "parent_id": "acme",
     "head_id": "zhang-wei", "hrbp_id": "sun-li"},
    {"id": "radiology-reading", "name": "Reading room", "kind": "team",
     "parent_id": "radiology", "head_id": "li-na", "hrbp_id": "sun-li"},
    {"id": "supply-chain", "name": "Supply chain", "kind": "department", "parent_id": "acme",
     "head_id": "zhao-min", "hrbp_id": "sun-li"},
    {"id": "supply-stores", "name": "Store expansion", "kind": "team",
     "parent_id": "supply-chain", "head_id": "zhou-tao", "hrbp_id": "sun-li"},
]  # fmt: skip


def _person(pid: str, name: str, manager: str | None, unit: str, **extra: Any) -> dict[str, Any]:
    email = f"{pid.replace('-', '.')}@example.org"
    return {"id": pid, "name": name, "email": email, "manager_id": manager, "org_unit_id": unit,
            "department": unit.split("-")[0], "channels": ["inbox", "email"], **extra}  # fmt: skip


PEOPLE: list[dict[str, Any]] = [
    _person("qian-yu", "Qian Yu (CEO)", None, "acme"),
    _person("sun-li", "Sun Li (HRBP)", "qian-yu", "acme"),
    _person("wang-fang", "Wang Fang (HR admin)", "qian-yu", "acme"),
    _person("zhang-wei", "Dr. Zhang Wei", "qian-yu", "radiology", department="radiology"),
    _person("li-na", "Dr. Li Na", "zhang-wei", "radiology-reading", department="radiology"),
    _person("chen-jie", "Dr. Chen Jie", "zhang-wei", "radiology-reading", department="radiology"),
    _person("liu-yang", "Dr. Liu Yang", "li-na", "radiology-reading", department="radiology"),
    _person("huang-lei", "Huang Lei", "li-na", "radiology-reading", department="radiology"),
    _person("zhao-min", "Zhao Min", "qian-yu", "supply-chain", language="en"),
    _person("zhou-tao", "Zhou Tao", "zhao-min", "supply-stores"),
    _person("wu-hao", "Wu Hao", "zhou-tao", "supply-stores"),
    _person("xu-jing", "Xu Jing", "zhou-tao", "supply-stores"),
    _person("ma-lin", "Ma Lin", "zhao-min", "supply-chain", time_zone="Asia/Shanghai"),
]

# Daily report rework rates for the last three days: Li Na breaches 8% every day, Chen Jie never.
RATES = {"li-na": [0.11, 0.09, 0.12], "chen-jie": [0.03, 0.05, 0.04]}


def demo_goals(now: datetime) -> list[dict[str, Any]]:
    """The goal tree, with ``kr-rework-weekly-review`` due a minute after ``now``."""
    year_end = datetime(now.year, 12, 31, 23, 59, tzinfo=UTC).isoformat()
    period = str(now.year)

    def goal(
        gid: str, title: str, kind: str, owner: str, org_unit: str, **extra: Any
    ) -> dict[str, Any]:
        return {"id": gid, "title": title, "type": kind, "owner_id": owner, "org_unit_id": org_unit,
                "period": period, "due": year_end, **extra}  # fmt: skip

    return [
        goal("obj-acme-growth", "Grow safely: better care in more places", "objective",
             "qian-yu", "acme"),
        goal("obj-radiology-quality", "Radiology reports right the first time", "objective",
             "zhang-wei", "radiology", contributes_to=[{"goal_id": "obj-acme-growth", "weight": 1}]),
        goal("obj-supply-expansion", "Supply twenty percent more stores", "objective",
             "zhao-min", "supply-chain",
             contributes_to=[{"goal_id": "obj-acme-growth", "weight": 2}]),
        goal("kr-rework-below-5", "Report rework rate below 5%", "key_result", "li-na",
             "radiology-reading", start_value=12, target_value=5, current_value=9, unit="%",
             contributes_to=[{"goal_id": "obj-radiology-quality", "weight": 3}]),
        goal("kr-rework-weekly-review", "Review every reworked report weekly", "key_result",
             "chen-jie", "radiology-reading", start_value=0, target_value=10, current_value=2,
             unit="reviews", cadence="weekly",
             due=(now + timedelta(minutes=1)).isoformat(),
             contributes_to=[{"goal_id": "obj-radiology-quality", "weight": 1}]),
        goal("kr-store-expansion", "Store expansion 20%", "key_result", "zhou-tao",
             "supply-stores", start_value=0, target_value=20, current_value=6, unit="%",
             contributes_to=[{"goal_id": "obj-supply-expansion", "weight": 1}]),
        # Cross-team: new stores' imaging goes through radiology's reporting.
        goal("kr-new-store-reporting", "Report imaging of every new store within 24 h",
             "key_result", "liu-yang", "radiology-reading", start_value=0, target_value=100,
             current_value=40, unit="%", depends_on=["kr-store-expansion"],
             contributes_to=[{"goal_id": "obj-radiology-quality", "weight": 1}]),
    ]  # fmt: skip


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


def demo_visits(now: datetime) -> list[dict[str, Any]]:
    """A burst of 32 customer visits logged by Wu Hao within a minute, twenty minutes before
    ``now``: ``rules/visit-records-burst.yaml`` fires for his manager, and resolves once 30
    minutes pass without another burst (from a timer, ten minutes after the demo loads)."""
    start = (now - timedelta(minutes=20)).replace(microsecond=0)
    return [
        {
            "id": f"demo-visit-wu-hao-{start:%Y%m%d%H%M}-{n:02d}",
            "metric": "crm.visit_logged",
            "value": 1,
            "time": (start + timedelta(seconds=2 * n)).isoformat(),
            "subject": "wu-hao",
            "source": "demo-crm",
        }
        for n in range(32)
    ]


def demo_check_ins(now: datetime) -> list[tuple[str, dict[str, Any]]]:
    """Check-ins on ``kr-store-expansion`` over the last weeks, the last one marking it
    invalid: ``rules/goal-failing-impact.yaml`` tells the owners of every goal resting on
    it (and their managers), and the console's impact view has something to show."""
    values = [(35, 2.0, "on_track"), (21, 4.0, "on_track"), (7, 6.0, "at_risk")]
    check_ins: list[tuple[str, dict[str, Any]]] = [
        (
            "kr-store-expansion",
            {"id": f"demo-store-{days}d", "value": value, "status": status, "by": "zhou-tao",
             "at": (now - timedelta(days=days)).isoformat()},
        )
        for days, value, status in values
    ]  # fmt: skip
    check_ins.append(
        (
            "kr-store-expansion",
            {"id": "demo-store-paused", "status": "invalid", "by": "zhou-tao",
             "note": "Expansion paused: the leases of two sites fell through.",
             "at": (now - timedelta(minutes=5)).isoformat()},
        )
    )  # fmt: skip
    return check_ins


def store_is_empty(client: httpx.Client, goals_url: str) -> bool:
    """Whether goals holds no people, org units or goals at all."""
    for path in ("/v1/people", "/v1/org-units"):
        response = client.get(f"{goals_url}{path}", params={"limit": 1})
        response.raise_for_status()
        if response.json():
            return False
    response = client.get(f"{goals_url}/v1/goals", params={"limit": 1})
    response.raise_for_status()
    return not response.json()["goals"]


def load_demo(
    *, goals_url: str, ingestion_url: str, headers: Mapping[str, str]
) -> dict[str, Any] | None:
    """Post the demo company and events into an empty store, signed in with ``headers`` (an
    HR admin's and a publisher's token); None if the store was not empty."""
    with httpx.Client(timeout=10.0, headers=dict(headers)) as client:
        if not store_is_empty(client, goals_url):
            return None
        client.post(f"{goals_url}/v1/org-units", json=ORG_UNITS).raise_for_status()
        client.post(f"{goals_url}/v1/people", json=PEOPLE).raise_for_status()
        now = datetime.now(UTC)
        client.post(f"{goals_url}/v1/goals", json=demo_goals(now)).raise_for_status()
        for goal_id, check_in in demo_check_ins(now):
            client.post(
                f"{goals_url}/v1/goals/{goal_id}/check-ins", json=check_in
            ).raise_for_status()
        events = demo_events(now) + demo_visits(now)
        response = client.post(f"{ingestion_url}/v1/events", json=events)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
