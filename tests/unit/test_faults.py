"""The fault harness's workload, its receiver and its arithmetic, without servers."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from goalwatch.cli import main
from goalwatch.contracts import Severity
from goalwatch.contracts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from goalwatch.dev.fault_counts import (
    Arrival,
    Counts,
    Outcome,
    Receiver,
    error_lines,
    kinds_note,
    missing,
    repeats_per_kill,
    tally,
    tally_by_kind,
)
from goalwatch.dev.fault_workload import (
    ESCALATION,
    FOR,
    HEARTBEAT_METRIC,
    HEARTBEAT_RULE_ID,
    IMPACT_EPISODES,
    OTHER_UNIT,
    PRESSURE_METRIC,
    PRESSURE_RULE_ID,
    UNIT_METRIC,
    UNIT_RULE_ID,
    WATCHED_UNIT,
    Workload,
    absence_transition,
    batches,
    burst_batches,
    burst_days,
    burst_people,
    burst_transitions,
    expected_transitions,
    heartbeat_rule,
    heartbeats,
    impact_goals,
    movers,
    org_units,
    people,
    pressure_readings,
    pressure_rule,
    pressure_transitions,
    status_changes,
    unit_readings,
    unit_transitions,
)
from goalwatch.dev.faults import harness_rules, scenarios
from goalwatch.dev.stack import pipeline_services
from goalwatch.rules.loader import load_rules
from goalwatch.rules.spec import RuleKind, RuleSpec

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


def test_tally_counts_transitions_that_came_before_an_earlier_one_of_their_episode() -> None:
    fired, rise, end = (("a", state, START) for state in ("firing", "firing:critical", "resolved"))
    other_episode = ("a", "firing", START + timedelta(days=1))
    due = dict.fromkeys((fired, rise, end, other_episode), 0.0)
    arrivals = [
        Arrival(other_episode, 1.0, degraded=False),  # another episode: in any order
        Arrival(end, 2.0, degraded=False),  # before the firing and the escalation
        Arrival(fired, 3.0, degraded=False),
        Arrival(end, 3.5, degraded=False),  # a later copy does not count
        Arrival(rise, 4.0, degraded=False),
    ]
    assert tally(due, arrivals, recovered=0.0).out_of_order == 1
    in_order = [Arrival(t, n, degraded=False) for n, t in enumerate((fired, rise, end))]
    assert tally(due, in_order, recovered=0.0).out_of_order == 0


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
    for service in pipeline_services():
        assert f"kill-{service}" in names
        assert f"kill-{service}-in-batch" in names
    assert {
        "none",
        "kill-evaluator-in-timer",
        "kill-evaluator-in-impact",
        "kill-goals-before-publish",
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


def test_the_first_subject_of_each_group_sends_one_heartbeat_stamped_in_whole_seconds() -> None:
    workload = Workload(subjects=25)
    at = datetime(2026, 12, 2, 17, 0, 5, 750_000, tzinfo=UTC)
    sent = [heartbeats(workload, k, at) for k in range(len(batches(workload)))]
    assert [[b["subject"] for b in beats] for beats in sent] == [["s0000"], ["s0010"], ["s0020"],
                                                                 [], []]  # fmt: skip
    (beat,) = sent[1]
    assert beat["metric"] == HEARTBEAT_METRIC
    assert datetime.fromisoformat(beat["time"]) == at.replace(microsecond=0)
    ids = [b["id"] for beats in sent for b in beats]
    assert len(set(ids)) == len(ids)


def test_a_heartbeat_never_followed_is_due_at_its_time_plus_absent_for() -> None:
    workload = Workload(duration=40.0)
    assert workload.absent_for == 10  # a quarter of the stream: due around the fault
    (beat,) = heartbeats(workload, 0, datetime(2026, 12, 2, 17, 0, 5, tzinfo=UTC))
    assert absence_transition(beat, workload) == (
        "s0000",
        "firing",
        datetime(2026, 12, 2, 17, 0, 15, tzinfo=UTC),
    )
    assert Workload(duration=1.0).absent_for == 1


def test_the_heartbeat_rule_loads_as_an_overdue_rule_beside_the_given_rules(
    tmp_path: Path,
) -> None:
    given = tmp_path / "given"
    given.mkdir()
    (given / "other.yaml").write_text("not even read as a rule here\n", encoding="utf-8")
    rules = harness_rules(given, tmp_path / "run", Workload(duration=20.0))
    assert sorted(p.name for p in rules.iterdir()) == ["faults-heartbeat-missing.yaml",
                                                       "faults-pressure-high.yaml",
                                                       "faults-unit-load-high.yaml",
                                                       "other.yaml"]  # fmt: skip
    (rules / "other.yaml").unlink()
    loaded = {rule.spec.id: rule.spec for rule in load_rules(rules)}
    spec = loaded[HEARTBEAT_RULE_ID]
    assert isinstance(spec, RuleSpec)
    assert (spec.id, spec.kind, spec.metric) == (HEARTBEAT_RULE_ID, RuleKind.OVERDUE,
                                                 HEARTBEAT_METRIC)  # fmt: skip
    assert "5s" in heartbeat_rule(Workload(duration=20.0))
    pressure = loaded[PRESSURE_RULE_ID]
    assert isinstance(pressure, RuleSpec)
    assert (pressure.kind, pressure.metric) == (RuleKind.THRESHOLD, PRESSURE_METRIC)
    # 20 s: fires 2 s (for) after its reading at warning, critical 4 s after it.
    assert pressure.threshold.for_ == timedelta(seconds=2)
    assert pressure.severity is Severity.WARNING
    assert [(step.after, step.severity) for step in pressure.escalate] == [
        (timedelta(seconds=4), Severity.CRITICAL)
    ]
    scoped = loaded[UNIT_RULE_ID]
    assert isinstance(scoped, RuleSpec)
    assert (scoped.kind, scoped.metric, scoped.scope) == (
        RuleKind.THRESHOLD,
        UNIT_METRIC,
        (WATCHED_UNIT,),
    )


def test_movers_swap_units_and_only_those_moved_into_the_watched_unit_must_fire() -> None:
    workload = Workload(subjects=45)  # five groups; the last has five subjects
    before, after = movers(workload, moved=False), movers(workload, moved=True)
    assert [p["id"] for p in before] == [p["id"] for p in after] == [
        "s0003", "s0013", "s0023", "s0033", "s0043"]  # fmt: skip
    assert [p["org_unit_id"] for p in before] == [OTHER_UNIT, WATCHED_UNIT] * 2 + [OTHER_UNIT]
    assert all(a["org_unit_id"] != b["org_unit_id"] for a, b in zip(before, after, strict=True))
    # The rest of each record is as the run created it (a move replaces the whole person).
    everyone = {p["id"]: p for p in people(workload)}
    assert all({k: v for k, v in p.items() if k != "org_unit_id"} == everyone[p["id"]]
               for p in after)  # fmt: skip
    assert {u["id"] for u in org_units()} >= {WATCHED_UNIT, OTHER_UNIT}
    at = datetime(2026, 12, 2, 17, 0, 20, 400_000, tzinfo=UTC)
    readings = unit_readings(workload, at)
    assert [r["subject"] for r in readings] == [p["id"] for p in after]
    assert all(r["metric"] == UNIT_METRIC and r["value"] > 0.5 for r in readings)
    began = at.replace(microsecond=0)
    assert unit_transitions(workload, readings) == [
        ("s0003", "firing", began),
        ("s0023", "firing", began),
        ("s0043", "firing", began),
    ]


def test_the_third_subject_of_each_group_sends_one_pressure_reading_in_whole_seconds() -> None:
    workload = Workload(subjects=23)
    at = datetime(2026, 12, 2, 17, 0, 5, 750_000, tzinfo=UTC)
    sent = [pressure_readings(workload, k, at) for k in range(len(batches(workload)))]
    # Group 2 has three subjects (s0020-s0022): its third sends one too.
    assert [[r["subject"] for r in readings] for readings in sent] == [["s0002"], ["s0012"],
                                                                       ["s0022"], [], []]  # fmt: skip
    assert pressure_readings(Workload(subjects=22), 2, at) == []  # no third subject
    (reading,) = sent[1]
    assert reading["metric"] == PRESSURE_METRIC and reading["value"] > 0.5
    assert datetime.fromisoformat(reading["time"]) == at.replace(microsecond=0)
    # Nobody else's alert has that subject and episode: not the heartbeat's, not the impact's.
    assert {r["subject"] for readings in sent for r in readings}.isdisjoint(
        {b["subject"] for k in range(3) for b in heartbeats(workload, k, at)}
        | {o for c in status_changes(workload) for o in c.owners}
    )


def test_a_pressure_reading_fires_after_for_and_escalates_as_a_transition_of_its_own() -> None:
    workload = Workload(duration=40.0)
    assert (workload.for_seconds, workload.escalate_after) == (5, 10)
    assert (Workload(duration=3.0).for_seconds, Workload(duration=3.0).escalate_after) == (1, 2)
    at = datetime(2026, 12, 2, 17, 0, 5, tzinfo=UTC)
    (reading,) = pressure_readings(workload, 0, at)
    assert pressure_transitions(reading, workload) == [
        (("s0002", "firing", at), FOR, at + timedelta(seconds=5)),
        (("s0002", "firing:critical", at), ESCALATION, at + timedelta(seconds=10)),
    ]
    assert "for: 5s" in pressure_rule(workload) and "after: 10s" in pressure_rule(workload)


def _resting_on(goals: list[dict[str, Any]], goal_id: str) -> set[str]:
    """Owners of every goal resting on ``goal_id`` at any depth: up through what it counts
    towards, across through what depends on it."""
    by_id = {g["id"]: g for g in goals}
    found: set[str] = set()
    frontier = {goal_id}
    while frontier:
        above = {c["goal_id"] for g in frontier for c in by_id[g].get("contributes_to", [])}
        across = {g["id"] for g in goals if frontier & set(g.get("depends_on", []))}
        frontier = (above | across) - found - {goal_id}
        found |= frontier
    return {by_id[g]["owner_id"] for g in found}


def test_each_key_result_goes_invalid_and_back_twice_alerting_the_owners_resting_on_it() -> None:
    workload = Workload(subjects=400, duration=40.0)
    goals = impact_goals(workload)
    everyone = {p["id"] for p in people(workload)}
    assert {g["owner_id"] for g in goals} <= everyone
    changes = status_changes(workload)
    assert len(changes) == workload.teams * 2 * IMPACT_EPISODES == 16
    assert [c.at for c in changes] == sorted(c.at for c in changes)
    assert changes[0].at > 0 and changes[-1].at < workload.duration
    # Some change lands soon after the fault, as the in-batch kills need.
    assert any(workload.fault_at < c.at < workload.fault_at + 2 for c in changes)
    per_goal: dict[str, list[str]] = {}
    for change in changes:
        per_goal.setdefault(change.goal_id, []).append(change.status)
        assert change.opens == (change.status == "invalid")
        assert set(change.owners) == _resting_on(goals, change.goal_id)
        assert len(change.owners) == 2  # the manager's objective, another team's key result
        owner = next(g["owner_id"] for g in goals if g["id"] == change.goal_id)
        assert change.by == owner
    assert all(s == ["invalid", "on_track"] * IMPACT_EPISODES for s in per_goal.values())
    assert len({c.check_in_id for c in changes}) == len(changes)


def test_a_small_workload_has_a_graph_that_fits_its_people() -> None:
    for subjects in (2, 12, 25, 50):
        workload = Workload(subjects=subjects)
        everyone = {p["id"] for p in people(workload)}
        goals = impact_goals(workload)
        assert goals and {g["owner_id"] for g in goals} <= everyone
        assert all(set(c.owners) == _resting_on(goals, c.goal_id) for c in status_changes(workload))
    assert impact_goals(Workload(subjects=1)) == []
    assert status_changes(Workload(subjects=1)) == []


def test_counts_per_kind_and_what_went_wrong_in_each() -> None:
    a, b, c = (("a", "firing", START), ("b", "firing", START + timedelta(days=1)),
               ("c", "resolved", START))  # fmt: skip
    due = {a: 0.0, b: 0.0, c: 0.0}
    kinds = {a: "threshold", b: "overdue", c: "dependency_impact"}
    arrivals = [
        Arrival(a, 1.0, degraded=False),
        Arrival(c, 1.0, degraded=False),
        Arrival(c, 2.0, degraded=False),
        Arrival(("x", "firing", START), 1.0, degraded=False),
    ]
    by_kind = tally_by_kind(due, kinds, arrivals, recovered=0.0)
    assert list(by_kind) == ["threshold", "overdue", "dependency_impact"]
    assert (by_kind["overdue"].lost, by_kind["dependency_impact"].duplicated) == (1, 1)
    assert by_kind["threshold"].unexpected == 0  # the overall tally counts strangers
    assert kinds_note(by_kind) == (
        "received per kind: threshold 1/1, overdue 0/1 1 lost, dependency_impact 1/1 1 duplicated"
    )
    assert "received per kind" in _outcome(by_kind=by_kind).row()


def test_a_firing_whose_resolution_came_instead_is_superseded_not_lost() -> None:
    fired, resolved = ("a", "firing", START), ("a", "resolved", START)
    other = ("b", "firing", START)
    due = {fired: 0.0, resolved: 0.0, other: 0.0}
    counts = tally(due, [Arrival(resolved, 1.0, degraded=False)], recovered=0.0)
    assert (counts.received, counts.lost, counts.superseded) == (1, 1, 1)
    kinds = dict.fromkeys(due, "dependency_impact")
    assert missing(due, kinds, [Arrival(resolved, 1.0, degraded=False)]) == (
        f"dependency_impact a firing {START.isoformat()} "
        "(its resolution or escalation came instead)",
        f"dependency_impact b firing {START.isoformat()}",
    )
    outcome = _outcome(counts=counts)
    assert outcome.problems() == ["1 lost"]
    assert "1 firings not sent, their resolution or escalation processed first" in outcome.row()


def test_an_escalation_is_its_own_transition_and_supersedes_a_firing_sent_after_it() -> None:
    fired, raised = ("a", "firing", START), ("a", "firing:critical", START)
    other, later = ("b", "firing", START), ("a", "firing", START + timedelta(days=1))
    due = {fired: 0.0, raised: 0.0, other: 0.0, later: 0.0}
    # Both arrived: two transitions, neither a copy of the other.
    both = tally(due, [Arrival(fired, 1.0, False), Arrival(raised, 2.0, False)], recovered=0.0)
    assert (both.received, both.duplicated, both.superseded) == (2, 0, 0)
    # The escalation was processed first: the firing is not sent (webhook.md), not lost; the
    # firing of another subject or another episode is still lost.
    only = tally(due, [Arrival(raised, 1.0, False)], recovered=0.0)
    assert (only.received, only.superseded, only.lost) == (1, 1, 2)
    # Counted per kind, the firing is superseded by an escalation counted in another kind.
    kinds = {fired: FOR, raised: ESCALATION, other: FOR, later: FOR}
    by_kind = tally_by_kind(due, kinds, [Arrival(raised, 1.0, False)], recovered=0.0)
    assert (by_kind[FOR].superseded, by_kind[FOR].lost, by_kind[ESCALATION].received) == (1, 2, 1)
    # An escalation never stands in for itself.
    assert tally({raised: 0.0}, [Arrival(fired, 1.0, False)], recovered=0.0).lost == 1


def test_the_receiver_keys_an_escalation_by_its_severity() -> None:
    receiver = Receiver("right")
    fired = {
        "state": "firing",
        "subject": {"id": "s0002", "name": "Dr 0002"},
        "started_at": "2026-01-01T18:00:00Z",
        "kind": "threshold",
        "severity": "warning",
        "escalated_from": None,
    }
    raised = fired | {"severity": "critical", "escalated_from": "warning"}
    try:
        assert _post(receiver, raised, secret="right") == 204
        # The firing is not waited for once its escalation arrived: it would not be sent.
        assert receiver.wait_for({("s0002", "firing", START)}, timeout=0)
        assert _post(receiver, fired, secret="right") == 204
        assert [a.transition for a in receiver.snapshot()] == [
            ("s0002", "firing:critical", START),
            ("s0002", "firing", START),
        ]
    finally:
        receiver.close()


def test_the_receiver_stops_waiting_for_a_firing_once_its_resolution_arrived() -> None:
    receiver = Receiver("right")
    resolved = {
        "state": "resolved",
        "subject": {"id": "m000", "name": "Head 000"},
        "started_at": "2026-01-01T18:00:00Z",
        "kind": "dependency_impact",
    }
    try:
        fired, done = ("m000", "firing", START), ("m000", "resolved", START)
        assert not receiver.wait_for({fired}, timeout=0)
        assert _post(receiver, resolved, secret="right") == 204
        assert receiver.wait_for({fired, done}, timeout=0)
        assert not receiver.wait_for({("m001", "firing", START)}, timeout=0)
        [arrival] = receiver.snapshot()
        assert arrival.kind == "dependency_impact"
    finally:
        receiver.close()
