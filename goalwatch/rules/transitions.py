"""What every rule kind's decision produces: alert transitions, and the key they belong to.

Each rule kind has a module of its own (:mod:`goalwatch.rules.threshold` today) holding a pure
``decide`` function: the key's state and one input in, the new state and at most one
:class:`Transition` out, with no I/O. Where the state is kept (Redis in the evaluator, a dict
in :func:`goalwatch.rules.evaluate`) is the caller's business; see ``docs/rules-engine.md``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from goalwatch.contracts import AlertState, Severity


def fingerprint(rule_id: str, subject: str, metric: str) -> str:
    """Stable id of the alert of ``rule_id`` about ``subject``'s ``metric``: its state's key."""
    return hashlib.sha256(f"{rule_id}|{subject}|{metric}".encode()).hexdigest()[:16]


class Verdict(StrEnum):
    """What one observation is to a threshold rule."""

    BREACH = "breach"  # the condition holds
    HOLD = "hold"  # between the threshold and resolve_at: keeps a firing alert, starts none
    CLEAR = "clear"  # the condition does not hold (and, with resolve_at, is past it)


@dataclass(frozen=True)
class Point:
    """One observation of a metric, and whether it breached the rule's condition."""

    event_id: str
    time: datetime
    value: float
    breach: bool
    # Neither breaching nor clearing: between the threshold and the rule's resolve_at.
    hold: bool = False

    @classmethod
    def of(cls, event_id: str, time: datetime, value: float, verdict: Verdict) -> Point:
        """The observation ``event_id`` with the rules engine's ``verdict``."""
        return cls(event_id, time, value, verdict is Verdict.BREACH, verdict is Verdict.HOLD)

    @property
    def verdict(self) -> Verdict:
        """The rules engine's verdict on this observation."""
        if self.breach:
            return Verdict.BREACH
        return Verdict.HOLD if self.hold else Verdict.CLEAR


@dataclass(frozen=True)
class Transition:
    """The alert started (firing) or stopped (resolved)."""

    state: AlertState
    started_at: datetime
    # For firing: the observations behind the alert, oldest first.
    history: tuple[Point, ...] = ()
    # Set by a store that returns, for a redelivered event, the transition it caused the
    # first time (so that it can be published again); never by a decision.
    replayed: bool = False
    # The alert's severity after the transition, where the rule's own is not it (a threshold
    # alert that escalated); None: the rule's severity.
    severity: Severity | None = None
    # Set on a firing transition that announces a rise in severity of an alert already
    # firing: the severity it had before.
    escalated_from: Severity | None = None
