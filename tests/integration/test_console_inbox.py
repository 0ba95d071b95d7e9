"""The full inbox in a real browser: a manager reads an alert's metric history as a chart and a
dependency alert's impact list (both as the API has them), who else was told (as the
delivery log has it), names rather than ids; filters by kind and rule, groups, comments (the
comment reaches the API) and is told why they cannot silence; an HR admin silences an alert
(the silence reaches the API). Screenshots of the inbox go to docs/console/."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from goalwatch.dev.stack import Stack

# The browser fixtures and the console's helpers, used by name.
from tests.integration.browser import browser as browser
from tests.integration.browser import chromium as chromium
from tests.integration.browser import playwright as playwright
from tests.integration.helpers import post_events, rework_event, unique
from tests.integration.test_console import (
    PHONE,
    SCREENSHOTS,
    WAIT_MS,
    bad_days,
    sign_in,
)
from tests.integration.test_console import page as page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

RULE = "report-rework-rate-high"
IMPACT_RULE = "goal-failing-impact"


@dataclass(frozen=True)
class Ward:
    """A department: its head (a manager), two doctors, and a key result one doctor owns
    that the other's objective rests on."""

    unit: str
    manager: str
    doctor: str
    colleague: str
    key_result: str
    objective: str
    threshold_alert: dict[str, Any]
    impact_alert: dict[str, Any]


