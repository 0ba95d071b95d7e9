"""The evaluator's rule state on the real Redis: idempotent, replayable until published, one
compare-and-set per input (for threshold rules, per event and subject's metric), bounded in
time, and read from the layouts earlier versions wrote."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from goalwatch.contracts import (
    AlertFired,
    AlertResolved,
    AlertState,
    MetricRecorded,
    Severity,
    TimerFired,
)
from goalwatch.dev.stack import Stack
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.fraud import Record
from goalwatch.rules.fraud_spec import BurstCondition, OutlierCondition
from goalwatch.rules.overdue import Due, Seen
from goalwatch.rules.revision import revision
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.threshold import TIMER, Policy
from goalwatch.rules.transitions import Point, Transition, Verdict, fingerprint
from goalwatch.timers import TimerKey
from services.evaluator.absences import AbsenceStore
from services.evaluator.evaluation import Evaluator
from services.evaluator.fraud_store import FraudStore, PeerGroups
from services.evaluator.streaks import (
    IDLE_EXPIRY,
    KEY_PREFIX,
    Applied,
    Observation,
    StreakStore,
    dump_transition,
    legacy_keys,
    state_key,
    timer_cause,
)
from tests.integration.helpers import unique

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
LABELS = {"ward": "icu"}
METRIC = "m"


def breach(subject: str, day: int, verdict: Verdict = Verdict.BREACH) -> Point:
    return Point.of(f"{subject}-{day}", DAY0 + timedelta(days=day), 0.5, verdict)


def seen(fp: str, point: Point, policy: Policy) -> Observation:
    return Observation(fp, point, policy)


class Recording(Redis):
    """Records the commands it sends (the store sends every one in a pipeline)."""

    commands: list[str]

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = super().pipeline(*args, **kwargs)
        execute = pipe.execute

        async def recorded(*a: Any, **kw: Any) -> Any:
            self.commands.extend(str(args[0]).upper() for args, _ in pipe.command_stack)
            return await execute(*a, **kw)

        pipe.execute = recorded  # type: ignore[method-assign]
        return pipe


def client(stack: Stack) -> Redis:
    return Redis.from_url(stack.settings.redis_url, decode_responses=True)


async def test_an_event_reaching_several_rules_costs_one_read_and_one_write(stack: Stack) -> None:
    redis = cast(Recording, Recording.from_url(stack.settings.redis_url, decode_responses=True))
    redis.commands = []
    store = StreakStore(redis)
    subject = unique("emp")
    fps = [fingerprint(rule, subject, METRIC) for rule in ("a", "b", "c")]
    policies = [Policy(consecutive=1), Policy(consecutive=2), Policy(consecutive=3)]
    key = state_key(subject, METRIC)
    try:
        # Nothing in any earlier layout: the first event also looks there (one round trip).
        first = [seen(fp, breach(subject, 0), p) for fp, p in zip(fps, policies, strict=True)]
        applied = await store.observe(subject, METRIC, first, labels=LABELS)
        assert [a.transition is not None for a in applied] == [True, False, False]
        assert [a.fp for a in applied] == fps
        redis.commands.clear()
        second = [seen(fp, breach(subject, 1), p) for fp, p in zip(fps, policies, strict=True)]
        applied = await store.observe(subject, METRIC, second, labels=LABELS)
        assert [a.transition is not None for a in applied] == [False, True, False]
        assert redis.commands == ["HMGET", "EVALSHA"]

        fields = await redis.hgetall(key)
        assert fields["v"] == "2"
        assert {f"doc:{fp}" for fp in fps} <= set(fields)
        assert set(fields["keep"].split()) == set(fps[:2])  # a and b fire
        outs = {str(f) for f in fields if str(f).startswith("out:")}
        assert outs == {f"out:{fps[0]}:{subject}-0", f"out:{fps[1]}:{subject}-1"}

        redis.commands.clear()
        await store.mark_published(subject, METRIC, [a for a in applied if a.transition])
        assert redis.commands == ["HDEL"]
        assert f"out:{fps[1]}:{subject}-1" not in await redis.hkeys(key)
    finally:
        await redis.aclose()


async def test_a_transition_is_replayed_until_it_is_marked_published(stack: Stack) -> None:
    redis = client(stack)
    store = StreakStore(redis)
    subject = unique("emp")
    fp, policy = fingerprint("r", subject, METRIC), Policy(consecutive=2)
    quiet = fingerprint("q", subject, METRIC)
    points = [breach(subject, d) for d in range(2)]

    async def observe(point: Point) -> list[Applied]:
        both = [seen(fp, point, policy), seen(quiet, point, Policy(consecutive=5))]
        return await store.observe(subject, METRIC, both, labels=LABELS)

    try:
        assert (await observe(points[0]))[0].transition is None
        [fired, _] = await observe(points[1])
        assert fired.transition is not None and fired.transition.state is AlertState.FIRING
        assert not fired.transition.replayed
        version = await redis.hget(state_key(subject, METRIC), "v")

        # A redelivery before publishing: published again, nothing written.
        [again, other] = await observe(points[1])
        assert again.transition is not None and again.transition.replayed
        assert again.transition.started_at == fired.transition.started_at
        assert again.transition.history == fired.transition.history
        assert other.transition is None
        assert await redis.hget(state_key(subject, METRIC), "v") == version

        await store.mark_published(subject, METRIC, [again])
        # A resend after it went out: a duplicate observation, nothing changes.
        assert [a.transition for a in await observe(points[1])] == [None, None]
        assert await redis.hget(state_key(subject, METRIC), "v") == version
    finally:
        await redis.aclose()


async def test_concurrent_writers_of_one_hash_fire_once(stack: Stack) -> None:
    # As two evaluator replicas would: separate connections, same hash, at the same time.
    clients = [client(stack) for _ in range(6)]
    subject = unique("emp")
    fp, policy = fingerprint("r", subject, METRIC), Policy(consecutive=3)
    other = fingerprint("o", subject, METRIC)
    points = [breach(subject, d) for d in range(6)]
    try:
        applied = await asyncio.gather(
            *(
                StreakStore(c).observe(
                    subject,
                    METRIC,
                    [seen(fp, point, policy), seen(other, point, Policy(consecutive=6))],
                    labels=LABELS,
                )
                for c, point in zip(clients, points, strict=True)
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    fired = [a.transition.state for pair in applied for a in pair if a.transition is not None]
    assert fired == [AlertState.FIRING, AlertState.FIRING]  # r once, o once (all six kept)


class Interfered(StreakStore):
    """A store another writer gets ahead of, once, between its read and its write."""

    def __init__(self, redis: Redis, meanwhile: Callable[[], Awaitable[object]]) -> None:
        super().__init__(redis)
        self.meanwhile: Callable[[], Awaitable[object]] | None = meanwhile
        self.writes = 0

    async def _cas(self, key: str, version: str | None, expiry_ms: str, changes: list[Any]) -> bool:
        self.writes += 1
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return await super()._cas(key, version, expiry_ms, changes)


async def test_a_write_that_lost_the_race_reads_again_and_decides_every_rule_again(
    stack: Stack,
) -> None:
    redis = client(stack)
    subject = unique("emp")
    a, b = fingerprint("a", subject, METRIC), fingerprint("b", subject, METRIC)
    policy = Policy(consecutive=2)
    day1 = breach(subject, 1)
    try:
        await StreakStore(redis).observe(
            subject, METRIC, [seen(a, breach(subject, 0), policy)], labels=LABELS
        )

        # The same event's first delivery (on another replica) writes first and fires a.
        async def first_delivery() -> object:
            return await StreakStore(redis).observe(
                subject, METRIC, [seen(a, day1, policy)], labels=LABELS
            )

        store = Interfered(redis, first_delivery)
        [on_a, on_b] = await store.observe(
            subject, METRIC, [seen(a, day1, policy), seen(b, day1, policy)], labels=LABELS
        )
        assert store.writes == 2  # the first lost, the second was decided again
        # a's firing was the other delivery's: here it is its unpublished transition again.
        assert on_a.transition is not None and on_a.transition.replayed
        assert on_b.transition is None and len(on_b.state.kept) == 1
        docs = await redis.hmget(state_key(subject, METRIC), [f"doc:{a}", f"doc:{b}"])
        assert all(docs)
    finally:
        await redis.aclose()


async def test_an_idle_hash_expires_one_with_any_key_firing_or_waiting_does_not(
    stack: Stack,
) -> None:
    redis = client(stack)
    store = StreakStore(redis)
    subject = unique("emp")
    fires, idle = fingerprint("fires", subject, METRIC), fingerprint("idle", subject, METRIC)
    waits = fingerprint("waits", subject, METRIC)
    key = state_key(subject, METRIC)
    two, ten = Policy(consecutive=2), Policy(consecutive=10)

    async def expiring() -> bool:
        ttl = await redis.ttl(key)
        assert ttl == -1 or IDLE_EXPIRY.total_seconds() - 60 < ttl <= IDLE_EXPIRY.total_seconds()
        return ttl != -1

    try:
        both = [seen(fires, breach(subject, 0), two), seen(idle, breach(subject, 0), ten)]
        await store.observe(subject, METRIC, both, labels=LABELS)
        assert await expiring()
        both = [seen(fires, breach(subject, 1), two), seen(idle, breach(subject, 1), ten)]
        await store.observe(subject, METRIC, both, labels=LABELS)
        assert not await expiring()  # firing: kept until it resolves
        # An event only the idle rule sees must not let the firing one expire.
        await store.observe(subject, METRIC, [seen(idle, breach(subject, 2), ten)], labels={})
        assert not await expiring()
        cleared = breach(subject, 3, Verdict.CLEAR)
        await store.observe(subject, METRIC, [seen(fires, cleared, two)], labels={})
        assert await expiring()  # resolved: nothing left to keep it

        policy = Policy(consecutive=1, for_=timedelta(days=1))
        [applied] = await store.observe(
            subject, METRIC, [seen(waits, breach(subject, 4), policy)], labels=LABELS
        )
        assert applied.arm == DAY0 + timedelta(days=5)
        assert not await expiring()  # pending on a timer
        assert await redis.hget(key, "keep") == waits
    finally:
        await redis.aclose()


async def test_a_fired_timer_changes_its_own_key_only_and_is_replayed_until_published(
    stack: Stack,
) -> None:
    redis = client(stack)
    store = StreakStore(redis)
    subject = unique("emp")
    fp, other = fingerprint("r", subject, METRIC), fingerprint("o", subject, METRIC)
    policy = Policy(escalate=((timedelta(days=2), Severity.CRITICAL),))
    key = state_key(subject, METRIC)
    try:
        [fired, _] = await store.observe(
            subject,
            METRIC,
            [seen(fp, breach(subject, 0), policy), seen(other, breach(subject, 0), Policy(3))],
            labels=LABELS,
        )
        assert fired.arm == DAY0 + timedelta(days=2)
        await store.mark_published(subject, METRIC, [fired])
        other_doc = await redis.hget(key, f"doc:{other}")
        at = DAY0 + timedelta(days=2)
        escalated = await store.due(subject, METRIC, fp, at, policy)
        transition = escalated.transition
        assert transition is not None and transition.escalated_from is Severity.WARNING
        assert escalated.fp == fp and escalated.cause == timer_cause(at)
        assert await redis.hget(key, f"doc:{other}") == other_doc
        again = await store.due(subject, METRIC, fp, at, policy)
        assert again.transition is not None and again.transition.replayed
        assert again.transition.severity is Severity.CRITICAL
        await store.mark_published(subject, METRIC, [again])
        assert (await store.due(subject, METRIC, fp, at, policy)).transition is None
        assert escalated.state.labels == LABELS
    finally:
        await redis.aclose()


async def test_state_of_the_one_hash_per_key_layout_is_moved_with_its_unpublished_transition(
    stack: Stack,
) -> None:
    redis = client(stack)
    store = StreakStore(redis)
    subject = unique("emp")
    fp, fresh = fingerprint("r", subject, METRIC), fingerprint("new", subject, METRIC)
    old_key = legacy_keys(fp)[0]
    policy = Policy(consecutive=2)
    day = [breach(subject, d) for d in range(3)]
    kept = [[p.event_id, p.time.isoformat(), p.value, p.verdict.value] for p in day[:2]]
    doc = {
        "kept": kept,
        "firing": True,
        "started_at": DAY0.isoformat(),
        "pending_since": None,
        "severity": "warning",
        "armed": None,
        "labels": LABELS,
        "raw": [],
    }
    fired = Transition(AlertState.FIRING, DAY0, tuple(day[:2]))
    try:
        # As the previous version left it: day 1 fired, its publish not yet confirmed.
        await redis.hset(
            old_key,
            mapping={
                "v": "2",
                "doc": json.dumps(doc),
                f"out:{day[1].event_id}": json.dumps(dump_transition(fired)),
            },
        )
        # Day 1 is redelivered after the upgrade, to the rule and one added since.
        both = [seen(fp, day[1], policy), seen(fresh, day[1], policy)]
        [replayed, new] = await store.observe(subject, METRIC, both, labels=LABELS)
        assert replayed.transition is not None and replayed.transition.replayed
        assert replayed.transition.history == fired.history
        assert new.transition is None
        assert not await redis.exists(old_key)
        key = state_key(subject, METRIC)
        assert await redis.hget(key, "keep") == fp  # still firing: the hash is kept
        assert await redis.ttl(key) == -1
        await store.mark_published(subject, METRIC, [replayed])
        assert [f for f in await redis.hkeys(key) if str(f).startswith("out:")] == []

        # From then on the new hash is the state: day 2 keeps it firing.
        [on_fp] = await store.observe(subject, METRIC, [seen(fp, day[2], policy)], labels={})
        assert on_fp.transition is None and on_fp.state.firing
        assert [p.event_id for p in on_fp.state.kept] == [p.event_id for p in day]
    finally:
        await redis.aclose()


async def test_state_of_the_oldest_layout_is_read_and_replaced(stack: Stack) -> None:
    redis = client(stack)
    store = StreakStore(redis)
    subject = unique("emp")
    fp = fingerprint("r", subject, METRIC)
    _, data, alert = legacy_keys(fp)
    try:
        # Two breaching days as the oldest layout kept them.
        for day in range(2):
            doc = {
                "time": (DAY0 + timedelta(days=day)).isoformat(),
                "value": 0.5,
                "breach": True,
                "transition": None,
            }
            await redis.hset(data, f"{subject}-{day}", json.dumps(doc))
        [applied] = await store.observe(
            subject, METRIC, [seen(fp, breach(subject, 2), Policy(consecutive=3))], labels={}
        )
        assert applied.transition is not None and applied.transition.started_at == DAY0
        assert not await redis.exists(data, alert)
        assert await redis.hexists(state_key(subject, METRIC), f"doc:{fp}")
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


# --- a rule that changed, over the state it kept ---------------------------------------------

REWORK: dict[str, Any] = {
    "id": "rework-high",
    "name": "Rework above 8% on 3 days",
    "kind": "threshold",
    "metric": "report_rework_rate",
    "condition": {"op": ">", "value": 0.08, "consecutive": 3},
    "severity": "warning",
    "notify": ["manager"],
    "message": "{subject_name}: {value:.0%}",
}


def rework_rule(**changes: Any) -> RuleSpec:
    return RuleSpec.model_validate({**REWORK, **changes})


def rework_condition(**changes: Any) -> RuleSpec:
    return rework_rule(condition={**REWORK["condition"], **changes})


class Alerts:
    """What the evaluator publishes, and the timers it arms."""

    def __init__(self) -> None:
        self.published: list[AlertFired | AlertResolved] = []
        self.armed: list[datetime] = []

    async def publish(self, alert: AlertFired | AlertResolved, on: str, msg_id: str) -> None:
        self.published.append(alert)

    async def arm(self, key: TimerKey, at: datetime, *, data: dict[str, str]) -> int:
        self.armed.append(at)
        return len(self.armed)

    async def name_of(self, *, subject: str) -> str:
        return subject

    def kinds(self) -> list[str]:
        return [type(alert).__name__ for alert in self.published]


def evaluator_of(spec: RuleSpec, redis: Redis, alerts: Alerts) -> Evaluator:
    """The evaluator as a rule change rebuilds it: new rules, the same Redis."""
    return Evaluator(
        engine=RuleEngine([spec]),
        streaks=StreakStore(redis),
        publish=alerts.publish,
        names=alerts,
        rules=[spec],
        arm=alerts.arm,
    )


def day_event(subject: str, day: int, value: float) -> MetricRecorded:
    # Event ids without the subject: two subjects sent the same days keep identical docs.
    return MetricRecorded(
        id=f"day-{day}",
        metric="report_rework_rate",
        value=value,
        time=DAY0 + timedelta(days=day),
        subject=subject,
        source="his",
        labels=LABELS,
    )


async def doc_of(redis: Redis, spec: RuleSpec, subject: str) -> str | None:
    """The stored state of ``spec``'s key about ``subject``, as Redis holds it."""
    fp = spec.fingerprint_of(subject, LABELS)
    doc = await redis.hget(state_key(subject, spec.metric), f"doc:{fp}")
    return None if doc is None else str(doc)


