"""The evaluator's threshold state on the real Redis: idempotent, replayable until published,
one compare-and-set per input, bounded in time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from goalwatch.contracts import AlertState, Severity
from goalwatch.dev.stack import Stack
from goalwatch.rules.fraud import Record
from goalwatch.rules.fraud_spec import BurstCondition, OutlierCondition
from goalwatch.rules.overdue import Due, Seen
from goalwatch.rules.threshold import Policy
from goalwatch.rules.transitions import Point, Verdict, fingerprint
from services.evaluator.absences import AbsenceStore
from services.evaluator.fraud_store import FraudStore, PeerGroups
from services.evaluator.streaks import IDLE_EXPIRY, KEY_PREFIX, StreakStore
from tests.integration.helpers import unique

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
LABELS = {"ward": "icu"}


def breach(subject: str, day: int) -> Point:
    return Point.of(f"{subject}-{day}", DAY0 + timedelta(days=day), 0.5, Verdict.BREACH)


async def test_a_transition_is_replayed_until_it_is_marked_published(stack: Stack) -> None:
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    store = StreakStore(redis)
    subject = unique("emp")
    fp, policy = fingerprint("r", subject, "m"), Policy(consecutive=2)
    points = [breach(subject, d) for d in range(2)]
    try:
        assert (await store.observe(fp, points[0], policy, labels=LABELS)).transition is None
        fired = (await store.observe(fp, points[1], policy, labels=LABELS)).transition
        assert fired is not None and fired.state is AlertState.FIRING and not fired.replayed

        # A redelivery before publishing.
        again = await store.observe(fp, points[1], policy, labels=LABELS)
        assert again.transition is not None and again.transition.replayed
        assert again.transition.started_at == fired.started_at
        assert again.transition.history == fired.history

        await store.mark_published(fp, again.cause)
        # A resend after it went out.
        assert (await store.observe(fp, points[1], policy, labels=LABELS)).transition is None
    finally:
        await redis.aclose()


async def test_concurrent_writers_of_one_key_fire_once(stack: Stack) -> None:
    # As two evaluator replicas would: separate connections, same key, at the same time.
    clients = [Redis.from_url(stack.settings.redis_url, decode_responses=True) for _ in range(6)]
    subject = unique("emp")
    fp, policy = fingerprint("r", subject, "m"), Policy(consecutive=3)
    points = [breach(subject, d) for d in range(6)]
    try:
        applied = await asyncio.gather(
            *(
                StreakStore(client).observe(fp, point, policy, labels=LABELS)
                for client, point in zip(clients, points, strict=True)
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    assert [a.transition.state for a in applied if a.transition is not None] == [AlertState.FIRING]


async def test_an_idle_key_expires_a_firing_or_waiting_one_does_not(stack: Stack) -> None:
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    store = StreakStore(redis)
    subject = unique("emp")
    fp = fingerprint("r", subject, "m")
    key = f"{KEY_PREFIX}{{{fp}}}:threshold"
    try:
        await store.observe(fp, breach(subject, 0), Policy(consecutive=2), labels=LABELS)
        ttl = await redis.ttl(key)
        assert IDLE_EXPIRY.total_seconds() - 60 < ttl <= IDLE_EXPIRY.total_seconds()
        await store.observe(fp, breach(subject, 1), Policy(consecutive=2), labels=LABELS)
        assert await redis.ttl(key) == -1  # firing: kept until it resolves

        waiting = fingerprint("r2", subject, "m")
        policy = Policy(consecutive=1, for_=timedelta(days=1))
        applied = await store.observe(waiting, breach(subject, 0), policy, labels=LABELS)
        assert applied.arm == DAY0 + timedelta(days=1)
        assert await redis.ttl(f"{KEY_PREFIX}{{{waiting}}}:threshold") == -1
    finally:
        await redis.aclose()


async def test_a_fired_timer_escalates_once_and_is_replayed_until_published(
    stack: Stack,
) -> None:
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    store = StreakStore(redis)
    subject = unique("emp")
    fp = fingerprint("r", subject, "m")
    policy = Policy(escalate=((timedelta(days=2), Severity.CRITICAL),))
    try:
        fired = await store.observe(fp, breach(subject, 0), policy, labels=LABELS)
        assert fired.arm == DAY0 + timedelta(days=2)
        at = DAY0 + timedelta(days=2)
        escalated = await store.due(fp, at, policy)
        transition = escalated.transition
        assert transition is not None and transition.escalated_from is Severity.WARNING
        again = await store.due(fp, at, policy)
        assert again.transition is not None and again.transition.replayed
        assert again.transition.severity is Severity.CRITICAL
        await store.mark_published(fp, again.cause)
        assert (await store.due(fp, at, policy)).transition is None
        assert escalated.state.labels == LABELS
    finally:
        await redis.aclose()


async def test_state_written_by_the_earlier_layout_is_read_and_replaced(stack: Stack) -> None:
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    store = StreakStore(redis)
    subject = unique("emp")
    fp = fingerprint("r", subject, "m")
    base = f"{KEY_PREFIX}{{{fp}}}"
    try:
        # Two breaching days as the earlier layout kept them.
        for day in range(2):
            doc = {
                "time": (DAY0 + timedelta(days=day)).isoformat(),
                "value": 0.5,
                "breach": True,
                "transition": None,
            }
            await redis.hset(f"{base}:data", f"{subject}-{day}", json.dumps(doc))
        applied = await store.observe(fp, breach(subject, 2), Policy(consecutive=3), labels={})
        assert applied.transition is not None and applied.transition.started_at == DAY0
        assert not await redis.exists(f"{base}:data", f"{base}:alert")
        assert await redis.exists(f"{base}:threshold")
    finally:
        await redis.aclose()


async def test_fraud_state_replays_an_unpublished_firing_and_peer_groups_forget_old_values(
    stack: Stack,
) -> None:
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    store, groups = FraudStore(redis), PeerGroups(redis)
    subject = unique("rep")
    fp = fingerprint("f", subject, "m")
    burst = BurstCondition(pattern="burst", count=2, within=timedelta(minutes=1))
    records = [Record(f"{subject}-{n}", DAY0 + timedelta(seconds=n), 1.0) for n in range(2)]

    def judge(measures: Mapping[str, float]) -> bool:
        return measures["measure"] >= 2

    try:
        first = await store.observe(fp, records[0], burst, judge=judge, peers=None, labels={})
        assert first.transition is None
        fired = await store.observe(fp, records[1], burst, judge=judge, peers=None, labels={})
        assert fired.transition is not None and fired.measures == {"measure": 2.0}
        assert fired.arm == records[1].time + timedelta(minutes=1)
        again = await store.observe(fp, records[1], burst, judge=judge, peers=None, labels={})
        assert again.transition is not None and again.transition.replayed
        assert again.measures == {"measure": 2.0} and again.findings == 1
        await store.mark_published(fp, again.cause)
        done = await store.observe(fp, records[1], burst, judge=judge, peers=None, labels={})
        assert done.transition is None

        outlier = OutlierCondition(pattern="outlier", peers="org_unit", within=timedelta(days=1))
        group = unique("unit")
        old = Record("o", DAY0 - timedelta(days=2), 5.0)
        assert await groups.others("f", group, outlier, old, "old-peer") == []
        recent = Record("r", DAY0, 7.0)
        assert await groups.others("f", group, outlier, recent, "peer") == []  # old one dropped
        assert await groups.others("f", group, outlier, records[0], subject) == [7.0]
    finally:
        await redis.aclose()


async def test_absence_state_of_the_earlier_layout_is_read_and_replaced(stack: Stack) -> None:
    redis = Redis.from_url(stack.settings.redis_url, decode_responses=True)
    store = AbsenceStore(redis)
    fp = fingerprint("a", unique("emp"), "m")
    last = Seen("r-1", DAY0, 0.5, {})
    legacy = {
        "last": {"event_id": "r-1", "time": DAY0.isoformat(), "value": 0.5, "labels": {}},
        "deadline": (DAY0 + timedelta(days=2)).isoformat(),
        "firing": False,
        "started_at": None,
        "unpublished": None,
    }
    try:
        await redis.set(f"{KEY_PREFIX}{{{fp}}}:absence", json.dumps(legacy))
        # The deadline armed by the earlier layout falls due: it fires from that state.
        fired = await store.apply(
            fp,
            Due(DAY0 + timedelta(days=2)),
            now=DAY0 + timedelta(days=2),
            absent_for=timedelta(days=2),
        )
        assert fired.transition is not None and fired.transition.state is AlertState.FIRING
        assert fired.last == last
        assert not await redis.exists(f"{KEY_PREFIX}{{{fp}}}:absence")
        again = await store.apply(
            fp,
            Due(DAY0 + timedelta(days=2)),
            now=DAY0 + timedelta(days=2),
            absent_for=timedelta(days=2),
        )
        assert again.transition is not None and again.transition.replayed
        await store.mark_published(fp)
        done = await store.apply(
            fp,
            Due(DAY0 + timedelta(days=2)),
            now=DAY0 + timedelta(days=2),
            absent_for=timedelta(days=2),
        )
        assert done.transition is None
    finally:
        await redis.aclose()
