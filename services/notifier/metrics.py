"""The notifier's Prometheus metrics, on its own registry."""

from prometheus_client import Counter

from goalwatch.telemetry import dead_letters, handler_seconds, service_registry

REGISTRY = service_registry()
NOTIFICATIONS_SENT = Counter(
    "goalwatch_notifications_sent_total",
    "Notifications delivered.",
    ["channel"],
    registry=REGISTRY,
)
NOTIFICATIONS_FAILED = Counter(
    "goalwatch_notifications_failed_total",
    "Notifications given up after retries.",
    ["channel"],
    registry=REGISTRY,
)
ESCALATIONS_SENT = Counter(
    "goalwatch_notifier_escalations_sent_total",
    "Escalations delivered (a firing alert announced again at a higher severity); each is "
    "also counted in goalwatch_notifications_sent_total.",
    ["channel"],
    registry=REGISTRY,
)
HANDLER_SECONDS = handler_seconds(REGISTRY)
DEAD_LETTERS = dead_letters(REGISTRY)
INBOX_REPLAYED = Counter(
    "goalwatch_notifier_inbox_replayed_total",
    "Alert transitions read again from the alerts stream because Redis restarted and may have "
    "lost inbox writes; outcome restored (the inbox lacked it) or kept (it was there).",
    ["outcome"],
    registry=REGISTRY,
)
DIRECTORY_LOOKUPS = Counter(
    "goalwatch_notifier_directory_lookups_total",
    "People (kind person) and org units (kind org_unit) looked up for recipients: outcome hit "
    "(answered from the cache), miss (asked of the goals service) or joined (waited for the "
    "same lookup already in flight).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
DIRECTORY_CHANGES = Counter(
    "goalwatch_notifier_directory_changes_total",
    "Directory change events applied to the recipients cache, by kind (person, org_unit, or "
    "unknown for one that did not decode) and what they dropped: one (that person) or all "
    "(every cached person, or every org unit).",
    ["kind", "dropped"],
    registry=REGISTRY,
)
NOTIFICATIONS_HELD = Counter(
    "goalwatch_notifications_held_total",
    "Notifications held back, by channel and reason (rate_limit: the target's limit was "
    "full; quiet_hours: the reader's quiet hours), to go later with the others as one digest.",
    ["channel", "reason"],
    registry=REGISTRY,
)
GROUP_MESSAGES = Counter(
    "goalwatch_notifier_group_messages_total",
    "Messages sent for groups of alerts, by reason: group (the group changed), repeat (a "
    "reminder), rate_limit and quiet_hours (what was held back).",
    ["reason"],
    registry=REGISTRY,
)
