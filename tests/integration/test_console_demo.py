"""The demo company as `make run` loads it, in the console: the impact view of its invalid key
result ("Store expansion 20%") lists every goal resting on it, as goals' impact walk names
them. In a stack of its own: the demo loads only into an empty store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from goalwatch.dev.demo import load_demo
from goalwatch.dev.stack import Stack
from tests.integration.browser import browser as browser
from tests.integration.browser import chromium as chromium
from tests.integration.browser import page as page
from tests.integration.browser import playwright as playwright
from tests.integration.browser import sign_in
from tests.integration.conftest import WebhookReceiver, stack_of_its_own

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

INVALID = "kr-store-expansion"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver) -> Iterator[Stack]:
    with stack_of_its_own(tmp_path_factory, webhook, name="demo") as running:
        loaded = load_demo(
            goals_url=running.settings.url("goals"),
            ingestion_url=running.settings.url("ingestion"),
            headers=running.auth_headers(),
        )
        assert loaded is not None, "the demo loads into the empty store"
        yield running


def test_the_demo_invalid_key_results_impact_lists_every_affected_goal(
    demo: Stack, page: Page
) -> None:
    with demo.client(user="wang-fang", timeout=10.0) as http:
        goal = http.get(f"{demo.settings.url('goals')}/v1/goals/{INVALID}").json()
        impact: dict[str, Any] = http.get(
            f"{demo.settings.url('goals')}/v1/goals/{INVALID}/impact"
        ).json()
    assert goal["status"] == "invalid"
    affected = {one["goal_id"]: one for one in impact["affected"]}
    assert affected, "goals rest on the demo's store expansion"

    sign_in(page, demo, "wang-fang", f"/goals/{INVALID}/impact")
    expect(page.get_by_test_id("impact-title")).to_contain_text("Store expansion 20%")
    items = page.get_by_test_id("impacted")
    expect(items).to_have_count(len(affected))
    for goal_id, one in affected.items():
        item = page.locator(f"[data-testid=impacted][data-goal-id='{goal_id}']")
        expect(item).to_have_attribute("data-weight", str(one["weight"]).removesuffix(".0"))
        expect(item.locator(".goal-title").first).to_have_text(one["title"])
