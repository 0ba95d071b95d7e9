"""Rules changed over the API while the services run: stored with their history, picked up by
every evaluator replica without a restart, nothing lost or fired twice while events flow."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookReceiver, stack_of_its_own
from tests.integration.helpers import alerts_about, await_drained, unique

pytestmark = pytest.mark.integration

NOISE_RULE = """\
id: ward-noise-high
name: Ward noise above 70 dB
kind: threshold
metric: ward_noise_level
condition: {op: ">", value: 70}
severity: warning
notify: [subject]
message: "{subject_name}: noise {value:g} dB"
"""

FALLS_RULE = """\
id: ward-falls
name: Patient falls on a ward
kind: threshold
metric: ward_falls
condition: {op: ">=", value: 2}
severity: warning
notify: [subject]
message: "{subject_name}: {value:g} falls"
"""


@pytest.fixture(scope="module")
def rules_stack(
    tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver
) -> Iterator[Stack]:
    with stack_of_its_own(tmp_path_factory, webhook, name="rules-api") as running:
        yield running


@pytest.fixture
def http(rules_stack: Stack) -> Iterator[httpx.Client]:
    with rules_stack.client(timeout=10.0) as client:
        yield client


def reading(subject: str, n: int, metric: str, value: float) -> dict[str, Any]:
    at = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=n)
    return {
        "id": f"{subject}-{metric}-{n}",
        "metric": metric,
        "value": value,
        "time": at.isoformat(),
        "subject": subject,
        "source": "his",
    }


def await_version(client: httpx.Client, url: str, rule_id: str, version: int) -> float:
    """Seconds until the evaluator at ``url`` holds ``version`` of ``rule_id`` (fails after 5)."""
    start = time.monotonic()
    while time.monotonic() - start < 5.0:
        answer = client.get(f"{url}/v1/rules/{rule_id}")
        if answer.status_code == 200 and (answer.json()["version"] or 0) >= version:
            return time.monotonic() - start
        time.sleep(0.01)  # the replica's own view over HTTP: there is no event to await here
    raise AssertionError(f"{url} did not hold {rule_id} version {version} within 5 s")


def test_a_rule_is_created_changed_disabled_and_rolled_back_with_its_history(
    rules_stack: Stack, http: httpx.Client
) -> None:
    evaluator = rules_stack.settings.url("evaluator")
    user = rules_stack.auth_headers("wang-fang")
    created = http.post(
        f"{evaluator}/v1/rules",
        json={"source": NOISE_RULE, "comment": "quiet wards"},
        headers=user,
    )
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.json()["enabled"] is True
    assert created.json()["changed_by"] == "wang-fang"
    # The same id again is refused; so is a draft lint refuses, with the lint messages.
    assert http.post(f"{evaluator}/v1/rules", json={"source": NOISE_RULE}).status_code == 409
    bad = http.post(
        f"{evaluator}/v1/rules",
        json={"source": NOISE_RULE.replace("ward-noise-high", "n2").replace("ward_noise_level", "ward_noise_levl"),
              "file": "n2.yaml"},
    )  # fmt: skip
    assert bad.status_code == 422
    [problem] = bad.json()["problems"]
    assert problem["text"].startswith("n2.yaml:4:1: metric: unknown metric")
    assert "ward_noise_level" in problem["message"]  # the closest catalogued name

    # Raise the threshold; then switch it off; then roll back to version 1.
    changed = http.put(
        f"{evaluator}/v1/rules/ward-noise-high",
        json={"source": NOISE_RULE.replace("value: 70", "value: 75"), "comment": "too loud",
              "version": 1},
        headers=user,
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2 and changed.json()["condition"]["value"] == 75
    stale = http.put(
        f"{evaluator}/v1/rules/ward-noise-high",
        json={"source": NOISE_RULE.replace("value: 70", "value: 80"), "version": 1},
    )
    assert stale.status_code == 409
    off = http.post(f"{evaluator}/v1/rules/ward-noise-high/disable", json={"comment": "pause"})
    assert off.json()["enabled"] is False and off.json()["version"] == 3
    back = http.post(
        f"{evaluator}/v1/rules/ward-noise-high/rollback",
        json={"version": 1, "comment": "as before"},
        headers=user,
    )
    assert back.status_code == 200, back.text
    assert back.json()["version"] == 4 and back.json()["enabled"] is True
    assert back.json()["condition"]["value"] == 70

    history = http.get(f"{evaluator}/v1/rules/ward-noise-high/versions").json()
    assert [(v["version"], v["action"]) for v in history] == [
        (4, "rolled_back"),
        (3, "disabled"),
        (2, "updated"),
        (1, "created"),
    ]
    assert history[0]["comment"] == "rolled back to version 1: as before"
    assert '-condition: {op: ">", value: 75}' in history[0]["diff"]
    assert '+condition: {op: ">", value: 70}' in history[0]["diff"]
    assert history[2]["author"] == "wang-fang" and history[2]["comment"] == "too loud"

    deleted = http.delete(f"{evaluator}/v1/rules/ward-noise-high", params={"comment": "gone"})
    assert deleted.status_code == 200 and deleted.json()["action"] == "deleted"
    assert http.get(f"{evaluator}/v1/rules/ward-noise-high").status_code == 404
    # Its history stays, and a rollback brings it back.
    assert len(http.get(f"{evaluator}/v1/rules/ward-noise-high/versions").json()) == 5
    again = http.post(f"{evaluator}/v1/rules/ward-noise-high/rollback", json={"version": 4})
    assert again.status_code == 200 and again.json()["version"] == 6


def test_two_evaluators_pick_up_one_change_within_a_second(
    rules_stack: Stack, http: httpx.Client
) -> None:
    first = rules_stack.settings.url("evaluator")
    second = rules_stack.start_replica("evaluator", "evaluator-2")
    try:
        source = FALLS_RULE.replace("ward-falls", "ward-falls-replicas")
        created = http.post(f"{first}/v1/rules", json={"source": source})
        assert created.status_code == 201, created.text
        assert await_version(http, second, "ward-falls-replicas", 1) < 1.0
        changed = http.put(
            f"{second}/v1/rules/ward-falls-replicas",
            json={"source": source.replace("value: 2", "value: 3")},
        )
        assert changed.json()["version"] == 2
        assert await_version(http, first, "ward-falls-replicas", 2) < 1.0
        assert http.get(f"{first}/v1/rules/ward-falls-replicas").json()["condition"]["value"] == 3
    finally:
        rules_stack.kill("evaluator-2")


def test_a_rule_changed_while_events_flow_loses_nothing_and_fires_nothing_twice(
    rules_stack: Stack, http: httpx.Client
) -> None:
    evaluator = rules_stack.settings.url("evaluator")
    ingestion = rules_stack.settings.url("ingestion")
    source = FALLS_RULE.replace("ward-falls", "ward-bells").replace("ward_falls", "ward_call_bells")
    assert http.post(f"{evaluator}/v1/rules", json={"source": source}).status_code == 201
    wards = [unique("ward") for _ in range(20)]
    # Each ward: 2 (fires), 0 (resolves), 3 (fires), 1 (resolves), ... 4 (fires): 5 fired and
    # 4 resolved, whatever the rule's wording is when each is sent.
    values = [2, 0, 3, 1, 2, 0, 5, 1, 4]

    def flow() -> None:
        with rules_stack.client(timeout=10.0) as client:
            for n, value in enumerate(values):
                batch = [reading(ward, n, "ward_call_bells", value) for ward in wards]
                answer = client.post(f"{ingestion}/v1/events", json=batch)
                assert answer.status_code == 200, answer.text

    sender = threading.Thread(target=flow)
    sender.start()
    # Meanwhile the rule's wording changes, and another rule on the metric comes and goes:
    # the rule's condition, hence its state, stays the same.
    other = source.replace("ward-bells", "ward-bells-other").replace("value: 2", "value: 100")
    changes = 0
    while sender.is_alive() or changes < 6:
        changes += 1
        changed = http.put(
            f"{evaluator}/v1/rules/ward-bells",
            json={"source": source.replace('bells"', f'bells (wording {changes})"'),
                  "comment": f"wording {changes}"},
        )  # fmt: skip
        assert changed.status_code == 200, changed.text
        if changes % 2:
            assert http.post(f"{evaluator}/v1/rules", json={"source": other}).status_code == 201
        else:
            assert http.delete(f"{evaluator}/v1/rules/ward-bells-other").status_code == 200
    sender.join()
    await_drained(rules_stack.settings.nats_url)
    expected = [
        subjects.ALERTS_FIRED if value >= 2 else subjects.ALERTS_RESOLVED for value in values
    ]
    for ward in wards:
        alerts = alerts_about(rules_stack.settings.nats_url, ward)
        # Exactly these: none lost, none fired twice.
        assert [on for on, _ in alerts] == expected, ward
        assert {alert["rule_id"] for _, alert in alerts} == {"ward-bells"}


def goalwatch(*args: str, evaluator: str, token: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goalwatch.cli", "rules", *args, "--evaluator", evaluator],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "GOALWATCH_TOKEN": token},
    )


def test_the_rules_commands_push_switch_roll_back_and_export(
    rules_stack: Stack, tmp_path: Path
) -> None:
    evaluator = rules_stack.settings.url("evaluator")
    token = rules_stack.token("wang-fang")
    path = tmp_path / "ward-falls-cli.yaml"
    path.write_text(FALLS_RULE.replace("ward-falls", "ward-falls-cli"), encoding="utf-8")
    pushed = goalwatch("push", str(path), "-m", "new", evaluator=evaluator, token=token)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout == "ward-falls-cli: created, version 1\n"
    assert goalwatch("push", str(path), evaluator=evaluator, token=token).stdout == (
        "ward-falls-cli: unchanged, version 1\n"
    )
    path.write_text(path.read_text().replace("value: 2", "value: 4"), encoding="utf-8")
    assert goalwatch("push", str(path), "-m", "fewer", evaluator=evaluator, token=token).stdout == (
        "ward-falls-cli: changed, now version 2\n"
    )
    # A file with a problem is not sent: the lint line says where.
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("severity: warning", "severity: loud"))
    refused = goalwatch("push", str(bad), evaluator=evaluator, token=token)
    assert refused.returncode == 1
    assert refused.stdout.startswith(f"{bad}:6:1: severity: 'loud' is not one of")
    assert goalwatch("disable", "ward-falls-cli", evaluator=evaluator, token=token).returncode == 0
    listed = goalwatch("list", evaluator=evaluator, token=token).stdout
    [line] = [line for line in listed.splitlines() if line.startswith("ward-falls-cli ")]
    assert "v3" in line and "disabled" in line and "wang-fang" in line
    rolled = goalwatch(
        "rollback", "ward-falls-cli", "1", "-m", "undo", evaluator=evaluator, token=token
    )
    assert rolled.stdout == "ward-falls-cli: back to version 1, as version 4\n"
    history = goalwatch(
        "history", "ward-falls-cli", "--diff", evaluator=evaluator, token=token
    ).stdout
    assert history.splitlines()[0].endswith("rolled_back wang-fang: rolled back to version 1: undo")
    assert '    -condition: {op: ">=", value: 4}' in history
    exported = goalwatch("export", str(tmp_path / "out"), evaluator=evaluator, token=token)
    assert exported.returncode == 0, exported.stderr
    written = (tmp_path / "out" / "ward-falls-cli.yaml").read_text(encoding="utf-8")
    assert written == FALLS_RULE.replace("ward-falls", "ward-falls-cli")
    unreachable = goalwatch("list", evaluator="http://127.0.0.1:9")
    assert unreachable.returncode == 2 and "cannot reach the evaluator" in unreachable.stderr


def test_an_api_change_outlives_a_restart_until_its_file_changes(
    rules_stack: Stack, http: httpx.Client
) -> None:
    evaluator = rules_stack.settings.url("evaluator")
    rule = "ward-occupancy-off-range"  # a file in the stack's rules folder
    off = http.post(f"{evaluator}/v1/rules/{rule}/disable", json={"comment": "pause"})
    assert off.status_code == 200 and off.json()["enabled"] is False
    rules_stack.restart("evaluator")
    kept = http.get(f"{evaluator}/v1/rules/{rule}").json()
    assert kept["enabled"] is False and kept["version"] == off.json()["version"]
    # Someone changes the file in git: it is imported at the next start, and stays off.
    path = next(rules_stack.settings.rules_dir.glob("ward-occupancy*.yaml"))
    path.write_text(path.read_text().replace("consecutive: 2", "consecutive: 3"))
    rules_stack.restart("evaluator")
    imported = http.get(f"{evaluator}/v1/rules/{rule}").json()
    assert imported["version"] == kept["version"] + 1
    assert imported["changed_by"] == f"file:{path.name}"
    assert imported["condition"]["consecutive"] == 3 and imported["enabled"] is False


def test_a_changed_condition_carries_open_alerts_over_or_resolves_them(
    rules_stack: Stack, http: httpx.Client
) -> None:
    evaluator = rules_stack.settings.url("evaluator")
    ingestion = rules_stack.settings.url("ingestion")
    source = NOISE_RULE.replace("ward-noise-high", "ward-noise-loud").replace(
        "ward_noise_level", "ward_call_bells"
    )
    source = source.replace("value: 70", "value: 30")
    assert http.post(f"{evaluator}/v1/rules", json={"source": source}).status_code == 201
    quiet, loud = unique("ward"), unique("ward")
    first = [reading(quiet, 0, "ward_call_bells", 40), reading(loud, 0, "ward_call_bells", 90)]
    assert http.post(f"{ingestion}/v1/events", json=first).status_code == 200
    await_drained(rules_stack.settings.nats_url)
    # Raised to 50: the quiet ward's 40 no longer breaches, the loud ward's 90 still does.
    raised = http.put(
        f"{evaluator}/v1/rules/ward-noise-loud",
        json={"source": source.replace("value: 30", "value: 50"), "comment": "fewer"},
    )
    assert raised.status_code == 200, raised.text
    then = [reading(quiet, 1, "ward_call_bells", 45), reading(loud, 1, "ward_call_bells", 95)]
    assert http.post(f"{ingestion}/v1/events", json=then).status_code == 200
    await_drained(rules_stack.settings.nats_url)

    def of_the_rule(ward: str) -> list[str]:
        alerts = alerts_about(rules_stack.settings.nats_url, ward)
        return [on for on, alert in alerts if alert["rule_id"] == "ward-noise-loud"]

    assert of_the_rule(quiet) == [subjects.ALERTS_FIRED, subjects.ALERTS_RESOLVED]
    assert of_the_rule(loud) == [subjects.ALERTS_FIRED]  # carried over, not sent again


def test_a_rule_is_tested_and_backtested_through_the_running_evaluator(
    rules_stack: Stack, http: httpx.Client
) -> None:
    evaluator = rules_stack.settings.url("evaluator")
    ingestion = rules_stack.settings.url("ingestion")
    source = FALLS_RULE.replace("ward-falls", "ward-falls-checked")
    assert http.post(f"{evaluator}/v1/rules", json={"source": source}).status_code == 201
    tests = """\