async def test_a_rule_rebuilt_with_a_new_condition_judges_the_kept_state_again(
    stack: Stack,
) -> None:
    redis = client(stack)
    raised_subject, lowered_subject = unique("emp"), unique("emp")
    before, raised, lowered = (
        rework_rule(),
        rework_condition(value=0.1),
        rework_condition(value=0.05),
    )
    alerts = Alerts()
    try:
        first = evaluator_of(before, redis, alerts)
        for subject in (raised_subject, lowered_subject):
            for day in range(3):
                await first.handle(day_event(subject, day, 0.09))
        assert alerts.kinds() == ["AlertFired", "AlertFired"]
        stored = json.loads(await doc_of(redis, before, raised_subject) or "{}")
        assert stored["rev"] == revision(before)

        # Raised to 10%: the three days at 9% no longer breach; the alert resolves at the
        # next event, though 12% breaks the new threshold too.
        await evaluator_of(raised, redis, alerts).handle(day_event(raised_subject, 3, 0.12))
        assert alerts.kinds()[2:] == ["AlertResolved"]
        fired, resolved = alerts.published[0], alerts.published[2]
        assert resolved.fingerprint == fired.fingerprint
        assert resolved.started_at == fired.started_at
        stored = json.loads(await doc_of(redis, raised, raised_subject) or "{}")
        assert stored["rev"] == revision(raised)
        assert [row[3] for row in stored["kept"]] == ["clear", "clear", "clear", "breach"]
        assert not stored["firing"]

        # Lowered to 5%: the other alert still holds and goes on, announced once.
        await evaluator_of(lowered, redis, alerts).handle(day_event(lowered_subject, 3, 0.06))
        assert alerts.kinds()[3:] == []
        stored = json.loads(await doc_of(redis, lowered, lowered_subject) or "{}")
        assert stored["firing"] and stored["rev"] == revision(lowered)
    finally:
        await redis.aclose()


