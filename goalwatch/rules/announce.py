"""Turn an alert transition into the AlertFired / AlertResolved message that announces it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from goalwatch.contracts import (
    AlertFired,
    AlertResolved,
    AlertState,
    MetricRecorded,
    Observation,
    Severity,
)
from goalwatch.durations import duration_text
from goalwatch.rules.fraud_spec import (
    DuplicateCondition,
    FraudCondition,
    JumpCondition,
    OutlierCondition,
)
from goalwatch.rules.overdue import Seen
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.template import render
from goalwatch.rules.transitions import Transition, fingerprint


def message_id(fp: str, transition: Transition) -> str:
    """JetStream de-duplication id: one fired and one resolved message per alert episode.

    An episode is identified by the event time its streak started, so a redelivered event
    republishing the same transition is dropped by the stream.
    """
    verb = "fired" if transition.state is AlertState.FIRING else "resolved"
    if transition.escalated_from is not None and transition.severity is not None:
        # A rise in severity is a message of its own: once per episode and severity.
        verb = f"escalated:{transition.severity.value}"
    return f"{fp}:{verb}:{transition.started_at.isoformat()}"


def build_alert(
    *,
    rule: RuleSpec,
    event: MetricRecorded,
    subject_name: str,
    transition: Transition,
    now: datetime,
) -> AlertFired | AlertResolved:
    """The message announcing ``transition``, which ``event`` caused: fired or resolved.

    ``subject_name`` is the subject's display name (its id when the directory has none);
    ``now`` is the time stamped on the alert as fired or resolved.
    """
    build = build_fired if transition.state is AlertState.FIRING else build_resolved
    return build(rule=rule, event=event, subject_name=subject_name, transition=transition, now=now)


def build_fired(
    *,
    rule: RuleSpec,
    event: MetricRecorded,
    subject_name: str,
    transition: Transition,
    now: datetime,
) -> AlertFired:
    """The alert for ``rule`` that ``event`` made fire.

    Its value is the latest observation by event time: with backfilled events the one that
    completed the streak may be an older day, and the manager wants the current figure.
    """
    value = transition.history[-1].value if transition.history else event.value
    severity = transition.severity or rule.severity
    return AlertFired(
        fingerprint=rule.fingerprint_of(event.subject, event.labels),
        rule_id=rule.id,
        rule_name=rule.name,
        kind=rule.kind,
        severity=severity,
        subject=event.subject,
        subject_name=subject_name,
        metric=event.metric,
        value=value,
        message=render_message(
            rule, event, value=value, subject_name=subject_name, severity=severity
        ),
        notify=list(rule.notify),
        labels=dict(event.labels),
        started_at=transition.started_at,
        fired_at=now,
        event_id=event.id,
        history=[
            Observation(event_id=point.event_id, time=point.time, value=point.value)
            for point in transition.history
        ],
        escalated_from=transition.escalated_from,
    )


def build_resolved(
    *,
    rule: RuleSpec,
    event: MetricRecorded,
    subject_name: str,
    transition: Transition,
    now: datetime,
) -> AlertResolved:
    """The notice that ``event`` cleared ``rule``'s alert."""
    condition = rule.threshold
    severity = transition.severity or rule.severity
    return AlertResolved(
        fingerprint=rule.fingerprint_of(event.subject, event.labels),
        rule_id=rule.id,
        rule_name=rule.name,
        severity=severity,
        subject=event.subject,
        subject_name=subject_name,
        metric=event.metric,
        value=event.value,
        message=(
            render_message(
                rule,
                event,
                value=event.value,
                subject_name=subject_name,
                severity=severity,
                resolved=True,
            )
            if rule.resolved_message
            else f"Resolved: {rule.name} — {subject_name}: {event.metric} is {event.value:g}, "
            f"no longer {condition.text()}"
        ),
        notify=list(rule.notify),
        started_at=transition.started_at,
        resolved_at=now,
        event_id=event.id,
    )


def render_message(
    rule: RuleSpec,
    event: MetricRecorded,
    *,
    value: float,
    subject_name: str,
    severity: Severity | None = None,
    resolved: bool = False,
) -> str:
    """The rule's message (or resolved message) template filled in for ``event``;
    ``{severity}`` is ``severity`` (the alert's, once escalated), else the rule's."""
    template = rule.resolved_message if resolved and rule.resolved_message else rule.message
    return render(
        template,
        subject=event.subject,
        subject_name=subject_name,
        metric=event.metric,
        value=value,
        **rule.threshold.fields(),
        rule_id=rule.id,
        rule_name=rule.name,
        severity=(severity or rule.severity).value,
        labels=event.labels,
    )