def _await(stack: Stack, found: Callable[[], dict[str, Any] | None], what: str) -> dict[str, Any]:
    """``found()``'s answer once it has one (the pipeline's own pace, bounded by WAIT_MS)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        answer = found()
        if answer is not None:
            return answer
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {WAIT_MS / 1000:g} s")


def _alert(stack: Stack, subject: str, rule: str) -> dict[str, Any]:
    """The inbox entry about ``subject`` of ``rule``, with its deliveries, once the notifier
    has delivered it on the webhook."""
    notifier = stack.settings.url("notifier")

    def found() -> dict[str, Any] | None:
        with stack.client(timeout=10.0) as http:
            listed = http.get(
                f"{notifier}/v1/alerts", params={"recipient": subject, "rule": rule}
            ).json()["alerts"]
            if not listed:
                return None
            entry: dict[str, Any] = http.get(f"{notifier}/v1/alerts/{listed[0]['id']}").json()
            return entry if entry["deliveries"] else None

    return _await(stack, found, f"an alert of {rule} about {subject}, delivered")


@pytest.fixture(scope="module")
def ward(stack: Stack) -> Ward:
    ids = {role: unique(role) for role in ("co", "unit", "mgr", "doc", "col", "kr", "obj")}
    goals = stack.settings.url("goals")
    units = [
        {"id": ids["co"], "name": "Riverside Hospital", "kind": "company"},
        {"id": ids["unit"], "name": "Night Radiology", "kind": "department",
         "parent_id": ids["co"], "head_id": ids["mgr"]},
    ]  # fmt: skip
    people = [
        {"id": ids["mgr"], "name": "Dr. Fang Qing", "org_unit_id": ids["unit"], "language": "en"},
        {"id": ids["doc"], "name": "Dr. Luo Bin", "org_unit_id": ids["unit"],
         "manager_id": ids["mgr"], "language": "en"},
        {"id": ids["col"], "name": "Dr. Shen Yu", "org_unit_id": ids["unit"],
         "manager_id": ids["mgr"], "language": "en"},
    ]  # fmt: skip
    goal_list = [
        {"id": ids["obj"], "title": "Read every night scan within 2 hours", "type": "objective",
         "owner_id": ids["doc"]},
        {"id": ids["kr"], "title": "New reading-room software live", "type": "key_result",
         "owner_id": ids["col"], "contributes_to": [{"goal_id": ids["obj"]}]},
    ]  # fmt: skip
    with stack.client(timeout=10.0) as http:
        for path, body in (
            ("/v1/org-units", units),
            ("/v1/people", people),
            ("/v1/goals", goal_list),
        ):
            answer = http.post(f"{goals}{path}", json=body)
            assert answer.status_code in (200, 201), answer.text
        # A good day before the three bad ones: in the metric's history, not behind the alert.
        before = [rework_event(ids["doc"], -2, 0.03)]
        post_events(http, stack.settings.url("ingestion"), before + bad_days(ids["doc"]))
        checked = http.post(
            f"{goals}/v1/goals/{ids['kr']}/check-ins", json={"status": "invalid", "by": ids["col"]}
        )
        assert checked.status_code in (200, 201), checked.text
    return Ward(
        unit=ids["unit"],
        manager=ids["mgr"],
        doctor=ids["doc"],
        colleague=ids["col"],
        key_result=ids["kr"],
        objective=ids["obj"],
        threshold_alert=_alert(stack, ids["doc"], RULE),
        impact_alert=_alert(stack, ids["doc"], IMPACT_RULE),
    )


def card(page: Page, alert: dict[str, Any]) -> Any:
    return page.locator(f"[data-testid=alert][data-alert-id='{alert['id']}']")


def test_a_manager_reads_history_impact_and_who_was_told_by_name_and_comments(
    stack: Stack, ward: Ward, page: Page
) -> None:
    sign_in(page, stack, ward.manager)
    threshold, impact = card(page, ward.threshold_alert), card(page, ward.impact_alert)
    expect(threshold).to_be_visible()
    expect(impact).to_be_visible()

    # The metric's history: the points Chart.js draws are ingestion's answer for the month
    # before the alert, the alert's own three among them.
    alert = ward.threshold_alert
    first = min([p["time"] for p in alert["history"]] + [alert["started_at"]])
    since = datetime.fromisoformat(first) - timedelta(days=30)
    with stack.client(user=ward.manager, timeout=10.0) as http:
        answer = http.get(
            f"{stack.settings.url('ingestion')}/v1/metrics/{alert['metric']}/history/{ward.doctor}",
            params={"since": since.isoformat()},
        )
    assert answer.status_code == 200, answer.text
    values = [p["value"] for p in answer.json()["points"]]
    assert values == pytest.approx([0.03, 0.13, 0.14, 0.15])
    assert len(alert["history"]) == 3
    chart = threshold.get_by_test_id("history-chart")
    expect(chart).to_have_attribute("data-source", "metric")
    # JSON in both languages writes a float's shortest exact form: the same text.
    drawn = json.dumps(values, separators=(",", ":"))
    expect(chart.locator("canvas")).to_have_attribute("data-drawn", drawn)

    # The impact list: the goals the API says rest on the failing key result.
    affected = {goal["goal_id"] for goal in ward.impact_alert["impact"]["affected"]}
    assert affected == {ward.objective}
    rows = impact.get_by_test_id("impact-goal")
    expect(rows).to_have_count(len(affected))
    assert {rows.nth(i).get_attribute("data-goal-id") for i in range(rows.count())} == affected
    expect(impact.get_by_test_id("impact")).to_contain_text("New reading-room software live")
    expect(rows.first).to_contain_text("Read every night scan within 2 hours")
    expect(impact.get_by_test_id("history-chart")).to_have_count(0)

    # Names, not ids.
    expect(threshold.get_by_test_id("subject-name")).to_have_text("About Dr. Luo Bin")
    expect(threshold.get_by_test_id("told")).to_contain_text("Dr. Luo Bin")
    expect(threshold).not_to_contain_text(ward.doctor)
    expect(threshold).to_contain_text("Night Radiology")

    # Who else was told: the delivery log's recipients, channel by channel.
    threshold.get_by_test_id("deliveries-toggle").click()
    logged = {
        (d["channel"], " ".join(r["id"] for r in d["recipients"]), d["status"])
        for d in ward.threshold_alert["deliveries"]
    }
    shown = threshold.get_by_test_id("delivery")
    expect(shown).to_have_count(len(ward.threshold_alert["deliveries"]))
    assert {
        (
            shown.nth(i).get_attribute("data-channel"),
            shown.nth(i).get_attribute("data-recipients"),
            shown.nth(i).get_attribute("data-status"),
        )
        for i in range(shown.count())
    } == logged
    told = {r["name"] for d in ward.threshold_alert["deliveries"] for r in d["recipients"]}
    assert told == {"Dr. Luo Bin", "Dr. Fang Qing"}
    for name in told:
        expect(threshold.get_by_test_id("deliveries")).to_contain_text(name)

    # Filters: by kind, then by rule, narrow the list to one alert each.
    page.get_by_test_id("filter-kind").select_option("dependency_impact")
    expect(page.get_by_test_id("alert")).to_have_count(1)
    expect(impact).to_be_visible()
    page.get_by_test_id("filter-kind").select_option("")
    expect(page.get_by_test_id("alert")).to_have_count(2)
    page.get_by_test_id("filter-rule").select_option(RULE)
    expect(page.get_by_test_id("alert")).to_have_count(1)
    expect(threshold).to_be_visible()
    page.get_by_test_id("filter-rule").select_option("")
    page.get_by_test_id("filter-org-unit").select_option(label="Night Radiology")
    page.get_by_test_id("filter-since").select_option("1d")
    expect(page.get_by_test_id("alert")).to_have_count(2)

    # Grouped as notifications group them: by person, one group of two.
    page.get_by_test_id("group-by").select_option("subject")
    group = page.get_by_test_id("group")
    expect(group).to_have_count(1)
    expect(group).to_have_attribute("data-count", "2")
    expect(group.get_by_test_id("group-count")).to_have_text("2 alerts, 2 firing")
    group.locator("summary").click()  # collapsed
    expect(threshold).to_be_hidden()
    group.locator("summary").click()
    expect(threshold).to_be_visible()

    # A comment, posted in the page, reaches the API.
    threshold.get_by_test_id("comment").click()
    threshold.get_by_test_id("comment-text").fill("Spoke to Dr. Luo: two scanners were down.")
    threshold.get_by_test_id("comment-send").click()
    expect(threshold.get_by_test_id("comment-item")).to_contain_text("two scanners were down")
    with stack.client(user=ward.manager, timeout=10.0) as http:
        comments = http.get(
            f"{stack.settings.url('notifier')}/v1/alerts/{ward.threshold_alert['id']}/comments"
        ).json()
    assert [(c["by"], c["name"], c["text"]) for c in comments] == [
        (ward.manager, "Dr. Fang Qing", "Spoke to Dr. Luo: two scanners were down.")
    ]

    # A manager may not silence: the page says why.
    threshold.get_by_test_id("silence").click()
    expect(threshold.get_by_test_id("silence-not-allowed")).to_contain_text("HR administrators")
    threshold.get_by_test_id("silence").click()

    page.get_by_test_id("group-by").select_option("")
    threshold.get_by_test_id("ack").click()
    expect(threshold.get_by_test_id("acked")).to_contain_text("Acknowledged by you")
    threshold.get_by_test_id("deliveries-toggle").click()
    expect(threshold.get_by_test_id("delivery")).to_have_count(len(logged))
    page.screenshot(path=SCREENSHOTS / "inbox-desktop.png", full_page=True)

    # On a phone the filters fold away above the alerts, and nothing is wider than it.
    page.set_viewport_size({"width": PHONE["width"], "height": PHONE["height"]})
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("filter-kind")).to_be_hidden()
    expect(threshold.get_by_test_id("history-chart")).to_have_attribute("data-source", "metric")
    expect(threshold.get_by_test_id("history-chart").locator("canvas")).to_have_attribute(
        "data-drawn", re.compile(".")
    )
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the inbox is {width} px wide on a {PHONE['width']} px phone"
    page.screenshot(path=SCREENSHOTS / "inbox-phone.png")


def test_the_subject_reads_who_acknowledged_by_name(stack: Stack, ward: Ward, page: Page) -> None:
    notifier = stack.settings.url("notifier")
    with stack.client(user=ward.manager, timeout=10.0) as http:
        http.post(f"{notifier}/v1/alerts/{ward.impact_alert['id']}/ack", json={})
    sign_in(page, stack, ward.doctor)
    impact = card(page, ward.impact_alert)
    expect(impact.get_by_test_id("acked")).to_contain_text("Acknowledged by Dr. Fang Qing")
    expect(impact).not_to_contain_text(ward.manager)


def test_an_hr_admin_silences_an_alert_in_the_page(stack: Stack, ward: Ward, page: Page) -> None:
    sign_in(page, stack, "wang-fang")
    page.get_by_test_id("filter-org-unit").select_option(ward.unit)
    threshold = card(page, ward.threshold_alert)
    expect(threshold).to_be_visible()
    threshold.get_by_test_id("silence").click()
    threshold.get_by_test_id("silence-hours").select_option("8")
    threshold.get_by_test_id("silence-why").fill("scanner outage, being fixed")
    threshold.get_by_test_id("silence-send").click()
    expect(threshold.get_by_test_id("silenced")).to_be_visible()

    with stack.client(user="wang-fang", timeout=10.0) as http:
        silences = http.get(f"{stack.settings.url('notifier')}/v1/silences").json()
    (made,) = [s for s in silences if s["comment"] == "scanner outage, being fixed"]
    assert made["matchers"] == [
        {"name": "fingerprint", "op": "=", "value": ward.threshold_alert["fingerprint"]}
    ]
    assert made["state"] == "active" and made["created_by"] == "wang-fang"
    lasts = datetime.fromisoformat(made["ends_at"]) - datetime.fromisoformat(made["starts_at"])
    assert lasts.total_seconds() / 3600 == pytest.approx(8, abs=0.1)
