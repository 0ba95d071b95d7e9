"""Verdicts for a batch handled in order per key (a subject's events, a goal's changes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from goalwatch.consumers import ACK, Received, RedeliveryPolicy, Verdict


def in_key_order(
    batch: Sequence[tuple[str, str, Received]],
    stopped_at: Mapping[str, tuple[str, str]],
    *,
    policy: RedeliveryPolicy,
    policies: Mapping[str, RedeliveryPolicy] | None = None,
) -> list[Verdict]:
    """One verdict per message of ``batch`` (``(key, message id, delivery facts)``, in order).

    ``stopped_at`` maps a key whose handling failed to the id of the message it failed at and
    the reason. That message and every later one of its key are retried by ``policy`` (or the
    key's own in ``policies``: they were not applied, and must be in order when they are);
    the others are acknowledged.
    """
    verdicts: list[Verdict] = []
    stopped: set[str] = set()
    for key, message_id, facts in batch:
        failure = stopped_at.get(key)
        if failure is None or (message_id != failure[0] and key not in stopped):
            verdicts.append(ACK)
            continue
        stopped.add(key)
        retry = (policies or {}).get(key, policy)
        verdicts.append(retry.on_failure(deliveries=facts.deliveries, reason=failure[1]))
    return verdicts


def all_wait(
    received: Sequence[Received], reason: str, *, policy: RedeliveryPolicy
) -> list[Verdict]:
    """Every message of a batch retried by ``policy`` for ``reason`` (each verdict is logged
    where it is applied: a warning while it is retried)."""
    return [policy.on_failure(deliveries=facts.deliveries, reason=reason) for facts in received]
