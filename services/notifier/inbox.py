"""The web inbox: one entry per episode of an alert, newest first, kept in Redis.

An alert (one fingerprint: rule, subject, metric) fires, may rise in severity, may be
acknowledged, and resolves: that is one *episode*, named by the fingerprint and the episode's
``started_at``, and one inbox entry with a stable, URL-safe id (:func:`episode_id`). When the
alert fires again, a new episode begins with an entry of its own; the earlier one stays, with
its timeline, until its retention ends.

Keys (prefix ``goalwatch:notifier:``)

- ``episode:{id}``: JSON of :class:`InboxAlert`, the episode's latest known transition and its
  timeline (fired, escalated, acknowledged, resolved, resolved by hand: who, when, comment),
  and what people said about it (``comments``, kept like the acknowledgements).
  An escalation updates the entry: it takes the new severity, message, ``escalated_from`` and
  ``escalated_at`` and keeps the first ``fired_at``. A resolution updates it too: its state
  becomes resolved and it keeps ``started_at``, ``fired_at``, ``escalated_at``, the highest
  severity, labels and observations from the firing.
- ``episodes:{fingerprint}``: sorted set of one alert's episode ids scored by ``started_at``
  (Unix seconds): its newest episode, and whether a transition belongs to an older one.
- ``index:all``, ``index:recipient:{person_id}``, ``index:rule:{rule_id}``,
  ``index:state:{state}``, ``index:org_unit:{unit_id}`` (the subject's unit and every unit
  above it), ``index:fingerprint:{fingerprint}``: sorted sets of episode ids scored by
  ``updated_at`` (Unix seconds).

Transitions can arrive out of order (a firing whose channel attempt failed is redelivered
after its resolution was handled, another replica handles one while this one handles the
other, a replay after a Redis loss), so an entry only moves forward: firing, each rise in severity,
resolved. An older transition only fills in fields the entry lacks and takes its place in
the timeline: severity never goes down within an episode, and an escalation that arrives
after the resolution does not reopen the alert. A transition of an episode older than the
alert's newest is recorded in its own entry but not announced (:attr:`Recorded.current`).

A person can resolve a firing episode by hand (:meth:`Inbox.resolve`): the entry becomes
resolved with ``resolved_by``. The evaluator's own resolution of that episode, when it comes,
is merged as any resolution (its time, message and value), keeps ``resolved_by``, and is
added to the timeline.

The merge is idempotent per transition: recording a transition the entry already reflects
changes nothing (:func:`holds` says so without merging), which is what lets a replay from
the alerts stream (:mod:`services.notifier.recovery`) pass over the entries Redis kept.

Entries of the earlier layout, one per fingerprint under ``alert:{fingerprint}`` with the
fingerprints in the indexes, are moved to this one at start-up (:meth:`Inbox.migrate`).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, cast

from pydantic import AwareDatetime, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import WatchError

from goalwatch.contracts import AlertNotification, AlertState, Recipient, Severity
from goalwatch.contracts.base import Contract
from services.notifier.pages import Walk, Window

logger = logging.getLogger(__name__)

PREFIX = "goalwatch:notifier:"
INDEX_ALL = f"{PREFIX}index:all"
UPDATES = f"{PREFIX}updates"
"""Redis pub/sub channel on which every change to an entry is published, as the entry's JSON."""
LEGACY_PREFIX = f"{PREFIX}alert:"
"""Keys of the earlier layout, one entry per fingerprint; moved by :meth:`Inbox.migrate`."""
DEFAULT_LIMIT = 50
DEFAULT_RETENTION = timedelta(days=90)
MAX_LIMIT = 500
ID_LENGTH = 20
"""Hex digits of an episode id (80 bits): never the length of a fingerprint (16)."""


def episode_id(fingerprint: str, started_at: datetime) -> str:
    """The id of the episode of alert ``fingerprint`` that began at ``started_at``: the same
    on every replica and every redelivery, and safe in a URL."""
    key = f"{fingerprint}|{started_at.astimezone(UTC).isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:ID_LENGTH]


def episode_key(episode: str) -> str:
    """Redis key of one inbox entry."""
    return f"{PREFIX}episode:{episode}"


