"""The fault harness's workload, its receiver and its arithmetic, without servers."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest

from goalwatch.cli import main
from goalwatch.contracts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from goalwatch.dev.fault_counts import (
    Arrival,
    Counts,
    Outcome,
    Receiver,
    error_lines,
    repeats_per_kill,
    tally,
)
from goalwatch.dev.fault_workload import (
    Workload,
    batches,
    burst_batches,
    burst_days,
    burst_people,
    burst_transitions,
    expected_transitions,
    people,
)
from goalwatch.dev.faults import scenarios
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
    assert {
        "none",
        "kill-nats",
        "kill-redis",
        "redis-aof-cut",
        "webhook-500",
        "kill-evaluator-4x",
        "kill-notifier-after-2xx",
        "burst",
    } <= set(names)


def test_only_scenarios_killing_the_notifier_may_repeat_and_the_baseline_must_be_quiet() -> None:
    known = {s.name: s for s in scenarios()}
    assert {n for n, s in known.items() if s.allows_duplicates} == {
        "kill-notifier",
        "kill-notifier-in-batch",
        "kill-notifier-after-2xx",
    }
    assert known["burst"].quiet and known["none"].quiet
    assert not known["kill-evaluator"].quiet


def test_the_burst_deals_its_events_evenly_and_keeps_each_subject_in_one_request() -> None:
    workload = Workload(burst_events=10_000, burst_subjects=3_000)
    days = burst_days(workload)
    assert sum(days) == 10_000
    assert sorted(set(days)) == [3, 4] and days.count(4) == 1_000
    plan = burst_batches(workload, max_batch=1000)
    assert all(len(batch) <= 1000 for batch in plan)
    assert sum(map(len, plan)) == 10_000
    requests: dict[str, set[int]] = {}
    for k, batch in enumerate(plan):
        for event in batch:
            requests.setdefault(event["subject"], set()).add(k)
    assert len(requests) == 3_000
    assert all(len(ks) == 1 for ks in requests.values())
    ids = [event["id"] for batch in plan for event in batch]
    assert len(set(ids)) == len(ids)
    assert len(burst_transitions(workload)) == 3_000
    # Its people are apart from the stream's, with their own managers.
    names = {p["id"] for p in burst_people(workload)}
    assert not names & {p["id"] for p in people(Workload())}
    assert len(names) == 3_000 + 300


def test_burst_subjects_with_fewer_than_three_days_fire_nothing() -> None:
    workload = Workload(burst_events=7, burst_subjects=3)
    assert burst_days(workload) == [3, 2, 2]
    assert [t[0] for t in burst_transitions(workload)] == ["b0000"]


def test_a_subject_with_more_days_than_a_request_holds_is_split_in_order() -> None:
    plan = burst_batches(Workload(burst_events=5, burst_subjects=1), max_batch=2)
    assert [[e["id"] for e in batch] for batch in plan] == [
        ["b0000-d0", "b0000-d1"],
        ["b0000-d2", "b0000-d3"],
        ["b0000-d4"],
    ]


def test_tally_counts_copies_under_another_idempotency_key() -> None:
    a, b = (("a", "firing", START), ("b", "firing", START))
    arrivals = [
        Arrival(a, 1.0, degraded=False, key="k1"),
        Arrival(a, 2.0, degraded=False, key="k1"),  # a repeat the receiver can drop
        Arrival(b, 1.0, degraded=False, key="k2"),
        Arrival(b, 2.0, degraded=False, key="k3"),  # a repeat it cannot recognise
    ]
    counts = tally({a: 0.0, b: 0.0}, arrivals, recovered=0.0)
    assert (counts.duplicated, counts.rekeyed) == (2, 1)


def test_each_repeat_is_put_on_the_first_kill_after_its_first_copy() -> None:
    a, b, c, d = ((s, "firing", START) for s in "abcd")
    arrivals = [
        Arrival(a, 1.0, degraded=False),
        Arrival(b, 1.5, degraded=False),
        Arrival(c, 4.0, degraded=False),
        Arrival(a, 70.0, degraded=False),  # answered before the kill at 2, sent again
        Arrival(b, 71.0, degraded=False),
        Arrival(c, 72.0, degraded=False),  # before the kill at 5
        Arrival(d, 9.0, degraded=False),
        Arrival(d, 80.0, degraded=False),  # after the last kill: no kill to blame
    ]
    assert repeats_per_kill(arrivals, [5.0, 2.0, 3.0]) == [2, 0, 1]
    assert repeats_per_kill(arrivals, []) == []


def test_error_lines_are_error_records_and_tracebacks() -> None:
    log = "\n".join(
        [
            json.dumps({"level": "INFO", "message": "started"}),
            json.dumps({"level": "WARNING", "message": "goals slow"}),
            json.dumps({"level": "ERROR", "message": "publish failed"}),
            json.dumps({"level": "INFO", "message": "x", "exc_info": "Traceback (most recent"}),
            "Traceback (most recent call last):",
            '  File "x.py", line 1, in <module>',
            json.dumps({"level": "CRITICAL", "message": "down"}),
            "not json at all",
        ]
    )
    lines = log.splitlines()
    assert error_lines(log) == [lines[2], lines[3], lines[4], lines[6]]
    assert error_lines("") == []


def _outcome(**changes: object) -> Outcome:
    counts = Counts(
        expected=10, received=10, lost=0, duplicated=0, late=0, unexpected=0, degraded=0,
        latest=1.0,
    )  # fmt: skip
    fields: dict[str, object] = {
        "scenario": "x",
        "counts": counts,
        "dead_letters": 0,
        "held": 0,
        "refused": 0,
        "invalid": 0,
        "resent": 0,
        "seconds": 40.0,
        "notes": (),
    }
    return Outcome(**(fields | changes))  # type: ignore[arg-type]


def test_what_breaks_the_promise() -> None:
    assert _outcome().problems() == []
    repeated = Counts(
        expected=10, received=10, lost=0, duplicated=2, late=0, unexpected=0, degraded=0,
        latest=1.0,
    )  # fmt: skip
    assert _outcome(counts=repeated).problems() == ["2 duplicated"]
    # The documented exception: a killed notifier's repeat, under the first copy's key.
    assert _outcome(counts=repeated, allows_duplicates=True).problems() == []
    rekeyed = replace(repeated, rekeyed=1)
    assert _outcome(counts=rekeyed, allows_duplicates=True).problems() == [
        "2 duplicated",
        "1 copies under another Idempotency-Key",
    ]
    logged = {"evaluator": ["boom"], "goals": []}
    assert _outcome(errors=logged).problems() == []
    assert _outcome(errors=logged, quiet=True).problems() == ["1 errors logged"]
    assert "evaluator 1" in _outcome(errors=logged).row()
    assert _outcome(dead_letters=3, held=1).problems() == ["3 dead letters", "1 held at the end"]


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


def test_a_request_cut_short_is_counted_apart_from_bad_signatures() -> None:
    receiver = Receiver("right")
    try:
        port = int(receiver.url.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b'POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"state"')
            sock.shutdown(socket.SHUT_WR)  # the sender dies mid-body
            sock.recv(1024)  # the receiver closes without answering
        assert (receiver.cut, receiver.invalid, receiver.snapshot()) == (1, 0, [])
    finally:
        receiver.close()
