"""The web console in a real browser: a manager signs in through the identity provider's
page, sees an alert about one of their people arrive live, acknowledges it, and the API
records it; another team's alert never shows. (The inbox's screenshots in docs/console/ are
taken by test_console_inbox.py, with more on the page.)"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from goalwatch.dev.stack import Stack

# The browser fixtures, used by name.
from tests.integration.browser import DESKTOP as DESKTOP
from tests.integration.browser import PHONE as PHONE
from tests.integration.browser import SCREENSHOTS as SCREENSHOTS
from tests.integration.browser import WAIT_MS as WAIT_MS
from tests.integration.browser import browser as browser
from tests.integration.browser import chromium as chromium
from tests.integration.browser import page as page
from tests.integration.browser import playwright as playwright
from tests.integration.browser import sign_in as sign_in_at
from tests.integration.helpers import post_events, rework_event, unique

# Room for the first test to install Chromium with apt-get (tests/integration/browser.py).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

expect.set_options(timeout=WAIT_MS)


@dataclass(frozen=True)
class Teams:
    """Two departments: the manager's own (with their report) and another one."""

    manager: str
    report: str
    second_report: str
    third_report: str
    hrbp: str
    """The HR business partner of the manager's department (not of the other)."""
    other_head: str
    other_report: str
    second_other_report: str


@pytest.fixture(scope="module")
def teams(stack: Stack) -> Teams:
    roles = ("mgr", "emp", "emp2", "emp3", "hrbp", "boss", "peer", "peer2", "co", "d1", "d2")
    ids = {role: unique(role) for role in roles}
    goals = stack.settings.url("goals")
    units = [
        {"id": ids["co"], "name": "Hospital", "kind": "company"},
        {"id": ids["d1"], "name": "Radiology", "kind": "department", "parent_id": ids["co"],
         "head_id": ids["mgr"], "hrbp_id": ids["hrbp"]},
        {"id": ids["d2"], "name": "Cardiology", "kind": "department", "parent_id": ids["co"],
         "head_id": ids["boss"]},
    ]  # fmt: skip
    people: list[dict[str, Any]] = [
        {"id": ids["mgr"], "name": "Dr. Gao Yan", "org_unit_id": ids["d1"], "language": "en"},
        {"id": ids["emp"], "name": "Dr. Zhou Min", "org_unit_id": ids["d1"],
         "manager_id": ids["mgr"], "language": "zh"},
        {"id": ids["emp2"], "name": "Dr. Wu Lan", "org_unit_id": ids["d1"],
         "manager_id": ids["mgr"], "language": "zh"},
        {"id": ids["emp3"], "name": "Dr. He Jun", "org_unit_id": ids["d1"],
         "manager_id": ids["mgr"]},
        {"id": ids["hrbp"], "name": "Ms. Lin Xue", "org_unit_id": ids["co"], "language": "en"},
        {"id": ids["boss"], "name": "Dr. Qian Hui", "org_unit_id": ids["d2"]},
        {"id": ids["peer"], "name": "Dr. Sun Tao", "org_unit_id": ids["d2"],
         "manager_id": ids["boss"]},
        {"id": ids["peer2"], "name": "Dr. Ma Li", "org_unit_id": ids["d2"],
         "manager_id": ids["boss"]},
    ]  # fmt: skip
    with stack.client(timeout=10.0) as http:
        for path, body in (("/v1/org-units", units), ("/v1/people", people)):
            answer = http.post(f"{goals}{path}", json=body)
            assert answer.status_code == 200, answer.text
    return Teams(
        manager=ids["mgr"],
        report=ids["emp"],
        second_report=ids["emp2"],
        third_report=ids["emp3"],
        hrbp=ids["hrbp"],
        other_head=ids["boss"],
        other_report=ids["peer"],
        second_other_report=ids["peer2"],
    )


def sign_in(page: Page, stack: Stack, person: str) -> None:
    """Open the console and sign in as ``person``; returns once the inbox is live."""
    sign_in_at(page, stack, person)
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")


def alert_in_api(stack: Stack, subject: str) -> dict[str, Any]:
    """The newest inbox entry about ``subject``, once the notifier holds it."""
    notifier = stack.settings.url("notifier")
    deadline = time.monotonic() + WAIT_MS / 1000
    with stack.client(timeout=10.0) as http:
        while time.monotonic() < deadline:
            found = http.get(f"{notifier}/v1/alerts", params={"recipient": subject}).json()
            if found["alerts"]:
                return dict(found["alerts"][0])
            time.sleep(0.1)
    raise AssertionError(f"no alert about {subject} reached the inbox in {WAIT_MS / 1000:g} s")


def bad_days(subject: str) -> list[dict[str, Any]]:
    """Three days of report rework above 8%: the shipped rule fires."""
    return [rework_event(subject, day, 0.12 + day / 100) for day in (1, 2, 3)]


