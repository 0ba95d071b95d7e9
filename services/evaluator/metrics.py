"""The evaluator's Prometheus metrics, on its own registry."""

from prometheus_client import Counter, Gauge

from goalwatch.telemetry import dead_letters, handler_seconds, service_registry

REGISTRY = service_registry()
RULE_EVALUATIONS = Counter(
    "goalwatch_rule_evaluations_total",
    "Rule evaluations by outcome.",
    ["rule", "outcome"],
    registry=REGISTRY,
)
ALERTS_FIRED = Counter(
    "goalwatch_alerts_fired_total",
    "Alerts fired, and escalations (a firing alert raised to a higher severity), by rule, "
    "rule kind and severity.",
    ["rule", "kind", "severity"],
    registry=REGISTRY,
)
ALERTS_RESOLVED = Counter(
    "goalwatch_alerts_resolved_total",
    "Alerts resolved, by rule and rule kind.",
    ["rule", "kind"],
    registry=REGISTRY,
)
HANDLER_SECONDS = handler_seconds(REGISTRY)
DEAD_LETTERS = dead_letters(REGISTRY)
STATES_REVISED = Counter(
    "goalwatch_evaluator_states_revised_total",
    "Alert keys of threshold rules whose state was judged again at an input because their "
    "rule's condition changed since the key's previous input.",
    ["rule"],
    registry=REGISTRY,
)
STATE_REPLAYED = Counter(
    "goalwatch_evaluator_state_replayed_total",
    "Metric events applied again because Redis restarted and may have lost their writes.",
    registry=REGISTRY,
)
SUBJECT_NAMES = Counter(
    "goalwatch_evaluator_subject_names_total",
    "Subjects' names looked up for alerts, by where the name came from: the evaluator's "
    "directory view, the goals service for a subject the view does not know, or a recent "
    "answer of goals kept for GOALWATCH_SUBJECT_NAME_CACHE_SECONDS (cache).",
    ["source"],
    registry=REGISTRY,
)
DIRECTORY_APPLIED = Counter(
    "goalwatch_evaluator_directory_changes_total",
    "Person and org unit changes the directory consumer handled: stored, or older than the "
    "record the view holds (a redelivery, or a change overtaken by a newer one).",
    ["outcome"],
    registry=REGISTRY,
)
DIRECTORY_REPLAYED = Counter(
    "goalwatch_evaluator_directory_replayed_total",
    "Person and org unit records stored again because Redis restarted and lost them.",
    registry=REGISTRY,
)
RULES_ACTIVE = Gauge(
    "goalwatch_evaluator_rules",
    "Rules this evaluator holds, by state: enabled (judged) or disabled.",
    ["state"],
    registry=REGISTRY,
)
RULE_CHANGES = Counter(
    "goalwatch_evaluator_rule_changes_total",
    "Rule versions this evaluator received from the rules stream, by outcome: applied, or "
    "refused because the stored text does not load (the rule's previous version stays).",
    ["outcome"],
    registry=REGISTRY,
)
