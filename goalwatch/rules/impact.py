"""What a goal's status change means to a dependency-impact rule: pure decisions, no I/O.

State is kept per (rule, failing goal) by the caller (Redis in the evaluator):

- ``version``: the goal version of the last change applied. Goal events carry increasing
  versions, so an older or repeated event (a redelivery, a replay, the same event published
  again under another ``Nats-Msg-Id``) is recognised and changes nothing;
- ``episode``: while the goal is in a listed status, whom the alert went to — each owner's
  fingerprint, name and affected goals as computed when the goal entered the status. The
  graph may change while the goal fails; the resolution goes to exactly these owners;
- ``status``: the goal's status after that change. Each change names the status it left
  (``previous_status``), so a change that left another status than this one comes before
  one not applied yet — one delivered to an evaluator that died, coming again after its
  ``ack_wait`` — and waits for it (:class:`Wait`) instead of skipping past it: applying the
  later one first would make the earlier one look old, and lose its episode;
- ``pending``: the transition the change at ``version`` caused, until all its messages are
  published. A redelivery of that change publishes them again from the state (the same
  messages under the same ``Nats-Msg-Id``, dropped by the alerts stream if they were stored).

An episode starts when a goal the rule watches enters a listed status from one it does not
list (or is created in one), and ends when the goal leaves the listed statuses. Moving between
two listed statuses (invalid to off_track) changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from goalwatch.contracts import AlertFired, AlertResolved, GoalStatusChanged, RuleKind
from goalwatch.contracts.goals import GoalImpact, GoalStatus, ImpactedGoal
from goalwatch.contracts.impact import FailingGoal, ImpactAnalysis
from goalwatch.rules.impact_spec import ImpactRuleSpec
from goalwatch.rules.template import render_fields
from goalwatch.rules.transitions import fingerprint

METRIC: Final = "goal_status"
"""What dependency-impact alerts name as their metric: the failing goal's status."""


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OwnerImpact(_State):
    """One owner's share of an episode: what their alert said."""

    owner_id: str
    name: str
    fingerprint: str
    affected: list[ImpactedGoal]


class Episode(_State):
    """A failing goal's alert, from the change that started it."""

    started_at: datetime
    event_id: str
    failing: FailingGoal
    owners: list[OwnerImpact]
    affected_total: int


class Ending(_State):
    """An episode ended by a change, kept until its resolutions are published."""

    episode: Episode
    failing: FailingGoal  # the goal as the ending change left it
    event_id: str


class ImpactState(_State):
    """A rule's state for one goal (see the module's docstring)."""

    version: int = 0
    status: GoalStatus | None = None  # none in a state stored before it was recorded
    episode: Episode | None = None
    pending: Literal["fire", "resolve"] | None = None
    ending: Ending | None = None  # set while a resolution is pending


@dataclass(frozen=True)
class Skip:
    """The change was applied before (or is older than one that was): nothing to do."""

    reason: str


@dataclass(frozen=True)
class Wait:
    """A newer change whose predecessor has not been applied yet: retry it later."""

    reason: str


@dataclass(frozen=True)
class Advance:
    """A newer change that starts and ends nothing: only record its version."""

    state: ImpactState


@dataclass(frozen=True)
class Fire:
    """The goal entered a listed status: ask goals for the impact, then :func:`start`."""


@dataclass(frozen=True)
class Resolve:
    """The goal left the listed statuses: resolve the episode for every owner alerted."""

    state: ImpactState


@dataclass(frozen=True)
class Republish:
    """The change at the state's version was applied, but its messages may not all have been
    published: publish them again from the state."""

    state: ImpactState


Decision = Skip | Wait | Advance | Fire | Resolve | Republish


