"""Headless Chromium for the console's browser tests: Debian's ``chromium`` package, driven by
Playwright (its own browser download cannot be reached from every machine that runs these)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from goalwatch.dev.stack import Stack

CHROMIUM = Path("/usr/bin/chromium")
"""Where Debian's chromium package puts the browser."""

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, Chromium keeps calling Google's hosts, which a closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
"""Where Debian's fonts-noto-cjk puts its font: without one, Chinese pages are screenshot as
empty boxes (the tests still read the text; the pictures in docs/console/ would not)."""


def _apt_install(packages: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # a machine whose package lists were never fetched
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    return done


def install_chromium() -> Path:
    """The Chromium to drive: /usr/bin/chromium, installed with apt-get when it is missing and
    this process may install packages (root); otherwise the test session fails saying how.
    Debian's CJK font comes with it when missing (its absence fails nothing)."""
    may_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if may_install and not CJK_FONT.exists():
        fonts = _apt_install(["fonts-noto-cjk"])
        if fonts.returncode != 0:
            print(f"fonts-noto-cjk not installed: Chinese screenshots show boxes\n{fonts.stderr}")
    if CHROMIUM.exists():
        return CHROMIUM
    if not may_install:
        pytest.fail(
            f"the console's browser tests need Debian's chromium at {CHROMIUM}: install it with "
            "`sudo apt-get install -y chromium` (then run the tests again)",
            pytrace=False,
        )
    done = _apt_install(["chromium"])
    if done.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(
            f"`apt-get install chromium` failed ({done.returncode}):\n{done.stderr[-2000:]}",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed once per test session if it is missing."""
    return install_chromium()


# Per module, not per session: Playwright's synchronous API runs an event loop in this thread
# for as long as it is started, and asyncio.run() (other modules' tests) refuses to run beside
# one.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium: Path) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=str(chromium), headless=True, args=CHROMIUM_FLAGS
    )
    yield launched
    launched.close()


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
"""Where the console's tests save the pictures docs/console.md and the README show."""
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
WAIT_MS = 30_000
"""Page state is awaited, not slept for; this bounds each wait (the pipeline takes well under)."""


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (desktop width, English) and its page. What the page logs is
    printed with a failing test's output; a Content-Security-Policy refusal fails the test:
    everything the console draws must fit its policy (no inline script or style)."""
    context = browser.new_context(viewport=DESKTOP, locale="en-GB")
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    refused: list[str] = []

    def heard(message: ConsoleMessage) -> None:
        print(f"console {message.type}: {message.text}")
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    opened.on("console", heard)
    opened.on("pageerror", lambda error: print(f"page error: {error}"))
    yield opened
    context.close()
    assert refused == [], refused


def sign_in(page: Page, stack: Stack, person: str, path: str = "/") -> None:
    """Open the console at ``path`` and sign in as ``person`` on the identity provider's own
    login page; returns once the console names them (back at ``path``)."""
    console = stack.settings.url("console")
    page.goto(console + path)
    page.get_by_test_id("sign-in").click()
    page.wait_for_url(re.compile(re.escape(stack.settings.idp_url) + r"/authorize"))
    page.locator("input[name=person]").fill(person)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("person")).to_be_visible(timeout=WAIT_MS)
    expect(page).to_have_url(console + path, timeout=WAIT_MS)
