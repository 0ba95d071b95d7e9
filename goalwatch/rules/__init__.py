"""The rule language HR writes: spec models, the loader with file:line errors, the compiler."""

from goalwatch.rules.compiler import compile_rule, event_message
from goalwatch.rules.loader import LoadedRule, RuleError, RuleLoadError, load_rule_file, load_rules
from goalwatch.rules.spec import RuleSpec, ThresholdCondition

__all__ = [
    "LoadedRule",
    "RuleError",
    "RuleLoadError",
    "RuleSpec",
    "ThresholdCondition",
    "compile_rule",
    "event_message",
    "load_rule_file",
    "load_rules",
]
