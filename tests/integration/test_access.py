"""Who may see and change what, through the running services: every route by every kind of
caller by their own team's data or another team's.

The callers are real sign-ins at the stack's identity provider: nobody (no token), an HR
admin, an operator, an HRBP, a manager, an employee, a publishing system and a goalwatch
service. The org chart is made here, in goals:

    unit        HRBP     people
    {co}                 {hrbp}
    {d1} < co   {hrbp}   {mgr} > {emp}       the caller's own team
    {d2} < co            {boss} > {peer}     another team

so the manager, the employee and the HRBP see ``own`` data (about {emp}) and must not learn
that ``other`` data (about {peer}) exists: 404, as for an id that does not exist.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from goalwatch.dev.stack import Stack
from goalwatch.serving import registered_services
from tests.integration.helpers import (
    make_alert_dead_letter,
    make_dead_letter,
    make_recorded_dead_letter,
    post_events,
    rework_event,
    unique,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

CALLERS = ("anon", "hr", "ops", "hrbp", "mgr", "emp", "pub", "svc")
"""The columns of the matrix, in the order each row's requests are made."""


@dataclass(frozen=True)
class Row:
    """One route (``target``: own or other team's object, where the path names one) and the
    status each caller gets, in :data:`CALLERS` order."""

    service: str
    method: str
    path: str
    codes: str
    target: str | None = None
    body: str | None = None

    def expected(self) -> dict[str, int]:
        return dict(zip(CALLERS, (int(code) for code in self.codes.split()), strict=True))


