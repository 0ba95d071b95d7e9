"""Rules checked against the metric catalogue (``goalwatch rules lint``).

A rule that watches a metric the catalogue does not know, or filters on a label (or a label
value) its metric never carries, would stay silent forever: ingestion refuses such events.
These problems are lint errors at the ``metric:`` or ``where:``/``by:`` line that names them,
with the closest catalogued name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import yaml
from yaml.nodes import MappingNode, ScalarNode

from goalwatch.catalogue import Catalogue
from goalwatch.contracts import RuleKind
from goalwatch.file_errors import locate_at
from goalwatch.rules.loader import LoadedRule, RuleError
from goalwatch.rules.spec import NotIn, RuleSpec


def catalogue_problems(rules: Iterable[LoadedRule], catalogue: Catalogue) -> list[RuleError]:
    """What ``rules`` name that ``catalogue`` does not know, in file order."""
    problems: list[RuleError] = []
    for rule in rules:
        spec = rule.spec
        if not isinstance(spec, RuleSpec):
            continue  # goal rules watch goals, not catalogued metrics
        found = list(_problems(spec, catalogue))
        if not found:
            continue
        root = yaml.compose(rule.source())
        for loc, message in found:
            line, column, _ = locate_at(root, loc) if root is not None else (None, None, None)
            problems.append(RuleError(str(rule.path), line, ".".join(loc), message, column))
    return problems


def unloaded_metric_problems(file: str, text: str, catalogue: Catalogue) -> list[RuleError]:
    """The metric of a rule that did not load (``text``, the file ``file``), checked all the
    same: a misspelt field must not hide a misspelt metric until it is fixed."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []  # the YAML error is the problem reported
    if not isinstance(root, MappingNode):
        return []
    fields = {key.value: value for key, value in root.value if isinstance(key, ScalarNode)}
    metric, kind = fields.get("metric"), fields.get("kind")
    if not isinstance(metric, ScalarNode) or "goals" in fields:
        return []  # no metric written, or a rule on goals
    if isinstance(kind, ScalarNode) and kind.value == RuleKind.DEPENDENCY_IMPACT.value:
        return []
    if catalogue.get(metric.value) is not None:
        return []
    line, column, _ = locate_at(root, ("metric",))
    return [RuleError(file, line, "metric", _unknown_metric(metric.value, catalogue), column)]


def _unknown_metric(name: str, catalogue: Catalogue) -> str:
    unknown = catalogue.unknown_metric(name)
    end = "" if unknown.endswith("?") else "."
    return f"{unknown}{end} The catalogue (GET /v1/metrics) lists every metric."


def _problems(spec: RuleSpec, catalogue: Catalogue) -> Iterable[tuple[Sequence[str], str]]:
    metric = catalogue.get(spec.metric)
    if metric is None:
        yield ("metric",), _unknown_metric(spec.metric, catalogue)
        return

    def problems(label: str, value: str) -> list[str]:
        found = catalogue.label_problems(spec.metric, {label: value})
        return [problem.message for problem in found]

    for name, match in spec.where.items():
        if name not in metric.labels:
            yield from ((("where", name), message) for message in problems(name, "")[:1])
            continue
        values = match.not_in if isinstance(match, NotIn) else match
        for value in [values] if isinstance(values, str) else values:
            yield from ((("where", name), message) for message in problems(name, value))
    for name in spec.by:
        if name not in metric.labels:
            yield from ((("by",), message) for message in problems(name, "")[:1])
