"""At-most-once-per-transition guard for channel deliveries, kept in Redis.

JetStream delivers at least once: after a crash, a lost ack or an ack timeout the same alert
arrives again. Before a channel delivers, the notifier claims the transition with ``SET NX``;
a transition already delivered is skipped, and one being delivered elsewhere is retried later.
A failed attempt releases its claim so a redelivery or an operator's replay can try again.

A claim that is being worked on is ``pending:<owner token>`` with a short TTL that its owner
renews while the delivery runs (:meth:`DeliveryClaims.held`). A process that dies stops
renewing, so its claim is gone within one TTL. The TTL is shorter than the consumer's
``ack_wait``, and JetStream redelivers the dead process's message only after ``ack_wait``:
the redelivery finds the claim gone and delivers at once. Only the owner (the token) renews
or releases a pending claim, so a slow process whose claim lapsed cannot free another's.

Marking a claim sent is retried while Redis is unreachable (restarting, loading its AOF),
for up to the pending TTL: the receiver already has the notification, and a redelivery that
found the claim lapsed without the record would send it again. What is left is the crash
between the receiver accepting a POST and the claim being marked sent (or a Redis down for
longer than the TTL): the redelivery sends again, with the same idempotency key, for the
receiver to drop.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from goalwatch.contracts import AlertNotification, DeliveryStatus
from goalwatch.renewal import renewing
from services.notifier.channels import DeliveryResult
from services.notifier.inbox import PREFIX
from services.notifier.notification import transition_key

logger = logging.getLogger(__name__)

_PENDING = "pending"


def claim_key(*, channel: str, notification: AlertNotification) -> str:
    """One key per channel and transition: fingerprint, state and episode start, and for an
    escalation the severity it rose to (:func:`transition_key`)."""
    return f"{PREFIX}claim:{channel}:" + ":".join(transition_key(notification))


def _pending(value: str | None) -> bool:
    return value is not None and value.split(":", 1)[0] == _PENDING


@dataclass(frozen=True)
class Claim:
    """Outcome of trying to claim a delivery.

    ``acquired``: this process now owns the delivery, as ``token``. Otherwise ``previous``
    holds the stored result of an earlier successful delivery, or is None while another
    delivery is under way.
    """

    acquired: bool
    previous: DeliveryResult | None = None
    token: str | None = None


class DeliveryClaims:
    """Claims in Redis: ``pending:<token>`` while delivering, the result JSON once sent."""

    def __init__(
        self,
        redis: Redis,
        *,
        pending_ttl: timedelta = timedelta(seconds=20),
        sent_ttl: timedelta = timedelta(days=3),
    ) -> None:
        """``pending_ttl`` must be shorter than the consumer's ``ack_wait`` (see the module);
        ``sent_ttl`` outlives any redelivery of a delivered transition."""
        self._redis = redis
        self._pending_ttl = pending_ttl
        self._sent_ttl = sent_ttl

    @property
    def pending_ttl(self) -> timedelta:
        """How long a claim outlives the last renewal of its owner."""
        return self._pending_ttl

    async def acquire(self, key: str) -> Claim:
        """Claim ``key`` for delivery, or report who has it."""
        token = f"{_PENDING}:{secrets.token_hex(8)}"
        value: str | None = None
        for _ in range(2):  # once more if it expired between the two calls
            if await self._redis.set(key, token, nx=True, px=self._pending_ttl):
                return Claim(acquired=True, token=token)
            value = cast(str | None, await self._redis.get(key))
            if value is not None:
                break
        if value is None or _pending(value):
            return Claim(acquired=False)
        return Claim(acquired=False, previous=DeliveryResult.model_validate_json(value))

    async def renew(self, key: str, token: str) -> bool:
        """Extend the owner's claim by one TTL; False if it is no longer the owner's."""
        return await self._if_owned(key, token, lambda pipe: pipe.pexpire(key, self._pending_ttl))

    async def mark_sent(self, key: str, result: DeliveryResult) -> None:
        """Record a successful delivery so redeliveries skip it.

        Tried again while Redis is unreachable, for up to the pending TTL (see the module):
        given up at once, the message would be retried, wait for the claim to lapse, and send
        the notification a second time. Raises the last error after that.
        """
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((RedisConnectionError, RedisTimeoutError)),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0),
            stop=stop_after_delay(self._pending_ttl.total_seconds()),
            reraise=True,
        ):
            with attempt:
                # Unconditional: once the receiver has it, it is sent, whoever held the claim.
                await self._redis.set(key, result.model_dump_json(), ex=self._sent_ttl)

    async def release(self, key: str, token: str) -> None:
        """Give the owner's claim up after a failed attempt (someone else's is left alone)."""
        await self._if_owned(key, token, lambda pipe: pipe.delete(key))

    async def _if_owned(self, key: str, token: str, change: Callable[[Any], object]) -> bool:
        # redis-py leaves the pipeline's MULTI/reset untyped.
        pipe: Any
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                if await pipe.get(key) != token:
                    return False
                pipe.multi()
                change(pipe)
                await pipe.execute()
            except WatchError:  # changed meanwhile: no longer ours to touch
                return False
        return True

    async def run(
        self, key: str, send: Callable[[], Awaitable[DeliveryResult]]
    ) -> tuple[DeliveryResult, bool] | None:
        """Claim ``key`` and ``send`` under the claim: ``(result, False)``; kept when sent (or
        held back, to be sent with others later), released when not, so a redelivery can try again. ``(stored result, True)`` when an
        earlier delivery sent it already; None while another delivery holds the claim."""
        claim = await self.acquire(key)
        if not claim.acquired:
            return None if claim.previous is None else (claim.previous, True)
        assert claim.token is not None  # acquired
        try:
            # Renewed while the attempt runs, so the claim dies with this process.
            async with self.held(key, claim.token):
                result = await send()
        except BaseException:
            await self.release(key, claim.token)
            raise
        if result.status in (DeliveryStatus.SENT, DeliveryStatus.HELD):
            # Held back is handled too: the held message goes later, with the others.
            await self.mark_sent(key, result)
        else:
            await self.release(key, claim.token)
        return result, False

    @asynccontextmanager
    async def held(self, key: str, token: str) -> AsyncIterator[None]:
        """Renew the claim every third of its TTL while the block runs, so that it lives as
        long as its owner and no longer."""
        every = self._pending_ttl.total_seconds() / 3
        async with renewing(
            lambda: self.renew(key, token), every=every, what=f"delivery claim {key}"
        ):
            yield