def episodes_key(fingerprint: str) -> str:
    """Sorted set of one alert's episode ids, by when each began."""
    return f"{PREFIX}episodes:{fingerprint}"


def recipient_index(person_id: str) -> str:
    """Sorted set of the entries addressed to one person."""
    return f"{PREFIX}index:recipient:{person_id}"


def rule_index(rule_id: str) -> str:
    """Sorted set of the entries of one rule."""
    return f"{PREFIX}index:rule:{rule_id}"


def state_index(state: AlertState) -> str:
    """Sorted set of the entries currently in one state."""
    return f"{PREFIX}index:state:{state.value}"


def org_unit_index(unit_id: str) -> str:
    """Sorted set of the entries about someone in one org unit or a unit below it."""
    return f"{PREFIX}index:org_unit:{unit_id}"


def fingerprint_index(fingerprint: str) -> str:
    """Sorted set of the entries (episodes) of one alert."""
    return f"{PREFIX}index:fingerprint:{fingerprint}"


class Happening(StrEnum):
    """What happened to an episode."""

    FIRED = "fired"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    RESOLVED_BY_HAND = "resolved_by_hand"
    PASSED_UP = "passed_up"


class AckVia(StrEnum):
    """How an acknowledgement was made."""

    API = "api"  # POST /v1/alerts/{id}/ack, by the signed-in caller
    LINK = "link"  # the signed link in a message to that one person
    SHARED_LINK = "shared_link"  # the link in a message to several people; they chose their name


class TimelineEntry(Contract):
    """One thing that happened to an episode."""

    what: Happening = Field(
        description="fired, escalated, acknowledged, passed_up (to the next manager: nobody "
        "acknowledged it in time), resolved (by the rule) or resolved_by_hand."
    )
    at: AwareDatetime = Field(description="When it happened.")
    severity: Severity | None = Field(
        default=None, description="fired, escalated: the severity it had, or rose to."
    )
    by: str | None = Field(
        default=None, description="acknowledged, resolved_by_hand: who (a person id)."
    )
    comment: str | None = Field(default=None, description="What they said.")
    via: AckVia | None = Field(
        default=None, description="acknowledged: api, link, or shared_link (see Acknowledgement)."
    )
    to: str | None = Field(
        default=None,
        description="passed_up: the manager it went to because nobody acknowledged it in time.",
    )


class Acknowledgement(Contract):
    """Someone took the alert on."""

    by: str = Field(description="Who (a person id).")
    at: AwareDatetime = Field(description="When.")
    comment: str | None = Field(default=None, description="What they said.")
    via: AckVia = Field(
        AckVia.API,
        description="api (POST /v1/alerts/{id}/ack, by the signed-in caller), link (the "
        "signed link in a message to them alone) or shared_link (the link in a message to "
        "several people: whoever opened it chose this name on the page).",
    )


class Comment(Contract):
    """Something a person said about an episode, kept with it in the inbox."""

    id: str = Field(description="Its id, unique within the episode.")
    by: str = Field(description="Who (a person id, or the caller's name when not a person).")
    name: str | None = Field(
        default=None, description="Their display name, from the directory when it knows them."
    )
    at: AwareDatetime = Field(description="When.")
    text: str = Field(description="What they said.")


_TIES: Final = {
    Happening.FIRED: 0,
    Happening.ESCALATED: 1,
    Happening.ACKNOWLEDGED: 2,
    Happening.PASSED_UP: 2,
    Happening.RESOLVED_BY_HAND: 3,
    Happening.RESOLVED: 4,
}


