"""Headless Chromium for the console's browser tests: Debian's ``chromium`` package, driven by
Playwright (its own browser download cannot be reached from every machine that runs these)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

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


def install_chromium() -> Path:
    """The Chromium to drive: /usr/bin/chromium, installed with apt-get when it is missing and
    this process may install packages (root); otherwise the test session fails saying how."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            f"the console's browser tests need Debian's chromium at {CHROMIUM}: install it with "
            "`sudo apt-get install -y chromium` (then run the tests again)",
            pytrace=False,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # a machine whose package lists were never fetched
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(
            f"`{' '.join(install)}` failed ({done.returncode}):\n{done.stderr[-2000:]}",
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