async def test_a_rule_retold_keeps_its_state_byte_for_byte(stack: Stack) -> None:
    redis = client(stack)
    retold_subject, control_subject = unique("emp"), unique("emp")
    before = rework_rule()
    retold = rework_rule(name="Rework high", message="{subject}: {value}", severity="info")
    alerts = Alerts()
    try:
        first = evaluator_of(before, redis, alerts)
        for subject in (retold_subject, control_subject):
            for day in range(3):
                await first.handle(day_event(subject, day, 0.09))
        key = state_key(retold_subject, before.metric)
        stored, version = await doc_of(redis, before, retold_subject), await redis.hget(key, "v")

        # Rebuilt with the rule told another way: a redelivered event writes nothing...
        rebuilt = evaluator_of(retold, redis, alerts)
        await rebuilt.handle(day_event(retold_subject, 2, 0.09))
        assert await doc_of(redis, retold, retold_subject) == stored
        assert await redis.hget(key, "v") == version
        # ...and the next one leaves the state exactly as the unchanged rule does.
        await rebuilt.handle(day_event(retold_subject, 3, 0.09))
        await first.handle(day_event(control_subject, 3, 0.09))
        assert await doc_of(redis, retold, retold_subject) == await doc_of(
            redis, before, control_subject
        )
        assert alerts.kinds() == ["AlertFired", "AlertFired"]
    finally:
        await redis.aclose()


