"""The delivery log over fakeredis: kept once, filtered, paged, expiring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis

from goalwatch.contracts import AlertState, DeliveryStatus, NotificationSent, Recipient
from services.notifier.deliveries import DeliveryFilters, DeliveryLog, record_key

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def outcome(
    n: int, *, to: str = "mgr-1", channel: str = "webhook", ok: bool = True, fp: str = "fp-1"
) -> NotificationSent:
    return NotificationSent(
        id=f"out-{n}",
        fingerprint=fp,
        rule_id="rework-high",
        state=AlertState.FIRING,
        channel=channel,
        recipients=[Recipient(id=to, name=to.upper(), role="manager")],
        status=DeliveryStatus.SENT if ok else DeliveryStatus.FAILED,
        attempts=1 if ok else 3,
        error=None if ok else "HTTP 500",
        at=T0 + timedelta(minutes=n),
    )


async def test_outcomes_are_kept_once_and_listed_by_recipient_alert_channel_and_status() -> None:
    redis = FakeAsyncRedis(decode_responses=True)
    log = DeliveryLog(cast(Redis, redis), retention=timedelta(days=30))
    for one in (
        outcome(1),
        outcome(2, to="mgr-2", fp="fp-2"),
        outcome(3, ok=False, channel="dingtalk"),
    ):
        await log.record(one)
    # A redelivery records the same outcome again, later: the first record stands.
    await log.record(outcome(1).model_copy(update={"at": T0 + timedelta(hours=5)}))

    async def ids(**given: object) -> list[str]:
        found, _ = await log.page(DeliveryFilters(**given), limit=10)  # type: ignore[arg-type]
        return [one.id for one in found]

    assert await ids() == ["out-3", "out-2", "out-1"]
    assert await ids(recipient="mgr-1") == ["out-3", "out-1"]
    assert await ids(alert="fp-2") == ["out-2"]
    assert await ids(channel="dingtalk") == ["out-3"]
    assert await ids(status=DeliveryStatus.FAILED) == ["out-3"]
    assert await ids(since=T0 + timedelta(minutes=2)) == ["out-3", "out-2"]
    first, cursor = await log.page(DeliveryFilters(), limit=2)
    assert [one.id for one in first] == ["out-3", "out-2"] and cursor is not None
    rest, last = await log.page(DeliveryFilters(), limit=2, cursor=cursor)
    assert [one.id for one in rest] == ["out-1"] and last is None
    ttl = await redis.pttl(record_key("out-1"))
    assert timedelta(days=29) < timedelta(milliseconds=ttl) <= timedelta(days=30)
