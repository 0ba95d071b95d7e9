"""The rule test and backtest routes on a bare app, with the shipped rules as the live ones
and the directory and names in memory. The history a backtest reads is given here in place
of NATS; reading it from a real nats-server is tests/integration/test_backtest.py's."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from goalwatch.contracts import MetricRecorded
from goalwatch.problems import install_problem_handlers
from goalwatch.rules import LoadedRule, load_rules
from goalwatch.rules import backtest as backtest_module
from services.evaluator.directory_store import PersonView
from services.evaluator.rule_checks import MAX_LISTED_ALERTS, rule_checks_router
from tests.unit.signed_in import signed_in

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "rules" / "tests"
NOWHERE = "nats://127.0.0.1:1"  # nothing listens: NATS unreachable
REWORK = (REPO / "rules" / "report-rework-rate.yaml").read_text(encoding="utf-8")
T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)


class People:
    """The directory view in memory, recording what it is asked."""

    def __init__(self, people: list[PersonView]) -> None:
        self._people = {person.id: person for person in people}
        self.asked: list[list[str]] = []

    async def people(self, subjects: Collection[str]) -> dict[str, PersonView | None]:
        self.asked.append(list(subjects))
        return {subject: self._people.get(subject) for subject in subjects}


class Names:
    """The goals service's names in memory; ``down`` subjects' lookups fail."""

    def __init__(self, names: dict[str, str], down: set[str] | None = None) -> None:
        self._names = names
        self._down = down or set()
        self.asked: list[str] = []

    async def name_of(self, *, subject: str) -> str:
        self.asked.append(subject)
        if subject in self._down:
            raise ConnectionError("goals did not answer")
        return self._names.get(subject, subject)


def person(person_id: str, name: str, *units: str) -> PersonView:
    return PersonView(id=person_id, name=name, org_units=units, time_zone=None, manager_id=None)


DIRECTORY = [
    person("li-na", "Dr. Li Na", "radiology", "hospital"),
    person("zhou-min", "Dr. Zhou Min", "radiology-ct", "radiology", "hospital"),
    person("chen-jie", "Dr. Chen Jie", "cardiology", "hospital"),
]


@pytest.fixture(scope="module")
def live() -> dict[str, LoadedRule]:
    return {rule.spec.id: rule for rule in load_rules(REPO / "rules")}


@pytest.fixture
def people() -> People:
    return People(DIRECTORY)


@pytest.fixture
def names() -> Names:
    return Names({"guest-7": "Guest Seven"}, down={"guest-9"})


def client_for(
    live: dict[str, LoadedRule], people: People, names: Names, nats_url: str = NOWHERE
) -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(
        rule_checks_router(
            live.get, rule_ids=live.keys, nats=nats_url, names=names, directory=people
        )
    )
    return TestClient(signed_in(app))


@pytest.fixture
def client(live: dict[str, LoadedRule], people: People, names: Names) -> Iterator[TestClient]:
    with client_for(live, people, names) as test_client:
        yield test_client


def shipped(name: str) -> str:
    return (TESTS / f"{name}.yaml").read_text(encoding="utf-8")


def problem_of(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    return body


# POST /v1/rules/{rule_id}/test


def test_a_shipped_test_passes_against_the_live_rule(client: TestClient) -> None:
    answer = client.post(
        "/v1/rules/report-rework-rate-high/test", json={"tests": shipped("report-rework-rate")}
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "passed": True,
        "name": "rework rate above 8% three days running fires once and resolves the day after",
        "rules": ["report-rework-rate-high"],
        "draft": False,
        "failures": [],
    }


def test_a_draft_is_tested_instead_of_the_live_rule(client: TestClient) -> None:
    # At 9.5%, Zhou Min's 9% day no longer breaks: nothing fires for her.
    draft = REWORK.replace("value: 0.08", "value: 0.095")
    answer = client.post(
        "/v1/rules/report-rework-rate-high/test",
        json={"tests": shipped("report-rework-rate"), "source": draft},
    )
    body = answer.json()
    assert answer.status_code == 200
    assert (body["passed"], body["draft"]) == (False, True)
    assert body["failures"][0] == "expected:"
    got = body["failures"][body["failures"].index("got:") + 1 :]
    assert not any("zhou-min" in line for line in got)


def test_a_rule_not_created_yet_is_tested_from_its_draft(client: TestClient) -> None:
    draft = REWORK.replace("id: report-rework-rate-high", "id: rework-new")
    tests = shipped("report-rework-rate").replace("report-rework-rate-high", "rework-new")
    answer = client.post("/v1/rules/rework-new/test", json={"tests": tests, "source": draft})
    assert answer.status_code == 200
    assert answer.json()["passed"] is True


def test_a_test_without_rules_runs_the_rule_of_the_path_alone(client: TestClient) -> None:
    # report-rework-rate-missing watches the same metric; it is not run, so its silence
    # alerts are not expected.
    tests = shipped("report-rework-rate").replace("rules: [report-rework-rate-high]\n", "")
    answer = client.post("/v1/rules/report-rework-rate-high/test", json={"tests": tests})
    assert answer.json()["passed"] is True
    assert answer.json()["rules"] == ["report-rework-rate-high"]


def test_the_other_rules_a_test_names_are_taken_live(client: TestClient) -> None:
    tests = shipped("key-result-behind-plan")
    answer = client.post("/v1/rules/key-result-behind-plan/test", json={"tests": tests})
    assert answer.status_code == 200
    assert answer.json()["passed"] is True
    assert answer.json()["rules"] == ["key-result-behind-plan", "key-result-past-due"]


def test_a_test_that_does_not_run_the_rule_of_the_path_is_refused(client: TestClient) -> None:
    answer = client.post(
        "/v1/rules/teacher-feedback-low/test", json={"tests": shipped("report-rework-rate")}
    )
    body = problem_of(answer, 422)
    assert body["errors"] == [
        {
            "loc": "body.tests",
            "msg": "tests:8:1: rules: the test runs report-rework-rate-high, not "
            "teacher-feedback-low: add teacher-feedback-low to its rules:, or leave rules: out "
            "to run this rule alone",
        }
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("rules: [report-rework-rate-high]", "rules: [report-rework-rate-high, teacher-feedbak-low]"),
         "tests:8:34: rules[1]: no rule has the id 'teacher-feedbak-low'; did you mean "
         "teacher-feedback-low?"),
        (("value: 0.12, time: \"2026-11-02", "valeu: 0.12, time: \"2026-11-02"),
         "tests:12:5: events[1].value: required field value is missing"),
        (("expect:", "expect: ["), "tests:39:3: not valid YAML: expected the node content"),
        (('value: 0.11, time: "2026-11-01T18:00:00+08:00"', 'value: 0.11, time: "yesterday"'),
         "tests:10:57: events[0].time: 'yesterday' is not a time with its UTC offset"),
    ],
)  # fmt: skip
def test_a_wrong_test_file_is_refused_with_its_line_and_column(
    client: TestClient, change: tuple[str, str], message: str
) -> None:
    tests = shipped("report-rework-rate").replace(*change, 1)
    answer = client.post("/v1/rules/report-rework-rate-high/test", json={"tests": tests})
    body = problem_of(answer, 422)
    [error] = body["errors"]
    assert error["loc"] == "body.tests"
    assert error["msg"].startswith(message)
    assert body["detail"] == f"the rule test is wrong: {error['msg']}"


def test_an_unknown_rule_is_not_found_and_the_closest_ids_are_listed(client: TestClient) -> None:
    answer = client.post("/v1/rules/report-rework-rate/test", json={"tests": "name: x"})
    body = problem_of(answer, 404)
    assert body["close_ids"][0] == "report-rework-rate-high"
    assert "did you mean report-rework-rate-high" in body["detail"]


@pytest.mark.parametrize(
    ("change", "messages"),
    [
        (('condition: {op: ">", value: 0.08, consecutive: 3}',
          'condition: {op: >, value: 0.08, consecutive: 3}'),
         ["source:27:17: not valid YAML: found character '>' that cannot start any token"]),
        (('condition: {op: ">", value: 0.08, consecutive: 3}',
          'condition: {op: "=>", value: "8%", consecutive: 3}'),
         ["source:27:13: condition.op:", "source:27:23: condition.value: 8% is not a number; "
          "write a fraction, e.g. 0.08 for 8%"]),
        (("severity: warning", "severity: warning\nseverity: critical"),
         ["source:29:1: severity: appears twice (first on line 28)"]),
        (("id: report-rework-rate-high", "id: rework-other"),
         ["source:19:1: id: the draft's id is 'rework-other', the path's "
          "'report-rework-rate-high'"]),
        ((REWORK, ""), ["source: the file is empty; write a rule"]),
    ],
)  # fmt: skip
def test_a_wrong_draft_is_refused_with_the_loaders_errors(
    client: TestClient, change: tuple[str, str], messages: list[str]
) -> None:
    draft = REWORK.replace(*change)
    for route, body in [
        ("test", {"tests": shipped("report-rework-rate"), "source": draft}),
        ("backtest", {"source": draft}),
    ]:
        answer = client.post(f"/v1/rules/report-rework-rate-high/{route}", json=body)
        problem = problem_of(answer, 422)
        assert [error["loc"] for error in problem["errors"]] == ["body.source"] * len(messages)
        for error, message in zip(problem["errors"], messages, strict=True):
            assert error["msg"].startswith(message)
        assert problem["detail"].endswith(problem["errors"][0]["msg"])


def test_a_field_not_of_the_body_is_refused(client: TestClient) -> None:
    answer = client.post(
        "/v1/rules/report-rework-rate-high/test",
        json={"tests": shipped("report-rework-rate"), "sourse": REWORK},
    )
    assert problem_of(answer, 422)["errors"][0]["loc"] == "body.sourse"


# POST /v1/rules/{rule_id}/backtest


@pytest.mark.parametrize("since", ["3x", "0s", "367d", "30", "", "99999999999999999999d"])
def test_since_must_be_a_duration_up_to_366_days(client: TestClient, since: str) -> None:
    answer = client.post("/v1/rules/report-rework-rate-high/backtest", json={"since": since})
    body = problem_of(answer, 422)
    assert body["errors"][0]["loc"] == "body.since"
    assert f"{since!r} is not a duration from 1s to 366d" in body["errors"][0]["msg"]


@pytest.mark.parametrize("rule_id", ["goal-failing-impact", "key-result-past-due"])
def test_a_rule_judged_on_goal_events_is_not_backtested(client: TestClient, rule_id: str) -> None:
    body = problem_of(client.post(f"/v1/rules/{rule_id}/backtest", json={}), 422)
    assert "backtest takes threshold, overdue (absent_for) and fraud rules" in body["detail"]
    assert body["errors"][0]["loc"] == "path.rule_id"


def test_an_unknown_rule_is_not_backtested(client: TestClient) -> None:
    body = problem_of(client.post("/v1/rules/report-rework-rate-hihg/backtest", json={}), 404)
    assert "report-rework-rate-high" in body["close_ids"]


def test_nats_unreachable_is_a_503_that_says_so(client: TestClient) -> None:
    answer = client.post("/v1/rules/report-rework-rate-high/backtest", json={"since": "1h"})
    body = problem_of(answer, 503)
    assert body["detail"].startswith(
        "cannot read the stored metric events: NATS did not answer (NoServersError"
    )
    assert NOWHERE not in body["detail"]  # an address may carry a password
    assert answer.headers["retry-after"] == "5"


def turnaround(subject: str, day: int, value: float) -> MetricRecorded:
    return MetricRecorded(
        id=f"{subject}-{day}",
        metric="report_turnaround_hours",
        value=value,
        time=T0 + timedelta(days=day),
        subject=subject,
        source="his",
    )


@pytest.fixture
def history(monkeypatch: pytest.MonkeyPatch) -> list[MetricRecorded]:
    """The stored history the backtest reads, in place of NATS."""
    stored: list[MetricRecorded] = []

    async def stored_events(
        nats_url: str, metric: str, start: datetime
    ) -> tuple[list[MetricRecorded], int]:
        return [event for event in stored if event.metric == metric], 1

    monkeypatch.setattr(backtest_module, "_stored_events", stored_events)
    return stored


def test_a_rule_scoped_by_org_unit_fires_as_live_with_names_from_the_directory(
    client: TestClient, history: list[MetricRecorded], people: People, names: Names
) -> None:
    history += [
        *(turnaround(subject, day, 60) for subject in ("li-na", "zhou-min", "chen-jie", "guest-7")
          for day in (0, 1)),
        turnaround("li-na", 2, 30),
    ]  # fmt: skip
    answer = client.post("/v1/rules/radiology-turnaround-slow/backtest", json={"since": "30d"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # Radiology and its CT team, not cardiology, not someone the directory does not know.
    assert [(a["state"], a["alert"]["subject"]) for a in body["alerts"]] == [
        ("firing", "li-na"), ("firing", "zhou-min"), ("resolved", "li-na")
    ]  # fmt: skip
    assert body["alerts"][0]["alert"]["message"].startswith("Dr. Li Na: reports took 60 hours")
    assert body["alerts"][1]["alert"]["subject_name"] == "Dr. Zhou Min"
    assert {key: body[key] for key in ("events", "skipped", "fired", "resolved", "truncated")} == {
        "events": 9, "skipped": 1, "fired": 2, "resolved": 1, "truncated": False
    }  # fmt: skip
    assert body["fired_per_day"] == {"2026-11-03": 2}
    assert body["draft"] is False
    # Every subject met, looked up at once; goals asked about nobody (all who alerted named).
    assert people.asked == [["chen-jie", "guest-7", "li-na", "zhou-min"]]
    assert names.asked == []


def test_who_alerted_unknown_to_the_directory_is_named_by_goals_or_by_id(
    client: TestClient, history: list[MetricRecorded], names: Names
) -> None:
    history += [
        turnaround(subject, day, 60)
        for subject in ("guest-7", "guest-8", "guest-9", "li-na")
        for day in (0, 1)
    ]
    draft = (REPO / "rules" / "radiology-turnaround-slow.yaml").read_text(encoding="utf-8")
    draft = draft.replace("org_unit: radiology\n", "")  # everyone
    answer = client.post(
        "/v1/rules/radiology-turnaround-slow/backtest", json={"since": "7d", "source": draft}
    )
    assert answer.status_code == 200, answer.text
    named = {a["alert"]["subject"]: a["alert"]["subject_name"] for a in answer.json()["alerts"]}
    # guest-8 is unknown to goals too, guest-9's lookup failed: both named by their id.
    assert named == {
        "guest-7": "Guest Seven", "guest-8": "guest-8", "guest-9": "guest-9", "li-na": "Dr. Li Na"
    }  # fmt: skip
    assert sorted(names.asked) == ["guest-7", "guest-8", "guest-9"]
    assert answer.json()["draft"] is True


def test_alerts_listed_are_capped_and_the_counts_are_not(
    client: TestClient, history: list[MetricRecorded]
) -> None:
    # Above 48 then below, day after day: one firing and one resolution a day.
    days = MAX_LISTED_ALERTS // 2 + 1
    history += [turnaround("li-na", day, 60 if day % 2 == 0 else 30) for day in range(days * 2)]
    draft = (REPO / "rules" / "radiology-turnaround-slow.yaml").read_text(encoding="utf-8")
    draft = draft.replace("consecutive: 2", "consecutive: 1")
    answer = client.post(
        "/v1/rules/radiology-turnaround-slow/backtest", json={"since": "366d", "source": draft}
    )
    body = answer.json()
    assert (body["fired"], body["resolved"]) == (days, days)
    assert len(body["alerts"]) == MAX_LISTED_ALERTS and body["truncated"] is True
    assert sum(body["fired_per_day"].values()) == days


def test_an_error_quoting_a_long_value_is_cut_short(client: TestClient) -> None:
    tests = shipped("report-rework-rate").replace(
        '"2026-11-01T18:00:00+08:00"', '"' + "9" * 20_000 + '"', 1
    )
    answer = client.post("/v1/rules/report-rework-rate-high/test", json={"tests": tests})
    [error] = problem_of(answer, 422)["errors"]
    assert error["msg"].startswith("tests:10:57: events[0].time: '999")
    assert len(error["msg"]) == 500 and error["msg"].endswith("…")
