"""The console's rules page in a real browser: HR writes a rule with a typo, sees the error
under the line it points at with the fix, corrects it, runs its tests, backtests it over
history stored first (the chart's numbers are the API's), publishes it with a comment, and
the evaluator fires it; then changes it, reads the diff and rolls back. A person without
hr_admin gets no rules page. Screenshots go to docs/console/."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from goalwatch.dev.stack import Stack

# The browser fixtures, used by name.
from tests.integration.browser import DESKTOP, PHONE, SCREENSHOTS, WAIT_MS, sign_in
from tests.integration.browser import browser as browser
from tests.integration.browser import chromium as chromium
from tests.integration.browser import page as page
from tests.integration.browser import playwright as playwright
from tests.integration.helpers import await_drained, post_events, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


HR_ADMIN = "wang-fang"
"""The stack's HR admin (goalwatch/dev/idp_users.yaml: roles [hr_admin])."""

expect.set_options(timeout=WAIT_MS)


@dataclass(frozen=True)
class Ward:
    """A department of its own (its label keeps other tests' events out of the backtest),
    its head, and three doctors."""

    department: str
    head: str
    doctors: tuple[str, str, str]


@pytest.fixture(scope="module")
def ward(stack: Stack) -> Ward:
    head, company, unit = unique("rhead"), unique("rco"), unique("runit")
    doctors = (unique("rdoc"), unique("rdoc"), unique("rdoc"))
    units = [
        {"id": company, "name": "Clinic", "kind": "company"},
        {"id": unit, "name": "Pathology", "kind": "department", "parent_id": company,
         "head_id": head},
    ]  # fmt: skip
    people: list[dict[str, Any]] = [
        {"id": head, "name": "Dr. Feng Bo", "org_unit_id": unit},
        *(
            {"id": doctor, "name": f"Dr. {name}", "org_unit_id": unit, "manager_id": head}
            for doctor, name in zip(doctors, ("Tang Yi", "Xu Hao", "Lu Qing"), strict=True)
        ),
    ]
    with stack.client(timeout=10.0) as http:
        for path, body in (("/v1/org-units", units), ("/v1/people", people)):
            answer = http.post(f"{stack.settings.url('goals')}{path}", json=body)
            assert answer.status_code == 200, answer.text
    return Ward(department=unique("pathology"), head=head, doctors=doctors)


def rule_text(rule_id: str, department: str, *, field: str = "severity", value: str = "0.1") -> str:
    return (
        f"id: {rule_id}\n"
        "name: Pathology rework rate above the line\n"
        "kind: threshold\n"
        "metric: report_rework_rate\n"
        f"where: {{department: {department}}}\n"
        f'condition: {{op: ">", value: {value}}}\n'
        f"{field}: warning\n"
        "notify: [subject]\n"
        'message: "{subject_name}: {value:.0%} of reports reworked"\n'
    )


def event(subject: str, department: str, at: datetime, value: float) -> dict[str, Any]:
    return {
        "id": unique("rev"),
        "metric": "report_rework_rate",
        "value": value,
        "time": at.isoformat(),
        "subject": subject,
        "source": "his",
        "labels": {"department": department},
    }


def backtest(stack: Stack, rule_id: str, source: str, since: str) -> dict[str, Any]:
    with stack.client(timeout=30.0) as http:
        answer = http.post(
            f"{stack.settings.url('evaluator')}/v1/rules/{rule_id}/backtest",
            json={"source": source, "since": since},
        )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def await_backtest(
    stack: Stack, rule_id: str, source: str, *, fired: int, since: str
) -> dict[str, Any]:
    """The backtest's answer once the history stored holds ``fired`` firings (ingestion
    stores events a moment after accepting them)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        result = backtest(stack, rule_id, source, since)
        if result["fired"] >= fired or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def alerts_of(stack: Stack, rule_id: str) -> list[dict[str, Any]]:
    with stack.client(timeout=10.0) as http:
        answer = http.get(f"{stack.settings.url('notifier')}/v1/alerts", params={"rule": rule_id})
    assert answer.status_code == 200, answer.text
    alerts: list[dict[str, Any]] = answer.json()["alerts"]
    return alerts


def await_alert(stack: Stack, rule_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        found = alerts_of(stack, rule_id)
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no alert of {rule_id} reached the inbox in {WAIT_MS / 1000:g} s")


def editor_text(page: Page, text: str) -> None:
    """Replace the editor's text as a person pasting it would."""
    editor = page.get_by_test_id("rule-text")
    editor.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)
    expect(editor).to_have_text(re.compile(re.escape(text.splitlines()[0])))


