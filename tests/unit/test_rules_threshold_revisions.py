"""A threshold rule that changed meets the state its keys kept: the kept observations are
judged again by the new condition, then the input is applied as usual.

Each test carries one key's state from one version of a rule to the next, in the runner's
store (:class:`goalwatch.rules.runner.MemoryStreaks`) with the rules engine's verdicts, as
the evaluator does with Redis: the state stays, the rule is rebuilt.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from goalwatch.contracts import AlertState, MetricRecorded, Severity
from goalwatch.rules import threshold
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.revision import revision
from goalwatch.rules.runner import MemoryStreaks
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.threshold import Decision, Judge, Policy, StreakState, revise
from goalwatch.rules.transitions import Point, Verdict

DAY0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
SUBJECT = "emp-1"
RULE: dict[str, Any] = {
    "id": "rework-high",
    "name": "Rework above 8%",
    "kind": "threshold",
    "metric": "report_rework_rate",
    "condition": {"op": ">", "value": 0.08, "consecutive": 3},
    "severity": "warning",
    "notify": ["manager"],
    "message": "{subject_name}: {value:.1%}",
}


def rule(**condition: Any) -> RuleSpec:
    """The rule, its condition changed by ``condition`` (``for_`` for ``for``)."""
    if "for_" in condition:
        condition["for"] = condition.pop("for_")
    return RuleSpec.model_validate({**RULE, "condition": {**RULE["condition"], **condition}})


def event(day: float, value: float, **labels: str) -> MetricRecorded:
    return MetricRecorded(
        id=f"{SUBJECT}-{day}",
        metric="report_rework_rate",
        value=value,
        time=DAY0 + timedelta(days=day),
        subject=SUBJECT,
        source="his",
        labels=labels or {"department": "radiology"},
    )


class Key:
    """One alert key of the rule, whichever version of it is loaded."""

    def __init__(self) -> None:
        self.streaks = MemoryStreaks()
        self.judged: list[float] = []  # values the engine was asked to judge again
        self._engines: dict[str, RuleEngine] = {}

    @property
    def state(self) -> StreakState:
        return self.streaks.states["fp"]

    def _engine(self, spec: RuleSpec) -> RuleEngine:
        return self._engines.setdefault(revision(spec), RuleEngine([spec]))

    def _judge(self, spec: RuleSpec, about: MetricRecorded) -> Judge:
        engine = self._engine(spec)

        def judge(value: float) -> Verdict:
            self.judged.append(value)
            return engine.judge(spec, about, value)

        return judge

    def observe(self, spec: RuleSpec, day: float, value: float) -> Decision:
        observed = event(day, value)
        [(_, verdict)] = self._engine(spec).evaluate(observed)
        return self.streaks.observe(
            "fp",
            Point.of(observed.id, observed.time, observed.value, verdict),
            Policy.of(spec),
            labels=observed.labels,
            judge=self._judge(spec, observed),
        )

    def run(self, spec: RuleSpec, values: list[float], *, first_day: int = 0) -> list[Decision]:
        return [self.observe(spec, first_day + n, v) for n, v in enumerate(values)]

    def due(self, spec: RuleSpec, at: datetime) -> Decision:
        def judge_of(state: StreakState) -> Judge:
            return lambda value: self._judge(spec, threshold.newest_event(spec, SUBJECT, state))(
                value
            )

        return self.streaks.due("fp", at, Policy.of(spec), judge=judge_of)


def transitions(decisions: list[Decision]) -> list[str | None]:
    return [None if d.transition is None else d.transition.state.value for d in decisions]


def firing_key(spec: RuleSpec | None = None) -> Key:
    """A key whose alert fired on day 2, after three days at 9% (> 8%, three in a row)."""
    key = Key()
    assert transitions(key.run(spec or rule(), [0.09, 0.09, 0.09])) == [None, None, "firing"]
    assert key.state.started_at == DAY0
    return key


# --- observations --------------------------------------------------------------------------


def test_threshold_raised_a_firing_alert_resolves_at_the_next_observation() -> None:
    key = firing_key()
    raised = rule(value=0.1)
    # 12% breaks the new threshold too, but the three days before it no longer do: the
    # alert no longer holds.
    decision = key.observe(raised, 3, 0.12)
    assert decision.revised
    assert decision.transition is not None
    assert decision.transition.state is AlertState.RESOLVED
    assert decision.transition.started_at == DAY0  # the same alert, resolved
    assert [p.verdict for p in key.state.kept] == [Verdict.CLEAR] * 3 + [Verdict.BREACH]
    assert key.state.revision == revision(raised)
    # Three days above 10% make a new alert, started on the first of them.
    later = key.run(raised, [0.12, 0.12], first_day=4)
    assert transitions(later) == [None, "firing"]
    assert later[-1].transition is not None
    assert later[-1].transition.started_at == DAY0 + timedelta(days=3)


@pytest.mark.parametrize("value", [0.05, 0.085])
def test_a_firing_alert_that_still_holds_goes_on_without_firing_again(value: float) -> None:
    key = firing_key()
    changed = rule(value=value)
    decision = key.observe(changed, 3, 0.09)
    assert decision.revised and decision.transition is None
    assert key.state.firing and key.state.started_at == DAY0
    assert all(point.breach for point in key.state.kept)
    # From then on the rule is the new one: a day at 8.2% resolves it only under 8.5%.
    after = key.observe(changed, 4, 0.082)
    assert transitions([after]) == (["resolved"] if value == 0.085 else [None])


def test_a_rule_changed_only_in_how_it_tells_judges_nothing_again() -> None:
    key = firing_key()
    retold = RuleSpec.model_validate(
        {**RULE, "severity": "info", "message": "{subject}: {value}", "name": "Other"}
    )
    assert revision(retold) == revision(rule())
    decision = key.observe(retold, 3, 0.09)
    assert not decision.revised and decision.transition is None
    assert key.judged == []  # no value judged again: one string compare, equal
    assert key.state.firing and key.state.started_at == DAY0


def test_severity_raised_a_firing_alert_is_announced_louder_at_its_next_observation() -> None:
    # Not a change of condition: nothing is judged again, and the alert rises as if it
    # had escalated (the same alert, its new severity).
    key = firing_key()
    louder = RuleSpec.model_validate({**RULE, "severity": "critical"})
    decision = key.observe(louder, 3, 0.09)
    assert not decision.revised and key.judged == []
    assert decision.transition is not None
    assert decision.transition.escalated_from is Severity.WARNING
    assert decision.transition.severity is Severity.CRITICAL
    assert decision.transition.started_at == DAY0


def test_threshold_lowered_a_key_not_firing_fires_at_its_next_observation() -> None:
    key = Key()
    assert transitions(key.run(rule(), [0.01, 0.06, 0.06])) == [None, None, None]
    lowered = rule(value=0.05)
    decision = key.observe(lowered, 3, 0.06)
    assert transitions([decision]) == ["firing"]
    assert decision.transition is not None
    # The run began before the change: the days judged again count.
    assert decision.transition.started_at == DAY0 + timedelta(days=1)


def test_consecutive_raised_a_run_not_firing_needs_more_observations() -> None:
    key = Key()
    assert transitions(key.run(rule(), [0.09, 0.09])) == [None, None]
    four = rule(consecutive=4)
    assert transitions(key.run(four, [0.09, 0.09], first_day=2)) == [None, "firing"]
    assert key.state.started_at == DAY0


def test_consecutive_raised_a_firing_alert_goes_on_until_one_of_its_days_clears() -> None:
    # consecutive (like for) says when an alert starts; one firing goes on while its own
    # observations break the threshold, even if fewer than the new number in a row.
    key = Key()
    key.run(rule(), [0.01, 0.01, 0.09, 0.09, 0.09])  # fired on day 4, started on day 2
    five = rule(consecutive=5)
    assert transitions(key.run(five, [0.09, 0.01], first_day=5)) == [None, "resolved"]
    # A new alert needs five days in a row after the one that cleared, and starts then.
    again = key.run(five, [0.09] * 5, first_day=7)
    assert transitions(again) == [None, None, None, None, "firing"]
    assert again[-1].transition is not None
    assert again[-1].transition.started_at == DAY0 + timedelta(days=7)


def test_a_changed_rule_joining_two_runs_fires_an_episode_with_a_start_of_its_own() -> None:
    # Episodes are known by their start (message ids, the inbox): the alert of days 0-2,
    # resolved on day 3, must not fire again under the same start when day 3 stops
    # clearing.
    key = firing_key()
    assert transitions([key.observe(rule(), 3, 0.07)]) == ["resolved"]
    decision = key.observe(rule(value=0.05), 4, 0.09)
    assert transitions([decision]) == ["firing"]
    assert decision.transition is not None
    assert decision.transition.started_at == DAY0 + timedelta(days=1)


def test_a_resent_event_after_a_change_is_still_ignored() -> None:
    key = firing_key()
    decision = key.observe(rule(value=0.05), 2, 0.09)  # day 2's event again
    assert decision.duplicate and decision.transition is None


# --- timers --------------------------------------------------------------------------------


def test_for_made_longer_the_timer_armed_under_the_old_one_waits_for_the_new_end() -> None:
    key = Key()
    two_days = rule(consecutive=1, for_="2d")
    [pending] = key.run(two_days, [0.09])
    assert pending.arm == DAY0 + timedelta(days=2)
    three_days = rule(consecutive=1, for_="3d")
    waited = key.due(three_days, DAY0 + timedelta(days=2))
    assert waited.revised and waited.transition is None
    assert waited.arm == DAY0 + timedelta(days=3)  # moved to the new end of the wait
    fired = key.due(three_days, DAY0 + timedelta(days=3))
    assert transitions([fired]) == ["firing"]
    assert fired.transition is not None and fired.transition.started_at == DAY0


def test_for_removed_a_pending_alert_fires_at_the_timer_armed_for_it() -> None:
    key = Key()
    key.run(rule(consecutive=1, for_="2d"), [0.09])
    fired = key.due(rule(consecutive=1), DAY0 + timedelta(days=2))
    assert transitions([fired]) == ["firing"]


def test_threshold_raised_the_escalation_timer_resolves_an_alert_that_no_longer_holds() -> None:
    escalating = {**RULE, "escalate": [{"after": "4d", "severity": "critical"}]}
    key = firing_key(RuleSpec.model_validate(escalating))
    assert key.state.armed == DAY0 + timedelta(days=4)
    raised = RuleSpec.model_validate(
        {**escalating, "condition": {**RULE["condition"], "value": 0.1}}
    )
    decision = key.due(raised, DAY0 + timedelta(days=4))
    assert decision.revised
    assert decision.transition is not None
    assert decision.transition.state is AlertState.RESOLVED
    assert decision.transition.severity is Severity.WARNING  # it never rose
    assert not key.state.firing


def test_threshold_lowered_the_escalation_timer_raises_an_alert_that_still_holds() -> None:
    escalating = {**RULE, "escalate": [{"after": "4d", "severity": "critical"}]}
    key = firing_key(RuleSpec.model_validate(escalating))
    lowered = RuleSpec.model_validate(
        {**escalating, "condition": {**RULE["condition"], "value": 0.05}}
    )
    decision = key.due(lowered, DAY0 + timedelta(days=4))
    assert decision.transition is not None
    assert decision.transition.escalated_from is Severity.WARNING
    assert decision.transition.started_at == DAY0


# --- periods and windows -------------------------------------------------------------------


def judge_above(threshold_value: float) -> Judge:
    return lambda value: Verdict.BREACH if value > threshold_value else Verdict.CLEAR


def at(day: float, value: float, verdict: Verdict = Verdict.BREACH) -> Point:
    return Point.of(f"e{day}", DAY0 + timedelta(days=day), value, verdict)


def state_of(policy: Policy, judge: Judge, points: list[Point]) -> StreakState:
    state = StreakState()
    for point in points:
        state = threshold.observe(state, point, policy, judge=judge).state
    return state


def test_periods_are_made_again_from_the_raw_observations() -> None:
    daily = Policy(consecutive=2, per="day", aggregate="avg", revision="v1")
    state = state_of(daily, judge_above(0.08), [at(0, 0.09), at(0.1, 0.11), at(1, 0.09)])
    assert [p.value for p in state.kept] == pytest.approx([0.1, 0.09])
    assert [p.breach for p in state.kept] == [True, True]
    revised = revise(
        state, Policy(consecutive=2, per="day", aggregate="max", revision="v2"), judge_above(0.095)
    )
    assert [p.value for p in revised.kept] == pytest.approx([0.11, 0.09])
    assert [p.breach for p in revised.kept] == [True, False]
    assert revised.raw == state.raw and revised.revision == "v2"


def test_a_window_measured_the_same_way_is_judged_again_by_its_values() -> None:
    week = Policy(consecutive=2, window=timedelta(days=7), aggregate="avg", revision="v1")
    state = state_of(week, judge_above(0.08), [at(0, 0.09), at(1, 0.11), at(2, 0.07)])
    values = [p.value for p in state.kept]
    raised = Policy(consecutive=2, window=timedelta(days=7), aggregate="avg", revision="v2")
    revised = revise(state, raised, judge_above(0.095))
    assert [p.value for p in revised.kept] == values  # the evaluations, kept
    assert [p.breach for p in revised.kept] == [v > 0.095 for v in values]


def test_a_window_measured_another_way_is_evaluated_again_at_its_newest_observation() -> None:
    week = Policy(consecutive=2, window=timedelta(days=7), aggregate="avg", revision="v1")
    state = state_of(week, judge_above(0.08), [at(0, 0.09), at(1, 0.11), at(2, 0.07)])
    peak = Policy(consecutive=2, window=timedelta(days=7), aggregate="max", revision="v2")
    revised = revise(state, peak, judge_above(0.1))
    # The earlier windows cannot be rebuilt from what is kept: only the newest one is.
    assert [(p.event_id, p.value, p.breach) for p in revised.kept] == [("e2", 0.11, True)]
    assert revised.measure == peak.measure != week.measure


def test_a_rule_given_periods_counts_the_observations_it_kept() -> None:
    plain = Policy(consecutive=3, revision="v1")
    clear = at(0.5, 0.01, Verdict.CLEAR)
    state = state_of(plain, judge_above(0.08), [at(0, 0.09), clear, at(1, 0.09)])
    assert not state.firing
    daily = Policy(consecutive=2, per="day", aggregate="avg", revision="v2")
    revised = revise(state, daily, judge_above(0.04))
    assert [p.value for p in revised.raw] == [0.09, 0.01, 0.09]
    assert [p.value for p in revised.kept] == pytest.approx([0.05, 0.09])
    assert [p.breach for p in revised.kept] == [True, True]
    # Two days in a row since the second began (a period counts from its start).
    assert revised.pending_since == datetime(2026, 11, 3, tzinfo=UTC)


def test_a_state_of_an_unknown_revision_is_taken_to_be_the_rules() -> None:
    # Written before revisions were recorded: nothing is judged again at the upgrade.
    state = state_of(Policy(consecutive=1), judge_above(0.08), [at(0, 0.09)])
    unknown = StreakState(kept=state.kept, firing=True, started_at=DAY0)

    def never(value: float) -> Verdict:
        raise AssertionError("judged again")

    stamped = revise(unknown, Policy(consecutive=1, revision="v1"), never)
    assert stamped.revision == "v1" and stamped.kept == unknown.kept and stamped.firing


def test_judging_again_needs_the_engines_judge() -> None:
    state = StreakState(kept=(at(0, 0.09),), revision="v1")
    with pytest.raises(ValueError, match="judge"):
        revise(state, Policy(revision="v2"), None)


def test_the_same_revision_costs_no_judgement() -> None:
    calls: list[float] = []

    def counting(value: float) -> Verdict:
        calls.append(value)
        return Verdict.BREACH

    policy = Policy(consecutive=2, revision="v1")
    state = state_of(policy, judge_above(0.08), [at(0, 0.09), at(1, 0.09)])
    threshold.observe(state, at(2, 0.09), policy, judge=counting)
    assert calls == []