#                                                                  anon hr  ops hrbp mgr emp pub svc
MATRIX = [
    Row("ingestion", "GET", "/healthz", "                           200 200 200 200 200 200 200 200"),
    Row("ingestion", "GET", "/readyz", "                            200 200 200 200 200 200 200 200"),
    Row("ingestion", "GET", "/metrics", "                           200 200 200 200 200 200 200 200"),
    Row("ingestion", "POST", "/v1/events", "                        401 403 403 403 403 403 200 403", body="event"),
    Row("ingestion", "GET", "/v1/metrics", "                        401 200 200 200 200 200 200 200"),
    Row("ingestion", "GET", "/v1/metrics/{metric}", "               401 200 200 200 200 200 200 200"),
    Row("ingestion", "GET", "/v1/ingestion/consumers", "            401 403 200 403 403 403 403 403"),
    # The operator replays a validated event's dead letter (the evaluator's) made for it.
    Row("ingestion", "POST", "/v1/ingestion/dead-letters/{recorded_letter}/replay", "401 403 200 403 403 403 403 403"),
    Row("ingestion", "GET", "/v1/metrics/{metric}/history/{person}", "401 200 404 200 200 200 403 403", target="own"),
    Row("ingestion", "GET", "/v1/metrics/{metric}/history/{person}", "401 200 404 404 404 404 403 403", target="other"),
    Row("evaluator", "GET", "/healthz", "                           200 200 200 200 200 200 200 200"),
    Row("evaluator", "GET", "/readyz", "                            200 200 200 200 200 200 200 200"),
    Row("evaluator", "GET", "/v1/rules", "                          401 200 200 403 403 403 403 200"),
    Row("evaluator", "POST", "/v1/rules/validate", "                401 200 403 403 403 403 403 403", body="draft"),
    Row("evaluator", "POST", "/v1/rules", "                         401 201 403 403 403 403 403 403", body="draft"),
    Row("evaluator", "GET", "/v1/rules/{rule}", "                   401 200 200 403 403 403 403 200"),
    Row("evaluator", "PUT", "/v1/rules/{rule}", "                   401 200 403 403 403 403 403 403", body="update"),
    Row("evaluator", "POST", "/v1/rules/{rule}/disable", "          401 200 403 403 403 403 403 403"),
    Row("evaluator", "POST", "/v1/rules/{rule}/enable", "           401 200 403 403 403 403 403 403"),
    Row("evaluator", "GET", "/v1/rules/{rule}/versions", "          401 200 200 403 403 403 403 200"),
    Row("evaluator", "POST", "/v1/rules/{rule}/rollback", "         401 200 403 403 403 403 403 403", body="rollback"),
    Row("evaluator", "GET", "/v1/rules/{rule}/tests", "             401 200 403 403 403 403 403 403"),
    Row("evaluator", "POST", "/v1/rules/{rule}/test", "             401 200 403 403 403 403 403 403", body="rule_test"),
    Row("evaluator", "POST", "/v1/rules/{rule}/backtest", "         401 200 403 403 403 403 403 403", body="backtest"),
    Row("evaluator", "DELETE", "/v1/rules/{rule}", "                401 200 403 403 403 403 403 403"),
    Row("evaluator", "GET", "/v1/evaluator/consumers", "            401 403 200 403 403 403 403 403"),
    # The operator replays an alert's dead letter (the notifier's) made for it.
    Row("evaluator", "POST", "/v1/evaluator/dead-letters/{alert_letter}/replay", "401 403 200 403 403 403 403 403"),
    Row("goals", "GET", "/healthz", "                               200 200 200 200 200 200 200 200"),
    Row("goals", "GET", "/readyz", "                                200 200 200 200 200 200 200 200"),
    Row("goals", "GET", "/v1/audit", "                              401 200 200 403 403 403 403 403"),
    Row("goals", "POST", "/v1/people", "                            401 200 403 403 403 403 403 403", body="person"),
    Row("goals", "POST", "/v1/people/import", "                     401 200 403 403 403 403 403 403", body="people_csv"),
    Row("goals", "GET", "/v1/people", "                             401 200 200 200 200 200 403 200"),
    Row("goals", "GET", "/v1/people/{person}", "                    401 200 404 200 200 200 403 200", target="own"),
    Row("goals", "GET", "/v1/people/{person}", "                    401 200 404 404 404 404 403 200", target="other"),
    Row("goals", "POST", "/v1/org-units", "                         401 200 403 403 403 403 403 403", body="unit"),
    Row("goals", "POST", "/v1/org-units/import", "                  401 200 403 403 403 403 403 403", body="units_csv"),
    Row("goals", "GET", "/v1/org-units", "                          401 200 200 200 200 200 403 200"),
    Row("goals", "GET", "/v1/org-units/{unit}", "                   401 200 200 200 200 200 403 200"),
    Row("goals", "POST", "/v1/goals", "                             401 200 403 403 403 403 403 403", body="goal"),
    Row("goals", "POST", "/v1/goals/import", "                      401 200 403 403 403 403 403 403", body="goals_csv"),
    Row("goals", "GET", "/v1/goals", "                              401 200 200 200 200 200 403 200"),
    Row("goals", "GET", "/v1/goals/{goal}", "                       401 200 404 200 200 200 403 200", target="own"),
    Row("goals", "GET", "/v1/goals/{goal}", "                       401 200 404 404 404 404 403 200", target="other"),
    Row("goals", "POST", "/v1/goals/{goal}/check-ins", "            401 201 404 403 201 201 403 403", target="own", body="check_in"),
    Row("goals", "POST", "/v1/goals/{goal}/check-ins", "            401 201 404 404 404 404 403 403", target="other", body="check_in"),
    Row("goals", "GET", "/v1/goals/{goal}/check-ins", "             401 200 404 200 200 200 403 200", target="own"),
    Row("goals", "GET", "/v1/goals/{goal}/check-ins", "             401 200 404 404 404 404 403 200", target="other"),
    Row("goals", "GET", "/v1/goals/{goal}/tree", "                  401 200 404 200 200 200 403 200", target="own"),
    Row("goals", "GET", "/v1/goals/{goal}/tree", "                  401 200 404 404 404 404 403 200", target="other"),
    Row("goals", "GET", "/v1/goals/{goal}/impact", "                401 200 404 200 200 200 403 200", target="own"),
    Row("goals", "GET", "/v1/goals/{goal}/impact", "                401 200 404 404 404 404 403 200", target="other"),
    Row("goals", "POST", "/v1/api-keys", "                          401 201 201 403 403 403 403 403", body="api_key"),
    Row("goals", "GET", "/v1/api-keys", "                           401 200 200 403 403 403 403 403"),
    Row("goals", "GET", "/v1/api-keys/{key}", "                     401 200 200 403 403 403 403 403"),
    # Only goalwatch's services check keys presented to them (a made-up key here: valid false).
    Row("goals", "POST", "/v1/api-keys/verify", "                   401 403 403 403 403 403 403 200", body="key_check"),
    # Revoking again changes nothing, and the record stays (so the GET above still finds it).
    Row("goals", "DELETE", "/v1/api-keys/{key}", "                  401 200 200 403 403 403 403 403"),
    Row("goals", "GET", "/v1/me", "                                 401 200 200 200 200 200 403 403"),
    Row("goals", "GET", "/v1/role-grants", "                        401 200 200 403 403 403 403 403"),
    Row("goals", "GET", "/v1/role-grants/{person}", "               401 200 200 404 404 200 403 200", target="own"),
    Row("goals", "GET", "/v1/role-grants/{person}", "               401 200 200 404 404 404 403 200", target="other"),
    # To someone outside the org chart above, so that no caller's rights change on the way.
    Row("goals", "PUT", "/v1/role-grants/{grantee}/{role}", "       401 201 403 403 403 403 403 403"),
    Row("goals", "DELETE", "/v1/role-grants/{grantee}/{role}", "    401 204 403 403 403 403 403 403"),
    Row("goals", "GET", "/v1/dead-letters", "                       401 403 200 403 403 403 403 403"),
    # The operator replays the matrix's own dead letter (a raw event ingestion refused).
    Row("goals", "POST", "/v1/dead-letters/{sequence}/replay", "    401 403 200 403 403 403 403 403"),
    Row("notifier", "GET", "/healthz", "                            200 200 200 200 200 200 200 200"),
    Row("notifier", "GET", "/readyz", "                             200 200 200 200 200 200 200 200"),
    Row("notifier", "GET", "/v1/alerts", "                          401 200 200 200 200 200 403 403"),
    Row("notifier", "GET", "/v1/alerts/stream", "                   401 200 200 200 200 200 403 403"),
    Row("notifier", "GET", "/v1/alerts/{alert}", "                  401 200 404 200 200 200 403 403", target="own"),
    Row("notifier", "GET", "/v1/alerts/{alert}", "                  401 200 404 404 404 404 403 403", target="other"),
    Row("notifier", "POST", "/v1/alerts/{alert}/ack", "             401 200 404 200 200 200 403 403", target="own"),
    Row("notifier", "POST", "/v1/alerts/{alert}/ack", "             401 200 404 404 404 404 403 403", target="other"),
    Row("notifier", "POST", "/v1/alerts/{alert}/comments", "        401 201 404 201 201 201 403 403", target="own", body="comment"),
    Row("notifier", "POST", "/v1/alerts/{alert}/comments", "        401 201 404 404 404 404 403 403", target="other", body="comment"),
    Row("notifier", "GET", "/v1/alerts/{alert}/comments", "         401 200 404 200 200 200 403 403", target="own"),
    Row("notifier", "GET", "/v1/alerts/{alert}/comments", "         401 200 404 404 404 404 403 403", target="other"),
    # The HR admin resolves it first; after that, nothing is left to resolve (409).
    Row("notifier", "POST", "/v1/alerts/{alert}/resolve", "         401 200 404 409 409 409 403 403", target="own"),
    Row("notifier", "POST", "/v1/alerts/{alert}/resolve", "         401 200 404 404 404 404 403 403", target="other"),
    # The link is the credential: anyone holding it gets the same page (here: a forged link).
    Row("notifier", "GET", "/v1/ack/{token}", "                     403 403 403 403 403 403 403 403"),
    Row("notifier", "POST", "/v1/ack/{token}", "                    403 403 403 403 403 403 403 403"),
    Row("notifier", "GET", "/v1/deliveries", "                      401 200 200 403 403 403 403 403"),
    Row("notifier", "POST", "/v1/silences", "                       401 201 403 403 403 403 403 403", body="silence"),
    Row("notifier", "GET", "/v1/silences", "                        401 200 200 403 403 403 403 403"),
    Row("notifier", "GET", "/v1/silences/{silence}", "              401 200 200 403 403 403 403 403"),
    Row("notifier", "DELETE", "/v1/silences/{silence}", "           401 200 403 403 403 403 403 403"),
    Row("notifier", "GET", "/v1/routes", "                          401 200 200 403 403 403 403 403"),
    Row("notifier", "POST", "/v1/routes/test", "                    401 200 200 403 403 403 403 403", body="labels"),
    # No routing file in this stack: whoever may reload is told there is nothing to reload.
    Row("notifier", "POST", "/v1/routes/reload", "                  401 409 409 403 403 403 403 403"),
    Row("notifier", "GET", "/v1/notifier/consumers", "              401 403 200 403 403 403 403 403"),
    # The web console: its page, built files and configuration carry no data.
    Row("console", "GET", "/healthz", "                             200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/readyz", "                              200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/", "                                    200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/goals", "                           200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/goals/{goal}", "                    200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/goals/{goal}/impact", "             200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/rules", "                           200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/rules/{rule}", "                    200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/operations", "                      200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/callback", "                            200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/assets/{name}", "                       200 200 200 200 200 200 200 200"),
    Row("console", "GET", "/config.json", "                         200 200 200 200 200 200 200 200"),
]  # fmt: skip


