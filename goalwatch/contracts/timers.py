"""The message a durable timer delivers when it falls due."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from goalwatch.contracts.base import Contract


class TimerFired(Contract):
    """A timer armed with :meth:`goalwatch.timers.Timers.arm` fell due.

    The body is written when the timer is armed and delivered as it was by JetStream when the
    schedule falls due, on ``goalwatch.timers.v1.fired.<owner>``. A timer that was moved
    or cancelled after it fired, or that fired for a deadline its owner no longer expects,
    is stale: the owner compares ``due_at`` with the deadline its state holds.
    """

    owner: str = Field(description="The service that armed the timer and consumes it.")
    name: str = Field(description="What the timer is for, e.g. absence (a metric not reported).")
    key: str = Field(
        description="Which timer of that name: the alert fingerprint it belongs to, e.g. "
        "of (rule, subject, metric) or, for goal deadlines, (rule, goal)."
    )
    due_at: AwareDatetime = Field(description="The deadline the timer was armed for.")
    armed_at: AwareDatetime = Field(description="When it was armed.")
    data: dict[str, str] = Field(
        default_factory=dict,
        description="What the owner needs to act on it, e.g. rule_id, subject, metric.",
    )
