"""The rule language HR writes and what a rule means.

- :mod:`~goalwatch.rules.spec`, :mod:`~goalwatch.rules.loader`, :mod:`~goalwatch.rules.template`:
  the language, loaded with ``file:line`` errors;
- :mod:`~goalwatch.rules.compiler` and :mod:`~goalwatch.rules.engine`: rules compiled to
  durable_rules, which judges each event (the one module that imports ``durable``);
- :mod:`~goalwatch.rules.transitions` and one module per rule kind
  (:mod:`~goalwatch.rules.threshold`): pure decisions, state in, state and transitions out;
- :mod:`~goalwatch.rules.announce`: transitions turned into AlertFired / AlertResolved;
- :func:`evaluate` (:mod:`~goalwatch.rules.runner`): all of it over a list of events in memory.
"""

from goalwatch.rules.announce import build_alert, message_id
from goalwatch.rules.compiler import compile_rule, event_message
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.goal_overdue_spec import GoalOverdueRuleSpec
from goalwatch.rules.impact_spec import ImpactRuleSpec
from goalwatch.rules.loader import (
    LoadedRule,
    RuleError,
    RuleLoadError,
    goal_overdue_rules,
    impact_rules,
    load_rule_file,
    load_rules,
    metric_rules,
)
from goalwatch.rules.runner import evaluate
from goalwatch.rules.spec import RuleSpec, ThresholdCondition
from goalwatch.rules.transitions import Point, Transition, fingerprint

__all__ = [
    "GoalOverdueRuleSpec",
    "ImpactRuleSpec",
    "LoadedRule",
    "Point",
    "RuleEngine",
    "RuleError",
    "RuleLoadError",
    "RuleSpec",
    "ThresholdCondition",
    "Transition",
    "build_alert",
    "compile_rule",
    "evaluate",
    "event_message",
    "fingerprint",
    "goal_overdue_rules",
    "impact_rules",
    "load_rule_file",
    "load_rules",
    "message_id",
    "metric_rules",
]