@dataclass
class Org:
    """The org chart, goals and alerts the matrix is about, made fresh for the module."""

    people: dict[str, str]
    units: dict[str, str]
    goals: dict[str, str]
    alerts: dict[str, str]
    rule: str
    api_key: str
    """The id of an API key made for the matrix."""
    dead_letter: int
    """The sequence of a dead letter made for the matrix."""
    alert_letter: int
    """The sequence of an alert's dead letter made for the matrix (the evaluator's to replay)."""
    recorded_letter: int
    """The sequence of a validated event's dead letter made for the matrix (ingestion's)."""


def _person(pid: str, unit: str, manager: str | None = None) -> dict[str, Any]:
    return {"id": pid, "name": pid, "email": f"{pid}@example.org", "manager_id": manager,
            "org_unit_id": unit}  # fmt: skip


@pytest.fixture(scope="module")
def org(stack: Stack) -> Org:
    people = {role: unique(role) for role in ("hrbp", "mgr", "emp", "boss", "peer")}
    units = {name: unique(name) for name in ("co", "d1", "d2")}
    goals = {"own": unique("kr-own"), "other": unique("kr-other")}
    p, u = people, units
    goals_url = stack.settings.url("goals")
    with stack.client(timeout=10.0) as http:
        answers = [
            http.post(f"{goals_url}/v1/org-units", json=[
                {"id": u["co"], "name": "Co", "kind": "company"},
                {"id": u["d1"], "name": "D1", "kind": "department", "parent_id": u["co"],
                 "head_id": p["mgr"], "hrbp_id": p["hrbp"]},
                {"id": u["d2"], "name": "D2", "kind": "department", "parent_id": u["co"],
                 "head_id": p["boss"]},
            ]),
            http.post(f"{goals_url}/v1/people", json=[
                _person(p["hrbp"], u["co"]), _person(p["mgr"], u["d1"]),
                _person(p["emp"], u["d1"], p["mgr"]), _person(p["boss"], u["d2"]),
                _person(p["peer"], u["d2"], p["boss"]),
            ]),
            http.post(f"{goals_url}/v1/goals", json=[
                {"id": goals["own"], "title": "Own", "type": "key_result",
                 "owner_id": p["emp"], "org_unit_id": u["d1"]},
                {"id": goals["other"], "title": "Other", "type": "key_result",
                 "owner_id": p["peer"], "org_unit_id": u["d2"]},
            ]),
        ]  # fmt: skip
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        # Rework above 8% three days running: an alert about each employee (the shipped rule,
        # which tells the subject and their manager).
        events = [rework_event(p[who], day, 0.2) for who in ("emp", "peer") for day in (1, 2, 3)]
        post_events(http, stack.settings.url("ingestion"), events)
        alerts = {
            target: _episode(http, stack, p[who])
            for target, who in (("own", "emp"), ("other", "peer"))
        }
        key = http.post(
            f"{goals_url}/v1/api-keys", json={"name": "matrix", "roles": ["goals_writer"]}
        )
        assert key.status_code == 201, key.text
    dead_letter = make_dead_letter(stack.settings.nats_url, unique("matrix-bad"))
    alert_letter = make_alert_dead_letter(stack.settings.nats_url, unique("matrix-alert"))
    recorded_letter = make_recorded_dead_letter(stack.settings.nats_url, unique("matrix-ev"))
    return Org(people, units, goals, alerts, rule=unique("access-rule"),
               api_key=key.json()["id"], dead_letter=dead_letter, alert_letter=alert_letter,
               recorded_letter=recorded_letter)  # fmt: skip