async def test_a_longer_for_moves_the_timer_armed_under_the_shorter_one(stack: Stack) -> None:
    redis = client(stack)
    subject = unique("emp")
    before = rework_condition(consecutive=1, **{"for": "2d"})
    longer = rework_condition(consecutive=1, **{"for": "3d"})
    alerts = Alerts()

    def fired_at(day: int) -> TimerFired:
        return TimerFired(
            owner="evaluator",
            name=TIMER,
            key=before.fingerprint_of(subject, LABELS),
            due_at=DAY0 + timedelta(days=day),
            armed_at=DAY0,
            data={"rule_id": before.id, "subject": subject},
        )

    try:
        await evaluator_of(before, redis, alerts).handle(day_event(subject, 0, 0.09))
        assert alerts.armed == [DAY0 + timedelta(days=2)]
        rebuilt = evaluator_of(longer, redis, alerts)
        await rebuilt.handle_timer(fired_at(2))
        assert alerts.published == []
        assert alerts.armed[1:] == [DAY0 + timedelta(days=3)]
        await rebuilt.handle_timer(fired_at(3))
        assert alerts.kinds() == ["AlertFired"]
        assert alerts.published[0].started_at == DAY0
    finally:
        await redis.aclose()


async def test_a_state_written_before_revisions_counts_as_judged_by_the_current_rule(
    stack: Stack,
) -> None:
    redis = client(stack)
    subject = unique("emp")
    before, raised = rework_rule(), rework_condition(value=0.1)
    alerts = Alerts()
    try:
        first = evaluator_of(before, redis, alerts)
        for day in range(3):
            await first.handle(day_event(subject, day, 0.09))
        # As an evaluator of the previous version wrote it: no revision in the doc.
        fp = before.fingerprint_of(subject, LABELS)
        stored = json.loads(await doc_of(redis, before, subject) or "{}")
        del stored["rev"]
        await redis.hset(state_key(subject, before.metric), f"doc:{fp}", json.dumps(stored))

        # Nothing is judged again: the alert goes on (the run's days stay breaching), and
        # the state now records the rule it met.
        await evaluator_of(raised, redis, alerts).handle(day_event(subject, 3, 0.12))
        assert alerts.kinds() == ["AlertFired"]
        stored = json.loads(await doc_of(redis, raised, subject) or "{}")
        assert stored["rev"] == revision(raised) and stored["firing"]
        assert [row[3] for row in stored["kept"]] == ["breach"] * 4
    finally:
        await redis.aclose()
