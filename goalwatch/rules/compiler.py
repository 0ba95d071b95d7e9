"""Compile rules into durable_rules ruleset definitions (plain JSON-able dicts).

Each rule compiles to two mutually exclusive durable_rules rules (:func:`compile_rule`):

- ``breach``: the event is for the rule's metric, its labels match ``where``, the subject is
  in the rule's org units (``org_unit``, :mod:`goalwatch.rules.scope`), and
  ``value <op> threshold`` holds (``between`` / ``outside``: within both ends / beyond one);
- ``clear``: the same match, with the inverse comparison;

and, for a rule with ``resolve_at`` (hysteresis), a third: ``hold``, for the values between
the threshold and ``resolve_at``, where ``clear`` then takes only the values past
``resolve_at``.

durable_rules consumes an event with the first rule that matches, so the two must never both
match; using the inverse operator (rather than a negation) keeps that obvious. Exactly one
fires for an event the rule applies to, and none for an event it does not (the engine then
raises ``MessageNotHandledException``). Whether a breach turns into an alert (``consecutive``)
is decided outside the engine, from state kept in Redis.

The rules of one metric are posted to together (:func:`compile_metric`): one ruleset holds
as many of them as :data:`WEIGHT_PER_RULESET` allows, each rule's verdicts named ``<index>.<verdict>``,
and an event is asserted as a fact, which every matching rule sees (an event would be
consumed by the first), so one post gives the verdict of every rule of the metric it
applies to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from goalwatch.contracts import MetricRecorded, RuleKind
from goalwatch.rules.fraud_spec import (
    BurstCondition,
    DuplicateCondition,
    FraudCondition,
    OffHoursCondition,
    OutlierCondition,
)
from goalwatch.rules.scope import ORG_UNITS_KEY, engine_terms
from goalwatch.rules.spec import LabelMatch, NotIn, RuleSpec
from goalwatch.rules.transitions import Verdict

BREACH: Final = Verdict.BREACH.value
HOLD: Final = Verdict.HOLD.value
CLEAR: Final = Verdict.CLEAR.value
# Labels are posted as top-level keys: flat names are simpler for durable_rules than paths.
LABEL_PREFIX: Final = "label__"

_OPERATORS: Final[dict[str, str | None]] = {
    ">": "$gt",
    ">=": "$gte",
    "<": "$lt",
    "<=": "$lte",
    "==": None,  # equality is written as a plain {name: value}
    "!=": "$neq",
}
INVERSE: Final[dict[str, str]] = {
    ">": "<=",
    ">=": "<",
    "<": ">=",
    "<=": ">",
    "==": "!=",
    "!=": "==",
    "between": "outside",
    "outside": "between",
}


def label_key(name: str) -> str:
    """The top-level key a label is posted under."""
    return f"{LABEL_PREFIX}{name}"


def compile_rule(spec: RuleSpec) -> dict[str, Any]:
    """``{rule id: ruleset definition}``, ready for ``Host.register_rulesets`` (pass a copy).

    With ``resolve_at`` (hysteresis) a third rule, ``hold``, takes the values between the
    threshold and ``resolve_at``: neither the breach's comparison nor the clear's holds.
    """
    condition = spec.threshold
    op, bounds = condition.op, condition.bounds
    breach = _comparison(op, *bounds)
    if condition.resolve_op is None:
        return {
            spec.id: {
                BREACH: {"all": [{"m": _match(spec, breach)}], "run": BREACH},
                CLEAR: {
                    "all": [{"m": _match(spec, _comparison(INVERSE[op], *bounds))}],
                    "run": CLEAR,
                },
            }
        }
    resolve_op, resolve_bounds = condition.resolve_op, condition.resolve_bounds
    clear = _comparison(resolve_op, *resolve_bounds)
    hold = {
        "$and": [
            _comparison(INVERSE[op], *bounds),
            _comparison(INVERSE[resolve_op], *resolve_bounds),
        ]
    }
    return {
        spec.id: {
            BREACH: {"all": [{"m": _match(spec, breach)}], "run": BREACH},
            HOLD: {"all": [{"m": _match(spec, hold)}], "run": HOLD},
            CLEAR: {"all": [{"m": _match(spec, clear)}], "run": CLEAR},
        }
    }


WEIGHT_PER_RULESET: Final = 32
"""How much of :func:`weight` one ruleset holds. durable_rules refuses a fact that fills its
match stack (error 303, 64 frames): 64 plain rules matching one fact pass, but 33 rules each
filtering on a list of labels, or scoped to one org unit, are refused, whether or not the
fact matches their alternatives (measured with 2.0.28, ``tests/unit/test_rules_engine.py``).
A weight of 32 per ruleset stays inside both."""
ACTION_SEPARATOR: Final = "."


def compile_metric(specs: Sequence[RuleSpec]) -> dict[str, Any]:
    """One ruleset definition holding the threshold rules ``specs`` (all of one metric, of
    :func:`weight` :data:`WEIGHT_PER_RULESET` together), each verdict of ``specs[i]`` named
    ``f"{i}.{verdict}"`` (:func:`verdict_of` reads it back). Without ``run``: the caller
    decides how actions run."""
    definition: dict[str, Any] = {}
    for index, spec in enumerate(specs):
        for verdict, body in compile_rule(spec)[spec.id].items():
            definition[f"{index}{ACTION_SEPARATOR}{verdict}"] = {"all": body["all"]}
    return definition


def weight(spec: RuleSpec) -> int:
    """What ``spec`` takes of a ruleset's :data:`WEIGHT_PER_RULESET`: the alternatives
    durable_rules expands its largest verdict into (one per term of an ``$or``, multiplied
    across an ``$and``), at least one."""
    return max(_alternatives(body["all"][0]["m"]) for body in compile_rule(spec)[spec.id].values())


def pack(rules: Sequence[RuleSpec]) -> list[list[RuleSpec]]:
    """``rules`` (threshold rules of one metric) in load order, cut into the groups one
    ruleset each holds: of :func:`weight` :data:`WEIGHT_PER_RULESET` at most together, a
    rule heavier than that alone (to be asked on its own, not as a pack)."""
    packs: list[list[RuleSpec]] = []
    room = 0
    for rule in rules:
        heavy = weight(rule)
        if heavy > room:
            packs.append([])
            room = WEIGHT_PER_RULESET
        packs[-1].append(rule)
        room -= heavy
    return packs


def _alternatives(condition: Any) -> int:
    if not isinstance(condition, dict):
        return 1
    if "$or" in condition:
        return sum(_alternatives(term) for term in condition["$or"])
    if "$and" in condition:
        return math.prod(_alternatives(term) for term in condition["$and"])
    return 1


def verdict_of(action: str) -> tuple[int, Verdict]:
    """The rule index and verdict an action of :func:`compile_metric` names."""
    index, _, verdict = action.partition(ACTION_SEPARATOR)
    return int(index), Verdict(verdict)


def metric_message(
    specs: Sequence[RuleSpec],
    event: MetricRecorded,
    *,
    sid: str,
    org_units: Sequence[str] = (),
) -> dict[str, Any]:
    """The fact to assert to the ruleset :func:`compile_metric` made of ``specs``: as
    :func:`event_message` would post it to each, with the labels any of them filters on,
    and the subject's org units if any is scoped by unit."""
    return MetricMessage.of(specs)(event, sid=sid, org_units=org_units)