def _episode(http: httpx.Client, stack: Stack, subject: str) -> str:
    notifier = stack.settings.url("notifier")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = http.get(f"{notifier}/v1/alerts", params={"recipient": subject}).json()["alerts"]
        if found:
            return str(found[0]["id"])
        time.sleep(0.1)
    raise AssertionError(f"no alert about {subject} reached the inbox in 30 s")


def _headers(stack: Stack, org: Org) -> dict[str, dict[str, str]]:
    return {
        "anon": {},
        "hr": stack.auth_headers("wang-fang"),
        "ops": stack.auth_headers("ops"),
        "hrbp": stack.auth_headers(org.people["hrbp"]),
        "mgr": stack.auth_headers(org.people["mgr"]),
        "emp": stack.auth_headers(org.people["emp"]),
        "pub": stack.auth_headers(client="his"),
        "svc": stack.auth_headers(client="goalwatch-notifier"),
    }


def _rule(org: Org, threshold: int) -> str:
    return (
        f"id: {org.rule}\nname: Falls far too many\nkind: threshold\nmetric: ward_falls\n"
        f"condition: {{op: '>', value: {threshold}}}\nseverity: info\nnotify: [subject]\n"
        'message: "{subject_name}: {value:g} falls"\n'
    )


def _bodies(org: Org, caller: str) -> dict[str, Callable[[], tuple[str, Any]]]:
    """Request bodies by name: (content type, body). Each write is of something new."""
    p, u = org.people, org.units
    fresh = unique(caller)
    now = datetime.now(UTC)
    return {
        "event": lambda: ("json", rework_event(fresh, 9, 0.01, id=unique("ev"))),
        "draft": lambda: ("json", {"source": _rule(org, 1000)}),
        "update": lambda: ("json", {"source": _rule(org, 2000)}),
        "rollback": lambda: ("json", {"version": 1, "comment": "back"}),
        "rule_test": lambda: ("json", {"tests": f"name: no falls\nrules: [{org.rule}]\n"
                                                "events: []\nexpect: []\n"}),
        "backtest": lambda: ("json", {"since": "1h"}),
        "person": lambda: ("json", _person(fresh, u["d1"], p["mgr"])),
        "people_csv": lambda: ("csv", f"id,name,manager_id\n{fresh},{fresh},{p['mgr']}\n"),
        "unit": lambda: ("json", {"id": fresh, "name": fresh, "kind": "team", "parent_id": u["d1"]}),
        "units_csv": lambda: ("csv", f"id,name,kind,parent_id\n{fresh},{fresh},team,{u['d1']}\n"),
        "goal": lambda: ("json", {"id": fresh, "title": fresh, "type": "kpi", "owner_id": p["emp"]}),
        "goals_csv": lambda: ("csv", f"id,title,type,owner_id\n{fresh},{fresh},kpi,{p['emp']}\n"),
        "check_in": lambda: ("json", {"by": p.get(caller, "wang-fang"), "value": 3}),
        "silence": lambda: ("json", {
            "matchers": [{"name": "subject", "value": fresh}],
            "ends_at": (now + timedelta(hours=1)).isoformat(), "comment": "matrix"}),
        "labels": lambda: ("json", {"labels": {"severity": "warning"}}),
        "comment": lambda: ("json", {"text": f"matrix {caller}"}),
        "api_key": lambda: ("json", {"name": f"matrix {caller}", "roles": ["publisher"],
                                     "metrics": ["crm.visit_logged"], "sources": ["crm"]}),
        "key_check": lambda: ("json", {"key": f"gw_0123456789ab_{'a' * 43}"}),
    }  # fmt: skip


