"""goalwatch rules backtest, and the evaluator's backtest endpoint, against a real
nats-server: the stored metric events, read again from a start time, run through one rule;
nothing is published."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from goalwatch.cli import main
from goalwatch.contracts import subjects
from goalwatch.messaging import ensure_streams
from goalwatch.problems import install_problem_handlers
from services.evaluator.rule_checks import rule_checks_router
from tests.integration.test_timers import NatsServer
from tests.unit.signed_in import signed_in
from tests.unit.test_rule_checks import DIRECTORY, Names, People

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    running = NatsServer(store=tmp_path_factory.mktemp("backtest-nats"))
    running.start()
    asyncio.run(ensure_streams(running.url))
    yield running
    assert running.process is not None
    running.process.terminate()
    running.process.wait()


def event(subject: str, day: int, value: float, metric: str = "report_rework_rate") -> bytes:
    return json.dumps(
        {
            "id": f"bt-{subject}-{metric}-{day}",
            "metric": metric,
            "value": value,
            "time": f"2026-11-0{day}T18:00:00+08:00",
            "subject": subject,
            "source": "his",
        }
    ).encode()


async def store(url: str, messages: list[bytes]) -> int:
    """Publish ``messages`` to the metrics stream as ingestion would; the stream's count."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for message in messages:
            await js.publish(subjects.METRICS_RECORDED, message, stream=subjects.STREAM_METRICS)
        return int((await js.stream_info(subjects.STREAM_METRICS)).state.messages)
    finally:
        await nc.close()


def test_backtest_prints_what_the_rule_would_have_fired_and_sends_nothing(
    server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = asyncio.run(
        store(
            server.url,
            [event("zhou-min", day, value) for day, value in [(1, 0.11), (2, 0.12), (3, 0.09)]]
            + [event("li-na", day, value) for day, value in [(1, 0.10), (2, 0.05), (3, 0.11)]]
            + [event("zhou-min", 4, 0.04)]
            + [event("zhou-min", 1, 30.0, metric="report_turnaround_hours")]
            + [b"not a metric event"],
        )
    )
    code = main(
        ["rules", "backtest", "report-rework-rate-high", "--since", "1h", "--nats", server.url,
         "--rules", str(REPO / "rules")]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["FIRING", "RESOLVED"]
    assert "zhou-min" in lines[0] and "12%" not in lines[0]  # named by id, its 9%
    assert lines[2] == "fired per day: 2026-11-03 1"
    assert "7 events of report_rework_rate" in err
    assert "1 fired, 1 resolved; nothing was sent" in err
    assert asyncio.run(store(server.url, [])) == stored  # nothing published


def test_backtest_says_what_is_wrong(
    server: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = str(REPO / "rules")
    assert main(["rules", "backtest", "report-rework", "--rules", rules]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert main(["rules", "backtest", "report-rework-rate-high", "--since", "3x",
                 "--rules", rules]) == 2  # fmt: skip
    assert "is not a duration" in capsys.readouterr().err
    assert main(["rules", "backtest", "goal-failing-impact", "--rules", rules]) == 2
    assert "judged on goal events" in capsys.readouterr().err
    nowhere = "nats://127.0.0.1:1"
    assert main(["rules", "backtest", "report-rework-rate-high", "--nats", nowhere,
                 "--rules", rules]) == 2  # fmt: skip
    assert "cannot read the stored events" in capsys.readouterr().err


# The same backtest through the evaluator's POST /v1/rules/{rule_id}/backtest: a draft of a
# rule scoped by org unit, over a metric of its own, with the directory in memory.
API_DRAFT = """\
id: api-backtest-slow
name: Turnaround above 48 hours on 2 consecutive days, in radiology
kind: threshold
metric: api_backtest_hours
org_unit: radiology
condition: {op: ">", value: 48, consecutive: 2}
severity: warning
notify: [subject, manager]
message: "{subject_name}: {value:g} hours"
"""


def checks_client(url: str, people: People) -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(
        rule_checks_router(
            lambda _: None, rule_ids=list, nats=url, names=Names({}), directory=people
        )
    )
    # The route on its own, signed in (access is tested through the services: test_access.py).
    return TestClient(signed_in(app))


def test_the_endpoint_backtests_a_draft_with_the_directorys_names_and_units(
    server: NatsServer,
) -> None:
    metric = "api_backtest_hours"
    stored = asyncio.run(
        store(
            server.url,
            [event(subject, day, 60.0, metric=metric) for subject in ("li-na", "chen-jie")
             for day in (1, 2)] + [event("li-na", 3, 30.0, metric=metric)],
        )
    )  # fmt: skip
    people = People(DIRECTORY)
    with checks_client(server.url, people) as client:
        answer = client.post(
            "/v1/rules/api-backtest-slow/backtest", json={"since": "1h", "source": API_DRAFT}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # Li Na is in radiology, Chen Jie in cardiology: only hers fires, under her name.
    assert [(a["state"], a["alert"]["subject_name"]) for a in body["alerts"]] == [
        ("firing", "Dr. Li Na"), ("resolved", "Dr. Li Na")
    ]  # fmt: skip
    assert (body["events"], body["fired"], body["resolved"]) == (5, 1, 1)
    assert body["fired_per_day"] == {"2026-11-02": 1}
    assert people.asked == [["chen-jie", "li-na"]]
    assert asyncio.run(store(server.url, [])) == stored  # nothing published


def test_the_endpoint_says_when_nats_has_no_metrics_stream(tmp_path: Path) -> None:
    bare = NatsServer(store=tmp_path)  # no streams made
    bare.start()
    try:
        with checks_client(bare.url, People([])) as client:
            answer = client.post("/v1/rules/api-backtest-slow/backtest", json={"source": API_DRAFT})
    finally:
        assert bare.process is not None
        bare.process.terminate()
        bare.process.wait()
    assert answer.status_code == 503
    assert answer.json()["detail"].startswith(
        "cannot read the stored metric events: NATS has no stream GOALWATCH_METRICS"
    )