def fits(page: Page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll} px wide on a {width} px screen"


def test_hr_writes_tests_backtests_publishes_and_rolls_back_a_rule(
    stack: Stack, ward: Ward, page: Page
) -> None:
    rule_id = unique("pathology-rework")
    first, second, third = ward.doctors
    # History: four days ago to yesterday; three days with values above the line.
    today = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    history = [
        event(first, ward.department, today - timedelta(days=4), 0.20),
        event(first, ward.department, today - timedelta(days=3), 0.05),
        event(second, ward.department, today - timedelta(days=3), 0.30),
        event(first, ward.department, today - timedelta(days=1), 0.25),
        event(second, ward.department, today - timedelta(days=1), 0.02),
    ]
    with stack.client(timeout=10.0) as http:
        post_events(http, stack.settings.url("ingestion"), history)
    good = rule_text(rule_id, ward.department)
    stored = await_backtest(stack, rule_id, good, fired=3, since="7d")
    assert stored["fired_per_day"] == {
        (today - timedelta(days=days)).date().isoformat(): 1 for days in (4, 3, 1)
    }, stored
    # The evaluator has judged the history (before the rule existed), so the only alert the
    # rule fires once published is the new event's. In a thread: Playwright's loop runs here.
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(await_drained, stack.settings.nats_url).result()

    sign_in(page, stack, HR_ADMIN)
    page.get_by_test_id("nav-rules").click()
    expect(page.locator("h1")).to_have_text("Rules")
    expect(page.get_by_test_id("rule-row").first).to_be_visible()
    page.get_by_test_id("new-rule").click()
    expect(page).to_have_url(re.compile(r"/rules/new$"))

    # A typo on line 7: the error sits under that line, with the field it suggests.
    editor_text(page, rule_text(rule_id, ward.department, field="severty"))
    expect(page.get_by_test_id("lint-status")).to_have_attribute("data-state", "problems")
    problem = page.get_by_test_id("lint-problem")
    expect(problem).to_have_count(1)
    expect(problem).to_have_attribute("data-line", "7")
    expect(problem).to_contain_text("unknown field 'severty'")
    expect(problem.get_by_test_id("lint-fix")).to_contain_text("'severity'")
    above = problem.evaluate(
        "box => box.closest('.cm-content > *').previousElementSibling.textContent"
    )
    assert above == "severty: warning", above
    # Line numbers in a gutter beside the text, not above it.
    gutter = page.locator(".cm-gutters").bounding_box()
    text = page.get_by_test_id("rule-text").bounding_box()
    assert gutter is not None and text is not None
    assert gutter["x"] + gutter["width"] <= text["x"] + 1 and abs(gutter["y"] - text["y"]) < 8
    expect(page.get_by_test_id("publish")).to_be_disabled()
    page.screenshot(path=SCREENSHOTS / "rule-editor-desktop.png")

    editor_text(page, good)
    expect(page.get_by_test_id("lint-status")).to_have_attribute("data-state", "ok")
    expect(page.get_by_test_id("lint-problem")).to_have_count(0)

    # Its tests: one case fires, one stays quiet; run against the text in the editor.
    at = "2026-11-02T18:00:00Z"
    tests = (
        "name: above the line fires\n"
        "events:\n"
        f"  - {{id: t1, metric: report_rework_rate, value: 0.2, time: '{at}', subject: a, "
        f"source: his, labels: {{department: {ward.department}}}}}\n"
        "expect:\n"
        f"  - {{state: firing, rule: {rule_id}, subject: a, at: '{at}'}}\n"
        "---\n"
        "name: another department stays quiet\n"
        "events:\n"
        f"  - {{id: t2, metric: report_rework_rate, value: 0.2, time: '{at}', subject: b, "
        "source: his, labels: {department: radiology}}\n"
        "expect: []\n"
    )
    page.get_by_test_id("tests").fill(tests)
    page.get_by_test_id("run-tests").click()
    results = page.get_by_test_id("test-results")
    expect(results).to_have_attribute("data-count", "2")
    expect(results).to_have_attribute("data-passed", "2")

    # The backtest over the history stored above: what the page shows is the API's answer.
    page.get_by_test_id("backtest-since").select_option("7d")
    page.get_by_test_id("run-backtest").click()
    shown = page.get_by_test_id("backtest-result")
    expect(shown).to_be_visible()
    answer = backtest(stack, rule_id, good, "7d")
    expect(shown).to_have_attribute("data-fired", str(answer["fired"]))
    expect(shown).to_have_attribute("data-events", str(answer["events"]))
    expect(shown).to_have_attribute("data-resolved", str(answer["resolved"]))
    days = page.get_by_test_id("backtest-day")
    expect(days).to_have_count(len(answer["fired_per_day"]))
    listed = {
        row.get_attribute("data-day"): int(row.get_attribute("data-count") or "-1")
        for row in days.all()
    }
    assert listed == answer["fired_per_day"]
    expect(page.get_by_test_id("backtest-chart")).to_be_visible()
    chart = page.get_by_test_id("backtest-chart").evaluate(
        "canvas => canvas.width > 0 && canvas.height > 0"
    )
    assert chart

    page.set_viewport_size(PHONE)
    page.get_by_test_id("backtest-pane").scroll_into_view_if_needed()
    fits(page, PHONE["width"])
    page.screenshot(path=SCREENSHOTS / "rule-editor-phone.png")
    page.set_viewport_size(DESKTOP)

    # Published with a comment: the page moves to the rule, version 1, and the evaluator
    # judges it, so a new event above the line fires it.
    page.get_by_test_id("publish-comment").fill("pathology's daily check, agreed with Dr. Feng")
    page.get_by_test_id("publish").click()
    expect(page).to_have_url(re.compile(rf"/rules/{rule_id}$"))
    expect(page.get_by_test_id("rule-title")).to_have_text("Pathology rework rate above the line")
    first_version = page.locator("[data-testid=version][data-version='1']")
    expect(first_version).to_contain_text("pathology's daily check, agreed with Dr. Feng")
    with stack.client(timeout=10.0) as http:
        rule = http.get(f"{stack.settings.url('evaluator')}/v1/rules/{rule_id}").json()
    assert (rule["version"], rule["changed_by"]) == (1, HR_ADMIN)
    assert rule["comment"] == "pathology's daily check, agreed with Dr. Feng"

    with stack.client(timeout=10.0) as http:
        post_events(
            http,
            stack.settings.url("ingestion"),
            [event(third, ward.department, datetime.now(UTC), 0.4)],
        )
    fired = await_alert(stack, rule_id)
    assert fired["subject"]["id"] == third and fired["state"] == "firing"
    assert len(alerts_of(stack, rule_id)) == 1

    # A change (a higher line), its diff, and the rollback to version 1.
    editor_text(page, rule_text(rule_id, ward.department, value="0.5"))
    expect(page.get_by_test_id("unsaved")).to_be_visible()
    expect(page.get_by_test_id("lint-status")).to_have_attribute("data-state", "ok")
    page.get_by_test_id("publish-comment").fill("too many alerts at 10%")
    page.get_by_test_id("publish").click()
    expect(page.get_by_test_id("publish-result")).to_contain_text("version 2")
    second_version = page.locator("[data-testid=version][data-version='2']")
    expect(second_version).to_contain_text("too many alerts at 10%")
    second_version.get_by_test_id("show-diff").click()
    diff = second_version.get_by_test_id("diff")
    expect(diff.get_by_test_id("diff-removed")).to_have_text(re.compile(r"value: 0\.1\}"))
    expect(diff.get_by_test_id("diff-added")).to_have_text(re.compile(r"value: 0\.5\}"))

    page.get_by_test_id("rollback-comment").fill("0.5 misses bad days")
    first_version.get_by_test_id("rollback").click()
    expect(page.get_by_test_id("rollback-result")).to_contain_text("as version 3")
    third_version = page.locator("[data-testid=version][data-version='3']")
    expect(third_version).to_contain_text("rolled back")
    expect(page.get_by_test_id("unsaved")).to_have_count(0)
    expect(page.get_by_test_id("rule-text")).to_contain_text("value: 0.1}")
    with stack.client(timeout=10.0) as http:
        rule = http.get(f"{stack.settings.url('evaluator')}/v1/rules/{rule_id}").json()
    assert rule["version"] == 3 and rule["source"] == good

    # Off and on again, from the editor's title.
    for on in (False, True):
        page.get_by_test_id("toggle-rule").click()
        expect(page.get_by_test_id("rule-enabled")).to_have_attribute("data-on", str(on).lower())
        with stack.client(timeout=10.0) as http:
            rule = http.get(f"{stack.settings.url('evaluator')}/v1/rules/{rule_id}").json()
        assert rule["enabled"] is on
    assert rule["version"] == 5

    # The list: the rule with what it fired over 30 days, as the notifier counts it.
    page.get_by_test_id("back").click()
    row = page.locator(f"[data-testid=rule-row][data-rule-id='{rule_id}']")
    since = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    with stack.client(timeout=10.0) as http:
        counted = http.get(
            f"{stack.settings.url('notifier')}/v1/alerts",
            params={"rule": rule_id, "since": since, "limit": 500},
        ).json()["alerts"]
    expect(row.get_by_test_id("fired")).to_have_attribute("data-count", str(len(counted)))
    assert len(counted) == 1
    expect(row).to_contain_text("v5")
    # Every rule's count is in before the pictures.
    expect(page.locator("[data-testid=fired][data-count='']")).to_have_count(0)
    row.evaluate("row => row.scrollIntoView({block: 'center'})")
    page.screenshot(path=SCREENSHOTS / "rules-desktop.png")
    page.set_viewport_size(PHONE)
    row.evaluate("row => row.scrollIntoView({block: 'center'})")
    expect(row).to_be_in_viewport()
    fits(page, PHONE["width"])
    page.screenshot(path=SCREENSHOTS / "rules-phone.png")


