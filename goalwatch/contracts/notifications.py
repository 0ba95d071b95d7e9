"""The notification the notifier sends for one alert transition: the generic webhook's body.

``AlertNotification`` is the JSON of every generic webhook POST (one POST per transition, all
recipients inside) and the shape of an inbox entry. Receivers code against it: its JSON Schema
is ``contracts/schemas/AlertNotification.json``. ``fingerprint`` plus ``started_at`` name one
episode of one alert, which fires once and resolves once. Receivers de-duplicate deliveries on
``idempotency_key`` (also sent as the ``Idempotency-Key`` header): one per transition,
recipient set and channel, the same in every attempt and redelivery.

An alert that rises to a higher severity while it fires (warning, then critical) stays one
alert: the rise is a transition of its own, announced once as a firing notification with the
new ``severity`` and ``escalated_from`` set, under its own ``idempotency_key``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

from goalwatch.contracts.alerts import AlertState, Observation, Recipient, Severity
from goalwatch.contracts.base import Contract
from goalwatch.contracts.impact import ImpactAnalysis
from goalwatch.contracts.overdue import OverdueGoal


class SubjectRef(Contract):
    """Who the alert is about, with a display name when the directory knows them."""

    id: str = Field(description="Subject id, as in the metric events.")
    name: str = Field(description="Display name; the id itself when the directory has no entry.")


class Unacknowledged(Contract):
    """Nobody acknowledged a firing alert in time, so it went to the next manager up."""

    to: str = Field(description="Person id of the manager it went to.")
    level: int = Field(
        ge=1, description="1 for the first manager above those told, 2 for the next, ..."
    )
    after_seconds: int = Field(ge=0, description="How long it had gone unacknowledged.")
    at: AwareDatetime = Field(description="When it was passed up.")


class AlertNotification(Contract):
    """One alert transition (firing, escalated or resolved), addressed to its recipients."""

    version: Literal["1"] = Field(
        "1", description="Payload version; a breaking change gets a new number."
    )
    state: AlertState = Field(description="firing, or resolved.")
    fingerprint: str = Field(description="Stable id of the alert (same rule, subject, metric).")
    rule_id: str = Field(description="Id of the rule.")
    rule_name: str = Field(description="Human-readable name of the rule.")
    kind: str | None = Field(
        default=None,
        description="Rule kind (threshold, overdue, fraud, dependency_impact), when known.",
    )
    severity: Severity = Field(
        description="info, warning (yellow) or critical (red): the highest the alert has reached "
        "in this episode (after an escalation, the severity it rose to; kept on resolution)."
    )
    subject: SubjectRef = Field(description="Who or what the alert is about.")
    metric: str = Field(description="Metric the rule watches.")
    value: float = Field(description="Value of the observation behind this transition.")
    message: str = Field(description="Rendered message for this transition.")
    started_at: AwareDatetime = Field(description="Event time at which the condition began.")
    fired_at: AwareDatetime | None = Field(
        default=None,
        description="When the alert first fired in this episode, if the notifier saw it fire "
        "(an escalation does not change it).",
    )
    escalated_from: Severity | None = Field(
        default=None,
        description="Set when this notification announces an escalation: the alert, still "
        "firing, rose to a higher severity, and this is the severity it had before. Null on "
        "the first firing and on resolution.",
    )
    escalated_at: AwareDatetime | None = Field(
        default=None,
        description="When the alert last rose to a higher severity in this episode; null if it "
        "never did. Kept on resolution.",
    )
    resolved_at: AwareDatetime | None = Field(
        default=None, description="When the alert resolved; null while firing."
    )
    unacknowledged: Unacknowledged | None = Field(
        default=None,
        description="Set when this notification passes the alert up the manager chain because "
        "nobody acknowledged it in time: to whom, after how long, at which level. Null otherwise.",
    )
    history: list[Observation] = Field(
        default_factory=list, description="Observations behind the alert, oldest first."
    )
    impact: ImpactAnalysis | None = Field(
        default=None,
        description="dependency_impact alerts only: the goal that failed (failing_goal) and "
        "the subject's goals that rest on it (affected), each with its path from the failing "
        "goal, its depth and the weight carried; null for other kinds.",
    )
    goal: OverdueGoal | None = Field(
        default=None,
        description="Goal-based overdue alerts only: the goal (id, title, due, progress, "
        "owner, last check-in) and which form fired (past_due, no_check_in, behind_plan); "
        "null for other kinds.",
    )
    recipients: list[Recipient] = Field(description="Who this notification is addressed to.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels of the event that fired the alert."
    )
    idempotency_key: str | None = Field(
        default=None,
        description="Set on channel deliveries, null in the inbox: the same for every attempt "
        "and redelivery of one transition to one recipient set on one channel (also the "
        "Idempotency-Key header). A receiver that has processed a key drops the repeat.",
    )
    ack_url: str | None = Field(
        default=None,
        description="Set on channel deliveries of a firing or an escalation when the notifier "
        "has a public URL (GOALWATCH_PUBLIC_URL): a signed link that acknowledges this episode "
        "of the alert. Opening it shows a page to confirm; it works until it expires "
        "(GOALWATCH_LINK_LIFETIME). Null on resolution and in the inbox.",
    )

    @property
    def changed_at(self) -> datetime:
        """Wall-clock time of this transition: resolved_at when resolved, escalated_at after an
        escalation, else fired_at (started_at when none is known)."""
        if self.state is AlertState.RESOLVED:
            moment = self.resolved_at
        else:
            moment = self.escalated_at or self.fired_at
        return moment if moment is not None else self.started_at


class DigestReason(StrEnum):
    """Why several alert transitions travel in one message."""

    GROUP = "group"
    """A route groups alerts (``group_by``, ``group_wait``, ``group_interval``)."""
    REPEAT = "repeat"
    """A route's ``repeat_interval``: the group still fires, nothing changed, reminded."""
    RATE_LIMIT = "rate_limit"
    """More messages than the target accepts: the held-back ones, merged."""
    QUIET_HOURS = "quiet_hours"
    """Held back during the recipient's quiet hours, sent when they end."""


