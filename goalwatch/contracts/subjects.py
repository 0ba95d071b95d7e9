"""NATS subject and JetStream stream names: the one place they are spelled out."""

from typing import Final

# Raw metric events published straight to NATS by other systems (validated by ingestion).
METRICS_IN: Final = "goalwatch.metrics.in.v1"
# Validated metric events, one subject per partition of the people they are about:
# ``goalwatch.metrics.recorded.v1.<partition>`` (:func:`metrics_partition_subject`); the
# evaluator consumes each partition through a consumer of its own. Versions before
# partitioning stored every event on the bare subject, which the stream still holds.
METRICS_RECORDED: Final = "goalwatch.metrics.recorded.v1"
METRICS_RECORDED_PARTITIONS: Final = f"{METRICS_RECORDED}.*"
# Both of the above: every stored metric event, whichever version stored it.
METRICS_RECORDED_ALL: Final = "goalwatch.metrics.recorded.>"
ALERTS_FIRED: Final = "goalwatch.alerts.fired.v1"
ALERTS_RESOLVED: Final = "goalwatch.alerts.resolved.v1"
# Both of the above (the notifier reads them through one consumer, in order per alert).
ALERTS_ALL: Final = "goalwatch.alerts.*.v1"
NOTIFICATIONS_SENT: Final = "goalwatch.notifications.sent.v1"
# Changes to the goal graph, published by goals (goalwatch.contracts.goal_events).
GOALS_ALL: Final = "goalwatch.goals.*.v1"
GOAL_CREATED: Final = "goalwatch.goals.created.v1"
GOAL_UPDATED: Final = "goalwatch.goals.updated.v1"
GOAL_STATUS_CHANGED: Final = "goalwatch.goals.status_changed.v1"
GOAL_CHECKED_IN: Final = "goalwatch.goals.checked_in.v1"
GOAL_LINK_ADDED: Final = "goalwatch.goals.link_added.v1"
GOAL_LINK_REMOVED: Final = "goalwatch.goals.link_removed.v1"
# People and org units as goals stores them (goalwatch.contracts.directory_events).
PERSON_CHANGED: Final = "goalwatch.people.changed.v1"
ORG_UNIT_CHANGED: Final = "goalwatch.org_units.changed.v1"
# Both of the above (a consumer of GOALWATCH_PEOPLE that reads people and org units in order).
DIRECTORY_CHANGED: Final = "goalwatch.*.changed.v1"
# Dead letters: ``goalwatch.deadletter.v1.<origin>``, e.g. ``...metrics`` for rejected events.
DEADLETTER_PREFIX: Final = "goalwatch.deadletter.v1"
DEADLETTER_METRICS: Final = f"{DEADLETTER_PREFIX}.metrics"
DEADLETTER_ALERTS: Final = f"{DEADLETTER_PREFIX}.alerts"
DEADLETTER_TIMERS: Final = f"{DEADLETTER_PREFIX}.timers"
# Durable timers (JetStream message schedules): one pending schedule per subject
# ``goalwatch.timers.v1.schedule.<owner>.<name>.<key>``; when it falls due the server
# publishes its payload to ``goalwatch.timers.v1.fired.<owner>``, which the owner consumes.
TIMERS: Final = "goalwatch.timers.v1"
TIMERS_SCHEDULE_PREFIX: Final = f"{TIMERS}.schedule"
TIMERS_FIRED_PREFIX: Final = f"{TIMERS}.fired"
TIMERS_FIRED_EVALUATOR: Final = f"{TIMERS_FIRED_PREFIX}.evaluator"
# Versions of the rules, one subject per rule: ``goalwatch.rules.v1.<rule id>``.
RULES_PREFIX: Final = "goalwatch.rules.v1"
RULES_ALL: Final = f"{RULES_PREFIX}.*"
# The audit log: each service records its requests on ``goalwatch.audit.v1.<service>``.
AUDIT_PREFIX: Final = "goalwatch.audit.v1"
AUDIT_ALL: Final = f"{AUDIT_PREFIX}.*"
DEADLETTER_GOALS: Final = f"{DEADLETTER_PREFIX}.goals"
DEADLETTER_DIRECTORY: Final = f"{DEADLETTER_PREFIX}.directory"

STREAM_INGEST: Final = "GOALWATCH_INGEST"
STREAM_METRICS: Final = "GOALWATCH_METRICS"
STREAM_ALERTS: Final = "GOALWATCH_ALERTS"
STREAM_GOALS: Final = "GOALWATCH_GOALS"
STREAM_PEOPLE: Final = "GOALWATCH_PEOPLE"
STREAM_NOTIFICATIONS: Final = "GOALWATCH_NOTIFICATIONS"
STREAM_DEADLETTER: Final = "GOALWATCH_DEADLETTER"
STREAM_TIMERS: Final = "GOALWATCH_TIMERS"
STREAM_RULES: Final = "GOALWATCH_RULES"
STREAM_AUDIT: Final = "GOALWATCH_AUDIT"


def metrics_partition(subject: str, partitions: int) -> int:
    """The partition of the metric events about ``subject``, of ``partitions``.

    FNV-1a (32 bits) of the subject's UTF-8 modulo the count: stable across processes,
    versions and languages, and the hash nats-server's ``partition()`` subject mapping uses,
    so another system can compute it too.
    """
    if partitions < 1:
        raise ValueError("the number of partitions must be at least 1")
    value = 0x811C9DC5
    for byte in subject.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value % partitions


def metrics_partition_subject(partition: int) -> str:
    """Where ingestion stores the metric events of ``partition``."""
    return f"{METRICS_RECORDED}.{partition}"


def rule_subject(rule_id: str) -> str:
    """The subject of ``rule_id``'s versions (rule ids are lower-case, digits and hyphens)."""
    return f"{RULES_PREFIX}.{rule_id}"


def audit_subject(service: str) -> str:
    """Where service ``service`` records its audit log."""
    return f"{AUDIT_PREFIX}.{service}"


def dead_letter_subject(origin_subject: str) -> str:
    """Where a message from ``origin_subject`` goes when it cannot be processed."""
    if origin_subject.startswith(("goalwatch.alerts.", "goalwatch.notifier.")):
        return DEADLETTER_ALERTS
    if origin_subject.startswith(f"{TIMERS}."):
        return DEADLETTER_TIMERS
    if origin_subject.startswith("goalwatch.goals."):
        return DEADLETTER_GOALS
    if origin_subject in (PERSON_CHANGED, ORG_UNIT_CHANGED, DIRECTORY_CHANGED):
        return DEADLETTER_DIRECTORY
    return DEADLETTER_METRICS


def matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` matches the filter ``pattern``: ``*`` is one token, a final ``>``
    one or more."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(tokens) == len(wanted)
