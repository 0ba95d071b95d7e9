"""A rule that tells the manager's manager, the unit head and the HRBP: resolved from the org
chart in the goals service and delivered, through the running services."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookReceiver
from tests.integration.helpers import await_drained, post_events, unique

pytestmark = pytest.mark.integration

RULE = """\
id: {rule_id}
name: Call bells unanswered on a ward
kind: threshold
metric: ward_call_bells
condition: {{op: ">=", value: 5}}
severity: warning
notify: [subject, manager: 2, unit_head, hrbp]
message: "{{subject_name}}: {{value:g}} call bells unanswered"
"""


def test_the_org_chart_names_who_is_told(stack: Stack, webhook: WebhookReceiver) -> None:
    goals, evaluator = stack.settings.url("goals"), stack.settings.url("evaluator")
    ward = unique("ward")
    nurse, sister, matron, hrbp = (unique(who) for who in ("nurse", "sister", "matron", "hr"))
    nursing, hospital = unique("nursing"), unique("hospital")
    with stack.client(timeout=10.0) as client:
        people = [
            {"id": matron, "name": "Matron Lin", "org_unit_id": nursing},
            {"id": hrbp, "name": "HR He"},
            {"id": sister, "name": "Sister Gao", "manager_id": matron, "org_unit_id": ward},
            {"id": nurse, "name": "Nurse Xu", "manager_id": sister, "org_unit_id": ward},
        ]
        units = [
            {"id": hospital, "name": "Riverside", "kind": "company"},
            {"id": nursing, "name": "Nursing", "kind": "department", "parent_id": hospital,
             "head_id": matron, "hrbp_id": hrbp},
            {"id": ward, "name": "Ward 3", "kind": "team", "parent_id": nursing,
             "head_id": sister},
        ]  # fmt: skip
        # People first (a unit's head must exist), then the units, then who is in which.
        bare = [{k: v for k, v in person.items() if k != "org_unit_id"} for person in people]
        assert client.post(f"{goals}/v1/people", json=bare).status_code == 200
        answer = client.post(f"{goals}/v1/org-units", json=units)
        assert answer.status_code == 200, answer.text
        assert client.post(f"{goals}/v1/people", json=people).status_code == 200
        rule_id = unique("bells").lower()
        created = client.post(
            f"{evaluator}/v1/rules",
            json={"source": RULE.format(rule_id=rule_id), "comment": "test"},
        )
        assert created.status_code == 201, created.text
        event = {
            "id": unique("bells"),
            "metric": "ward_call_bells",
            "value": 7,
            "time": datetime.now(UTC).isoformat(),
            "subject": nurse,
            "source": "his",
        }
        post_events(client, stack.settings.url("ingestion"), [event])
        await_drained(stack.settings.nats_url)
    [call] = webhook.about(nurse)
    told = [(r["id"], r["role"]) for r in call.json["recipients"]]
    assert told == [
        (nurse, "subject"),
        (matron, "manager"),  # the manager's manager
        (sister, "unit_head"),
        (hrbp, "hrbp"),  # the department's: the ward has none
    ]
