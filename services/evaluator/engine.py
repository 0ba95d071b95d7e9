"""The durable_rules engine behind a small typed API; the only module that imports ``durable``.

One ``Host`` holds one ruleset per rule (see :mod:`goalwatch.rules.compiler`). Every event is
posted with its own id and with one constant ``sid``: the engine only answers "breach or clear
for this event", while what must be remembered across events (streaks, firing alerts) lives in
Redis. That keeps the engine clear of durable_rules' limit of 1024 live sids per ruleset, which
one sid per employee would hit, and lets replicas and restarts share the state.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from durable.engine import Host, MessageNotHandledException

from goalwatch.contracts import MetricRecorded
from goalwatch.rules.compiler import BREACH, CLEAR, compile_rule, event_message
from goalwatch.rules.spec import RuleSpec

SID = "goalwatch"


class _RecordingHost(Host):  # type: ignore[misc]  # durable is untyped
    """A Host whose actions only record which rule matched, read back after ``post``."""

    def __init__(self) -> None:
        self._outcomes: list[str] = []
        super().__init__()

    def _run(self) -> None:
        # Host starts timer threads that dispatch actions and timers every 0.2 s. Threshold
        # rules need neither, and those threads would call the C engine, which is not
        # thread-safe, concurrently with post(). So nothing is started.
        return None

    def get_action(self, action_name: str) -> Callable[[Any], None]:
        if action_name not in (BREACH, CLEAR):
            raise ValueError(f"unknown action {action_name!r}")

        # durable_rules swallows exceptions raised in actions into the state, so the action
        # does nothing that could fail.
        def record(_: Any) -> None:
            self._outcomes.append(action_name)

        return record

    def outcome(self, ruleset: str, message: dict[str, Any]) -> str | None:
        """``breach`` or ``clear`` for ``message``, or None if the rule does not apply."""
        self._outcomes.clear()
        try:
            self.post(ruleset, message)
        except MessageNotHandledException:
            return None
        if len(self._outcomes) != 1:
            raise RuntimeError(
                f"ruleset {ruleset!r} gave {self._outcomes} for event {message.get('id')!r}; "
                "expected exactly one of breach, clear"
            )
        return self._outcomes[0]


class RuleEngine:
    """Evaluates metric events against threshold rules compiled to durable_rules.

    Not thread-safe (nor is durable_rules): call it from one thread, e.g. the event loop.
    """

    def __init__(self, rules: Sequence[RuleSpec]) -> None:
        self._host = _RecordingHost()
        self._by_metric: dict[str, list[RuleSpec]] = defaultdict(list)
        for rule in rules:
            # Ruleset() removes "run" from the definition it is given.
            self._host.register_rulesets(copy.deepcopy(compile_rule(rule)))
            self._by_metric[rule.metric].append(rule)

    def evaluate(self, event: MetricRecorded) -> list[tuple[RuleSpec, bool]]:
        """``(rule, breach)`` for every rule that applies to ``event``, in load order."""
        results: list[tuple[RuleSpec, bool]] = []
        # Only the rulesets of the event's metric are asked; the rest could never match.
        for rule in self._by_metric.get(event.metric, ()):
            outcome = self._host.outcome(rule.id, event_message(rule, event, sid=SID))
            if outcome is not None:
                results.append((rule, outcome == BREACH))
        return results
