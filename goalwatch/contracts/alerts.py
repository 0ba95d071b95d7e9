"""Alerts published by the evaluator and the notifications made of them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, Field, model_validator

from goalwatch.contracts.base import Contract
from goalwatch.contracts.impact import ImpactAnalysis
from goalwatch.contracts.overdue import OverdueGoal
from goalwatch.contracts.people import Channel, Language


class Severity(StrEnum):
    """How loud an alert is: info, warning (yellow) or critical (red)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Loudness order, from 0: info < warning < critical."""
        return list(Severity).index(self)


class RuleKind(StrEnum):
    """The kind of rule an alert comes from: threshold, overdue, fraud or dependency_impact."""

    THRESHOLD = "threshold"
    OVERDUE = "overdue"
    FRAUD = "fraud"
    DEPENDENCY_IMPACT = "dependency_impact"


class AlertState(StrEnum):
    """Lifecycle state of an alert."""

    FIRING = "firing"
    RESOLVED = "resolved"


_SUBJECT_NAME = (
    "Display name of the subject from the people directory when the alert was built; the "
    "subject id when the directory has none (also for alerts published before this field)."
)

_GOAL = (
    "Goal-based overdue alerts only (null for other kinds): the goal, its due date, progress "
    "and owner, and which form fired (past_due, no_check_in, behind_plan)."
)

_IMPACT = (
    "dependency_impact alerts only (null for other kinds): the goal that failed and the "
    "subject's goals that rest on it, with the path to each and the weight carried."
)


class Observation(Contract):
    """One metric observation attached to an alert as evidence."""

    event_id: str = Field(description="Id of the metric event.")
    time: AwareDatetime = Field(description="Event time of the observation.")
    value: float = Field(description="Observed value.")


def _name_defaults_to_subject(data: Any) -> Any:
    """Alerts published before ``subject_name`` existed read as named by their subject id."""
    if isinstance(data, dict) and "subject_name" not in data and "subject" in data:
        return {**data, "subject_name": data["subject"]}
    return data


class AlertFired(Contract):
    """A rule's condition started to hold for a subject, or (``escalated_from`` set) an alert
    already firing rose to a higher severity."""

    fingerprint: str = Field(
        description="Stable id of this alert: the same rule, subject and metric give the same value."
    )
    rule_id: str = Field(description="Id of the rule that fired.")
    rule_name: str = Field(description="Human-readable name of the rule.")
    kind: RuleKind = Field(description="Rule kind: threshold, overdue, fraud or dependency_impact.")
    severity: Severity = Field(
        description="Severity given by the rule; on an escalation, the severity it rose to."
    )
    subject: str = Field(description="Who or what the alert is about.")
    subject_name: str = Field(description=_SUBJECT_NAME)
    metric: str = Field(description="Metric the rule watches.")
    value: float = Field(
        description="Value of the newest observation by event time (the last of the history)."
    )
    message: str = Field(description="Rendered alert message.")
    notify: list[str] = Field(
        description="Who to notify, as roles (subject, manager) or explicit person ids."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the last event.")
    started_at: AwareDatetime = Field(description="Event time at which the condition began.")
    fired_at: AwareDatetime = Field(
        description="Wall-clock time the evaluator fired the alert; on an escalation, the time "
        "it escalated."
    )
    event_id: str = Field(
        description="Id of the event that made the rule fire (with backfilled data, possibly "
        "an older day than the newest observation)."
    )
    history: list[Observation] = Field(
        default_factory=list, description="The observations behind the alert, oldest first."
    )
    impact: ImpactAnalysis | None = Field(default=None, description=_IMPACT)
    goal: OverdueGoal | None = Field(default=None, description=_GOAL)
    escalated_from: Severity | None = Field(
        default=None,
        description="Set when this message announces that an alert already firing (same "
        "fingerprint and started_at) rose to a higher severity: the severity it had before. "
        "Null on the first firing.",
    )

    @model_validator(mode="before")
    @classmethod
    def _older_alerts_are_named_by_id(cls, data: Any) -> Any:
        return _name_defaults_to_subject(data)

    @model_validator(mode="after")
    def _escalation_rises(self) -> AlertFired:
        # A "rise" to the same or a lower severity would be announced as news to managers
        # while saying nothing new, or the opposite of what happened: refuse it at the border.
        if self.escalated_from is not None and self.escalated_from.rank >= self.severity.rank:
            raise ValueError(
                f"escalated_from ({self.escalated_from.value}) must be a lower severity than "
                f"severity ({self.severity.value}): an escalation announces a rise; leave "
                "escalated_from null on a first firing"
            )
        return self


class AlertResolved(Contract):
    """A firing alert's condition stopped holding."""

    fingerprint: str = Field(description="Fingerprint of the alert that resolved.")
    rule_id: str = Field(description="Id of the rule.")
    rule_name: str = Field(description="Human-readable name of the rule.")
    severity: Severity = Field(description="Severity given by the rule.")
    subject: str = Field(description="Who or what the alert is about.")
    subject_name: str = Field(description=_SUBJECT_NAME)
    metric: str = Field(description="Metric the rule watches.")
    value: float = Field(description="Value of the observation that cleared the condition.")
    message: str = Field(description="Rendered resolution message.")
    notify: list[str] = Field(description="Who to notify, as for the firing alert.")
    started_at: AwareDatetime = Field(description="Event time at which the condition began.")
    resolved_at: AwareDatetime = Field(description="Wall-clock time the evaluator resolved it.")
    event_id: str = Field(description="Id of the event that cleared the condition.")
    impact: ImpactAnalysis | None = Field(
        default=None,
        description=_IMPACT + " On resolution: the goals the firing listed, and the failing "
        "goal with the status it left for.",
    )
    goal: OverdueGoal | None = Field(
        default=None, description=_GOAL + " On resolution: the goal as it is then."
    )

    @model_validator(mode="before")
    @classmethod
    def _older_alerts_are_named_by_id(cls, data: Any) -> Any:
        return _name_defaults_to_subject(data)


