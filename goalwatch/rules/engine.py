"""The durable_rules adapter: the only module that imports ``durable``.

durable_rules answers one question here: which verdict (breach, hold, clear) does an event
get from each threshold rule of its metric, and is a fraud rule's record a finding? Rules
are compiled by :mod:`goalwatch.rules.compiler`. The engine keeps no state and runs no
timers for goalwatch:

- The threshold rules of a metric share rulesets (:func:`~goalwatch.rules.compiler.
  compile_metric`; 32 plain rules each, fewer with lists of labels or org units, which
  durable_rules' match stack of 64 frames fills faster), and an event is asserted to them
  once, as a fact: every rule it applies to matches with
  one verdict. (A durable_rules event, as opposed to a fact, is consumed by the first rule
  that matches.) The fact is retracted once its matches are read. Rules judged again on a
  period's or a window's value, and fraud rules, have a ruleset each too, asked one rule at
  a time with events.
- Rulesets are driven through durable_rules' C extension (``durable_rules_engine``), the
  matcher its Python ``Ruleset`` wraps: assert the fact, take each matched action, complete
  it, retract the fact. The wrapper's action path (a ``Closure``, a ``Promise``, the session
  state dumped and the message parsed again as JSON for every match) was about 55% of the
  time of a post, and goalwatch's actions only note which rule matched, which the action's
  name already says. No ``Host`` either: it starts ``threading.Timer`` loops that would call
  the C engine, which is not thread-safe, concurrently with the caller; goalwatch's timers
  are JetStream message schedules anyway (``docs/rules-engine.md``).
- Every fact is posted with its own id (without one, durable_rules derives an id from the
  content) and one constant ``sid``: what must be remembered across events lives outside,
  so the 1024-live-sids-per-ruleset limit never bites.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Final

import durable_rules_engine as native

from goalwatch.contracts import MetricRecorded, RuleKind
from goalwatch.rules import compiler
from goalwatch.rules.compiler import (
    FINDING,
    NONE,
    WEIGHT_PER_RULESET,
    MetricMessage,
    compile_fraud,
    compile_metric,
    compile_rule,
    event_message,
    fraud_message,
    verdict_of,
    weight,
)
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.transitions import Verdict

logger = logging.getLogger(__name__)

SID: Final = "goalwatch"
_VERDICTS: Final = frozenset(v.value for v in Verdict)
_FINDINGS: Final = frozenset((FINDING, NONE))
# durable_rules' result codes of an assert (rules.h): matched, matched nothing, and an
# identical fact already asserted (which a retract that failed would leave behind).
_OK: Final = 0
_NOT_HANDLED: Final = 1


class _Ruleset:
    """One compiled ruleset in durable_rules' C engine.

    Asked with facts (``facts=True``), every rule a message matches fires; asked with events,
    the first rule that matches consumes it.
    """

    def __init__(self, name: str, definition: Mapping[str, Any], *, facts: bool) -> None:
        # The C engine takes the conditions only; a "run" is the Python wrapper's.
        conditions = {action: {"all": body["all"]} for action, body in definition.items()}
        self.name = name
        self._facts = facts
        self._handle = native.create_ruleset(name, json.dumps(conditions))

    def matches(self, message: Mapping[str, Any]) -> list[str]:
        """The actions (rule names) that ``message`` matched, in the engine's order; a rule
        matched through two alternatives of an ``$or`` comes twice.

        Leaves nothing behind: a fact is retracted (an event is consumed), and after an error
        the session state (the constant sid's) is deleted so that the next message starts
        clean.
        """
        text = json.dumps(message)
        try:
            if self._facts:
                code, state = native.assert_fact(self._handle, text)
            else:
                code, state = native.assert_event(self._handle, text)
            if code == _NOT_HANDLED:
                return []  # matched nothing: durable_rules keeps no such message
            if code != _OK:
                raise RuntimeError(f"durable_rules answered {code} to the message")
            names: list[str] = []
            # The first action comes with the session state, the next ones alone; each is
            # its message, '{"<name>":{"m":...}}' (names hold no quote).
            started = native.start_action_for_state(self._handle, state)
            action: str | None = started[1] if started else None
            while action:
                names.append(action[2 : action.index('"', 2)])
                action = native.complete_and_start_action(self._handle, state)
            if self._facts:
                native.retract_fact(self._handle, text)
            return names
        except Exception:
            with contextlib.suppress(native.error):  # 309: nothing was left to delete
                native.delete_state(self._handle, SID)
            raise


class _Pack:
    """Threshold rules of one metric asked with one fact, or, once that overflowed
    durable_rules (``ruleset`` None), each on its own."""

    def __init__(self, specs: list[RuleSpec], ruleset: _Ruleset | None) -> None:
        self.specs = specs
        self.ruleset = ruleset
        self.message = MetricMessage.of(specs)
        # Each action's rule index and verdict, read once here rather than per match.
        self._actions = (
            {name: verdict_of(name) for name in compile_metric(specs)}
            if ruleset is not None
            else {}
        )

    def verdicts(
        self, names: Sequence[str], event: MetricRecorded
    ) -> list[tuple[RuleSpec, Verdict]]:
        """``(rule, verdict)`` in load order from the actions the fact of ``event``
        matched; a rule matched through several alternatives of an ``$or`` comes once."""
        verdicts: dict[int, Verdict] = {}
        for name in names:
            index, verdict = self._actions[name]
            if verdicts.setdefault(index, verdict) is not verdict:
                raise RuntimeError(
                    f"rule {self.specs[index].id!r} gave two verdicts for event {event.id!r}: "
                    f"{verdicts[index]} and {verdict}"
                )
        return [(self.specs[index], verdicts[index]) for index in sorted(verdicts)]


def _packs(metric: str, rules: Sequence[RuleSpec]) -> list[_Pack]:
    """``rules`` (of ``metric``, in load order) in the rulesets :func:`~goalwatch.rules.
    compiler.pack` cuts; a rule too heavy for one is asked on its own."""
    return [
        _Pack(specs, None)
        if weight(specs[0]) > WEIGHT_PER_RULESET
        else _Pack(specs, _Ruleset(f"{metric}#{n}", compile_metric(specs), facts=True))
        for n, specs in enumerate(compiler.pack(rules))
    ]


class RuleEngine:
    """Verdicts of threshold rules, and findings of fraud rules, compiled to durable_rules.

    Not thread-safe (nor is durable_rules): call it from one thread, e.g. the event loop.
    """

    def __init__(self, rules: Sequence[RuleSpec]) -> None:
        by_metric: dict[str, list[RuleSpec]] = defaultdict(list)
        self._alone: dict[str, _Ruleset] = {}  # asked one rule at a time, by rule id
        self._fraud: dict[str, list[RuleSpec]] = defaultdict(list)
        ids: set[str] = set()
        for rule in rules:
            if rule.kind not in (RuleKind.THRESHOLD, RuleKind.FRAUD):
                continue  # overdue rules compare nothing: they are decided on time
            if rule.id in ids:
                raise ValueError(f"two rules have the id {rule.id!r}")
            ids.add(rule.id)
            if rule.kind is RuleKind.FRAUD:
                self._fraud[rule.metric].append(rule)
            else:
                by_metric[rule.metric].append(rule)
        self._packs = {metric: _packs(metric, specs) for metric, specs in by_metric.items()}

    def fraud_rules(self, metric: str) -> Sequence[RuleSpec]:
        """The fraud rules that watch ``metric``, in load order."""
        return self._fraud.get(metric, ())

    def fraud_rules_by_id(self) -> list[RuleSpec]:
        """Every fraud rule the engine was given."""
        return [rule for rules in self._fraud.values() for rule in rules]

    def finds(
        self,
        rule: RuleSpec,
        event: MetricRecorded,
        measures: Mapping[str, float],
        *,
        org_units: Sequence[str] = (),
    ) -> bool | None:
        """Whether the ``measures`` of ``event`` make a finding of the fraud ``rule``; None
        when the rule does not apply to the event (its labels or org units)."""
        message = fraud_message(rule, event, measures, sid=SID, org_units=org_units)
        outcome = self._one(rule, event, message, _FINDINGS)
        return None if outcome is None else outcome == FINDING

    def evaluate(
        self, event: MetricRecorded, *, org_units: Sequence[str] = ()
    ) -> list[tuple[RuleSpec, Verdict]]:
        """``(rule, verdict)`` for every rule that applies to ``event``, in load order;
        ``org_units`` (the subject's unit and its ancestors) decide rules scoped by unit."""
        results: list[tuple[RuleSpec, Verdict]] = []
        for pack in self._packs.get(event.metric, ()):
            if pack.ruleset is not None:
                message = pack.message(event, sid=SID, org_units=org_units)
                try:
                    names = pack.ruleset.matches(message)
                except native.error as exc:
                    # A limit of durable_rules' not foreseen by weight(): correct verdicts,
                    # one post per rule, from now on.
                    logger.warning(
                        "rules of %r (%s) are asked one by one from now on: %s",
                        event.metric,
                        pack.ruleset.name,
                        exc,
                        extra={"event_id": event.id},
                    )
                    pack.ruleset = None
                else:
                    results += pack.verdicts(names, event)
                    continue
            for spec in pack.specs:
                message = event_message(spec, event, sid=SID, org_units=org_units)
                outcome = self._one(spec, event, message, _VERDICTS)
                if outcome is not None:
                    results.append((spec, Verdict(outcome)))
        return results

    def judge(
        self,
        rule: RuleSpec,
        event: MetricRecorded,
        value: float,
        *,
        org_units: Sequence[str] = (),
    ) -> Verdict:
        """The verdict of ``rule`` on ``value`` standing for ``event``'s (a period's or a
        window's value that ``event`` is part of); the rule must apply to ``event``."""
        message = event_message(rule, event, sid=SID, value=value, org_units=org_units)
        outcome = self._one(rule, event, message, _VERDICTS)
        if outcome is None:
            raise RuntimeError(f"rule {rule.id!r} does not apply to event {event.id!r}")
        return Verdict(outcome)

    def _one(
        self,
        rule: RuleSpec,
        event: MetricRecorded,
        message: dict[str, Any],
        expected: frozenset[str],
    ) -> str | None:
        """Assert ``message`` to ``rule``'s own ruleset: the action that matched (one of
        ``expected``), or None when none did."""
        ruleset = self._alone.get(rule.id)
        if ruleset is None:  # built when first needed: most rules are only asked in packs
            compiled = compile_fraud(rule) if rule.kind is RuleKind.FRAUD else compile_rule(rule)
            ruleset = self._alone[rule.id] = _Ruleset(rule.id, compiled[rule.id], facts=False)
        try:
            names = ruleset.matches(message)
        except Exception as exc:
            raise RuntimeError(f"rule {rule.id!r} failed on event {event.id!r}: {exc}") from exc
        if not names:
            return None
        if len(names) != 1 or names[0] not in expected:
            raise RuntimeError(
                f"rule {rule.id!r} gave {names} for event {event.id!r}; "
                f"expected exactly one of {', '.join(sorted(expected))}"
            )
        return names[0]
