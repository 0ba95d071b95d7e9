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

from goalwatch.contracts import AlertState


def fingerprint(rule_id: str, subject: str, metric: str) -> str:
    """Stable id of the alert of ``rule_id`` about ``subject``'s ``metric``: its state's key."""
    return hashlib.sha256(f"{rule_id}|{subject}|{metric}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Point:
    """One observation of a metric, and whether it breached the rule's condition."""

    event_id: str
    time: datetime
    value: float
    breach: bool


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