def decide(state: ImpactState, event: GoalStatusChanged, rule: ImpactRuleSpec) -> Decision:
    """What ``event`` does to ``rule``'s state for its goal.

    A newer change must find nothing pending: the caller publishes what is pending first
    (:func:`announcements`, then :func:`published`).
    """
    if event.version < state.version:
        return Skip(f"goal version {event.version} is older than {state.version}, applied")
    if event.version == state.version:
        if state.pending is None:
            return Skip(f"goal version {event.version} was applied and published")
        return Republish(state)
    if state.status is not None and event.previous_status not in (None, state.status):
        return Wait(
            f"goal {event.goal_id!r} was {state.status} at version {state.version}, and "
            f"version {event.version} left {event.previous_status}: a status change between "
            "them is not applied yet"
        )
    failing_now = rule.failing(event.status)
    if state.episode is not None and not failing_now:
        ending = Ending(episode=state.episode, failing=failing_goal(event), event_id=event.event_id)
        return Resolve(
            ImpactState(
                version=event.version,
                status=event.status,
                episode=None,
                pending="resolve",
                ending=ending,
            )
        )
    starts = (
        state.episode is None
        and failing_now
        and not rule.failing(event.previous_status)
        and rule.watches(type=event.goal.type, org_unit=event.goal.org_unit_id)
    )
    if starts:
        return Fire()
    return Advance(ImpactState(version=event.version, status=event.status, episode=state.episode))


def published(state: ImpactState) -> ImpactState:
    """``state`` once its pending transition's messages are all in the alerts stream."""
    return ImpactState(version=state.version, status=state.status, episode=state.episode)


def impact_fingerprint(rule_id: str, goal_id: str, owner_id: str) -> str:
    """Stable id of ``rule_id``'s alert to ``owner_id`` about ``goal_id`` failing."""
    return fingerprint(rule_id, owner_id, f"{METRIC}:{goal_id}")


def group_by_owner(impact: GoalImpact, *, min_weight: float) -> dict[str, list[ImpactedGoal]]:
    """The affected goals of each owner, nearest first, leaving out those that carry less
    than ``min_weight`` and those whose owner goals does not know; owners in id order."""
    groups: dict[str, list[ImpactedGoal]] = {}
    for goal in impact.affected:
        if goal.owner_id is None or goal.weight < min_weight:
            continue
        groups.setdefault(goal.owner_id, []).append(goal)
    return {owner: groups[owner] for owner in sorted(groups)}


def failing_goal(event: GoalStatusChanged) -> FailingGoal:
    """The goal of ``event`` as an alert shows it."""
    return FailingGoal(
        goal_id=event.goal_id,
        title=event.goal.title,
        type=event.goal.type,
        owner_id=event.owner_id,
        org_unit_id=event.goal.org_unit_id,
        status=event.status.value,
        previous_status=event.previous_status,
        changed_at=event.occurred_at,
        version=event.version,
    )


def start(
    *,
    rule: ImpactRuleSpec,
    event: GoalStatusChanged,
    impact: GoalImpact,
    names: Mapping[str, str],
) -> ImpactState:
    """The state once ``event`` started an episode: one alert per owner of affected goals
    (``names``: owner id -> display name; the id where it is missing), to be published."""
    groups = group_by_owner(impact, min_weight=rule.min_weight)
    owners = [
        OwnerImpact(
            owner_id=owner,
            name=names.get(owner, owner),
            fingerprint=impact_fingerprint(rule.id, event.goal_id, owner),
            affected=goals,
        )
        for owner, goals in groups.items()
    ]
    episode = Episode(
        started_at=event.occurred_at,
        event_id=event.event_id,
        failing=failing_goal(event),
        owners=owners,
        affected_total=sum(len(goals) for goals in groups.values()),
    )
    return ImpactState(version=event.version, status=event.status, episode=episode, pending="fire")


@dataclass(frozen=True)
class Announcement:
    """One message to publish, with its de-duplication id."""

    alert: AlertFired | AlertResolved
    msg_id: str


