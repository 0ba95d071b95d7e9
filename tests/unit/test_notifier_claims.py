"""Delivery claims: they live as long as their owner renews them, and only the owner frees one."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import cast

import pytest
from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from goalwatch.contracts import DeliveryStatus
from services.notifier.channels import DeliveryResult
from services.notifier.claims import DeliveryClaims

KEY = "goalwatch:notifier:claim:webhook:fp-1:firing:2026-11-18T00:00:00+00:00"
TTL = timedelta(milliseconds=300)


def claims() -> tuple[DeliveryClaims, FakeAsyncRedis]:
    redis = FakeAsyncRedis(decode_responses=True)
    return DeliveryClaims(cast(Redis, redis), pending_ttl=TTL), redis


async def test_a_pending_claim_is_short_lived_and_excludes_others() -> None:
    store, redis = claims()
    mine = await store.acquire(KEY)
    assert mine.acquired and mine.token is not None
    assert 0 < await redis.pttl(KEY) <= 300
    assert await store.acquire(KEY) == type(mine)(acquired=False)


async def test_an_owner_that_stops_renewing_loses_its_claim_within_one_ttl() -> None:
    store, redis = claims()
    assert (await store.acquire(KEY)).acquired
    # The owner died: nobody renews. Redis forgets the claim by itself.
    await redis.pexpire(KEY, 1)
    await asyncio.sleep(0.01)
    assert (await store.acquire(KEY)).acquired


async def test_a_held_claim_is_renewed_while_its_owner_works() -> None:
    store, redis = claims()
    claim = await store.acquire(KEY)
    assert claim.token is not None
    async with store.held(KEY, claim.token):
        await asyncio.sleep(0.6)  # two TTLs of work
        assert await redis.get(KEY) == claim.token
    assert await store.renew(KEY, claim.token)


async def test_only_the_owner_renews_or_releases() -> None:
    store, redis = claims()
    first = await store.acquire(KEY)
    assert first.token is not None
    await redis.delete(KEY)  # lapsed ...
    second = await store.acquire(KEY)  # ... and taken over
    assert second.token is not None
    assert not await store.renew(KEY, first.token)
    await store.release(KEY, first.token)
    assert await redis.get(KEY) == second.token
    await store.release(KEY, second.token)
    assert await redis.get(KEY) is None


async def test_a_sent_claim_reports_the_earlier_result() -> None:
    store, _ = claims()
    claim = await store.acquire(KEY)
    sent = DeliveryResult(status=DeliveryStatus.SENT, attempts=2)
    await store.mark_sent(KEY, sent)
    again = await store.acquire(KEY)
    assert not again.acquired and again.previous == sent
    assert claim.token is not None and not await store.renew(KEY, claim.token)


class Restarting(FakeAsyncRedis):
    """A Redis whose next ``failures`` SETs fail as a restarting server's do (refused, then
    loading its AOF)."""

    failures = 0

    async def set(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        if self.failures:
            self.failures -= 1
            raise (RedisConnectionError if self.failures % 2 else BusyLoadingError)("restarting")
        return await super().set(*args, **kwargs)  # type: ignore[arg-type]


async def test_marking_sent_outlasts_a_redis_restart_so_a_redelivery_does_not_send_again() -> None:
    redis = Restarting(decode_responses=True)
    store = DeliveryClaims(cast(Redis, redis), pending_ttl=timedelta(seconds=5))
    claim = await store.acquire(KEY)
    assert claim.token is not None
    # The receiver answered 2xx; Redis went down before the claim was marked sent.
    redis.failures = 3
    sent = DeliveryResult(status=DeliveryStatus.SENT, attempts=1)
    await store.mark_sent(KEY, sent)
    assert redis.failures == 0
    # The redelivery of the message finds the delivery recorded.
    again = await store.acquire(KEY)
    assert not again.acquired and again.previous == sent


async def test_marking_sent_gives_up_after_the_pending_ttl() -> None:
    redis = Restarting(decode_responses=True)
    store = DeliveryClaims(cast(Redis, redis), pending_ttl=TTL)
    redis.failures = 1_000_000  # down for good
    with pytest.raises(RedisConnectionError):
        await store.mark_sent(KEY, DeliveryResult(status=DeliveryStatus.SENT, attempts=1))