class InboxAlert(AlertNotification):
    """An inbox entry: one episode of an alert, its latest transition, and its timeline."""

    id: str = Field(
        description="Stable id of this episode (the alert's fingerprint and started_at): the "
        "path of GET /v1/alerts/{id}."
    )
    updated_at: AwareDatetime = Field(
        description="Time of the latest transition (fired_at, escalated_at, resolved_at, or "
        "when it was resolved by hand); sort key."
    )
    acked_at: AwareDatetime | None = Field(
        default=None, description="When someone first acknowledged this episode; null: nobody yet."
    )
    acked_by: str | None = Field(default=None, description="Who acknowledged it first.")
    ack_comment: str | None = Field(default=None, description="What they said.")
    acknowledgements: list[Acknowledgement] = Field(
        default_factory=list, description="Everyone who acknowledged it, first first."
    )
    resolved_by: str | None = Field(
        default=None,
        description="Who resolved it by hand; null when nobody did (the rule resolved it, or "
        "it still fires).",
    )
    resolve_comment: str | None = Field(default=None, description="What they said.")
    timeline: list[TimelineEntry] = Field(
        default_factory=list,
        description="What happened to this episode, oldest first: fired, escalated, "
        "acknowledged, resolved, resolved_by_hand.",
    )
    org_units: list[str] = Field(
        default_factory=list,
        description="The subject's org unit when the alert fired, then each unit above it "
        "(empty when the directory does not place them).",
    )
    comments: list[Comment] = Field(
        default_factory=list,
        description="What people said about this episode (POST /v1/alerts/{id}/comments), "
        "oldest first, the most recent 200.",
    )

    def notification(self) -> AlertNotification:
        """The entry as the notification channels send it."""
        return AlertNotification.model_validate(
            {k: v for k, v in dict(self).items() if k not in _INBOX_ONLY}
        )


_INBOX_ONLY: Final = frozenset(set(InboxAlert.model_fields) - set(AlertNotification.model_fields))
# What the inbox learns beside the transitions: a transition leaves these as they are.
_KEPT: Final = (
    "id",
    "acked_at",
    "acked_by",
    "ack_comment",
    "acknowledgements",
    "resolved_by",
    "resolve_comment",
    "comments",
)
MAX_COMMENTS: Final = 200
"""Comments an entry keeps: the oldest go first, so an entry stays a small document."""


class NotFiring(Exception):
    """The alert is not firing: there is nothing to acknowledge or resolve."""


class InboxPage(Contract):
    """``GET /v1/alerts`` response."""

    alerts: list[InboxAlert] = Field(description="Matching alerts, newest update first.")
    next_cursor: str | None = Field(
        default=None,
        description="Pass as ?cursor= (with the same filters) for the next page; null: this "
        "is the last.",
    )


@dataclass(frozen=True)
class Recorded:
    """Result of recording a transition.

    ``current`` is False when the inbox already held a later transition of the same episode,
    or a later episode of the same alert: the incoming one is stale and should not be
    announced again.
    """

    alert: InboxAlert
    current: bool


def _order(notification: AlertNotification) -> tuple[int, int]:
    """Where a transition stands in its episode: the firing and each rise in severity
    (ranked by severity, which only rises while firing), then resolved."""
    if notification.state is AlertState.RESOLVED:
        return (1, 0)
    return (0, notification.severity.rank)


def _happening(notification: AlertNotification) -> TimelineEntry:
    """The timeline entry of the transition ``notification`` announces."""
    if notification.state is AlertState.RESOLVED:
        return TimelineEntry(what=Happening.RESOLVED, at=notification.changed_at)
    what = Happening.FIRED if notification.escalated_from is None else Happening.ESCALATED
    return TimelineEntry(what=what, at=notification.changed_at, severity=notification.severity)


def _has(timeline: Iterable[TimelineEntry], item: TimelineEntry) -> bool:
    """Whether ``timeline`` has the transition ``item``: one firing and one resolution per
    episode, one escalation per severity risen to."""
    return any(
        t.what is item.what
        and (item.what is not Happening.ESCALATED or t.severity is item.severity)
        for t in timeline
    )


def _with(timeline: list[TimelineEntry], item: TimelineEntry) -> list[TimelineEntry]:
    """``timeline`` with ``item`` in its place, oldest first."""
    return sorted([*timeline, item], key=lambda t: (t.at, _TIES[t.what]))


def holds(
    entry: InboxAlert | None,
    *,
    state: AlertState,
    started_at: datetime,
    escalated_to: Severity | None = None,
) -> bool:
    """Whether ``entry`` already reflects the transition to ``state`` of the episode that
    began at ``started_at`` (an escalation to ``escalated_to`` when given), so that merging
    it again would change nothing.

    The entry of another episode holds none of this one's. Within the episode, an entry holds
    a transition once its timeline has it: the firing, the resolution by the rule (a
    resolution by hand is not it), an escalation to that very severity.
    """
    if entry is None or entry.started_at != started_at:
        return False
    if escalated_to is not None:
        item = TimelineEntry(what=Happening.ESCALATED, at=started_at, severity=escalated_to)
    elif state is AlertState.RESOLVED:
        item = TimelineEntry(what=Happening.RESOLVED, at=started_at)
    else:
        item = TimelineEntry(what=Happening.FIRED, at=started_at)
    return _has(entry.timeline, item)


