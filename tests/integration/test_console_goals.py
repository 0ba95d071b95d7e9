"""The console's goals page in a real browser, against the session's stack: the alignment tree
each person may see, a goal's check-in history, and what depends on an invalid key result,
shown as a tree that lists every goal goals' impact walk names. Screenshots go to
docs/console/."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from goalwatch.dev.stack import Stack

# The browser fixtures, used by name.
from tests.integration.browser import PHONE, SCREENSHOTS, WAIT_MS
from tests.integration.browser import browser as browser
from tests.integration.browser import chromium as chromium
from tests.integration.browser import page as page
from tests.integration.browser import playwright as playwright
from tests.integration.browser import sign_in as sign_in_at
from tests.integration.helpers import unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

expect.set_options(timeout=WAIT_MS)


@dataclass(frozen=True)
class Company:
    """The demo company's shape (goalwatch/dev/demo.py) under ids of this test's own, with its
    store-expansion key result marked invalid and more goals depending on it."""

    people: dict[str, str]
    goals: dict[str, str]

    def goal(self, name: str) -> str:
        return self.goals[name]


def post(stack: Stack, path: str, body: Any) -> Any:
    with stack.client(timeout=10.0) as http:
        answer = http.post(f"{stack.settings.url('goals')}{path}", json=body)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


@pytest.fixture(scope="module")
def company(stack: Stack) -> Company:
    u = {name: unique(name) for name in ("acme", "rad", "read", "sup", "stores")}
    p = {
        name: unique(name)
        for name in ("ceo", "mgr", "lead", "emp", "emp2", "boss", "tl", "wu", "hr")
    }
    g = {
        name: unique(name)
        for name in (
            "growth", "radq", "supx", "rework", "review", "stores", "report24", "staffing",
            "visits",
        )
    }  # fmt: skip
    units = [
        {"id": u["acme"], "name": "Acme Health", "kind": "company", "head_id": p["ceo"],
         "hrbp_id": p["hr"]},
        {"id": u["rad"], "name": "Radiology", "kind": "department", "parent_id": u["acme"],
         "head_id": p["mgr"]},
        {"id": u["read"], "name": "Reading room", "kind": "team", "parent_id": u["rad"],
         "head_id": p["lead"]},
        {"id": u["sup"], "name": "Supply chain", "kind": "department", "parent_id": u["acme"],
         "head_id": p["boss"]},
        {"id": u["stores"], "name": "Store expansion", "kind": "team", "parent_id": u["sup"],
         "head_id": p["tl"]},
    ]  # fmt: skip

    def person(key: str, name: str, unit: str, manager: str | None, lang: str) -> dict[str, Any]:
        return {"id": p[key], "name": name, "org_unit_id": u[unit],
                "manager_id": p[manager] if manager else None, "language": lang}  # fmt: skip

    people = [
        person("ceo", "Qian Yu (CEO)", "acme", None, "en"),
        person("hr", "Sun Li (HRBP)", "acme", "ceo", "en"),
        person("mgr", "Dr. Zhang Wei", "rad", "ceo", "en"),
        person("lead", "Dr. Li Na", "read", "mgr", "zh"),
        person("emp", "Dr. Chen Jie", "read", "mgr", "zh"),
        person("emp2", "Dr. Liu Yang", "read", "lead", "zh"),
        person("boss", "Zhao Min", "sup", "ceo", "en"),
        person("tl", "Zhou Tao", "stores", "boss", "en"),
        person("wu", "Wu Hao", "stores", "tl", "en"),
    ]
    year_end = datetime(datetime.now(UTC).year, 12, 31, 23, 59, tzinfo=UTC).isoformat()

    def goal(
        key: str,
        title: str,
        kind: str,
        owner: str,
        org: str,
        to: str | None,
        weight: float,
        **extra: Any,
    ) -> dict[str, Any]:
        return {"id": g[key], "title": title, "type": kind, "owner_id": p[owner],
                "org_unit_id": u[org], "due": year_end,
                "contributes_to": [{"goal_id": g[to], "weight": weight}] if to else [],
                **extra}  # fmt: skip

    goals = [
        goal("growth", "Grow safely: better care in more places", "objective", "ceo", "acme",
             None, 1),
        goal("radq", "Radiology reports right the first time", "objective", "mgr", "rad",
             "growth", 1),
        goal("supx", "Supply twenty percent more stores", "objective", "boss", "sup",
             "growth", 2),
        goal("rework", "Report rework rate below 5%", "key_result", "lead", "read", "radq", 3,
             start_value=12, target_value=5, current_value=9, unit="%"),
        goal("review", "Review every reworked report weekly", "key_result", "emp", "read",
             "radq", 1, start_value=0, target_value=10, current_value=2, unit="reviews"),
        goal("stores", "Store expansion 20%", "key_result", "tl", "stores", "supx", 1,
             start_value=0, target_value=20, current_value=0, unit="%"),
        goal("report24", "Report imaging of every new store within 24 h", "key_result",
             "emp2", "read", "radq", 1, start_value=0, target_value=100, current_value=40,
             unit="%", depends_on=[g["stores"]]),
        goal("staffing", "Staff imaging for the new stores", "key_result", "emp", "read",
             "radq", 1, start_value=0, target_value=6, current_value=1, unit="doctors",
             depends_on=[g["stores"]]),
        goal("visits", "Visit every new store monthly", "kpi", "wu", "stores", "supx", 1,
             depends_on=[g["stores"]]),
    ]  # fmt: skip
    post(stack, "/v1/org-units", units)
    post(stack, "/v1/people", people)
    post(stack, "/v1/goals", goals)
    # The store expansion's check-ins: three weeks of progress, then the premise is gone.
    now = datetime.now(UTC)
    check_ins: list[dict[str, Any]] = [
        {"value": value, "status": "on_track" if value > 3 else "at_risk",
         "note": f"{value:g}% of the new stores open", "at": (now - timedelta(weeks=weeks))}
        for weeks, value in ((4, 2), (3, 4), (2, 7), (1, 9))
    ]  # fmt: skip
    check_ins.append(
        {
            "status": "invalid",
            "note": "The expansion is frozen: its funding was withdrawn.",
            "at": now - timedelta(hours=1),
        }
    )
    for body in check_ins:
        body = {**body, "by": p["tl"], "at": body["at"].isoformat()}
        post(stack, f"/v1/goals/{g['stores']}/check-ins", body)
    return Company(people=p, goals=g)


def sign_in(page: Page, stack: Stack, person: str) -> None:
    """Sign in as ``person`` on the provider's login page, then open the goals page."""
    sign_in_at(page, stack, person)
    page.get_by_test_id("nav-goals").click()
    expect(page.get_by_test_id("goal-tree")).to_be_visible()