def announcements(*, rule: ImpactRuleSpec, state: ImpactState, now: datetime) -> list[Announcement]:
    """The messages ``state``'s pending transition publishes (none when nothing is pending).

    The ids are ``<fingerprint>:fired|resolved:<started_at>``: the same for a redelivered or
    replayed change, so the alerts stream stores each once.
    """
    if state.pending == "fire" and state.episode is not None:
        episode = state.episode
        return [
            Announcement(
                alert=_fired(rule, episode, owner, now=now),
                msg_id=f"{owner.fingerprint}:fired:{episode.started_at.isoformat()}",
            )
            for owner in episode.owners
        ]
    if state.pending == "resolve" and state.ending is not None:
        ending = state.ending
        episode = ending.episode
        return [
            Announcement(
                alert=_resolved(rule, ending, owner, now=now),
                msg_id=f"{owner.fingerprint}:resolved:{episode.started_at.isoformat()}",
            )
            for owner in episode.owners
        ]
    return []


def _labels(failing: FailingGoal) -> dict[str, str]:
    labels = {"goal_id": failing.goal_id, "goal_type": failing.type.value}
    if failing.org_unit_id is not None:
        labels["org_unit"] = failing.org_unit_id
    return labels


def _analysis(episode: Episode, owner: OwnerImpact, failing: FailingGoal) -> ImpactAnalysis:
    return ImpactAnalysis(
        failing_goal=failing,
        affected=owner.affected,
        affected_total=episode.affected_total,
        owners_total=len(episode.owners),
    )


def _max_weight(owner: OwnerImpact) -> float:
    return max((goal.weight for goal in owner.affected), default=0.0)


def _fired(
    rule: ImpactRuleSpec, episode: Episode, owner: OwnerImpact, *, now: datetime
) -> AlertFired:
    failing = episode.failing
    return AlertFired(
        fingerprint=owner.fingerprint,
        rule_id=rule.id,
        rule_name=rule.name,
        kind=RuleKind.DEPENDENCY_IMPACT,
        severity=rule.severity,
        subject=owner.owner_id,
        subject_name=owner.name,
        metric=METRIC,
        value=_max_weight(owner),
        message=render_fields(rule.message, message_fields(rule, episode, owner, failing)),
        notify=list(rule.notify),
        labels=_labels(failing),
        started_at=episode.started_at,
        fired_at=now,
        event_id=episode.event_id,
        impact=_analysis(episode, owner, failing),
    )


def _resolved(
    rule: ImpactRuleSpec, ending: Ending, owner: OwnerImpact, *, now: datetime
) -> AlertResolved:
    episode, failing = ending.episode, ending.failing
    fields = message_fields(rule, episode, owner, failing)
    if rule.resolved_message:
        message = render_fields(rule.resolved_message, fields)
    else:
        listed = ", ".join(status.value for status in rule.when.status)
        message = (
            f"Resolved: {rule.name} — {failing.title} is {failing.status} now, no longer {listed}"
        )
    return AlertResolved(
        fingerprint=owner.fingerprint,
        rule_id=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        subject=owner.owner_id,
        subject_name=owner.name,
        metric=METRIC,
        value=_max_weight(owner),
        message=message,
        notify=list(rule.notify),
        started_at=episode.started_at,
        resolved_at=now,
        event_id=ending.event_id,
        impact=_analysis(episode, owner, failing),
    )


def message_fields(
    rule: ImpactRuleSpec, episode: Episode, owner: OwnerImpact, failing: FailingGoal
) -> dict[str, object]:
    """The values of the template fields (:data:`goalwatch.rules.impact_spec.SAMPLES`)."""
    return {
        "owner": owner.owner_id,
        "owner_name": owner.name,
        "goal_id": failing.goal_id,
        "goal_title": failing.title,
        "goal_type": failing.type.value,
        "goal_owner": failing.owner_id,
        "status": failing.status,
        "previous_status": failing.previous_status.value if failing.previous_status else "-",
        "affected_count": len(owner.affected),
        "affected_goals": ", ".join(goal.title or goal.goal_id for goal in owner.affected),
        "max_weight": _max_weight(owner),
        "affected_total": episode.affected_total,
        "owners_total": len(episode.owners),
        "rule_id": rule.id,
        "rule_name": rule.name,
        "severity": rule.severity.value,
    }