def _union(first: list[Recipient], second: list[Recipient]) -> list[Recipient]:
    seen = {r.id for r in first}
    return [*first, *(r for r in second if r.id not in seen)]


def _fill(base: AlertNotification, other: AlertNotification) -> dict[str, Any]:
    """``base``'s fields (same episode), with what only the firing or an escalation carries
    taken from ``other`` when missing. ``escalated_from`` is always ``base``'s: it says
    whether ``base`` announces an escalation."""
    fields = dict(base)
    fields["kind"] = base.kind or other.kind
    # The loudest the episode has been: a late, lower escalation or a resolution does not
    # make a critical alert look like a warning.
    fields["severity"] = max(base.severity, other.severity, key=lambda s: s.rank)
    fields["fired_at"] = base.fired_at or other.fired_at
    fields["escalated_at"] = base.escalated_at or other.escalated_at
    fields["history"] = base.history or other.history
    fields["labels"] = base.labels or other.labels
    fields["impact"] = base.impact or other.impact
    fields["goal"] = base.goal or other.goal
    fields["recipients"] = _union(base.recipients, other.recipients)
    return fields


def merge(
    previous: InboxAlert | None, incoming: AlertNotification, *, org_units: Sequence[str] = ()
) -> Recorded:
    """What the inbox holds after ``incoming`` arrives on top of ``previous``, the entry of
    the same episode (None: the inbox has none yet). ``org_units``: the subject's unit and
    those above it, kept from the first transition that knew them."""
    item = _happening(incoming)
    if previous is None:
        fields = {
            **dict(incoming),
            "id": episode_id(incoming.fingerprint, incoming.started_at),
            "updated_at": incoming.changed_at,
            "timeline": [item],
            "org_units": list(org_units),
        }
        return Recorded(alert=InboxAlert.model_validate(fields), current=True)
    if previous.fingerprint != incoming.fingerprint or previous.started_at != incoming.started_at:
        raise ValueError(
            f"episode {previous.id} cannot take a transition of another episode "
            f"({incoming.fingerprint} started {incoming.started_at.isoformat()})"
        )
    timeline = (
        previous.timeline if _has(previous.timeline, item) else _with(previous.timeline, item)
    )
    units = previous.org_units or list(org_units)
    if _order(incoming) < _order(previous):
        fields = _fill(previous, incoming)
        fields.update(timeline=timeline, org_units=units)
        return Recorded(alert=InboxAlert.model_validate(fields), current=False)
    fields = _fill(incoming, previous)
    # An acknowledgement holds for its episode: an escalation or the resolution keeps it.
    fields.update({name: getattr(previous, name) for name in _KEPT})
    fields.update(timeline=timeline, org_units=units, updated_at=incoming.changed_at)
    return Recorded(alert=InboxAlert.model_validate(fields), current=True)


def acknowledged(
    entry: InboxAlert, *, by: str, comment: str, at: datetime, via: AckVia = AckVia.API
) -> InboxAlert:
    """``entry`` acknowledged by ``by``; :class:`NotFiring` if it is resolved. The first
    acknowledgement sets ``acked_*``; each other person's is added to ``acknowledgements``
    and the timeline; the same person's again changes nothing."""
    if entry.state is not AlertState.FIRING:
        raise NotFiring(
            f"alert {entry.id} resolved at {entry.resolved_at}: there is nothing to acknowledge"
        )
    if any(a.by == by for a in entry.acknowledgements):
        return entry
    note = comment or None
    ack = Acknowledgement(by=by, at=at, comment=note, via=via)
    step = TimelineEntry(what=Happening.ACKNOWLEDGED, at=at, by=by, comment=note, via=via)
    update: dict[str, Any] = {
        "acknowledgements": [*entry.acknowledgements, ack],
        "timeline": _with(entry.timeline, step),
    }
    if entry.acked_at is None:
        update.update(acked_at=at, acked_by=by, ack_comment=note)
    return entry.model_copy(update=update)


