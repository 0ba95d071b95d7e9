"""The fault harness's workload, its receiver and its arithmetic, without servers."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from goalwatch.cli import main
from goalwatch.contracts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from goalwatch.dev.faults import (
    Arrival,
    Receiver,
    Workload,
    batches,
    expected_transitions,
    people,
    scenarios,
    tally,
)
from goalwatch.dev.stack import services

START = datetime(2026, 1, 1, 18, tzinfo=UTC)


def test_every_subject_gets_its_three_days_in_order_spread_over_the_stream() -> None:
    plan = batches(Workload(subjects=45))
    assert len(plan) == 5 + 2  # five groups of up to ten, and two more days for the last
    seen: dict[str, list[str]] = {}
    for batch in plan:
        for event in batch:
            seen.setdefault(event["subject"], []).append(event["time"])
    assert len(seen) == 45
    assert all(times == sorted(times) and len(set(times)) == 3 for times in seen.values())
    # Alerts (day three) fire from the third batch to the last, not all at the end.
    firing = [sum(1 for e in batch if e["id"].endswith("-d2")) for batch in plan]
    assert firing == [0, 0, 10, 10, 10, 10, 5]


def test_ten_people_to_a_manager_and_one_firing_each() -> None:
    workload = Workload(subjects=25)
    everyone = people(workload)
    managers = Counter(p["manager_id"] for p in everyone if "manager_id" in p)
    assert sorted(managers.values()) == [5, 10, 10]
    assert len(everyone) == 25 + 3
    assert {t[1] for t in expected_transitions(workload)} == {"firing"}
    assert len(set(expected_transitions(workload))) == 25


def test_tally_counts_lost_duplicated_late_and_degraded() -> None:
    a, b, c, d = ((s, "firing", START) for s in "abcd")
    due = {a: 10.0, b: 10.0, c: 10.0, d: 100.0}
    arrivals = [
        Arrival(a, 11.0, degraded=False),
        Arrival(b, 12.0, degraded=True),
        Arrival(b, 300.0, degraded=False),  # the same transition again
        Arrival(d, 200.0, degraded=False),  # 100 s after it was due, 150 s after recovery
        Arrival(("x", "firing", START), 13.0, degraded=False),
    ]
    counts = tally(due, arrivals, recovered=50.0, late_after=60.0)
    assert (counts.expected, counts.received, counts.lost) == (4, 3, 1)
    assert counts.duplicated == 1
    assert counts.late == 1
    assert counts.unexpected == 1
    assert counts.degraded == 1
    assert counts.latest == 150.0


def test_an_arrival_soon_after_recovery_is_not_late() -> None:
    a = ("a", "firing", START)
    counts = tally({a: 0.0}, [Arrival(a, 100.0, degraded=False)], recovered=90.0, late_after=60.0)
    assert counts.late == 0
    assert counts.lost == 0


def test_nothing_received_has_no_latest_arrival() -> None:
    counts = tally({("a", "firing", START): 0.0}, [], recovered=1.0)
    assert counts.latest is None
    assert counts.lost == 1


def test_every_service_is_killed_in_some_scenario_and_names_are_unique() -> None:
    names = [s.name for s in scenarios()]
    assert len(names) == len(set(names))
    for service in services():
        assert f"kill-{service}" in names
        assert f"kill-{service}-in-batch" in names
    assert {"none", "kill-nats", "kill-redis", "redis-aof-cut", "webhook-500"} <= set(names)


def _post(receiver: Receiver, payload: dict[str, object], *, secret: str) -> int:
    body = json.dumps(payload).encode()
    stamp = int(time.time())
    headers = {
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret=secret, timestamp=stamp, body=body),
        "Content-Type": "application/json",
    }
    return httpx.post(receiver.url, content=body, headers=headers).status_code


def test_the_receiver_checks_signatures_and_refuses_during_an_outage() -> None:
    receiver = Receiver("right")
    payload = {
        "state": "firing",
        "subject": {"id": "s0001", "name": "s0001"},
        "started_at": "2026-01-01T18:00:00Z",
    }
    try:
        assert _post(receiver, payload, secret="wrong") == 401
        assert _post(receiver, payload, secret="right") == 204
        receiver.fail_until = time.monotonic() + 60
        assert _post(receiver, payload, secret="right") == 500
        assert (receiver.invalid, receiver.refused) == (1, 1)
        [arrival] = receiver.snapshot()
        assert arrival.transition == ("s0001", "firing", START)
        assert arrival.degraded  # the id stood in for the name
    finally:
        receiver.close()


def test_the_cli_lists_scenarios_and_refuses_unknown_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["faults", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [s.name for s in scenarios()]
    assert main(["faults", "--scenario", "no-such-fault"]) == 2
    assert "no-such-fault" in capsys.readouterr().err