def _call(
    http: httpx.Client, method: str, url: str, headers: dict[str, str], body: tuple[str, Any] | None
) -> int:
    if url.endswith("/stream"):
        with http.stream(method, url, headers=headers) as streamed:
            return streamed.status_code
    if body is None:
        return http.request(method, url, headers=headers).status_code
    kind, content = body
    if kind == "csv":
        return http.request(
            method, url, content=content, headers={**headers, "content-type": "text/csv"}
        ).status_code
    return http.request(method, url, json=content, headers=headers).status_code


def _path(row: Row, org: Org, silence: str | None) -> str:
    target = row.target or "own"
    person = org.people["emp" if target == "own" else "peer"]
    return row.path.format(
        metric="report_rework_rate",
        rule=org.rule,
        person=person,
        unit=org.units["d1"],
        goal=org.goals[target],
        alert=org.alerts[target],
        token="not-a-link",
        silence=silence or "none",
        key=org.api_key,
        grantee=f"grantee-{org.rule}",
        role="hr_admin",
        name=_built_asset(),
        sequence=org.dead_letter,
        alert_letter=org.alert_letter,
        recorded_letter=org.recorded_letter,
    )


def _built_asset() -> str:
    """The name of one of the console's built files (they are named by their content)."""
    assets = REPO / "services" / "console" / "dist" / "assets"
    return next(path.name for path in sorted(assets.glob("*.js")))


