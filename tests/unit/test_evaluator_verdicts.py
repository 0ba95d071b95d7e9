"""Verdicts of a batch handled in order per key."""

from __future__ import annotations

from goalwatch.consumers import ACK, Received, RedeliveryPolicy, Reject, Retry
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


def test_a_key_can_be_retried_by_a_policy_of_its_own() -> None:
    third = Received("evaluator", 1, deliveries=3)  # POLICY's last delivery
    waiting = RedeliveryPolicy(max_deliver=10, first_delay=1.0, max_delay=2.0)
    batch = [("a", "a1", third), ("b", "b1", third)]
    stopped = {"a": ("a1", "waits for a0"), "b": ("b1", "redis is down")}
    verdicts = in_key_order(batch, stopped, policy=POLICY, policies={"a": waiting})
    assert verdicts[0] == Retry(delay=2.0, reason="waits for a0")
    assert isinstance(verdicts[1], Reject)
