"""Verdicts of a batch handled in order per key."""

from __future__ import annotations

from goalwatch.consumers import ACK, Received, RedeliveryPolicy, Retry
from services.evaluator.verdicts import in_key_order

POLICY = RedeliveryPolicy(max_deliver=3, first_delay=1.0, max_delay=4.0)


def test_the_failed_message_and_the_later_ones_of_its_key_are_retried() -> None:
    facts = Received("evaluator", 1)
    batch = [("a", "a1", facts), ("b", "b1", facts), ("a", "a2", facts), ("a", "a3", facts)]
    verdicts = in_key_order(batch, {"a": ("a2", "redis is down")}, policy=POLICY)
    assert verdicts[:2] == [ACK, ACK]  # a1 was applied before a2 failed; b is fine
    assert all(isinstance(v, Retry) and v.reason == "redis is down" for v in verdicts[2:])


def test_nothing_failed_acks_everything() -> None:
    facts = Received("evaluator", 1)
    assert in_key_order([("a", "a1", facts)], {}, policy=POLICY) == [ACK]
