"""The fraud kind: findings per record, and the alert they keep firing.

Each record (metric event) of a subject is measured against what the subject sent before
(:func:`measures`: records in the window, earlier copies, the step from the previous value,
records off hours, the distance from the peers); whether the measures make a **finding** is
the rules engine's verdict, as a threshold's comparison is. The alert of (rule, subject,
metric) fires at the first finding, stays firing while findings come, and resolves once
``quiet`` passes (by event time) without one: from a timer armed for ``last finding +
quiet``, or at a later record past that time. Pure functions: state in, state out.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from goalwatch.contracts import AlertState, MetricRecorded
from goalwatch.rules.fraud_spec import (
    MAX_RECORDS,
    BurstCondition,
    DuplicateCondition,
    FraudCondition,
    JumpCondition,
    OffHoursCondition,
    OutlierCondition,
)
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.threshold import TIMER_SOURCE
from goalwatch.rules.transitions import Point, Transition, Verdict

TIMER: Final = "fraud"
"""Name of the timers of fraud rules (the quiet period), one per alert key."""
MAX_EVIDENCE: Final = 50
"""Records an alert lists as its evidence at most (the newest)."""
KEPT_STEPS: Final = 10
"""Records a jump rule keeps, for a late record to find its neighbours."""

Judge = Callable[[Mapping[str, float]], bool]
"""The rules engine's verdict: do these measures of a record make a finding?"""


@dataclass(frozen=True)
class Record:
    """One record as a fraud pattern sees it."""

    event_id: str
    time: datetime
    value: float
    digest: str = ""  # duplicate: the content compared
    off_hours: bool = False  # off_hours: outside the subject's working hours

    def point(self) -> Point:
        """The record as an alert's evidence."""
        return Point.of(self.event_id, self.time, self.value, Verdict.BREACH)


def record_of(
    event: MetricRecorded, condition: FraudCondition, *, zone: str | None = None
) -> Record:
    """``event`` as ``condition``'s pattern sees it; ``zone``: the subject's time zone, for
    a rule without one of its own (else UTC)."""
    digest, off_hours = "", False
    if isinstance(condition, DuplicateCondition):
        digest = content_digest(event, condition.fields)
    elif isinstance(condition, OffHoursCondition):
        local = event.time.astimezone(ZoneInfo(condition.time_zone or zone or "UTC"))
        off_hours = not condition.at_work(local)
    return Record(event.id, event.time, event.value, digest, off_hours)


def content_digest(event: MetricRecorded, fields: Sequence[str]) -> str:
    """What makes two records the same: the named fields, hashed (a missing label is
    empty)."""
    content = [
        event.value if name == "value" else event.labels.get(name.removeprefix("labels."), "")
        for name in fields
    ]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FraudState:
    """What is remembered about one (rule, subject, metric)."""

    records: tuple[Record, ...] = ()  # the recent records the pattern needs, by event time
    firing: bool = False
    started_at: datetime | None = None
    last_finding: datetime | None = None
    findings: int = 0  # findings of the firing alert
    armed: datetime | None = None  # when the key's timer is armed for, if it is
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What one input does to a key: its new state, the transition if any, the measures of
    a record, and the time to (re)arm the key's timer for."""

    state: FraudState
    transition: Transition | None = None
    duplicate: bool = False
    arm: datetime | None = None
    measures: Mapping[str, float] = field(default_factory=dict)


def _order(record: Record) -> tuple[datetime, str]:
    return record.time, record.event_id


def measures(
    condition: FraudCondition,
    records: Sequence[Record],
    new: Record,
    *,
    peers: Sequence[float] | None = None,
) -> dict[str, float]:
    """What ``condition``'s pattern measures of ``new`` among ``records`` (the subject's, by
    event time, ``new`` included); ``peers``: the peers' current values (outlier)."""
    if isinstance(condition, BurstCondition | OffHoursCondition | DuplicateCondition):
        start = new.time - condition.within
        window = [r for r in records if start < r.time <= new.time]
        if isinstance(condition, BurstCondition):
            return {"measure": float(len(window))}
        if isinstance(condition, OffHoursCondition):
            count = sum(r.off_hours for r in window) if new.off_hours else 0
            return {"measure": float(count)}
        copies = [r for r in window if r.digest == new.digest and r.event_id != new.event_id]
        return {"measure": float(len(copies))}
    if isinstance(condition, JumpCondition):
        index = next(i for i, r in enumerate(records) if r.event_id == new.event_id)
        step = abs(new.value - records[index - 1].value) if index > 0 else 0.0
        return {"value": new.value, "step": step}
    assert isinstance(condition, OutlierCondition)
    values = list(peers or ())
    if len(values) < 2:
        return {"measure": 0.0, "peers": float(len(values))}
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    # Peers that all agree give no spread to measure against: no judgement.
    z = 0.0 if spread == 0 else abs(new.value - mean) / spread
    return {"measure": z, "peers": float(len(values))}