def build_absence_alert(
    *,
    rule: RuleSpec,
    subject: str,
    subject_name: str,
    last: Seen,
    transition: Transition,
    now: datetime,
) -> AlertFired | AlertResolved:
    """The message announcing an overdue (absence) ``transition`` about ``subject``.

    Firing: ``last`` is the last report before the silence, ``started_at`` the deadline it
    missed. Resolved: ``last`` is the report that ended it.
    """
    fp = fingerprint(rule.id, subject, rule.metric)
    fields = {
        "subject": subject,
        "subject_name": subject_name,
        "metric": rule.metric,
        "value": last.value,
        "last_seen": last.time,
        "absent_for": duration_text(rule.overdue.absent_for),
        "due_at": transition.started_at,
        "rule_id": rule.id,
        "rule_name": rule.name,
        "severity": rule.severity.value,
    }
    if transition.state is AlertState.FIRING:
        return AlertFired(
            fingerprint=fp,
            rule_id=rule.id,
            rule_name=rule.name,
            kind=rule.kind,
            severity=rule.severity,
            subject=subject,
            subject_name=subject_name,
            metric=rule.metric,
            value=last.value,
            message=render(rule.message, labels=last.labels, **fields),
            notify=list(rule.notify),
            labels=dict(last.labels),
            started_at=transition.started_at,
            fired_at=now,
            event_id=last.event_id,
            history=[Observation(event_id=last.event_id, time=last.time, value=last.value)],
        )
    message = (
        render(rule.resolved_message, labels=last.labels, **fields)
        if rule.resolved_message
        else f"Resolved: {rule.name} — {subject_name}: {rule.metric} reported again "
        f"({last.value:g} at {last.time.isoformat()})"
    )
    return AlertResolved(
        fingerprint=fp,
        rule_id=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        subject=subject,
        subject_name=subject_name,
        metric=rule.metric,
        value=last.value,
        message=message,
        notify=list(rule.notify),
        started_at=transition.started_at,
        resolved_at=now,
        event_id=last.event_id,
    )


def build_fraud_alert(
    *,
    rule: RuleSpec,
    event: MetricRecorded,
    subject_name: str,
    transition: Transition,
    measures: Mapping[str, float],
    findings: int,
    now: datetime,
) -> AlertFired | AlertResolved:
    """The message announcing a fraud ``transition``: fired by the finding in ``event``
    (its ``measures``), or resolved (``event``: the newest record then) after the quiet
    time."""
    condition = rule.fraud
    measure, limit = fraud_measure(condition, measures)
    fields = {
        "subject": event.subject,
        "subject_name": subject_name,
        "metric": event.metric,
        "value": event.value,
        "pattern": condition.pattern,
        "measure": measure,
        "limit": limit,
        "count": findings,
        "within": duration_text(condition.window) if condition.window else "-",
        "quiet": duration_text(condition.quiet_for),
        "rule_id": rule.id,
        "rule_name": rule.name,
        "severity": rule.severity.value,
    }
    fp = rule.fingerprint_of(event.subject, event.labels)
    if transition.state is AlertState.FIRING:
        return AlertFired(
            fingerprint=fp,
            rule_id=rule.id,
            rule_name=rule.name,
            kind=rule.kind,
            severity=rule.severity,
            subject=event.subject,
            subject_name=subject_name,
            metric=event.metric,
            value=event.value,
            message=render(rule.message, labels=event.labels, **fields),
            notify=list(rule.notify),
            labels=dict(event.labels),
            started_at=transition.started_at,
            fired_at=now,
            event_id=event.id,
            history=[
                Observation(event_id=point.event_id, time=point.time, value=point.value)
                for point in transition.history
            ],
        )
    message = (
        render(rule.resolved_message, labels=event.labels, **fields)
        if rule.resolved_message
        else f"Resolved: {rule.name} — {subject_name}: no new finding for {fields['quiet']}"
    )
    return AlertResolved(
        fingerprint=fp,
        rule_id=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        subject=event.subject,
        subject_name=subject_name,
        metric=event.metric,
        value=event.value,
        message=message,
        notify=list(rule.notify),
        started_at=transition.started_at,
        resolved_at=now,
        event_id=event.id,
    )


def fraud_measure(condition: FraudCondition, measures: Mapping[str, float]) -> tuple[float, float]:
    """What a finding measured and what the rule allows, for ``{measure}`` and ``{limit}``:
    records and count (burst, off hours), copies and 1 (duplicate), the step and max_step or
    the value and the end of range it passed (jump), |z| and z (outlier)."""
    if isinstance(condition, JumpCondition):
        value, step = measures.get("value", 0.0), measures.get("step", 0.0)
        if condition.range is not None and not condition.range[0] <= value <= condition.range[1]:
            low, high = condition.range
            return value, low if value < low else high
        return step, condition.max_step or 0.0
    if isinstance(condition, OutlierCondition):
        return measures.get("measure", 0.0), condition.z
    if isinstance(condition, DuplicateCondition):
        return measures.get("measure", 0.0), 1.0
    return measures.get("measure", 0.0), float(condition.count)
