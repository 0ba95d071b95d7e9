"""The overdue kind's absence form: spec errors, the pure decision, and time in the runner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from goalwatch.contracts import AlertFired, AlertResolved, AlertState, MetricRecorded, RuleKind
from goalwatch.durations import duration_text, parse_duration
from goalwatch.rules import RuleLoadError, evaluate, load_rules
from goalwatch.rules.overdue import AbsenceState, Due, Seen, decide
from goalwatch.rules.spec import RuleSpec

T0 = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)
GAP = timedelta(days=2)

RULE = """\
id: rework-missing
name: No rework rate for 2 days
kind: overdue
metric: report_rework_rate
condition: {absent_for: 2d}
severity: info
notify: [subject, manager]
message: "{subject_name}: nothing since {last_seen:%Y-%m-%d} (due {due_at:%d}, {absent_for})"
"""


def errors_of(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "r.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(RuleLoadError) as caught:
        load_rules(tmp_path)
    return [str(error).removeprefix(f"{tmp_path}/") for error in caught.value.errors]


def spec(text: str = RULE) -> RuleSpec:
    import yaml

    return RuleSpec.model_validate(yaml.safe_load(text))


def test_an_overdue_rule_loads() -> None:
    rule = spec()
    assert rule.kind is RuleKind.OVERDUE
    assert rule.overdue.absent_for == GAP
    assert rule.condition.model_dump() == {"absent_for": "2d"}


@pytest.mark.parametrize(
    ("written", "expected"),
    [("2d", timedelta(days=2)), ("36h", timedelta(hours=36)), ("1d12h", timedelta(hours=36)),
     ("90m", timedelta(minutes=90)), ("3s", timedelta(seconds=3))],
)  # fmt: skip
def test_durations(written: str, expected: timedelta) -> None:
    assert parse_duration(written) == expected


def test_duration_text_reads_as_written() -> None:
    assert [duration_text(parse_duration(d)) for d in ("2d", "1d12h", "90m", "3s")] == [
        "2d", "1d12h", "1h30m", "3s",
    ]  # fmt: skip


def test_errors_point_at_the_line(tmp_path: Path) -> None:
    assert errors_of(tmp_path, RULE.replace("{absent_for: 2d}", "{absent_for: 2 days}")) == [
        "r.yaml:5: condition.absent_for: '2 days' is not a duration: write a number with its "
        "unit, d (days), h (hours), m (minutes) or s (seconds), e.g. 2d, 36h or 1d12h"
    ]
    assert errors_of(tmp_path, RULE.replace("{absent_for: 2d}", "{absent_for: 2}")) == [
        "r.yaml:5: condition.absent_for: 2 is not a duration (a bare number has no unit): write "
        "a number with its unit, d (days), h (hours), m (minutes) or s (seconds), e.g. 2d, 36h "
        "or 1d12h"
    ]
    assert errors_of(tmp_path, RULE.replace("{absent_for: 2d}", "{absent_for: 400d}")) == [
        "r.yaml:5: condition.absent_for: 400d is out of range: write at least 1s and at most 366d"
    ]
    assert errors_of(tmp_path, RULE.replace("{absent_for: 2d}", "{absent_for: 2d, gap: 1}")) == [
        "r.yaml:5: condition.gap: unknown field 'gap'; allowed: absent_for"
    ]
    assert errors_of(tmp_path, RULE.replace("{absent_for: 2d}", '{op: ">", value: 1}')) == [
        "r.yaml:5: condition: an overdue rule's condition is written like "
        "condition: {absent_for: 2d}"
    ]
    threshold = RULE.replace("kind: overdue", "kind: threshold").replace(
        "message: ", 'message: "{value}"\n#'
    )
    assert errors_of(tmp_path, threshold) == [
        "r.yaml:5: condition: a threshold rule's condition is written like "
        'condition: {op: ">", value: 0.08, consecutive: 3}'
    ]


def test_templates_know_the_fields_of_their_kind(tmp_path: Path) -> None:
    assert errors_of(tmp_path, RULE.replace("{absent_for})", "{threshold})")) == [
        "r.yaml:8: message: unknown field {threshold}; {threshold} belongs to threshold rules; "
        "available: {subject}, {subject_name}, {metric}, {value}, {last_seen}, {absent_for}, "
        "{due_at}, {rule_id}, {rule_name}, {severity}, {labels[<name>]}"
    ]


def seen(day: float, event_id: str | None = None, value: float = 0.05) -> Seen:
    return Seen(event_id or f"e{day}", T0 + timedelta(days=day), value)


def test_a_report_arms_its_deadline_and_the_timer_fires() -> None:
    first = decide(AbsenceState(), T0, seen(0), absent_for=GAP)
    assert first.arm == T0 + GAP and first.transition is None
    fired = decide(first.state, T0 + GAP, Due(T0 + GAP), absent_for=GAP)
    assert fired.transition is not None
    assert fired.transition.state is AlertState.FIRING
    assert fired.transition.started_at == T0 + GAP
    assert fired.state.firing


def test_a_newer_report_moves_the_deadline_and_the_old_timer_is_stale() -> None:
    state = decide(AbsenceState(), T0, seen(0), absent_for=GAP).state
    moved = decide(state, T0 + timedelta(days=1), seen(1), absent_for=GAP)
    assert moved.arm == T0 + timedelta(days=3)
    stale = decide(moved.state, T0 + GAP, Due(T0 + GAP), absent_for=GAP)
    assert stale.transition is None and stale.state == moved.state


def test_an_older_report_changes_nothing_and_a_repeat_rearms() -> None:
    state = decide(AbsenceState(), T0, seen(1), absent_for=GAP).state
    older = decide(state, T0 + timedelta(days=1), seen(0), absent_for=GAP)
    assert older.state == state and older.arm is None
    again = decide(state, T0 + timedelta(days=1), seen(1), absent_for=GAP)
    assert again.repeat and again.arm == state.deadline


def test_the_next_report_resolves_and_a_redelivered_timer_fires_nothing_new() -> None:
    state = decide(AbsenceState(), T0, seen(0), absent_for=GAP).state
    firing = decide(state, T0 + GAP, Due(T0 + GAP), absent_for=GAP).state
    redelivered = decide(firing, T0 + GAP, Due(T0 + GAP), absent_for=GAP)
    assert redelivered.repeat and redelivered.transition is None
    resolved = decide(firing, T0 + timedelta(days=3), seen(3), absent_for=GAP)
    assert resolved.transition is not None
    assert resolved.transition.state is AlertState.RESOLVED
    assert resolved.transition.started_at == T0 + GAP
    assert resolved.arm == T0 + timedelta(days=5)


def test_a_late_report_of_an_old_day_keeps_the_alert_firing() -> None:
    state = decide(AbsenceState(), T0, seen(0), absent_for=GAP).state
    firing = decide(state, T0 + GAP, Due(T0 + GAP), absent_for=GAP).state
    late = decide(firing, T0 + timedelta(days=10), seen(1), absent_for=GAP)
    assert late.transition is None and late.arm is None and late.state.firing


def event(subject: str, day: float, **labels: str) -> MetricRecorded:
    return MetricRecorded(
        id=f"{subject}-{day}",
        metric="report_rework_rate",
        value=0.05,
        time=T0 + timedelta(days=day),
        subject=subject,
        source="his",
        labels=labels,
    )


def test_the_runner_fires_at_last_seen_plus_the_gap_with_no_event() -> None:
    alerts = evaluate([spec()], [event("zhou-min", 0)], until=T0 + timedelta(days=3))
    assert [type(a) for a in alerts] == [AlertFired]
    fired = alerts[0]
    assert isinstance(fired, AlertFired)
    assert (fired.started_at, fired.fired_at) == (T0 + GAP, T0 + GAP)
    assert fired.message == "zhou-min: nothing since 2026-11-01 (due 03, 2d)"
    assert fired.kind is RuleKind.OVERDUE


def test_the_runner_moves_resolves_and_fires_at_the_next_event_time() -> None:
    events = [event("a", 0), event("a", 1), event("a", 4), event("b", 0)]
    alerts = evaluate([spec()], events)
    # a: the day-1 report moved the deadline to day 3; the day-4 report comes after it fired.
    assert [(type(x).__name__, x.subject, x.started_at) for x in alerts] == [
        ("AlertFired", "a", T0 + timedelta(days=3)),
        ("AlertResolved", "a", T0 + timedelta(days=3)),
        # b's only report is of day 0 and arrives when the clock is at day 4: overdue since
        # day 2, announced at once.
        ("AlertFired", "b", T0 + GAP),
    ]
    assert isinstance(alerts[1], AlertResolved)
    assert alerts[1].resolved_at == T0 + timedelta(days=4)
    assert isinstance(alerts[2], AlertFired)
    assert alerts[2].fired_at == T0 + timedelta(days=4)


def test_where_filters_the_reports_watched(tmp_path: Path) -> None:
    rule = spec(
        RULE.replace(
            "metric: report_rework_rate", "metric: report_rework_rate\nwhere: {department: icu}"
        )
    )
    alerts = evaluate([rule], [event("a", 0, department="radiology")], until=T0 + GAP * 2)
    assert alerts == []