def retained(condition: FraudCondition, records: Sequence[Record]) -> tuple[Record, ...]:
    """The records ``condition``'s pattern still needs after the newest of ``records``."""
    if isinstance(condition, JumpCondition):
        return tuple(records[-KEPT_STEPS:])
    if isinstance(condition, OutlierCondition):
        return tuple(records[-1:])  # the peers' values are kept per group, not here
    newest = records[-1].time
    return tuple(r for r in records if newest - condition.within < r.time)[-MAX_RECORDS:]


def observe(
    state: FraudState,
    new: Record,
    condition: FraudCondition,
    *,
    judge: Judge,
    peers: Sequence[float] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Decision:
    """Add the record ``new``; a finding fires the alert or keeps it firing.

    A record id already kept changes nothing and asks for the armed timer again.
    """
    if any(record.event_id == new.event_id for record in state.records):
        return Decision(state=state, duplicate=True, arm=state.armed)
    records = sorted([*state.records, new], key=_order)
    newest = records[-1] is new
    measured = measures(condition, records, new, peers=peers)
    state = replace(
        state,
        records=retained(condition, records),
        labels=dict(labels or {}) if newest else state.labels,
    )
    quiet = condition.quiet_for
    found = judge(measured)
    if not found:
        late = state.last_finding is not None and records[-1].time >= state.last_finding + quiet
        if state.firing and late:
            return _resolve(state, measured)  # over, though its timer has not fired yet
        return Decision(state=state, measures=measured)
    transition = None
    if not state.firing:
        evidence = _evidence(condition, records, new)
        started_at = evidence[0].time
        transition = Transition(AlertState.FIRING, started_at, tuple(r.point() for r in evidence))
        state = replace(state, firing=True, started_at=started_at, findings=0, last_finding=None)
    last = new.time if state.last_finding is None else max(state.last_finding, new.time)
    at = last + quiet
    return Decision(
        state=replace(state, last_finding=last, findings=state.findings + 1, armed=at),
        transition=transition,
        arm=None if state.armed == at else at,
        measures=measured,
    )


def due(state: FraudState, at: datetime, condition: FraudCondition) -> Decision:
    """The key's timer, armed for ``at``, fired: resolve if ``quiet`` has passed since the
    last finding; a stale timer changes nothing but the record of what is armed. ``quiet``
    is the rule's as it is now: made longer since the timer was armed, the alert waits for
    the new end, armed anew."""
    state = replace(
        state, armed=state.armed if state.armed is not None and state.armed > at else None
    )
    if not state.firing or state.last_finding is None:
        return Decision(state=state)
    end = state.last_finding + condition.quiet_for
    if at < end:
        # Stale (a later finding moved the end), or armed under a shorter ``quiet`` than
        # the rule's now: the end must have its timer (it has, if stale).
        return Decision(state=replace(state, armed=end), arm=None if state.armed == end else end)
    return _resolve(state, {})


def _resolve(state: FraudState, measured: Mapping[str, float]) -> Decision:
    assert state.started_at is not None
    return Decision(
        state=replace(state, firing=False, findings=0),
        transition=Transition(AlertState.RESOLVED, state.started_at),
        measures=measured,
    )


def _evidence(condition: FraudCondition, records: Sequence[Record], new: Record) -> list[Record]:
    """The records behind a first finding, oldest first: the window's (burst, off hours),
    the copies and the new one (duplicate), the step (jump), or the record (outlier)."""
    if isinstance(condition, JumpCondition):
        index = records.index(new)
        return list(records[max(0, index - 1) : index + 1])
    if isinstance(condition, OutlierCondition):
        return [new]
    start = new.time - condition.within
    window = [r for r in records if start < r.time <= new.time]
    if isinstance(condition, OffHoursCondition):
        window = [r for r in window if r.off_hours]
    elif isinstance(condition, DuplicateCondition):
        window = [r for r in window if r.digest == new.digest]
    return window[-MAX_EVIDENCE:]


def peer_group(
    condition: OutlierCondition, event: MetricRecorded, org_units: Sequence[str]
) -> str | None:
    """The group of peers ``event``'s subject is compared with: the value of the peer label,
    or the subject's own org unit; None when the event has no such label or the subject no
    unit."""
    label = condition.peer_label
    if label is not None:
        return event.labels.get(label) or None
    return org_units[0] if org_units else None


def newest_event(rule: RuleSpec, subject: str, state: FraudState) -> MetricRecorded:
    """The newest record ``state`` keeps, as the event an alert a timer resolves speaks of
    (a key's timer is armed only once the key has records)."""
    record = state.records[-1]
    return MetricRecorded(
        id=record.event_id,
        metric=rule.metric,
        value=record.value,
        time=record.time,
        subject=subject,
        source=TIMER_SOURCE,
        labels=dict(state.labels),
    )
