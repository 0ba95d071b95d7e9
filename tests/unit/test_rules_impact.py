"""dependency_impact rules: the spec HR writes, grouping the impact by owner, and the pure
decisions that keep one alert per owner and change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from goalwatch.contracts import AlertFired, AlertResolved, GoalStatusChanged
from goalwatch.contracts.goals import GoalImpact, GoalRead, ImpactedGoal, LinkKind, PathStep
from goalwatch.rules import ImpactRuleSpec, RuleLoadError, load_rule_file
from goalwatch.rules.impact import (
    Advance,
    Fire,
    ImpactState,
    Republish,
    Resolve,
    Skip,
    Wait,
    announcements,
    decide,
    group_by_owner,
    published,
    start,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

RULE_YAML = """\
id: kr-impact
name: A key result others build on fails
kind: dependency_impact
when: {status: [invalid, off_track], type: key_result}
min_weight: 0.1
severity: warning
notify: [owner, manager]
message: "{goal_title} is {status}: {affected_count} of your goals ({max_weight:.0%})"
"""


def rule(**changes: Any) -> ImpactRuleSpec:
    base = {
        "id": "kr-impact",
        "name": "A key result others build on fails",
        "kind": "dependency_impact",
        "when": {"status": ["invalid", "off_track"]},
        "severity": "warning",
        "notify": ["owner", "manager"],
        "message": "{goal_title} is {status}: {affected_count} of your goals",
    }
    return ImpactRuleSpec.model_validate({**base, **changes})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rule.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(RuleLoadError) as caught:
        load_rule_file(write(tmp_path, text))
    return [f"{error.line}: {error.field}: {error.message}" for error in caught.value.errors]


def test_a_rule_file_loads_with_one_type_written_as_a_list(tmp_path: Path) -> None:
    spec = load_rule_file(write(tmp_path, RULE_YAML)).spec
    assert isinstance(spec, ImpactRuleSpec)
    assert [s.value for s in spec.when.status] == ["invalid", "off_track"]
    assert [t.value for t in spec.when.type] == ["key_result"]
    assert spec.min_weight == 0.1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("when: {status: [invalid, offtrack]}", "4: when.status[1]: 'offtrack' is not a goal status; did you mean off_track?"),
        ("when: {status: []}", "4: when.status: must not be empty"),
        ("when: {statuses: [invalid]}", "4: when.statuses: unknown field 'statuses'; did you mean 'status'?"),
        ("when: {status: [invalid], type: goal}", "4: when.type[0]: 'goal' is not a goal type"),
        ("when: {status: [invalid]}\nmin_weight: 1.5", "5: min_weight: must be at most 1.0, got 1.5"),
        ("when: {status: [invalid]}\nmetric: x", "5: metric: unknown field 'metric'"),
    ],
)  # fmt: skip
def test_mistakes_are_reported_at_their_line(tmp_path: Path, change: str, expected: str) -> None:
    lines = [line for line in RULE_YAML.splitlines() if not line.startswith("min_weight")]
    text = "\n".join([*lines[:3], change, *lines[4:]]) + "\n"
    found = errors_of(tmp_path, text)
    assert any(error.startswith(expected) for error in found), found


def test_subject_is_refused_in_favour_of_owner_and_templates_are_checked(tmp_path: Path) -> None:
    text = RULE_YAML.replace("[owner, manager]", "[subject]").replace(
        "{affected_count}", "{affected}"
    )
    found = errors_of(tmp_path, text)
    assert any(e.startswith("7: notify: ") and "write owner instead of subject" in e for e in found)
    assert any(e.startswith("8: message: unknown field {affected}; did you mean") for e in found)


def test_missing_when_names_an_example(tmp_path: Path) -> None:
    text = "\n".join(line for line in RULE_YAML.splitlines() if not line.startswith("when"))
    assert any(
        "when: required field is missing; add e.g. when: {status: [invalid, off_track]}" in e
        for e in errors_of(tmp_path, text)
    )


# ------------------------------------------------------------------ grouping


def impacted(goal_id: str, owner: str | None, weight: float, depth: int = 1) -> ImpactedGoal:
    return ImpactedGoal(
        goal_id=goal_id,
        title=f"Goal {goal_id}",
        owner_id=owner,
        depth=depth,
        path=[
            PathStep(from_goal="kr", to_goal=goal_id, link=LinkKind.CONTRIBUTES_TO, share=weight)
        ],
        weight=weight,
    )


def test_affected_goals_are_grouped_by_owner_nearest_first_above_min_weight() -> None:
    impact = GoalImpact(
        goal_id="kr",
        affected=[
            impacted("o1", "li", 0.5),
            impacted("o2", "wang", 1.0),
            impacted("o3", "li", 0.05, depth=2),
            impacted("o4", None, 1.0, depth=2),
            impacted("o5", "li", 0.25, depth=3),
        ],
    )
    groups = group_by_owner(impact, min_weight=0.1)
    assert list(groups) == ["li", "wang"]
    assert [g.goal_id for g in groups["li"]] == ["o1", "o5"]
    assert [g.goal_id for g in groups["wang"]] == ["o2"]
    assert list(group_by_owner(impact, min_weight=0.6)) == ["wang"]


# ------------------------------------------------------------------ decisions


def change(version: int, status: str, previous: str | None, **goal: Any) -> GoalStatusChanged:
    at = T0 + timedelta(minutes=version)
    read = GoalRead.model_validate(
        {"id": "kr", "title": "Store expansion 20%", "type": "key_result", "owner_id": "zhou",
         "status": status, "version": version, "updated_at": at, **goal}
    )  # fmt: skip
    return GoalStatusChanged(
        event_id=f"kr:{version}:status_changed",
        goal_id="kr",
        version=version,
        occurred_at=at,
        previous_status=previous,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        owner_id="zhou",
        goal=read,
    )


IMPACT = GoalImpact(goal_id="kr", affected=[impacted("o1", "li", 0.5), impacted("o2", "wang", 1.0)])


def fired_state(spec: ImpactRuleSpec, event: GoalStatusChanged) -> ImpactState:
    return start(rule=spec, event=event, impact=IMPACT, names={"li": "Li Na"})


def test_entering_a_listed_status_fires_one_alert_per_owner() -> None:
    spec = rule()
    entered = change(2, "invalid", "on_track")
    assert isinstance(decide(ImpactState(version=1), entered, spec), Fire)
    state = fired_state(spec, entered)
    sent = announcements(rule=spec, state=state, now=T0)
    assert [a.alert.subject for a in sent] == ["li", "wang"]
    first = sent[0].alert
    assert isinstance(first, AlertFired)
    assert first.subject_name == "Li Na"
    assert first.message == "Store expansion 20% is invalid: 1 of your goals"
    assert first.impact is not None and first.impact.failing_goal.goal_id == "kr"
    assert [g.goal_id for g in first.impact.affected] == ["o1"]
    assert (first.impact.affected_total, first.impact.owners_total) == (2, 2)
    assert sent[0].msg_id == f"{first.fingerprint}:fired:{entered.occurred_at.isoformat()}"
    assert len({a.alert.fingerprint for a in sent}) == 2


def test_the_same_change_again_publishes_the_same_messages_or_nothing() -> None:
    spec = rule()
    entered = change(2, "invalid", "on_track")
    state = fired_state(spec, entered)
    # Redelivered before the messages were all published: the same ids again.
    again = decide(state, entered, spec)
    assert isinstance(again, Republish)
    first = [a.msg_id for a in announcements(rule=spec, state=state, now=T0)]
    later = [a.msg_id for a in announcements(rule=spec, state=again.state, now=T0 + timedelta(1))]
    assert first == later
    # Once published, the same change (under any Nats-Msg-Id) and older ones do nothing.
    done = published(state)
    assert isinstance(decide(done, entered, spec), Skip)
    assert isinstance(decide(done, change(1, "on_track", None), spec), Skip)
    assert announcements(rule=spec, state=done, now=T0) == []


def test_moving_between_listed_statuses_is_not_a_new_episode() -> None:
    spec = rule()
    state = published(fired_state(spec, change(2, "invalid", "on_track")))
    moved = decide(state, change(3, "off_track", "invalid"), spec)
    assert isinstance(moved, Advance)
    assert moved.state.episode == state.episode and moved.state.version == 3
    # Created straight into a listed status starts one; listed to listed without one does not.
    assert isinstance(decide(ImpactState(), change(1, "invalid", None), spec), Fire)
    assert isinstance(decide(ImpactState(), change(4, "off_track", "invalid"), spec), Advance)


def test_leaving_the_listed_statuses_resolves_every_owner_alerted() -> None:
    spec = rule()
    state = published(fired_state(spec, change(2, "invalid", "on_track")))
    left = decide(state, change(3, "on_track", "invalid"), spec)
    assert isinstance(left, Resolve)
    sent = announcements(rule=spec, state=left.state, now=T0)
    assert [a.alert.subject for a in sent] == ["li", "wang"]
    assert all(isinstance(a.alert, AlertResolved) for a in sent)
    assert sent[0].msg_id.endswith(
        f":resolved:{change(2, 'invalid', None).occurred_at.isoformat()}"
    )
    assert sent[0].alert.impact is not None
    assert sent[0].alert.impact.failing_goal.status == "on_track"
    # Nothing is left open: a later on_track change does nothing more.
    assert isinstance(
        decide(published(left.state), change(4, "at_risk", "on_track"), spec), Advance
    )


def test_filters_apply_to_the_goal_that_changed() -> None:
    spec = rule(when={"status": ["invalid"], "type": ["objective"], "org_unit": "retail"})
    assert isinstance(decide(ImpactState(), change(2, "invalid", "on_track"), spec), Advance)
    objective = change(2, "invalid", "on_track", type="objective", org_unit_id="retail")
    assert isinstance(decide(ImpactState(), objective, spec), Fire)


def test_the_webhook_body_carries_the_impact_of_the_alert() -> None:
    from goalwatch.contracts import Recipient, RecipientRole, SubjectRef
    from services.notifier.notification import build_notification

    spec = rule()
    state = fired_state(spec, change(2, "invalid", "on_track"))
    alert = announcements(rule=spec, state=state, now=T0)[0].alert
    body = build_notification(
        alert=alert,
        subject=SubjectRef(id="li", name="Li Na"),
        recipients=[Recipient(id="li", name="Li Na", role=RecipientRole.SUBJECT)],
    )
    assert body.kind == "dependency_impact"
    assert body.impact is not None and body.impact == alert.impact
    assert [g.goal_id for g in body.impact.affected] == ["o1"]


def test_a_change_whose_predecessor_is_not_applied_yet_waits_for_it() -> None:
    # The episode's start (version 4) went to an evaluator that died; its end (version 5)
    # arrives first. Applying it would make version 4 look old and lose the episode.
    spec = rule()
    closed = published(
        decide(
            published(fired_state(spec, change(2, "invalid", "on_track"))),
            change(3, "on_track", "invalid"),
            spec,
        ).state  # type: ignore[union-attr]
    )
    assert closed.status == "on_track"
    early = decide(closed, change(5, "on_track", "invalid"), spec)
    assert isinstance(early, Wait) and "version 5 left invalid" in early.reason
    # Once version 4 is applied, version 5 resolves the episode it started.
    assert isinstance(decide(closed, change(4, "invalid", "on_track"), spec), Fire)
    reopened = published(fired_state(spec, change(4, "invalid", "on_track")))
    assert isinstance(decide(reopened, change(5, "on_track", "invalid"), spec), Resolve)
    # A state stored before statuses were recorded does not wait.
    assert isinstance(
        decide(ImpactState(version=3), change(5, "on_track", "invalid"), spec), Advance
    )