def commented(
    entry: InboxAlert, *, by: str, name: str | None, text: str, at: datetime
) -> InboxAlert:
    """``entry`` with ``by``'s comment ``text`` added (at most :data:`MAX_COMMENTS` kept).
    It leaves ``updated_at``: a comment does not move the alert up the inbox."""
    number = (int(entry.comments[-1].id) + 1) if entry.comments else 1
    note = Comment(id=str(number), by=by, name=name, at=at, text=text)
    return entry.model_copy(update={"comments": [*entry.comments, note][-MAX_COMMENTS:]})


def resolved_by_hand(entry: InboxAlert, *, by: str, comment: str, at: datetime) -> InboxAlert:
    """``entry`` resolved by ``by`` at ``at``; :class:`NotFiring` if it is resolved already."""
    if entry.state is not AlertState.FIRING:
        who = f" by {entry.resolved_by}" if entry.resolved_by else ""
        raise NotFiring(
            f"alert {entry.id} resolved at {entry.resolved_at}{who}: it is resolved already"
        )
    note = comment or None
    step = TimelineEntry(what=Happening.RESOLVED_BY_HAND, at=at, by=by, comment=note)
    return entry.model_copy(
        update={
            "state": AlertState.RESOLVED,
            "resolved_at": at,
            "resolved_by": by,
            "resolve_comment": note,
            "escalated_from": None,  # it announces no rise
            "updated_at": at,
            "timeline": _with(entry.timeline, step),
        }
    )


def passed_up(entry: InboxAlert, *, to: Recipient, at: datetime) -> InboxAlert:
    """``entry`` passed up to the manager ``to`` because nobody acknowledged it: they join
    its recipients (so it is in their inbox) and its timeline says so. Unchanged when it is
    resolved or acknowledged meanwhile, or when they were passed it already."""
    step = TimelineEntry(what=Happening.PASSED_UP, at=at, to=to.id)
    if entry.state is not AlertState.FIRING or entry.acked_at is not None:
        return entry
    if any(t.what is Happening.PASSED_UP and t.to == to.id for t in entry.timeline):
        return entry
    recipients = entry.recipients
    if all(r.id != to.id for r in recipients):
        recipients = [*recipients, to]
    return entry.model_copy(
        update={"recipients": recipients, "timeline": _with(entry.timeline, step)}
    )