def test_a_manager_sees_an_alert_arrive_live_and_acknowledges_it(
    stack: Stack, teams: Teams, page: Page
) -> None:
    sign_in(page, stack, teams.manager)
    expect(page.get_by_test_id("person")).to_have_text("Dr. Gao Yan")
    expect(page.locator("h1")).to_have_text("Inbox")  # the manager's language: English
    expect(page.get_by_test_id("empty")).to_be_visible()

    with stack.client(timeout=10.0) as http:
        # The other team's alert first, all the way into the inbox: had the page been
        # allowed to see it, it would have arrived before the manager's own.
        post_events(http, stack.settings.url("ingestion"), bad_days(teams.other_report))
        alert_in_api(stack, teams.other_report)
        post_events(http, stack.settings.url("ingestion"), bad_days(teams.report))

    card = page.locator(f"[data-testid=alert][data-subject='{teams.report}']")
    expect(card).to_be_visible()
    expect(card).to_have_attribute("data-state", "firing")
    expect(card.locator(".message")).to_contain_text("Dr. Zhou Min")
    expect(page.get_by_test_id("alert")).to_have_count(1)

    card.get_by_test_id("ack").click()
    expect(card).to_have_attribute("data-acked-by", teams.manager)
    expect(card.get_by_test_id("ack")).to_have_count(0)
    expect(card.get_by_test_id("acked")).to_contain_text("Acknowledged by you")

    alert_id = card.get_attribute("data-alert-id")
    with stack.client(user=teams.manager, timeout=10.0) as http:
        recorded = http.get(f"{stack.settings.url('notifier')}/v1/alerts/{alert_id}").json()
    assert recorded["acked_by"] == teams.manager
    assert [entry["what"] for entry in recorded["timeline"]][-1] == "acknowledged"

    # Read afresh from the API, not the stream: still theirs only, and acknowledged.
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    expect(card).to_have_attribute("data-acked-by", teams.manager)
    expect(page.locator(f"[data-subject='{teams.other_report}']")).to_have_count(0)
    expect(page.get_by_test_id("alert")).to_have_count(1)

    page.set_viewport_size(PHONE)
    expect(card.get_by_test_id("acked")).to_be_in_viewport()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the inbox is {width} px wide on a {PHONE['width']} px phone"


def test_an_employee_reads_their_alert_in_their_language_and_filters(
    stack: Stack, teams: Teams, page: Page
) -> None:
    # An alert that fired before the page opened: read from the list, not the stream.
    with stack.client(timeout=10.0) as http:
        post_events(http, stack.settings.url("ingestion"), bad_days(teams.second_report))
    alert_in_api(stack, teams.second_report)
    sign_in(page, stack, teams.second_report)
    # In Chinese, their record's language, though the browser asks for English.
    expect(page.locator("h1")).to_have_text("收件箱")
    expect(page.get_by_test_id("filters")).to_contain_text("类型")  # the inbox's own strings
    card = page.locator(f"[data-testid=alert][data-subject='{teams.second_report}']")
    expect(card).to_be_visible()
    # Their own alert only: not their colleague's (the first test's, if it ran).
    expect(page.get_by_test_id("alert")).to_have_count(1)
    page.get_by_test_id("filter-severity").select_option("critical")
    expect(page.get_by_test_id("empty")).to_be_visible()
    page.get_by_test_id("filter-severity").select_option("warning")
    expect(card).to_be_visible()
    page.get_by_test_id("filter-state").select_option("resolved")
    expect(card).to_have_count(0)
    page.get_by_test_id("filter-state").select_option("firing")
    expect(card).to_be_visible()

    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("sign-in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert page.context.cookies() == []


def test_an_hrbp_sees_the_alerts_of_their_units_and_no_others(
    stack: Stack, teams: Teams, page: Page
) -> None:
    with stack.client(timeout=10.0) as http:
        for subject in (teams.third_report, teams.second_other_report):
            post_events(http, stack.settings.url("ingestion"), bad_days(subject))
    for subject in (teams.third_report, teams.second_other_report):
        alert_in_api(stack, subject)
    sign_in(page, stack, teams.hrbp)
    expect(page.locator(f"[data-subject='{teams.third_report}']")).to_be_visible()
    for elsewhere in (teams.other_report, teams.second_other_report):
        expect(page.locator(f"[data-subject='{elsewhere}']")).to_have_count(0)
    # Not addressed to the HRBP: the rule tells the subject and their manager.
    page.get_by_test_id("filter-mine").check()
    expect(page.get_by_test_id("empty")).to_be_visible()


def test_the_console_is_served_with_its_configuration(stack: Stack) -> None:
    console = stack.settings.url("console")
    config = httpx.get(f"{console}/config.json", timeout=10.0).json()
    assert config["issuer"] == stack.settings.idp_url
    assert config["services"]["notifier"] == stack.settings.url("notifier")
    preflight = httpx.options(
        f"{stack.settings.url('notifier')}/v1/alerts",
        headers={
            "Origin": console,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
        timeout=10.0,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == console