name: two falls fire
events:
  - {id: f1, metric: ward_falls, value: 2, time: "2026-11-02T08:00:00Z", subject: w1, source: his}
expect:
  - {state: firing, rule: ward-falls-checked, subject: w1, at: "2026-11-02T08:00:00Z"}
"""
    tested = http.post(f"{evaluator}/v1/rules/ward-falls-checked/test", json={"tests": tests})
    assert tested.status_code == 200, tested.text
    assert tested.json()["passed"] is True
    # The same test against a draft that needs three falls fails, and says why.
    draft = source.replace("value: 2", "value: 3")
    failed = http.post(
        f"{evaluator}/v1/rules/ward-falls-checked/test", json={"tests": tests, "source": draft}
    )
    assert failed.json()["passed"] is False and "expected:" in failed.json()["failures"]
    ward = unique("ward")
    events = [reading(ward, n, "ward_falls", value) for n, value in enumerate([1, 2, 0, 5])]
    events = [{**event, "time": (datetime.now(UTC) - timedelta(hours=4 - n)).isoformat()}
              for n, event in enumerate(events)]  # fmt: skip
    assert http.post(f"{ingestion}/v1/events", json=events).status_code == 200
    backtest = http.post(f"{evaluator}/v1/rules/ward-falls-checked/backtest", json={"since": "1d"})
    assert backtest.status_code == 200, backtest.text
    mine = [one["state"] for one in backtest.json()["alerts"] if one["alert"]["subject"] == ward]
    assert mine == ["firing", "resolved", "firing"]