def test_a_person_without_hr_admin_gets_no_rules_page(stack: Stack, ward: Ward, page: Page) -> None:
    doctor = ward.doctors[0]
    sign_in(page, stack, doctor)
    expect(page.get_by_test_id("nav-inbox")).to_be_visible()
    expect(page.get_by_test_id("nav-rules")).to_have_count(0)
    page.goto(stack.settings.url("console") + "/rules")
    # In their record's language, Chinese.
    expect(page.get_by_role("alert")).to_have_text("您的角色无权查看此页面。")
    expect(page.get_by_test_id("rules-page")).to_have_count(0)
    # Nor would the API have answered them.
    with httpx.Client(headers=stack.auth_headers(doctor), timeout=10.0) as http:
        refused = http.get(f"{stack.settings.url('evaluator')}/v1/rules")
    assert refused.status_code == 403, refused.text


def test_the_rules_page_speaks_chinese(stack: Stack, browser: Browser) -> None:
    # The HR admin has no record in goals here: the page takes the browser's language.
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        sign_in(page, stack, HR_ADMIN)
        page.get_by_test_id("nav-rules").click()
        expect(page.locator("h1")).to_have_text("规则")
        expect(page.get_by_test_id("new-rule")).to_have_text("新建规则")
        expect(page.get_by_test_id("fired").first).to_contain_text("近 30 天触发")
        page.get_by_test_id("new-rule").click()
        expect(page.get_by_test_id("lint-status")).to_have_text("没有问题")
        expect(page.get_by_test_id("run-backtest")).to_have_text("回测")
    finally:
        context.close()


def test_a_shipped_rule_offers_its_own_tests_and_they_pass(stack: Stack, page: Page) -> None:
    # Offered as the evaluator answers them (the tests folder beside the stack's rules).
    with stack.client(user="wang-fang", timeout=10.0) as http:
        answer = http.get(f"{stack.settings.url('evaluator')}/v1/rules/key-result-past-due/tests")
    assert answer.status_code == 200, answer.text
    shipped = answer.json()
    assert shipped, "rules/tests/ holds a test of key-result-past-due"
    sign_in(page, stack, "wang-fang")
    page.goto(stack.settings.url("console") + "/rules/key-result-past-due")
    note = page.get_by_test_id("shipped-tests")
    expect(note).to_contain_text(shipped[0]["file"])
    first_line = shipped[0]["text"].splitlines()[0]
    expect(page.get_by_test_id("tests")).to_have_value(re.compile(re.escape(first_line)))
    page.get_by_test_id("run-tests").click()
    results = page.get_by_test_id("test-results")
    expect(results).to_have_attribute("data-count", str(len(shipped)))
    expect(results).to_have_attribute("data-passed", str(len(shipped)))
