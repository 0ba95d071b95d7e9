"""At-most-once-per-transition guard for channel deliveries, kept in Redis.

JetStream delivers at least once: after a crash, a lost ack or an ack timeout the same alert
arrives again. Before a channel delivers, the notifier claims the transition with ``SET NX``;
a transition already delivered is skipped, and one being delivered elsewhere is retried later.
A failed delivery releases its claim so a redelivery or an operator's replay can try again.

This narrows duplicates to a crash between the receiver accepting the POST and the claim being
marked sent; exactly-once delivery (receiver-side idempotency keys) is a later step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from redis.asyncio import Redis

from goalwatch.contracts import AlertNotification
from services.notifier.channels import DeliveryResult
from services.notifier.inbox import PREFIX

_PENDING = "pending"


def claim_key(*, channel: str, notification: AlertNotification) -> str:
    """One key per channel and transition: fingerprint, state and episode start."""
    return (
        f"{PREFIX}claim:{channel}:{notification.fingerprint}:"
        f"{notification.state.value}:{notification.started_at.isoformat()}"
    )


@dataclass(frozen=True)
class Claim:
    """Outcome of trying to claim a delivery.

    ``acquired``: this process now owns the delivery. Otherwise ``previous`` holds the stored
    result of an earlier successful delivery, or is None while another delivery is under way.
    """

    acquired: bool
    previous: DeliveryResult | None = None


class DeliveryClaims:
    """Claims in Redis: ``pending`` while delivering, the result JSON once sent."""

    def __init__(
        self,
        redis: Redis,
        *,
        pending_ttl: timedelta = timedelta(minutes=10),
        sent_ttl: timedelta = timedelta(days=3),
    ) -> None:
        # pending_ttl outlives the longest delivery (attempts x timeout + capped waits) yet
        # frees a claim left behind by a crashed process; sent_ttl outlives any redelivery.
        self._redis = redis
        self._pending_ttl = pending_ttl
        self._sent_ttl = sent_ttl

    async def acquire(self, key: str) -> Claim:
        """Claim ``key`` for delivery, or report who has it."""
        if await self._redis.set(key, _PENDING, nx=True, ex=self._pending_ttl):
            return Claim(acquired=True)
        value = await self._redis.get(key)
        if value is None:
            # Expired between the two calls: try once more rather than give up.
            if await self._redis.set(key, _PENDING, nx=True, ex=self._pending_ttl):
                return Claim(acquired=True)
            value = await self._redis.get(key)
        if value is None or value == _PENDING:
            return Claim(acquired=False)
        return Claim(acquired=False, previous=DeliveryResult.model_validate_json(value))

    async def mark_sent(self, key: str, result: DeliveryResult) -> None:
        """Record a successful delivery so redeliveries skip it."""
        await self._redis.set(key, result.model_dump_json(), ex=self._sent_ttl)

    async def release(self, key: str) -> None:
        """Give the claim up after a failed delivery."""
        await self._redis.delete(key)