@dataclass(frozen=True)
class MetricMessage:
    """How :func:`metric_message` writes the facts of one pack of rules, worked out once."""

    specs: tuple[RuleSpec, ...]
    labels: tuple[str, ...]  # every label any of the rules filters on
    scoped: bool  # whether any rule is scoped by org unit

    @classmethod
    def of(cls, specs: Sequence[RuleSpec]) -> MetricMessage:
        """The writer of facts for the pack ``specs``."""
        labels = dict.fromkeys(name for spec in specs for name in spec.where)
        return cls(tuple(specs), tuple(labels), any(spec.scope for spec in specs))

    def __call__(
        self, event: MetricRecorded, *, sid: str, org_units: Sequence[str] = ()
    ) -> dict[str, Any]:
        """The fact for ``event`` about a subject in ``org_units``."""
        value = event.value
        if not _readable(value):
            value = engine_number(value, _nearest_of(self.specs, value))
        message: dict[str, Any] = {
            "id": event.id,
            "sid": sid,
            "metric": event.metric,
            "value": value,
        }
        for name in self.labels:
            message[label_key(name)] = event.labels.get(name, "")
        if self.scoped:
            message[ORG_UNITS_KEY] = list(org_units)
        return message


FINDING: Final = "finding"
NONE: Final = "none"


