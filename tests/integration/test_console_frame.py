"""The console's frame in a real browser: the pages each role is offered, the language
switch, sign-in coming back to the page it began on, and a session renewed with the
provider's refresh token before its access token runs out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from goalwatch.dev.stack import Stack

# The browser fixtures, used by name.
from tests.integration.browser import WAIT_MS, sign_in
from tests.integration.browser import browser as browser
from tests.integration.browser import chromium as chromium
from tests.integration.browser import page as page
from tests.integration.browser import playwright as playwright
from tests.integration.helpers import unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def employee(stack: Stack) -> str:
    """A person of the org chart whose record says Chinese."""
    person = unique("frame")
    body: list[dict[str, Any]] = [{"id": person, "name": "Dr. Tang Yu", "language": "zh"}]
    with stack.client(timeout=10.0) as http:
        answer = http.post(f"{stack.settings.url('goals')}/v1/people", json=body)
        assert answer.status_code == 200, answer.text
    return person


def offered(page: Page) -> list[str]:
    """The pages the navigation offers, by test id."""
    nav = page.locator("nav a")
    expect(nav.first).to_be_visible()
    return [str(link.get_attribute("data-testid")) for link in nav.all()]


@pytest.mark.parametrize(
    ("person", "pages"),
    [
        ("wang-fang", ["nav-inbox", "nav-goals", "nav-rules"]),
        ("ops", ["nav-inbox", "nav-goals", "nav-operations"]),
    ],
)
def test_each_role_is_offered_its_pages(
    stack: Stack, page: Page, person: str, pages: list[str]
) -> None:
    sign_in(page, stack, person)
    expect(page.locator(f"[data-testid={pages[-1]}]")).to_be_visible()
    assert offered(page) == pages


def test_a_person_without_a_role_is_offered_neither_rules_nor_operations(
    stack: Stack, page: Page, employee: str
) -> None:
    sign_in(page, stack, employee)
    expect(page.get_by_test_id("nav-goals")).to_be_visible()
    assert offered(page) == ["nav-inbox", "nav-goals"]
    # Typed in by hand, the address says why there is nothing (the APIs refuse anyway).
    page.goto(stack.settings.url("console") + "/rules")
    expect(page.get_by_role("alert")).to_have_text("您的角色无权查看此页面。")


def test_sign_in_comes_back_to_the_page_it_began_on(stack: Stack, page: Page) -> None:
    sign_in(page, stack, "wang-fang", "/rules")
    expect(page).to_have_url(stack.settings.url("console") + "/rules")
    expect(page.get_by_test_id("nav-rules")).to_have_attribute("aria-current", "page")


def test_the_language_switch_overrides_the_record_and_is_kept(
    stack: Stack, page: Page, employee: str
) -> None:
    sign_in(page, stack, employee)
    expect(page.locator("h1")).to_have_text("收件箱")  # their record's language
    page.get_by_test_id("language-en").click()
    expect(page.locator("h1")).to_have_text("Inbox")
    expect(page.get_by_test_id("language-en")).to_have_attribute("aria-pressed", "true")
    page.reload()
    expect(page.get_by_test_id("person")).to_be_visible()
    expect(page.locator("h1")).to_have_text("Inbox")
    page.get_by_test_id("language-zh").click()
    expect(page.locator("h1")).to_have_text("收件箱")


def _session(page: Page) -> dict[str, Any]:
    found = page.evaluate("JSON.parse(sessionStorage.getItem('goalwatch.session'))")
    assert isinstance(found, dict)
    return found


def test_a_session_is_renewed_before_its_token_expires(
    stack: Stack, page: Page, employee: str
) -> None:
    sign_in(page, stack, employee)
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    first = _session(page)
    assert first["refreshToken"], "the provider grants the console refresh tokens"

    # A token with 62 s left: the page renews it a minute before, so about 2 s from now.
    page.evaluate(
        """() => {
          const s = JSON.parse(sessionStorage.getItem('goalwatch.session'));
          s.expiresAt = Date.now() + 62000;
          sessionStorage.setItem('goalwatch.session', JSON.stringify(s));
        }"""
    )
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    page.wait_for_function(
        "token => JSON.parse(sessionStorage.getItem('goalwatch.session')).accessToken !== token",
        arg=first["accessToken"],
    )
    renewed = _session(page)
    assert renewed["refreshToken"] != first["refreshToken"]  # rotated
    assert renewed["expiresAt"] > first["expiresAt"] - 5_000

    # A token already run out when the tab comes back: renewed before any page calls an API.
    page.evaluate(
        """() => {
          const s = JSON.parse(sessionStorage.getItem('goalwatch.session'));
          s.expiresAt = Date.now() - 1000;
          sessionStorage.setItem('goalwatch.session', JSON.stringify(s));
        }"""
    )
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("person")).to_have_text("Dr. Tang Yu")
    assert _session(page)["accessToken"] != renewed["accessToken"]

    # The used refresh token no longer works at the provider.
    again = httpx.post(
        f"{stack.settings.idp_url}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refreshToken"],
            "client_id": "goalwatch-console",
        },
        timeout=10.0,
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
