"""The operations page in a real browser: the operator sees each service's consumers, a dead
letter made here with its reason, replays it (and the stream has the replayed message), replays
a failed delivery through the evaluator, and a webhook that fails shows under its channel; a manager gets no such page, and the APIs refuse
them. Screenshots go to docs/console/."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import nats
import pytest
from playwright.sync_api import Browser, Page, expect

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack

# The browser fixtures and the console test's page and sign-in, used by name.
from tests.integration.browser import browser as browser
from tests.integration.browser import chromium as chromium
from tests.integration.browser import playwright as playwright
from tests.integration.conftest import FAILING_PREFIX
from tests.integration.helpers import (
    first_message,
    make_dead_letter,
    post_events,
    rework_event,
    unique,
)
from tests.integration.test_console import DESKTOP, PHONE, SCREENSHOTS, WAIT_MS, sign_in
from tests.integration.test_console import page as page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

T = TypeVar("T")


def _apart(work: Callable[[], T]) -> T:
    """``work`` on a thread of its own: Playwright's sync API keeps an event loop running on
    this one, where the NATS helpers' asyncio.run may not start another."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result()


def _failed_delivery(http: httpx.Client, stack: Stack, subject: str) -> dict[str, Any]:
    """The webhook's failed delivery of the alert about ``subject``, once it is logged."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        found = http.get(
            f"{stack.settings.url('notifier')}/v1/deliveries",
            params={"recipient": subject, "status": "failed", "channel": "webhook"},
        ).json()["deliveries"]
        if found:
            return dict(found[0])
        time.sleep(0.2)
    raise AssertionError(f"no failed webhook delivery about {subject} in {WAIT_MS / 1000:g} s")


def _stored(stack: Stack, stream: str, sequence: int) -> bytes:
    async def get() -> bytes:
        nc = await nats.connect(stack.settings.nats_url)
        try:
            return (await nc.jetstream().get_msg(stream, sequence)).data or b""
        finally:
            await nc.close()

    return _apart(lambda: asyncio.run(get()))


def test_the_operator_sees_lag_replays_a_dead_letter_and_sees_failures_by_channel(
    stack: Stack, page: Page
) -> None:
    marker = unique("console-bad")
    sequence = _apart(lambda: make_dead_letter(stack.settings.nats_url, marker))
    unreachable = unique(f"{FAILING_PREFIX}doctor")
    goals = stack.settings.url("goals")
    with stack.client(timeout=10.0) as http:
        made = http.post(f"{goals}/v1/people", json={"id": unreachable, "name": "Dr. Pan Yue"})
        assert made.status_code == 200, made.text
        post_events(
            http,
            stack.settings.url("ingestion"),
            [rework_event(unreachable, day, 0.3) for day in (1, 2, 3)],
        )
        failure = _failed_delivery(http, stack, unreachable)
    # The webhook gave up: the alert is a dead letter, which the evaluator replays.
    _, alerts_letter = _apart(
        lambda: first_message(
            stack.settings.nats_url,
            subjects.DEADLETTER_ALERTS,
            stream=subjects.STREAM_DEADLETTER,
            match=lambda letter: unreachable in letter["payload"],
        )
    )

    sign_in(page, stack, "ops")
    page.get_by_test_id("nav-operations").click()
    expect(page.get_by_test_id("operations-page")).to_be_visible()

    # Every service with consumers reports them (the pipeline's three).
    for service in ("ingestion", "evaluator", "notifier"):
        rows = page.locator(f'[data-testid="consumer"][data-service="{service}"]')
        expect(rows.first).to_be_visible()
    expect(page.get_by_test_id("consumers-down")).to_have_count(0)

    letter = page.locator(f'[data-testid="dead-letter"][data-sequence="{sequence}"]')
    expect(letter.get_by_test_id("origin")).to_have_text(subjects.METRICS_IN)
    expect(letter.get_by_test_id("reason")).not_to_be_empty()
    # Asked twice: the first click only asks.
    letter.get_by_test_id("replay").click()
    expect(letter.get_by_test_id("replay-ask")).to_contain_text(subjects.METRICS_IN)
    letter.get_by_test_id("replay-cancel").click()
    expect(letter.get_by_test_id("replay-ask")).to_have_count(0)
    letter.get_by_test_id("replay").click()
    letter.get_by_test_id("replay-confirm").click()
    expect(letter.get_by_test_id("replayed")).to_contain_text("ops")
    expect(letter.get_by_test_id("replay")).to_have_count(0)

    # The API remembers the replay, and the stream holds the message, whole, once more.
    with stack.client(timeout=10.0) as http:
        listed = http.get(f"{goals}/v1/dead-letters", headers=stack.auth_headers("ops")).json()
    [replayed] = [one for one in listed["dead_letters"] if one["sequence"] == sequence]
    done = replayed["replayed"]
    assert done["by"] == "person:ops" and done["stream"] == subjects.STREAM_INGEST
    assert _stored(stack, done["stream"], done["sequence"]) == replayed["payload"].encode()
    assert marker in replayed["payload"]

    # The failed delivery: replayed by the evaluator, the one service that publishes alerts.
    alerts_card = page.locator(f'[data-testid="dead-letter"][data-sequence="{alerts_letter}"]')
    expect(alerts_card.get_by_test_id("origin")).to_have_text(subjects.ALERTS_FIRED)
    expect(alerts_card.get_by_test_id("operator-only")).to_have_count(0)
    alerts_card.get_by_test_id("replay").click()
    expect(alerts_card.get_by_test_id("replay-ask")).to_contain_text("evaluator")
    alerts_card.get_by_test_id("replay-confirm").click()
    expect(alerts_card.get_by_test_id("replayed")).to_contain_text(subjects.STREAM_ALERTS)
    expect(alerts_card.get_by_test_id("replay")).to_have_count(0)
    with stack.client(timeout=10.0) as http:
        listed = http.get(f"{goals}/v1/dead-letters", headers=stack.auth_headers("ops")).json()
    [alert_replayed] = [one for one in listed["dead_letters"] if one["sequence"] == alerts_letter]
    assert alert_replayed["replayed"]["service"] == "evaluator"
    assert alert_replayed["replayed"]["by"] == "person:ops"

    # The failed webhook delivery, counted under its channel and listed with its rule.
    expect(page.locator('[data-testid="failure-count"][data-channel="webhook"]')).to_be_visible()
    expect(page.get_by_test_id("failures-chart")).to_have_attribute("data-drawn", "yes")
    latest = page.locator('[data-testid="failure"][data-channel="webhook"]').first
    expect(latest).to_contain_text(failure["rule_id"])
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=SCREENSHOTS / "operations-desktop.png")

    page.set_viewport_size(PHONE)
    expect(letter.get_by_test_id("replayed")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px phone"
    page.screenshot(path=SCREENSHOTS / "operations-phone.png")


def test_a_manager_gets_no_operations_page_and_the_apis_refuse_them(
    stack: Stack, page: Page
) -> None:
    manager, report = unique("mgr"), unique("emp")
    company, unit = unique("co"), unique("d")
    goals = stack.settings.url("goals")
    with stack.client(timeout=10.0) as http:
        made = http.post(f"{goals}/v1/org-units", json=[
            {"id": company, "name": "Hospital", "kind": "company"},
            {"id": unit, "name": "Pathology", "kind": "department", "parent_id": company,
             "head_id": manager},
        ])  # fmt: skip
        assert made.status_code == 200, made.text
        made = http.post(f"{goals}/v1/people", json=[
            {"id": manager, "name": "Dr. Kong Wei", "org_unit_id": unit, "language": "en"},
            {"id": report, "name": "Dr. Bai Lu", "org_unit_id": unit, "manager_id": manager},
        ])  # fmt: skip
        assert made.status_code == 200, made.text

    sign_in(page, stack, manager)
    expect(page.get_by_test_id("nav-inbox")).to_be_visible()
    expect(page.get_by_test_id("nav-operations")).to_have_count(0)
    page.goto(f"{stack.settings.url('console')}/operations")
    expect(page.get_by_role("alert")).to_have_text("Your roles do not open this page.")
    expect(page.get_by_test_id("operations-page")).to_have_count(0)

    headers = stack.auth_headers(manager)
    with httpx.Client(timeout=10.0) as http:
        refused = [
            http.get(f"{goals}/v1/dead-letters", headers=headers),
            http.post(f"{goals}/v1/dead-letters/1/replay", headers=headers),
            *(
                http.post(
                    f"{stack.settings.url(service)}/v1/{service}/dead-letters/1/replay",
                    headers=headers,
                )
                for service in ("evaluator", "ingestion")
            ),
            http.get(f"{stack.settings.url('notifier')}/v1/deliveries", headers=headers),
            *(
                http.get(f"{stack.settings.url(service)}/v1/{service}/consumers", headers=headers)
                for service in ("ingestion", "evaluator", "notifier")
            ),
        ]
    assert [answer.status_code for answer in refused] == [403] * 8


def test_the_page_speaks_the_operators_browser_language(stack: Stack, browser: Browser) -> None:
    # The operator has no record in goals: the page follows the browser (Chinese here).
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    context.set_default_timeout(WAIT_MS)
    try:
        opened = context.new_page()
        sign_in(opened, stack, "ops")
        opened.get_by_test_id("nav-operations").click()
        expect(opened.locator("#ops-title")).to_have_text("运维")
        expect(opened.locator("#ops-consumers")).to_have_text("消费者积压")
        expect(opened.locator("#ops-dead-letters")).to_have_text("死信")
        expect(opened.locator("#ops-failures")).to_have_text("投递失败")
    finally:
        context.close()