def compile_fraud(spec: RuleSpec) -> dict[str, Any]:
    """``{rule id: ruleset definition}`` of a fraud rule: ``finding`` when the record's
    measures (posted beside its metric and labels) make one, ``none`` otherwise.

    Each pattern's finding is a disjunction of conjunctions of comparisons; ``none`` is its
    negation written with the inverse operators, so exactly one of the two matches.
    """
    alternatives = _fraud_terms(spec.fraud)
    finding = {"$or": [{"$and": [_term(*term) for term in terms]} for terms in alternatives]}
    none = {
        "$and": [
            {"$or": [_term(key, INVERSE[op], limit) for key, op, limit in terms]}
            for terms in alternatives
        ]
    }
    return {
        spec.id: {
            FINDING: {"all": [{"m": _match(spec, finding)}], "run": FINDING},
            NONE: {"all": [{"m": _match(spec, none)}], "run": NONE},
        }
    }


def _term(key: str, op: str, limit: float) -> dict[str, Any]:
    operator = _OPERATORS[op]
    assert operator is not None
    return {operator: {key: limit}}


def _fraud_terms(condition: FraudCondition) -> list[list[tuple[str, str, float]]]:
    """The pattern's finding: alternatives, each a list of (measure, operator, limit)."""
    if isinstance(condition, BurstCondition | OffHoursCondition):
        return [[("measure", ">=", float(condition.count))]]
    if isinstance(condition, DuplicateCondition):
        return [[("measure", ">=", 1.0)]]
    if isinstance(condition, OutlierCondition):
        return [[("measure", ">=", condition.z), ("peers", ">=", float(condition.min_group))]]
    alternatives: list[list[tuple[str, str, float]]] = []
    if condition.max_step is not None:
        alternatives.append([("step", ">", condition.max_step)])
    if condition.range is not None:
        low, high = condition.range
        alternatives += [[("value", "<", low)], [("value", ">", high)]]
    return alternatives


def fraud_message(
    spec: RuleSpec,
    event: MetricRecorded,
    measures: Mapping[str, float],
    *,
    sid: str,
    org_units: Sequence[str] = (),
) -> dict[str, Any]:
    """The message to post to a fraud rule's ruleset: the event's (as
    :func:`event_message`) with the record's ``measures`` beside it."""
    message = event_message(spec, event, sid=sid, org_units=org_units)
    for key, measure in measures.items():
        message[key] = _plain(measure)
    return message


def _plain(value: float) -> float:
    """``value`` as durable_rules' JSON reader takes it (see :func:`engine_number`)."""
    return engine_number(value, _far(value)) if value else 0.0


def _far(value: float) -> float:
    """A threshold no nudge of ``value`` crosses (fraud limits sit in the plain range, far
    from the values Python writes with a bare exponent)."""
    return math.inf if value >= 0 else -math.inf


def _comparison(op: str, low: float, high: float) -> dict[str, Any]:
    if op == "between":  # both ends included
        return {"$and": [{"$gte": {"value": low}}, {"$lte": {"value": high}}]}
    if op == "outside":
        return {"$or": [{"$lt": {"value": low}}, {"$gt": {"value": high}}]}
    operator = _OPERATORS[op]
    return {"value": low} if operator is None else {operator: {"value": low}}