class AlertDigest(Contract):
    """Several alert transitions in one message: a group of alerts, or what a rate limit or
    quiet hours held back. The generic webhook's body when it carries more than one alert
    (``X-Goalwatch-Event: digest``)."""

    id: str = Field(description="Stable id of this message (group and send sequence).")
    reason: DigestReason = Field(
        description="group, repeat, rate_limit or quiet_hours: why the alerts travel together."
    )
    receiver: str | None = Field(default=None, description="The routing receiver it was sent for.")
    group_labels: dict[str, str] = Field(
        default_factory=dict,
        description="The labels the alerts share, by which the route groups them "
        "(e.g. rule, department); empty when they share none.",
    )
    alerts: list[AlertNotification] = Field(
        min_length=1,
        description="The alerts: firing ones first, newest first, then those resolved since "
        "the previous message of this group.",
    )
    recipients: list[Recipient] = Field(description="Everyone the message is addressed to.")
    previous_at: AwareDatetime | None = Field(
        default=None,
        description="When the previous message of this group was sent: alerts that changed "
        "after it are new to the reader; null for the first message.",
    )
    created_at: AwareDatetime = Field(description="When the message was put together.")
    idempotency_key: str | None = Field(
        default=None,
        description="The same for every attempt of this message on one channel (also the "
        "Idempotency-Key header).",
    )

    @property
    def firing(self) -> list[AlertNotification]:
        """The alerts still firing."""
        return [a for a in self.alerts if a.state is AlertState.FIRING]

    @property
    def resolved(self) -> list[AlertNotification]:
        """The alerts resolved since the previous message."""
        return [a for a in self.alerts if a.state is AlertState.RESOLVED]