class RecipientRole(StrEnum):
    """Why a person receives a notification."""

    SUBJECT = "subject"  # the alert is about them
    MANAGER = "manager"  # they manage the subject (directly, or higher up the chain)
    UNIT_HEAD = "unit_head"  # they head the subject's org unit
    HRBP = "hrbp"  # they are the HR business partner of the subject's org unit
    EXPLICIT = "explicit"  # the rule names them
    GROUP = "group"  # they belong to a named group the rule notifies (Recipient.group says which)


class Recipient(Contract):
    """A person a notification is addressed to, with what the directory says about how to
    reach them.

    The preference fields (``channels``, ``language``, ``time_zone``, ``org_unit_id``) come
    from the people directory when the notification was built; a person the directory does
    not know has none of them. All of them are optional, so notifications stored or sent
    before they existed still read.
    """

    id: str = Field(description="Person id.")
    name: str = Field(description="Display name.")
    email: str | None = Field(default=None, description="E-mail address, if known.")
    role: RecipientRole = Field(
        description="Why they receive it: subject, manager, unit_head, hrbp, explicit (the "
        "rule names them) or group (they belong to the named group in ``group``)."
    )
    group: str | None = Field(
        default=None,
        description="With role group: the name of the group that reached them (the rule's "
        "group: NAME). Null for every other role.",
    )
    channels: list[Channel] = Field(
        default_factory=list,
        description="Their preferred channels, most preferred first; empty when they have "
        "none or the directory does not know them (the notifier's defaults apply).",
    )
    language: Language | None = Field(
        default=None,
        description="The language they read alerts in (zh or en); null when the directory "
        "does not know them.",
    )
    time_zone: str | None = Field(
        default=None,
        description="Their IANA time zone, e.g. Asia/Shanghai; null when they have none "
        "(the company's applies) or the directory does not know them.",
    )
    org_unit_id: str | None = Field(
        default=None,
        description="The org unit they belong to; null when they are in none or the "
        "directory does not know them.",
    )

    @model_validator(mode="after")
    def _group_with_its_role(self) -> Recipient:
        # A group name without the role (or the role without a name) would tell a receiver
        # two different stories about why the person is addressed.
        if (self.role is RecipientRole.GROUP) != (self.group is not None):
            raise ValueError(
                "group is set exactly when role is group: name the group that reached the "
                "person, or use another role without a group"
            )
        return self


class DeliveryStatus(StrEnum):
    """Outcome of a delivery attempt."""

    SENT = "sent"
    FAILED = "failed"
    SILENCED = "silenced"  # not sent: a silence matched the alert when it arrived
    HELD = "held"  # not sent yet: held back by a rate limit or quiet hours, sent in a digest


class NotificationSent(Contract):
    """The notifier delivered (or gave up delivering) an alert to a channel."""

    id: str = Field(description="Unique id of this notification.")
    fingerprint: str = Field(description="Fingerprint of the alert.")
    rule_id: str = Field(description="Id of the rule.")
    state: AlertState = Field(description="Alert state that was notified.")
    channel: str = Field(description="Channel name, e.g. webhook.")
    receiver: str | None = Field(
        default=None,
        description="Receiver of the routing that made this delivery (default: the one made "
        "from the per-channel settings); null for the inbox.",
    )
    recipients: list[Recipient] = Field(description="Who the notification was addressed to.")
    status: DeliveryStatus = Field(description="sent, or failed after all retries.")
    attempts: int = Field(ge=1, description="Delivery attempts made.")
    error: str | None = Field(default=None, description="Last error when status is failed.")
    at: AwareDatetime = Field(description="When the outcome was known.")
    started_at: AwareDatetime | None = Field(
        default=None,
        description="When the alert's episode began: with fingerprint, it names the episode "
        "(the inbox entry) this notification belongs to. Null in records made before it was "
        "recorded.",
    )


class ErrorDetail(Contract):
    """One thing wrong with a dead-lettered message."""

    loc: str = Field(
        description="Where: a dotted field path (``value``, ``labels.floor``), prefixed with "
        "``[index]`` for an event in a batch; ``$`` for the message as a whole."
    )
    msg: str = Field(description="What is wrong, and how to fix it when there is more to say.")
    event_id: str | None = Field(
        default=None, description="Id of the event the error is about, when it had one."
    )


class DeadLetter(Contract):
    """A message that could not be processed, kept for an operator to inspect and replay."""

    origin_subject: str = Field(description="Subject the message arrived on.")
    reason: str = Field(description="Why it was rejected, in words an operator can act on.")
    errors: list[ErrorDetail] = Field(
        default_factory=list, description="Field-level errors, when the payload is at fault."
    )
    payload: str = Field(
        description="The original message body (UTF-8, replacement for bad bytes); only its "
        "beginning when ``payload_truncated``."
    )
    payload_bytes: int | None = Field(
        default=None, ge=0, description="Size of the original message body, in bytes."
    )
    payload_truncated: bool = Field(
        default=False,
        description="True when the whole body would not fit in one NATS message beside the "
        "rest of the dead letter: ``payload`` then holds its beginning, and the whole body is "
        "read from ``origin_stream`` at ``origin_sequence`` while that stream keeps it.",
    )
    origin_stream: str | None = Field(
        default=None, description="JetStream stream the message was read from, when known."
    )
    origin_sequence: int | None = Field(
        default=None, ge=1, description="The message's sequence in ``origin_stream``."
    )
    at: AwareDatetime = Field(description="When it was dead-lettered.")