def _match(spec: RuleSpec, comparison: dict[str, Any]) -> dict[str, Any]:
    terms: list[dict[str, Any]] = [{"metric": spec.metric}]
    for name, match in sorted(spec.where.items()):
        terms += _label_terms(label_key(name), match)
    terms += engine_terms(spec.scope)
    terms.append(comparison)
    return {"$and": terms}


def _label_terms(key: str, match: LabelMatch) -> list[dict[str, Any]]:
    """The terms of one label filter: equal to a value, to one of several, or to none."""
    if isinstance(match, NotIn):
        return [{"$neq": {key: value}} for value in match.not_in]
    if isinstance(match, list):
        alternatives = [{key: value} for value in match]
        return alternatives if len(alternatives) == 1 else [{"$or": alternatives}]
    return [{key: match}]


def event_message(
    spec: RuleSpec,
    event: MetricRecorded,
    *,
    sid: str,
    value: float | None = None,
    org_units: Sequence[str] = (),
) -> dict[str, Any]:
    """The message to post to ``spec``'s ruleset for ``event``.

    ``org_units`` are the subject's (own unit and ancestors), posted only to a rule scoped
    by ``org_unit``; empty (a subject the directory does not know) matches no scope.

    Only the labels the rule filters on are posted, a missing one as empty (a term on a
    missing key never matches, and ``not_in`` must let an event without the label through);
    ``id`` is the event id, because without one durable_rules derives an id from the content
    and rejects an identical second event. ``value`` replaces the event's value (a period's
    or a window's value the event is part of).
    """
    compared = event.value if value is None else value

    def nearest() -> float:
        return _nearest(spec, compared) if spec.kind is RuleKind.THRESHOLD else _far(compared)

    message: dict[str, Any] = {
        "id": event.id,
        "sid": sid,
        "metric": event.metric,
        # The nearest threshold matters only to a number durable_rules cannot read; finding
        # it for every (event, rule) was a sixth of the engine's own time.
        "value": compared if _readable(compared) else engine_number(compared, nearest()),
    }
    for name in spec.where:
        message[label_key(name)] = event.labels.get(name, "")
    if spec.scope:
        message[ORG_UNITS_KEY] = list(org_units)
    return message


def _nearest(spec: RuleSpec, value: float) -> float:
    """The threshold (or ``resolve_at`` end) nearest ``value``: the one a move could cross."""
    return _nearest_of((spec,), value)


def _nearest_of(specs: Sequence[RuleSpec], value: float) -> float:
    """The threshold (or ``resolve_at`` end) of any of ``specs`` nearest ``value``. A move of
    one float can only cross a threshold one float away; moving away from the nearest
    crosses none, unless a second one lies one float away on the other side."""
    ends = [
        end for spec in specs for end in (*spec.threshold.bounds, *spec.threshold.resolve_bounds)
    ]
    return min(ends, key=lambda t: abs(value - t))


def _readable(value: float) -> bool:
    """Whether durable_rules reads ``value`` as Python writes it (see :func:`engine_number`)."""
    text = repr(value)
    return "e" not in text or "." in text


def engine_number(value: float, threshold: float) -> float:
    """``value``, written so that durable_rules can read it, compared exactly as before.

    durable_rules' JSON reader rejects an exponent without a fraction (error 204), and Python
    writes some floats that way (``1e-05``, ``5e+16``). Such a value is moved to the adjacent
    float away from the threshold: no float lies between the two, and thresholds are never
    written that way (the spec keeps them in plain range), so every comparison with the
    threshold gives the same answer.
    """
    away = -math.inf if value < threshold else math.inf
    while "e" in (text := repr(value)) and "." not in text:
        value = math.nextafter(value, away)  # more than once only among subnormals
    return value