def test_every_route_answers_each_caller_as_the_matrix_says(stack: Stack, org: Org) -> None:
    headers = _headers(stack, org)
    wrong: list[str] = []
    silence: str | None = None
    with httpx.Client(timeout=15.0) as http:
        for row in MATRIX:
            url = f"{stack.settings.url(row.service)}{_path(row, org, silence)}"
            for caller, expected in row.expected().items():
                body = _bodies(org, caller)[row.body]() if row.body else None
                got = _call(http, row.method, url, headers[caller], body)
                if got != expected:
                    wrong.append(f"{row.method} {row.service}{row.path} [{row.target}] {caller}: "
                                 f"{got}, expected {expected}")  # fmt: skip
            if row.path == "/v1/silences" and row.method == "POST":
                made = http.get(url, headers=headers["hr"]).json()
                silence = next(s["id"] for s in made if s["comment"] == "matrix")
    assert not wrong, "\n".join(wrong)


def _shape(path: str) -> str:
    """A path with its parameters unnamed: /v1/goals/{} for /v1/goals/{goal_id}."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_the_matrix_covers_every_route_of_every_service() -> None:
    declared = {
        (service, method.upper(), _shape(path))
        for service, info in registered_services().items()
        for path, operations in info.document_app().openapi()["paths"].items()
        for method in operations
    }
    # /metrics is served but not in the documents; the matrix asks one service for it.
    covered = {
        (row.service, row.method, _shape(row.path)) for row in MATRIX if row.path != "/metrics"
    }
    assert declared - covered == set(), "routes missing from MATRIX"
    assert covered - declared == set(), "MATRIX names routes that do not exist"


def _ids(answer: httpx.Response, key: str | None = None) -> set[str]:
    assert answer.status_code == 200, answer.text
    items = answer.json() if key is None else answer.json()[key]
    return {str(item["id"]) for item in items}


def test_each_person_lists_only_their_part_of_the_org_chart(stack: Stack, org: Org) -> None:
    headers = _headers(stack, org)
    p = org.people
    goals_url, notifier = stack.settings.url("goals"), stack.settings.url("notifier")
    with httpx.Client(timeout=15.0) as http:

        def people(caller: str) -> set[str]:
            listed = http.get(
                f"{goals_url}/v1/people", params={"limit": 1000}, headers=headers[caller]
            )
            return _ids(listed) & set(p.values())

        def goals(caller: str) -> set[str]:
            listed = http.get(
                f"{goals_url}/v1/goals", params={"owner_id": p["emp"]}, headers=headers[caller]
            )
            other = http.get(
                f"{goals_url}/v1/goals", params={"owner_id": p["peer"]}, headers=headers[caller]
            )
            return (_ids(listed, "goals") | _ids(other, "goals")) & set(org.goals.values())

        def alerts(caller: str) -> set[str]:
            listed = http.get(
                f"{notifier}/v1/alerts", params={"limit": 500}, headers=headers[caller]
            )
            return _ids(listed, "alerts") & set(org.alerts.values())

        # An operator is a person too, whom the org chart does not know: nobody.
        assert people("ops") == goals("ops") == alerts("ops") == set()
        assert people("mgr") == {p["mgr"], p["emp"]}
        assert people("emp") == {p["emp"]}
        assert people("hrbp") == {p["hrbp"], p["mgr"], p["emp"]}
        assert goals("mgr") == goals("emp") == goals("hrbp") == {org.goals["own"]}
        assert goals("hr") == set(org.goals.values())
        assert alerts("mgr") == alerts("emp") == alerts("hrbp") == {org.alerts["own"]}
        assert alerts("hr") == set(org.alerts.values())


def test_a_change_of_manager_changes_what_each_side_sees_without_a_restart(
    stack: Stack, org: Org
) -> None:
    headers = _headers(stack, org)
    p = org.people
    goals_url, notifier = stack.settings.url("goals"), stack.settings.url("notifier")
    # A new report of the other team's boss, moved to the manager's team.
    mover = unique("mover")
    with httpx.Client(timeout=15.0) as http:
        moved = http.post(f"{goals_url}/v1/people", headers=headers["hr"],
                          json=_person(mover, org.units["d2"], p["boss"]))  # fmt: skip
        assert moved.status_code == 200, moved.text
        post_events(
            stack.client(timeout=10.0),
            stack.settings.url("ingestion"),
            [rework_event(mover, day, 0.2) for day in (1, 2, 3)],
        )
        alert = f"{notifier}/v1/alerts/{_episode(stack.client(timeout=10.0), stack, mover)}"
        person = f"{goals_url}/v1/people/{mover}"
        boss, mgr = stack.auth_headers(p["boss"]), headers["mgr"]
        assert http.get(alert, headers=boss).status_code == 200
        assert http.get(alert, headers=mgr).status_code == 404

        moved = http.post(f"{goals_url}/v1/people", headers=headers["hr"],
                          json=_person(mover, org.units["d1"], p["mgr"]))  # fmt: skip
        assert moved.status_code == 200, moved.text
        # goals answers from its own store at once; the notifier once the change event
        # has reached its copy of the directory.
        assert http.get(person, headers=mgr).status_code == 200
        assert http.get(person, headers=boss).status_code == 404
        _until(lambda: http.get(alert, headers=mgr).status_code == 200, "the new manager sees it")
        assert http.get(alert, headers=boss).status_code == 404


def _until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def test_a_publisher_may_send_only_the_metrics_and_sources_it_is_granted(stack: Stack) -> None:
    ingestion = stack.settings.url("ingestion")
    subject = unique("granted")
    with httpx.Client(timeout=15.0, headers=stack.auth_headers(client="crm")) as http:
        answer = http.post(f"{ingestion}/v1/events", json=[
            {"id": unique("e"), "metric": "crm.visit_logged", "value": 1, "subject": subject,
             "source": "crm", "time": datetime.now(UTC).isoformat()},
            rework_event(subject, 1, 0.1, id=unique("e")),  # his's metric, from his
        ])  # fmt: skip
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["accepted"], result["rejected"]) == (1, 1)
    [reject] = result["rejects"]
    assert reject["index"] == 1
    [error] = reject["errors"]
    assert error["field"] == "metric"
    assert "system:crm may not publish metric 'report_rework_rate'" in error["message"]


def test_headers_once_trusted_name_nobody_now(stack: Stack, org: Org) -> None:
    """``X-Goalwatch-User`` named who acknowledged; now it is ignored and the token decides."""
    notifier = stack.settings.url("notifier")
    with httpx.Client(timeout=15.0) as http:
        forged = http.get(f"{notifier}/v1/alerts", headers={"X-Goalwatch-User": "wang-fang"})
        assert forged.status_code == 401