def api(stack: Stack, person: str, path: str) -> Any:
    """Goals' own answer to ``person``."""
    with stack.client(user=person, timeout=10.0) as http:
        answer = http.get(f"{stack.settings.url('goals')}{path}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def shown_goals(page: Page) -> set[str]:
    return set(page.get_by_test_id("goal").evaluate_all("els => els.map(e => e.dataset.goalId)"))


def fits_a_phone(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px phone"


def test_the_impact_of_an_invalid_key_result_lists_every_affected_goal(
    stack: Stack, company: Company, page: Page
) -> None:
    boss = company.people["boss"]
    stores = company.goal("stores")
    sign_in(page, stack, boss)
    card = page.locator(f"[data-testid=goal][data-goal-id='{stores}']")
    expect(card).to_have_attribute("data-status", "invalid")
    # Radiology's goals that depend on it are not the supply chain head's to see; the
    # store visits are.
    expect(card.locator(":scope > .goal-card [data-direction=in]")).to_have_count(1)
    card.get_by_role("link", name="Store expansion 20%").click()

    # The goal page: its check-in history, charted and listed.
    expect(page.get_by_test_id("goal-title")).to_have_text("Store expansion 20%")
    expect(page.get_by_test_id("goal-header").get_by_test_id("goal-status")).to_have_text("Invalid")
    history = api(stack, boss, f"/v1/goals/{stores}/check-ins")["check_ins"]
    expect(page.get_by_test_id("check-in")).to_have_count(len(history))
    valued = [c for c in history if c.get("value") is not None]
    expect(page.get_by_test_id("check-in-chart")).to_have_attribute("data-points", str(len(valued)))
    expect(page.get_by_test_id("check-in").first).to_contain_text("funding was withdrawn")
    page.screenshot(path=SCREENSHOTS / "goal-desktop.png", full_page=True)

    page.get_by_test_id("impact-link").click()
    expect(page).to_have_url(re.compile(rf"/goals/{stores}/impact$"))
    impact = api(stack, boss, f"/v1/goals/{stores}/impact")
    affected = {a["goal_id"]: a for a in impact["affected"]}
    assert len(affected) >= 6, impact
    items = page.get_by_test_id("impacted")
    expect(items).to_have_count(len(affected))
    shown = set(items.evaluate_all("els => els.map(e => e.dataset.goalId)"))
    assert shown == set(affected)
    expect(page.get_by_test_id("impact-count")).to_have_text(f"{len(affected)} goals affected")
    titles = {stores: "Store expansion 20%"} | {k: a["title"] for k, a in affected.items()}
    for goal_id, found in affected.items():
        item = page.locator(f"[data-testid=impacted][data-goal-id='{goal_id}']")
        # Under the goal its shortest path reaches it from: the tree is the path.
        parents = item.locator("xpath=ancestor::li[@data-testid='impacted']")
        path = [step["from_goal"] for step in found["path"]][1:]
        assert parents.evaluate_all("els => els.map(e => e.dataset.goalId)") == path
        assert float(item.get_attribute("data-weight") or "nan") == pytest.approx(found["weight"])
        steps = [stores] + [step["to_goal"] for step in found["path"]]
        expect(item.locator(":scope > .goal-card [data-testid=impact-path]")).to_have_text(
            "Path: " + " → ".join(titles[step] for step in steps)
        )
        expect(item.locator(":scope > .goal-card .goal-title")).to_have_text(found["title"])
    # Names, not ids: the path and owners read as people read them.
    radq = page.locator(f"[data-testid=impacted][data-goal-id='{company.goal('radq')}']")
    expect(radq.locator(":scope > .goal-card [data-testid=goal-who]")).to_contain_text(
        "Dr. Zhang Wei"
    )
    expect(radq.locator(":scope > .goal-card [data-testid=impact-path]")).to_have_text(
        re.compile(r"Path: Store expansion 20% → .+ → Radiology reports right the first time")
    )
    expect(page.locator("body")).not_to_contain_text(stores)
    page.screenshot(path=SCREENSHOTS / "impact-desktop.png")

    page.set_viewport_size(PHONE)
    expect(page.get_by_test_id("impact-tree")).to_be_in_viewport()
    fits_a_phone(page)
    page.screenshot(path=SCREENSHOTS / "impact-phone.png")


def test_a_manager_sees_their_part_of_the_tree_and_not_another_teams(
    stack: Stack, company: Company, page: Page
) -> None:
    mgr = company.people["mgr"]
    sign_in(page, stack, mgr)
    mine = {company.goal(n) for n in ("radq", "rework", "review", "report24", "staffing")}
    listed = {g["id"] for g in api(stack, mgr, "/v1/goals?limit=1000")["goals"]}
    assert listed == mine
    expect(page.get_by_test_id("goal")).to_have_count(len(mine))
    assert shown_goals(page) == mine
    # The department's objective at the top, its key results under it, with their weights.
    root = page.locator(f"[data-testid=goal][data-goal-id='{company.goal('radq')}']")
    expect(root.locator("[data-testid=goal]")).to_have_count(len(mine) - 1)
    rework = root.locator(f"[data-testid=goal][data-goal-id='{company.goal('rework')}']")
    expect(rework).to_contain_text("weight 3")
    expect(rework.get_by_test_id("goal-who")).to_have_text("Dr. Li Na · Reading room (Team)")
    expect(rework.get_by_test_id("goal-progress")).to_contain_text("43% done")
    # The cross-team dependency is drawn, but not what lies beyond the manager's view.
    report = root.locator(f"[data-testid=goal][data-goal-id='{company.goal('report24')}']")
    expect(report.locator("[data-direction=out]")).to_have_text("a goal outside your view")
    for elsewhere in ("growth", "supx", "stores", "visits"):
        expect(page.locator(f"[data-goal-id='{company.goal(elsewhere)}']")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("Store expansion 20%")

    # Another team's goal, asked for by address: goals says no, the page says so kindly.
    page.goto(f"{stack.settings.url('console')}/goals/{company.goal('stores')}")
    expect(page.get_by_test_id("goals-refused")).to_have_text(
        "There is no such goal, or it is not yours to see."
    )
    page.goto(f"{stack.settings.url('console')}/goals/{company.goal('stores')}/impact")
    expect(page.get_by_test_id("goals-refused")).to_be_visible()


def test_the_head_of_the_company_sees_the_whole_tree_and_its_cross_team_links(
    stack: Stack, company: Company, page: Page
) -> None:
    ceo = company.people["ceo"]
    sign_in(page, stack, ceo)
    expect(page.get_by_test_id("goal")).to_have_count(len(company.goals))
    assert shown_goals(page) == set(company.goals.values())
    report = page.locator(f"[data-testid=goal][data-goal-id='{company.goal('report24')}']")
    link = report.locator("[data-direction=out]")
    expect(link).to_have_text("Store expansion 20% · another team")
    expect(link).to_have_attribute("data-goal-id", company.goal("stores"))
    stores = page.locator(f"[data-testid=goal][data-goal-id='{company.goal('stores')}']")
    expect(stores.locator(":scope > .goal-card [data-direction=in]")).to_have_count(3)
    page.screenshot(path=SCREENSHOTS / "goals-desktop.png")

    page.set_viewport_size(PHONE)
    expect(page.get_by_test_id("goal-tree")).to_be_in_viewport()
    fits_a_phone(page)
    page.screenshot(path=SCREENSHOTS / "goals-phone.png")


def test_an_employee_sees_their_goals_in_chinese(
    stack: Stack, company: Company, page: Page
) -> None:
    emp = company.people["emp"]
    sign_in(page, stack, emp)
    # Their record's language, though the browser asks for English.
    expect(page.locator("h1")).to_have_text("目标")
    mine = {company.goal("review"), company.goal("staffing")}
    expect(page.get_by_test_id("goal")).to_have_count(len(mine))
    assert shown_goals(page) == mine
    staffing = page.locator(f"[data-testid=goal][data-goal-id='{company.goal('staffing')}']")
    expect(staffing.get_by_test_id("goal-status")).to_have_text("正常")
    expect(staffing.locator("[data-direction=out]")).to_have_text("您无权查看的目标")
    staffing.get_by_role("link", name="Staff imaging for the new stores").click()
    expect(page.get_by_test_id("impact-link")).to_have_text("哪些目标依赖它\uff1f")
    expect(page.get_by_test_id("no-check-ins")).to_have_text("还没有进展更新。")
    page.get_by_test_id("impact-link").click()
    impact = api(stack, emp, f"/v1/goals/{company.goal('staffing')}/impact")
    expect(page.get_by_test_id("impacted")).to_have_count(len(impact["affected"]))
    expect(page.get_by_test_id("impact-count")).to_have_text(
        f"{len(impact['affected'])} 个目标受影响"
    )
    expect(page.get_by_test_id("impact-path").first).to_contain_text("路径")
