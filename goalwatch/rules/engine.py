"""The durable_rules adapter: the only module that imports ``durable``.

durable_rules answers one question here: does this event breach, hold or clear this rule (compiled by
:mod:`goalwatch.rules.compiler`)? It keeps no state and runs no timers for goalwatch:

- Each rule is a ``durable.engine.Ruleset`` built directly, without a ``Host``. ``Host()``
  starts two ``threading.Timer`` loops that poll every 0.2 s for actions and timers; they would
  call the C engine, which is not thread-safe, concurrently with ``post``, and goalwatch's timers
  are JetStream message schedules anyway (``docs/rules-engine.md``). A bare ``Ruleset`` starts
  nothing: ``assert_event`` matches, ``do_actions`` runs the matched action at once, on the
  caller's thread.
- Every event is posted with its own id (without one, durable_rules derives an id from the
  content and rejects an identical second event) and one constant ``sid``: what must be
  remembered across events lives outside, so the 1024-live-sids-per-ruleset limit never bites.
- The action only records which rule matched. durable_rules swallows exceptions raised in
  actions into the session state; they are raised again here.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from durable.engine import MessageNotHandledException, Ruleset

from goalwatch.contracts import MetricRecorded, RuleKind
from goalwatch.rules.compiler import (
    FINDING,
    NONE,
    compile_fraud,
    compile_rule,
    event_message,
    fraud_message,
)
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.transitions import Verdict

SID: Final = "goalwatch"
# Built once: the check runs for every (event, rule).
_VERDICTS: Final = frozenset(v.value for v in Verdict)
_FINDINGS: Final = frozenset((FINDING, NONE))


def _recorder(outcomes: list[str], action: str) -> Callable[[Any], None]:
    """The action of rule ``action``: note that it matched, and nothing that could fail."""

    def record(_closure: Any) -> None:
        outcomes.append(action)

    return record


class RuleEngine:
    """Verdicts of threshold rules, and findings of fraud rules, compiled to durable_rules.

    Not thread-safe (nor is durable_rules): call it from one thread, e.g. the event loop.
    """

    def __init__(self, rules: Sequence[RuleSpec]) -> None:
        self._outcomes: list[str] = []
        self._rulesets: dict[str, Any] = {}
        self._by_metric: dict[str, list[RuleSpec]] = defaultdict(list)
        self._fraud: dict[str, list[RuleSpec]] = defaultdict(list)
        for rule in rules:
            if rule.kind is RuleKind.THRESHOLD:
                compiled = compile_rule(rule)
                self._by_metric[rule.metric].append(rule)
            elif rule.kind is RuleKind.FRAUD:
                compiled = compile_fraud(rule)
                self._fraud[rule.metric].append(rule)
            else:
                continue  # overdue rules compare nothing: they are decided on time
            if rule.id in self._rulesets:
                raise ValueError(f"two rules have the id {rule.id!r}")
            # Ruleset() removes "run" from the definition it is given: build it from a copy.
            definition = copy.deepcopy(compiled[rule.id])
            for action, body in definition.items():
                body["run"] = _recorder(self._outcomes, action)
            # A Host is only needed to resolve actions given by name; these are callables.
            self._rulesets[rule.id] = Ruleset(rule.id, None, definition)

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
        outcome = self._run(rule, event, message, _FINDINGS)
        return None if outcome is None else outcome == FINDING

    def evaluate(
        self, event: MetricRecorded, *, org_units: Sequence[str] = ()
    ) -> list[tuple[RuleSpec, Verdict]]:
        """``(rule, verdict)`` for every rule that applies to ``event``, in load order;
        ``org_units`` (the subject's unit and its ancestors) decide rules scoped by unit."""
        results: list[tuple[RuleSpec, Verdict]] = []
        # Only the rulesets of the event's metric are asked; the rest could never match.
        for rule in self._by_metric.get(event.metric, ()):
            outcome = self._outcome(rule, event, org_units=org_units)
            if outcome is not None:
                results.append((rule, outcome))
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
        outcome = self._outcome(rule, event, value=value, org_units=org_units)
        if outcome is None:
            raise RuntimeError(f"rule {rule.id!r} does not apply to event {event.id!r}")
        return outcome

    def _outcome(
        self,
        rule: RuleSpec,
        event: MetricRecorded,
        *,
        value: float | None = None,
        org_units: Sequence[str] = (),
    ) -> Verdict | None:
        message = event_message(rule, event, sid=SID, value=value, org_units=org_units)
        outcome = self._run(rule, event, message, _VERDICTS)
        return None if outcome is None else Verdict(outcome)

    def _run(
        self,
        rule: RuleSpec,
        event: MetricRecorded,
        message: dict[str, Any],
        expected: frozenset[str],
    ) -> str | None:
        """Post ``message`` to ``rule``'s ruleset: the action that matched (one of
        ``expected``), or None when none did."""
        ruleset = self._rulesets[rule.id]
        self._outcomes.clear()
        try:
            handle = ruleset.assert_event(message)
        except MessageNotHandledException:
            return None
        completed: list[tuple[Any, Any]] = []
        ruleset.do_actions(handle, lambda error, state: completed.append((error, state)))
        problem = _problem(completed)
        if problem is not None:
            ruleset.delete_state(SID)  # the swallowed exception stays in the state otherwise
            raise RuntimeError(f"rule {rule.id!r} failed on event {event.id!r}: {problem}")
        if len(self._outcomes) != 1 or self._outcomes[0] not in expected:
            raise RuntimeError(
                f"rule {rule.id!r} gave {self._outcomes} for event {event.id!r}; "
                f"expected exactly one of {', '.join(sorted(expected))}"
            )
        return self._outcomes[0]


def _problem(completed: list[tuple[Any, Any]]) -> str | None:
    """What went wrong running the actions, from what ``do_actions`` reported."""
    if len(completed) != 1:
        return f"the engine reported {len(completed)} completions instead of one"
    [(error, state)] = completed
    if error:
        return repr(error)
    if isinstance(state, dict) and state.get("exception"):
        # "exception caught <error>, traceback [<frames>]": the frames are durable_rules' own.
        return str(state["exception"]).split(", traceback ", 1)[0]
    return None
