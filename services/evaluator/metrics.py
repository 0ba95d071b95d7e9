"""The evaluator's Prometheus metrics, on its own registry."""

from prometheus_client import Counter

from goalwatch.telemetry import handler_seconds, service_registry

REGISTRY = service_registry()
RULE_EVALUATIONS = Counter(
    "goalwatch_rule_evaluations_total",
    "Rule evaluations by outcome.",
    ["rule", "outcome"],
    registry=REGISTRY,
)
ALERTS_FIRED = Counter(
    "goalwatch_alerts_fired_total", "Alerts fired.", ["rule", "severity"], registry=REGISTRY
)
ALERTS_RESOLVED = Counter(
    "goalwatch_alerts_resolved_total", "Alerts resolved.", ["rule"], registry=REGISTRY
)
HANDLER_SECONDS = handler_seconds(REGISTRY)
STATE_REPLAYED = Counter(
    "goalwatch_evaluator_state_replayed_total",
    "Metric events applied again because Redis restarted and may have lost their writes.",
    registry=REGISTRY,
)
