"""The threshold kind's decision: consecutive breaches by event time, state in and state out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from goalwatch.contracts import AlertState
from goalwatch.rules.threshold import MIN_KEPT, Decision, StreakState, _with, decide
from goalwatch.rules.transitions import Point, fingerprint

DAY0 = datetime(2026, 11, 1, 18, tzinfo=UTC)


def obs(day: int, breach: bool, event_id: str | None = None) -> Point:
    return Point(event_id or f"d{day}", DAY0 + timedelta(days=day), 0.1 if breach else 0.05, breach)


class Key:
    """Replays a sequence of observations through decide(), keeping the state it returns."""

    def __init__(self, consecutive: int = 3) -> None:
        self.consecutive = consecutive
        self.state = StreakState()
        self.transitions: list[tuple[AlertState, datetime]] = []

    @property
    def kept(self) -> tuple[Point, ...]:
        return self.state.kept

    def add(self, point: Point) -> Decision:
        decision = decide(self.state, point, consecutive=self.consecutive)
        self.state = decision.state
        if decision.transition is not None:
            self.transitions.append((decision.transition.state, decision.transition.started_at))
        return decision

    def add_all(self, points: Sequence[Point]) -> None:
        for point in points:
            self.add(point)


def day(n: int) -> datetime:
    return DAY0 + timedelta(days=n)


def test_fires_at_exactly_the_third_consecutive_breach() -> None:
    key = Key()
    assert key.add(obs(0, True)).transition is None
    assert key.add(obs(1, True)).transition is None
    decision = key.add(obs(2, True))
    assert decision.transition is not None
    assert decision.transition.state is AlertState.FIRING
    assert decision.transition.started_at == day(0)
    assert [p.event_id for p in decision.transition.history] == ["d0", "d1", "d2"]


def test_two_over_one_under_two_over_does_not_fire() -> None:
    key = Key()
    key.add_all([obs(0, True), obs(1, True), obs(2, False), obs(3, True), obs(4, True)])
    assert key.transitions == []
    key.add(obs(5, True))
    assert key.transitions == [(AlertState.FIRING, day(3))]


def test_out_of_order_arrival_fires_by_event_time() -> None:
    key = Key()
    key.add_all([obs(2, True), obs(0, True)])
    assert key.transitions == []
    decision = key.add(obs(1, True))
    assert key.transitions == [(AlertState.FIRING, day(0))]
    assert decision.transition is not None
    assert [p.event_id for p in decision.transition.history] == ["d0", "d1", "d2"]


def test_backfilled_breach_fills_a_gap_between_breaches() -> None:
    key = Key()
    key.add_all([obs(0, False), obs(1, True), obs(3, True)])
    assert key.transitions == []
    key.add(obs(2, True))
    assert key.transitions == [(AlertState.FIRING, day(1))]


def test_late_observation_older_than_the_streak_changes_nothing() -> None:
    key = Key()
    key.add_all([obs(5, True), obs(6, True)])
    key.add(obs(1, True))  # older than both: the latest three are 1, 5, 6 - all breach
    assert key.transitions == [(AlertState.FIRING, day(1))]
    key.add(obs(0, False))  # older still: the latest three are unchanged
    assert key.transitions == [(AlertState.FIRING, day(1))]


def test_does_not_fire_again_while_the_condition_keeps_holding() -> None:
    key = Key()
    key.add_all([obs(n, True) for n in range(8)])
    assert key.transitions == [(AlertState.FIRING, day(0))]


def test_resolves_when_the_latest_observation_clears_and_can_fire_again() -> None:
    key = Key()
    key.add_all([obs(0, True), obs(1, True), obs(2, True), obs(3, True)])
    decision = key.add(obs(4, False))
    assert decision.transition is not None
    assert decision.transition.state is AlertState.RESOLVED
    assert decision.transition.started_at == day(0)
    assert decision.transition.history == ()
    key.add_all([obs(5, True), obs(6, True)])
    assert len(key.transitions) == 2
    key.add(obs(7, True))
    assert key.transitions[-1] == (AlertState.FIRING, day(5))


def test_duplicate_event_id_is_a_no_op() -> None:
    key = Key()
    key.add_all([obs(0, True), obs(1, True)])
    before = key.state
    decision = key.add(obs(1, True))
    assert decision.duplicate and decision.transition is None and decision.state is before
    assert len(key.kept) == 2
    # The same event id with other content is still the same event.
    assert key.add(Point("d1", day(9), 9.0, True)).duplicate
    key.add(obs(2, True))
    assert key.transitions == [(AlertState.FIRING, day(0))]


def test_consecutive_one_fires_and_resolves_on_each_change() -> None:
    key = Key(consecutive=1)
    key.add_all([obs(0, False), obs(1, True), obs(2, True), obs(3, False)])
    assert key.transitions == [(AlertState.FIRING, day(1)), (AlertState.RESOLVED, day(1))]


def test_keeps_at_most_the_larger_of_consecutive_and_ten() -> None:
    key = Key()
    key.add_all([obs(n, n % 2 == 0) for n in range(25)])
    assert len(key.kept) == MIN_KEPT
    assert [p.event_id for p in key.kept] == [f"d{n}" for n in range(15, 25)]
    long = Key(consecutive=12)
    long.add_all([obs(n, True) for n in range(20)])
    assert len(long.kept) == 12
    assert long.transitions == [(AlertState.FIRING, day(0))]


def test_ties_in_event_time_are_ordered_by_event_id() -> None:
    key = Key(consecutive=2)
    key.add(obs(0, True, "b"))
    key.add(obs(0, False, "a"))  # same time, sorts before "b": the latest two are a, b
    assert key.transitions == []
    key.add(obs(1, True))
    assert key.transitions == [(AlertState.FIRING, day(0))]


def test_fingerprint_is_stable_and_distinguishes_keys() -> None:
    fp = fingerprint("report-rework-rate-high", "emp-1042", "report_rework_rate")
    assert fp == fingerprint("report-rework-rate-high", "emp-1042", "report_rework_rate")
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp != fingerprint("report-rework-rate-high", "emp-1043", "report_rework_rate")


def test_the_state_follows_the_alert_and_keeps_observations_in_event_time_order() -> None:
    key = Key()
    key.add_all([obs(2, True), obs(0, True), obs(1, True)])
    assert key.state.firing and key.state.started_at == day(0)
    assert [p.event_id for p in key.kept] == ["d0", "d1", "d2"]
    key.add(obs(3, False))
    assert not key.state.firing and key.state.started_at == day(0)


def test_decide_does_not_change_the_state_it_is_given() -> None:
    state = StreakState(kept=(obs(0, True), obs(1, True)))
    decision = decide(state, obs(2, True), consecutive=3)
    assert decision.transition is not None
    assert [p.event_id for p in state.kept] == ["d0", "d1"] and not state.firing
    assert decision.state.firing


def test_a_state_copied_with_changes_is_equal_to_one_built_so() -> None:
    state = StreakState(firing=True, labels={"ward": "icu"})
    changed = _with(state, firing=False, pending_since=None)
    assert changed == StreakState(firing=False, labels={"ward": "icu"})
    assert state.firing  # the original is untouched
    with pytest.raises(TypeError, match="no field"):
        _with(state, fiering=True)