def legacy_entry(raw: str) -> InboxAlert:
    """An entry of the earlier layout (one per fingerprint, no id or timeline) in this one:
    its timeline rebuilt from its times. ValueError if it is not one."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    notification = AlertNotification.model_validate(
        {k: v for k, v in data.items() if k in AlertNotification.model_fields}
    )
    timeline: list[TimelineEntry] = []
    if notification.fired_at is not None:
        # Its severity then is not known once it escalated: the entry keeps the highest.
        first = None if notification.escalated_at is not None else notification.severity
        timeline.append(
            TimelineEntry(what=Happening.FIRED, at=notification.fired_at, severity=first)
        )
    if notification.escalated_at is not None:
        timeline.append(
            TimelineEntry(
                what=Happening.ESCALATED,
                at=notification.escalated_at,
                severity=notification.severity,
            )
        )
    acks: list[Acknowledgement] = []
    if data.get("acked_at") and data.get("acked_by"):
        ack = Acknowledgement.model_validate(
            {"by": data["acked_by"], "at": data["acked_at"], "comment": data.get("ack_comment")}
        )
        acks.append(ack)
        timeline.append(
            TimelineEntry(
                what=Happening.ACKNOWLEDGED, at=ack.at, by=ack.by, comment=ack.comment, via=ack.via
            )
        )
    if notification.state is AlertState.RESOLVED and notification.resolved_at is not None:
        timeline.append(TimelineEntry(what=Happening.RESOLVED, at=notification.resolved_at))
    return InboxAlert.model_validate(
        {
            **dict(notification),
            "id": episode_id(notification.fingerprint, notification.started_at),
            "updated_at": data.get("updated_at") or notification.changed_at,
            "acked_at": data.get("acked_at"),
            "acked_by": data.get("acked_by"),
            "ack_comment": data.get("ack_comment"),
            "acknowledgements": acks,
            "timeline": sorted(timeline, key=lambda t: (t.at, _TIES[t.what])),
        }
    )


@dataclass(frozen=True)
class Filters:
    """What ``GET /v1/alerts`` asks for: every filter given must match."""

    recipient: str | None = None
    rule: str | None = None
    state: AlertState | None = None
    severity: Severity | None = None
    kind: str | None = None
    since: datetime | None = None  # updated at or after
    until: datetime | None = None  # updated before
    acked: bool | None = None
    org_unit: str | None = None  # the subject's unit, or a unit above it
    fingerprint: str | None = None

    def match(self, alert: InboxAlert) -> bool:
        """Whether ``alert`` passes every filter."""
        if self.recipient is not None and all(r.id != self.recipient for r in alert.recipients):
            return False
        if self.rule is not None and alert.rule_id != self.rule:
            return False
        if self.state is not None and alert.state is not self.state:
            return False
        if self.severity is not None and alert.severity is not self.severity:
            return False
        if self.kind is not None and alert.kind != self.kind:
            return False
        if self.since is not None and alert.updated_at < self.since:
            return False
        if self.acked is not None and (alert.acked_at is not None) != self.acked:
            return False
        if self.org_unit is not None and self.org_unit not in alert.org_units:
            return False
        if self.fingerprint is not None and alert.fingerprint != self.fingerprint:
            return False
        return self.until is None or alert.updated_at < self.until

    def index(self) -> str:
        """The most selective index to walk."""
        if self.fingerprint is not None:
            return fingerprint_index(self.fingerprint)
        if self.recipient is not None:
            return recipient_index(self.recipient)
        if self.rule is not None:
            return rule_index(self.rule)
        if self.org_unit is not None:
            return org_unit_index(self.org_unit)
        if self.state is not None:
            return state_index(self.state)
        return INDEX_ALL


def _parse(raw: str | bytes | None) -> InboxAlert | None:
    return InboxAlert.model_validate_json(raw) if raw else None


class Inbox:
    """Redis-backed inbox of alert episodes, queried by recipient, rule, state, org unit and
    alert.

    A resolved entry expires ``retention`` after its resolution (a firing one is kept while
    it fires); the indexes drop an expired entry when a listing meets it.
    """

    def __init__(self, redis: Redis, *, retention: timedelta = DEFAULT_RETENTION) -> None:
        self._redis = redis
        self._retention = retention

    async def record(
        self, notification: AlertNotification, *, org_units: Sequence[str] = ()
    ) -> Recorded:
        """Store a transition (merged with its episode's entry) and update the indexes
        atomically. ``org_units``: the subject's org unit and the units above it."""
        episode = episode_id(notification.fingerprint, notification.started_at)
        key, episodes = episode_key(episode), episodes_key(notification.fingerprint)
        pipe: Any  # redis-py leaves the pipeline's MULTI/reset untyped
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key, episodes)
                    previous = _parse(await pipe.get(key))
                    result = merge(previous, notification, org_units=org_units)
                    newest = await pipe.zrevrange(episodes, 0, 0, withscores=True)
                    later = newest and newest[0][0] != episode
                    if later and newest[0][1] > notification.started_at.timestamp():
                        # The alert fired again since: this episode's news is old news.
                        result = Recorded(alert=result.alert, current=False)
                    if result.alert == previous:
                        await pipe.reset()
                        return result
                    pipe.multi()
                    self._write(pipe, previous=previous, alert=result.alert)
                    await pipe.execute()
                    return result
                except WatchError:
                    # Another replica updated the same alert meanwhile: merge again on top of it.
                    continue

    def _keep(self, alert: InboxAlert) -> int | None:
        """Milliseconds ``alert`` is kept from now; None while it fires."""
        if alert.state is not AlertState.RESOLVED:
            return None
        left = alert.updated_at + self._retention - datetime.now(UTC)
        # At least a second: a transition replayed long after still lands, then goes.
        return max(1000, int(left.total_seconds() * 1000))

    def _write(
        self, pipe: Any, *, previous: InboxAlert | None, alert: InboxAlert, announce: bool = True
    ) -> None:
        member = alert.id
        entry = {member: alert.updated_at.timestamp()}
        document = alert.model_dump_json()
        pipe.set(episode_key(member), document, px=self._keep(alert))
        if announce:
            # In the transaction: announced once stored, and only then.
            pipe.publish(UPDATES, document)
        pipe.zadd(episodes_key(alert.fingerprint), {member: alert.started_at.timestamp()})
        pipe.zadd(INDEX_ALL, entry)
        pipe.zadd(rule_index(alert.rule_id), entry)
        pipe.zadd(fingerprint_index(alert.fingerprint), entry)
        pipe.zadd(state_index(alert.state), entry)
        for state in AlertState:
            if state is not alert.state:
                pipe.zrem(state_index(state), member)
        for recipient in alert.recipients:
            pipe.zadd(recipient_index(recipient.id), entry)
        for unit in alert.org_units:
            pipe.zadd(org_unit_index(unit), entry)
        if previous is not None:
            kept = {r.id for r in alert.recipients}
            for gone in (r.id for r in previous.recipients if r.id not in kept):
                pipe.zrem(recipient_index(gone), member)
            for unit in previous.org_units:
                if unit not in alert.org_units:
                    pipe.zrem(org_unit_index(unit), member)

    async def _change(
        self, key: str, change: Callable[[InboxAlert], InboxAlert]
    ) -> InboxAlert | None:
        """Apply ``change`` (entry in, entry out; it may raise) to the entry ``key`` names
        (an episode id, or a fingerprint: its newest episode); None if there is none."""
        episode = await self._episode_of(key)
        if episode is None:
            return None
        stored = episode_key(episode)
        pipe: Any
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(stored)
                    entry = _parse(await pipe.get(stored))
                    if entry is None:
                        await pipe.reset()
                        return None
                    try:
                        changed = change(entry)
                    except NotFiring:
                        await pipe.reset()
                        raise
                    if changed == entry:
                        await pipe.reset()
                        return entry
                    pipe.multi()
                    self._write(pipe, previous=entry, alert=changed)
                    await pipe.execute()
                    return changed
                except WatchError:
                    continue  # a transition landed meanwhile: change what it left

    async def ack(
        self, key: str, *, by: str, comment: str, at: datetime, via: AckVia = AckVia.API
    ) -> InboxAlert | None:
        """Acknowledge the firing episode ``key`` names (an id, or a fingerprint: its newest
        episode); None if the inbox has no such entry; :class:`NotFiring` if it is resolved.
        The first acknowledgement stands in ``acked_*``; later ones by other people are
        added to ``acknowledgements``."""
        return await self._change(
            key, lambda entry: acknowledged(entry, by=by, comment=comment, at=at, via=via)
        )

    async def comment(
        self, key: str, *, by: str, name: str | None, text: str, at: datetime
    ) -> InboxAlert | None:
        """Add ``by``'s comment to the episode ``key`` names, firing or resolved; None if the
        inbox has no such entry."""
        return await self._change(
            key, lambda entry: commented(entry, by=by, name=name, text=text, at=at)
        )

    async def resolve(self, key: str, *, by: str, comment: str, at: datetime) -> InboxAlert | None:
        """Resolve the firing episode ``key`` names by hand; None if the inbox has no such
        entry; :class:`NotFiring` if it is resolved already."""
        return await self._change(
            key, lambda entry: resolved_by_hand(entry, by=by, comment=comment, at=at)
        )

    async def pass_up(self, key: str, *, to: Recipient, at: datetime) -> InboxAlert | None:
        """Record that the firing episode ``key`` names went to the manager ``to`` (see
        :func:`passed_up`); None if the inbox has no such entry."""
        return await self._change(key, lambda entry: passed_up(entry, to=to, at=at))

    async def updates(self) -> AsyncIterator[InboxAlert | None]:
        """None once listening, then every entry as it changes from then on, on any
        replica, until the caller stops (each caller holds one Redis connection while it
        listens)."""
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(UPDATES)
            yield None
            async for message in pubsub.listen():
                if message["type"] == "message":
                    yield InboxAlert.model_validate_json(message["data"])
        finally:
            await pubsub.aclose()

    async def episode(self, episode: str) -> InboxAlert | None:
        """One entry by its id, or None."""
        return _parse(await self._redis.get(episode_key(episode)))

    async def newest(self, fingerprint: str) -> InboxAlert | None:
        """The entry of the newest episode of alert ``fingerprint`` the inbox still has."""
        episode = await self._newest_id(fingerprint)
        return None if episode is None else await self.episode(episode)

    async def get(self, key: str) -> InboxAlert | None:
        """One entry by its id, or the newest episode of the alert whose fingerprint is
        ``key``; None if neither is in the inbox."""
        return await self.episode(key) or await self.newest(key)

    async def _episode_of(self, key: str) -> str | None:
        if await self._redis.exists(episode_key(key)):
            return key
        return await self._newest_id(key)

    async def _newest_id(self, fingerprint: str) -> str | None:
        index = episodes_key(fingerprint)
        ids = cast(list[str], await self._redis.zrevrange(index, 0, -1))
        for episode in ids:
            if await self._redis.exists(episode_key(episode)):
                return episode
            await self._redis.zrem(index, episode)  # expired
        return None

    async def list(
        self,
        *,
        recipient: str | None = None,
        rule: str | None = None,
        state: AlertState | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[InboxAlert]:
        """Entries matching every given filter, most recently updated first, at most ``limit``."""
        alerts, _ = await self.page(Filters(recipient=recipient, rule=rule, state=state), limit)
        return alerts

    async def page(
        self,
        filters: Filters,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
        *,
        visible: Callable[[InboxAlert], Awaitable[bool]] | None = None,
    ) -> tuple[builtins.list[InboxAlert], str | None]:
        """Entries matching ``filters``, most recently updated first, at most ``limit``, from
        after ``cursor`` (a previous page's); and the cursor of the next page (None: none).

        The most selective index is walked (:mod:`services.notifier.pages`); the other
        filters are applied to the entries read. An entry updated while a client pages moves
        to the front: it is not seen twice on the way down.
        """
        walk = Walk(
            redis=self._redis,
            index=filters.index(),
            key=episode_key,
            parse=InboxAlert.model_validate_json,
            match=filters.match,
            visible=visible,
        )
        return await walk.page(Window(filters.since, filters.until), limit, cursor)

    async def migrate(self) -> int:
        """Move every entry of the earlier layout (``alert:{fingerprint}``) to its episode's
        key and the indexes to episode ids; how many were moved. Safe to run on several
        replicas at once, and again: a moved entry is gone from the old key."""
        moved = 0
        async for key in self._redis.scan_iter(match=f"{LEGACY_PREFIX}*", count=500):
            if await self._migrate_one(str(key)):
                moved += 1
        if moved:
            logger.info("inbox: %d entries moved to one entry per episode", moved)
        return moved

    async def _migrate_one(self, key: str) -> bool:
        fingerprint = key.removeprefix(LEGACY_PREFIX)
        pipe: Any
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if not raw:
                        await pipe.reset()
                        return False
                    try:
                        entry: InboxAlert | None = legacy_entry(raw)
                    except (ValueError, ValidationError) as exc:
                        logger.warning(
                            "inbox: entry %s of the earlier layout is unreadable (%s); dropped",
                            key,
                            exc,
                        )
                        entry = None
                    taken = False
                    if entry is not None:
                        await pipe.watch(episode_key(entry.id))
                        taken = bool(await pipe.exists(episode_key(entry.id)))
                    pipe.multi()
                    # The old layout's members are fingerprints; listings would drop them
                    # anyway, but not before they cost a read each.
                    indexes = [INDEX_ALL, *(state_index(s) for s in AlertState)]
                    if entry is not None:
                        indexes.append(rule_index(entry.rule_id))
                        indexes.extend(recipient_index(r.id) for r in entry.recipients)
                    for index in indexes:
                        pipe.zrem(index, fingerprint)
                    pipe.delete(key)
                    if entry is not None and not taken:
                        # Not announced: nothing happened to the alert.
                        self._write(pipe, previous=None, alert=entry, announce=False)
                    await pipe.execute()
                    return entry is not None and not taken
                except WatchError:
                    continue
