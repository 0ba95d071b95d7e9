"""Inbox: how transitions merge into an episode's entry, and ordering/filters over fakeredis."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis

from goalwatch.contracts import (
    AlertNotification,
    AlertState,
    Observation,
    Recipient,
    Severity,
    SubjectRef,
)
from services.notifier.inbox import (
    INDEX_ALL,
    MAX_COMMENTS,
    AckVia,
    Filters,
    Happening,
    Inbox,
    InboxAlert,
    NotFiring,
    commented,
    episode_id,
    episode_key,
    merge,
    recipient_index,
)
from services.notifier.pages import CursorError

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def fake_inbox() -> tuple[Inbox, FakeAsyncRedis]:
    redis = FakeAsyncRedis(decode_responses=True)
    return Inbox(cast(Redis, redis)), redis


async def dump(redis: FakeAsyncRedis) -> dict[str, object]:
    """Every key and its value (strings as text, sorted sets as member -> score)."""
    state: dict[str, object] = {}
    async for key in redis.scan_iter():
        if await redis.type(key) == "zset":
            state[key] = dict(await redis.zrange(key, 0, -1, withscores=True))
        else:
            state[key] = await redis.get(key)
    return state


def person(pid: str, role: str = "subject") -> Recipient:
    return Recipient(id=pid, name=pid.upper(), role=role)


def firing(
    fingerprint: str = "fp-1",
    *,
    rule: str = "rework-high",
    at: datetime = T0,
    started: datetime | None = None,
    recipients: list[Recipient] | None = None,
    severity: Severity = Severity.WARNING,
) -> AlertNotification:
    return AlertNotification(
        state=AlertState.FIRING,
        fingerprint=fingerprint,
        rule_id=rule,
        rule_name=rule,
        kind="threshold",
        severity=severity,
        subject=SubjectRef(id="emp-1", name="Dr Li"),
        metric="report_rework_rate",
        value=0.11,
        message="high",
        started_at=started or at - timedelta(days=2),
        fired_at=at,
        history=[Observation(event_id="e1", time=at, value=0.11)],
        labels={"department": "radiology"},
        recipients=recipients or [person("emp-1"), person("mgr-1", "manager")],
    )


def resolved(
    fire: AlertNotification, *, at: datetime, recipients: list[Recipient] | None = None
) -> AlertNotification:
    return AlertNotification(
        state=AlertState.RESOLVED,
        fingerprint=fire.fingerprint,
        rule_id=fire.rule_id,
        rule_name=fire.rule_name,
        severity=fire.severity,
        subject=fire.subject,
        metric=fire.metric,
        value=0.05,
        message="back to normal",
        started_at=fire.started_at,
        resolved_at=at,
        recipients=recipients or fire.recipients,
    )


def escalation(
    fire: AlertNotification,
    *,
    at: datetime,
    to: Severity = Severity.CRITICAL,
    source: Severity | None = None,
) -> AlertNotification:
    """The notification built from an escalation of ``fire``'s episode (as the notifier builds
    it: no fired_at, escalated_at the evaluator's time), rising from ``source`` (default:
    ``fire``'s severity) to ``to``."""
    return fire.model_copy(
        update={
            "severity": to,
            "escalated_from": source or fire.severity,
            "fired_at": None,
            "escalated_at": at,
            "message": f"now {to.value}",
            "value": 0.2,
            "history": [
                *fire.history,
                Observation(event_id="e9", time=at - timedelta(hours=1), value=0.2),
            ],
        }
    )


# --- merge: pure -------------------------------------------------------------------------


def test_resolution_keeps_what_the_firing_said() -> None:
    fire = firing()
    first = merge(None, fire)
    assert first.current and first.alert.updated_at == fire.fired_at
    then = merge(first.alert, resolved(fire, at=T0 + timedelta(hours=3)))
    assert then.current
    alert = then.alert
    assert alert.state is AlertState.RESOLVED
    assert alert.started_at == fire.started_at
    assert alert.fired_at == fire.fired_at
    assert alert.resolved_at == T0 + timedelta(hours=3)
    assert alert.updated_at == T0 + timedelta(hours=3)
    assert alert.kind == "threshold"
    assert alert.labels == {"department": "radiology"}
    assert len(alert.history) == 1
    assert alert.message == "back to normal"
    assert alert.notification().state is AlertState.RESOLVED


def test_firing_after_its_own_resolution_is_stale_but_fills_gaps() -> None:
    fire = firing()
    # The resolution overtook the firing (separate consumers, redelivery).
    first = merge(None, resolved(fire, at=T0 + timedelta(hours=1)))
    assert first.alert.fired_at is None
    late = merge(first.alert, fire)
    assert not late.current
    assert late.alert.state is AlertState.RESOLVED
    assert late.alert.fired_at == fire.fired_at
    assert late.alert.labels == fire.labels


def test_an_entry_takes_only_its_own_episode() -> None:
    old = firing(at=T0)
    entry = merge(None, old).alert
    again = firing(at=T0 + timedelta(days=1), started=T0 + timedelta(hours=20))
    with pytest.raises(ValueError, match="another episode"):
        merge(entry, again)


def test_redelivered_transition_is_current_and_unchanged() -> None:
    fire = firing()
    first = merge(None, fire).alert
    again = merge(first, fire)
    assert again.current
    assert again.alert == first


def test_resolution_adds_new_recipients_and_keeps_old_ones() -> None:
    fire = firing(recipients=[person("emp-1")])
    first = merge(None, fire).alert
    res = merge(first, resolved(fire, at=T0 + timedelta(hours=1), recipients=[person("dir-1")]))
    assert [r.id for r in res.alert.recipients] == ["dir-1", "emp-1"]


def test_escalation_raises_the_severity_and_keeps_the_first_firing_time() -> None:
    fire = firing()
    entry = merge(None, fire).alert
    rise = escalation(fire, at=T0 + timedelta(days=2))
    result = merge(entry, rise)
    assert result.current
    alert = result.alert
    assert alert.state is AlertState.FIRING
    assert (alert.severity, alert.escalated_from) == (Severity.CRITICAL, Severity.WARNING)
    assert alert.escalated_at == T0 + timedelta(days=2)
    assert alert.updated_at == T0 + timedelta(days=2)
    assert alert.fired_at == fire.fired_at
    assert alert.message == "now critical"
    assert [o.event_id for o in alert.history] == ["e1", "e9"]
    assert alert.notification().escalated_from is Severity.WARNING


def test_redelivered_escalation_is_current_and_unchanged() -> None:
    fire = firing()
    rise = escalation(fire, at=T0 + timedelta(days=2))
    entry = merge(merge(None, fire).alert, rise).alert
    again = merge(entry, rise)
    assert again.current
    assert again.alert == entry


def test_a_late_lower_escalation_never_lowers_the_severity() -> None:
    fire = firing(severity=Severity.INFO)
    to_warning = escalation(fire, at=T0 + timedelta(days=1), to=Severity.WARNING)
    to_critical = escalation(
        fire, at=T0 + timedelta(days=2), to=Severity.CRITICAL, source=Severity.WARNING
    )
    entry = merge(merge(None, fire).alert, to_critical).alert
    late = merge(entry, to_warning)
    assert not late.current
    # The entry stays as it was; only the timeline learns of the rise it missed, in its place.
    assert late.alert.model_copy(update={"timeline": entry.timeline}) == entry
    assert [(t.what, t.severity) for t in late.alert.timeline] == [
        (Happening.FIRED, Severity.INFO),
        (Happening.ESCALATED, Severity.WARNING),
        (Happening.ESCALATED, Severity.CRITICAL),
    ]
    assert (late.alert.severity, late.alert.escalated_from) == (
        Severity.CRITICAL,
        Severity.WARNING,
    )
    # The first firing arriving last is not news either.
    assert merge(entry, fire) == type(late)(alert=entry, current=False)


def test_an_escalation_after_the_resolution_does_not_reopen_the_alert() -> None:
    fire = firing()
    entry = merge(None, fire).alert
    entry = merge(entry, resolved(fire, at=T0 + timedelta(days=3))).alert
    late = merge(entry, escalation(fire, at=T0 + timedelta(days=2)))
    assert not late.current
    alert = late.alert
    assert alert.state is AlertState.RESOLVED
    assert alert.resolved_at == T0 + timedelta(days=3)
    assert alert.updated_at == entry.updated_at
    assert alert.message == "back to normal"
    # It did reach critical before it resolved: the record says so, without announcing it.
    assert alert.severity is Severity.CRITICAL
    assert alert.escalated_at == T0 + timedelta(days=2)
    assert alert.escalated_from is None


def test_an_escalation_with_no_entry_opens_one_at_the_new_severity() -> None:
    fire = firing()
    rise = escalation(fire, at=T0 + timedelta(days=2))
    first = merge(None, rise)
    assert first.current
    assert first.alert.state is AlertState.FIRING
    assert first.alert.severity is Severity.CRITICAL
    assert first.alert.fired_at is None  # the notifier has not seen it fire (yet)
    assert first.alert.updated_at == T0 + timedelta(days=2)
    # The first firing, delivered late, fills in when it fired and is not announced.
    late = merge(first.alert, fire)
    assert not late.current
    assert late.alert.fired_at == fire.fired_at
    assert late.alert.severity is Severity.CRITICAL
    assert late.alert.message == "now critical"


def test_resolution_of_an_escalated_alert_keeps_how_loud_it_got() -> None:
    fire = firing()
    entry = merge(merge(None, fire).alert, escalation(fire, at=T0 + timedelta(days=2))).alert
    # The resolution says the rule's severity; the episode reached critical.
    done = merge(entry, resolved(fire, at=T0 + timedelta(days=3)))
    assert done.current
    alert = done.alert
    assert alert.state is AlertState.RESOLVED
    assert alert.severity is Severity.CRITICAL
    assert alert.escalated_at == T0 + timedelta(days=2)
    assert alert.escalated_from is None  # the resolution announces no rise
    assert alert.fired_at == fire.fired_at


# --- Inbox over the fake ---------------------------------------------------------------


async def test_an_escalated_alert_moves_to_the_top_and_stays_firing() -> None:
    inbox, _ = fake_inbox()
    a = firing("fp-a", at=T0)
    await inbox.record(a)
    await inbox.record(firing("fp-b", at=T0 + timedelta(hours=1)))
    await inbox.record(escalation(a, at=T0 + timedelta(hours=2)))
    assert [x.fingerprint for x in await inbox.list()] == ["fp-a", "fp-b"]
    assert [x.fingerprint for x in await inbox.list(state=AlertState.FIRING)] == ["fp-a", "fp-b"]
    got = await inbox.get("fp-a")
    assert got is not None
    assert (got.severity, got.escalated_at, got.fired_at) == (
        Severity.CRITICAL,
        T0 + timedelta(hours=2),
        T0,
    )


async def test_newest_first_with_filters() -> None:
    inbox, _ = fake_inbox()
    a = firing("fp-a", rule="rework-high", at=T0, recipients=[person("emp-1"), person("mgr-1")])
    b = firing("fp-b", rule="feedback-low", at=T0 + timedelta(hours=1), recipients=[person("t-1")])
    c = firing("fp-c", rule="rework-high", at=T0 + timedelta(hours=2), recipients=[person("mgr-1")])
    for n in (b, a, c):
        await inbox.record(n)
    # a resolves last: it becomes the most recently updated.
    await inbox.record(resolved(a, at=T0 + timedelta(hours=3)))

    async def fps(**filters: Any) -> list[str]:
        return [x.fingerprint for x in await inbox.list(**filters)]

    assert await fps() == ["fp-a", "fp-c", "fp-b"]
    assert await fps(recipient="mgr-1") == ["fp-a", "fp-c"]
    assert await fps(rule="rework-high") == ["fp-a", "fp-c"]
    assert await fps(state=AlertState.FIRING) == ["fp-c", "fp-b"]
    assert await fps(state=AlertState.RESOLVED) == ["fp-a"]
    assert await fps(recipient="mgr-1", state=AlertState.FIRING) == ["fp-c"]
    assert await fps(rule="feedback-low", recipient="mgr-1") == []
    assert await fps(recipient="nobody") == []
    assert await fps(limit=2) == ["fp-a", "fp-c"]


async def test_filters_page_through_many_entries() -> None:
    inbox, _ = fake_inbox()
    for i in range(120):
        rule = "wanted" if i % 40 == 0 else "other"
        await inbox.record(firing(f"fp-{i:03d}", rule=rule, at=T0 + timedelta(minutes=i)))
    found = await inbox.list(recipient="emp-1", rule="wanted", limit=5)
    assert [x.fingerprint for x in found] == ["fp-080", "fp-040", "fp-000"]


async def test_get_one_and_missing() -> None:
    inbox, _ = fake_inbox()
    await inbox.record(firing("fp-x"))
    got = await inbox.get("fp-x")
    assert got is not None and got.state is AlertState.FIRING
    assert await inbox.get("fp-missing") is None


async def test_a_recipient_of_an_earlier_episode_keeps_only_that_one() -> None:
    inbox, redis = fake_inbox()
    first = firing(at=T0, recipients=[person("emp-1"), person("old-mgr")])
    await inbox.record(first)
    await inbox.record(resolved(first, at=T0 + timedelta(hours=1)))
    second = firing(
        at=T0 + timedelta(days=3), started=T0 + timedelta(days=2), recipients=[person("emp-1")]
    )
    await inbox.record(second)
    assert [a.started_at for a in await inbox.list(recipient="old-mgr")] == [first.started_at]
    assert [a.started_at for a in await inbox.list(recipient="emp-1")] == [
        second.started_at,
        first.started_at,
    ]
    gone = episode_id("fp-1", second.started_at)
    assert await redis.zscore(recipient_index("old-mgr"), gone) is None


async def test_stale_transition_changes_nothing_in_redis() -> None:
    inbox, redis = fake_inbox()
    fire = firing()
    await inbox.record(fire)
    await inbox.record(resolved(fire, at=T0 + timedelta(hours=1)))
    before = await dump(redis)
    result = await inbox.record(fire)
    assert not result.current
    assert await dump(redis) == before


@pytest.mark.parametrize("state", list(AlertState))
async def test_each_alert_is_in_exactly_one_state_index(state: AlertState) -> None:
    inbox, _ = fake_inbox()
    fire = firing()
    await inbox.record(fire)
    if state is AlertState.RESOLVED:
        await inbox.record(resolved(fire, at=T0 + timedelta(hours=1)))
    other = next(s for s in AlertState if s is not state)
    assert [x.fingerprint for x in await inbox.list(state=state)] == ["fp-1"]
    assert await inbox.list(state=other) == []


async def test_pages_follow_each_other_without_gaps_or_repeats_ties_included() -> None:
    inbox, _ = fake_inbox()
    # 25 alerts, updated in 5 instants of 5 each: ties in the index's score.
    for i in range(25):
        await inbox.record(firing(f"fp-{i:02d}", at=T0 + timedelta(minutes=i // 5)))
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        alerts, cursor = await inbox.page(Filters(), limit=4, cursor=cursor)
        seen += [alert.fingerprint for alert in alerts]
        pages += 1
        if cursor is None:
            break
    assert pages == 7 and len(seen) == 25 and set(seen) == {f"fp-{i:02d}" for i in range(25)}
    # Newest first: each instant's five before the earlier instants'.
    assert [int(fp[3:]) // 5 for fp in seen] == sorted((i // 5 for i in range(25)), reverse=True)
    # Exactly a page's worth left: the page before the last says so.
    alerts, cursor = await inbox.page(Filters(), limit=25)
    assert len(alerts) == 25 and cursor is None
    with pytest.raises(CursorError):
        await inbox.page(Filters(), cursor="not-a-cursor")


async def test_severity_kind_and_time_filters() -> None:
    inbox, _ = fake_inbox()
    await inbox.record(firing("fp-w", at=T0))
    await inbox.record(firing("fp-c", at=T0 + timedelta(hours=1), severity=Severity.CRITICAL))
    await inbox.record(firing("fp-late", at=T0 + timedelta(hours=2)))

    async def fps(**given: Any) -> list[str]:
        alerts, _ = await inbox.page(Filters(**given))
        return [alert.fingerprint for alert in alerts]

    assert await fps(severity=Severity.CRITICAL) == ["fp-c"]
    assert await fps(kind="threshold") == ["fp-late", "fp-c", "fp-w"]
    assert await fps(kind="fraud") == []
    assert await fps(since=T0 + timedelta(hours=1)) == ["fp-late", "fp-c"]
    assert await fps(until=T0 + timedelta(hours=1)) == ["fp-w"]
    assert await fps(since=T0, until=T0 + timedelta(hours=2)) == ["fp-c", "fp-w"]


async def test_a_resolved_alert_expires_after_the_retention_and_leaves_the_indexes() -> None:
    redis = FakeAsyncRedis(decode_responses=True)
    inbox = Inbox(cast(Redis, redis), retention=timedelta(days=30))
    now = datetime.now(UTC)
    fire = firing("fp-old", at=now - timedelta(days=40))
    await inbox.record(fire)
    await inbox.record(firing("fp-open", at=now - timedelta(days=40)))
    old, open_one = episode_id("fp-old", fire.started_at), episode_id("fp-open", fire.started_at)
    # Firing: kept however old. Resolved 10 days ago: kept 20 days more.
    assert await redis.pttl(episode_key(open_one)) == -1
    await inbox.record(resolved(fire, at=now - timedelta(days=10)))
    left = await redis.pttl(episode_key(old))
    assert timedelta(days=19) < timedelta(milliseconds=left) <= timedelta(days=20)
    # Once it has expired, a listing leaves it out and takes it out of the index it walked.
    await redis.delete(episode_key(old))
    assert [alert.fingerprint for alert in await inbox.list()] == ["fp-open"]
    assert await redis.zscore(INDEX_ALL, old) is None
    assert await inbox.get("fp-old") is None


async def test_an_acknowledgement_holds_for_its_episode_and_only_while_firing() -> None:
    inbox, _ = fake_inbox()
    fire = firing("fp-ack", at=T0)
    await inbox.record(fire)
    assert await inbox.ack("fp-none", by="x", comment="", at=T0) is None
    acked = await inbox.ack("fp-ack", by="mgr-1", comment="on it", at=T0 + timedelta(minutes=5))
    assert acked is not None and acked.acked_by == "mgr-1" and acked.ack_comment == "on it"
    # The first acknowledgement stands; a second person's is added; the same person's again
    # changes nothing.
    again = await inbox.ack("fp-ack", by="mgr-2", comment="me too", at=T0 + timedelta(hours=1))
    assert again is not None and again.acked_by == "mgr-1"
    assert [(a.by, a.comment) for a in again.acknowledgements] == [
        ("mgr-1", "on it"),
        ("mgr-2", "me too"),
    ]
    twice = await inbox.ack("fp-ack", by="mgr-2", comment="", at=T0 + timedelta(hours=2))
    assert twice == again
    open_ones, _ = await inbox.page(Filters(acked=False))
    assert open_ones == []
    # Escalated, then resolved: still acknowledged; resolved, nothing left to acknowledge.
    loud = firing(
        "fp-ack", at=T0 + timedelta(hours=2), started=fire.started_at, severity=Severity.CRITICAL
    )
    escalated = loud.model_copy(update={"escalated_from": Severity.WARNING, "fired_at": None,
                                        "escalated_at": T0 + timedelta(hours=2)})  # fmt: skip
    await inbox.record(escalated)
    await inbox.record(resolved(fire, at=T0 + timedelta(hours=3)))
    entry = await inbox.get("fp-ack")
    assert entry is not None and entry.acked_by == "mgr-1" and entry.state is AlertState.RESOLVED
    with pytest.raises(NotFiring):
        await inbox.ack("fp-ack", by="mgr-1", comment="", at=T0 + timedelta(hours=4))
    # It fires again: a new episode, not acknowledged; the earlier one keeps its own.
    await inbox.record(firing("fp-ack", at=T0 + timedelta(days=1)))
    entry = await inbox.get("fp-ack")
    assert entry is not None and entry.acked_at is None and entry.acknowledgements == []
    earlier = await inbox.get(episode_id("fp-ack", fire.started_at))
    assert earlier is not None and earlier.acked_by == "mgr-1"
    # The channels never see the inbox's own fields.
    shown = entry.notification().model_dump()
    assert {"acked_by", "timeline", "id", "acknowledgements", "org_units"}.isdisjoint(shown)


# --- episodes ----------------------------------------------------------------------------


def test_an_episode_id_is_stable_url_safe_and_names_one_episode() -> None:
    started = T0 - timedelta(days=2)
    first = episode_id("fp-1", started)
    assert first == episode_id("fp-1", started.astimezone(timezone(timedelta(hours=8))))
    assert re.fullmatch(r"[0-9a-f]{20}", first)
    assert first != episode_id("fp-1", started + timedelta(seconds=1))
    assert first != episode_id("fp-2", started)


async def test_an_alert_that_fires_again_has_two_entries_each_with_its_timeline() -> None:
    inbox, _ = fake_inbox()
    first = firing(at=T0)
    await inbox.record(first)
    await inbox.ack("fp-1", by="mgr-1", comment="on it", at=T0 + timedelta(minutes=5))
    await inbox.record(resolved(first, at=T0 + timedelta(hours=1)))
    second = firing(at=T0 + timedelta(days=1), started=T0 + timedelta(hours=20))
    recorded = await inbox.record(second)
    assert recorded.current

    newest, earlier = await inbox.list()
    assert (newest.started_at, newest.state) == (second.started_at, AlertState.FIRING)
    assert (earlier.started_at, earlier.state) == (first.started_at, AlertState.RESOLVED)
    assert newest.id != earlier.id
    assert [(t.what, t.at, t.by) for t in earlier.timeline] == [
        (Happening.FIRED, T0, None),
        (Happening.ACKNOWLEDGED, T0 + timedelta(minutes=5), "mgr-1"),
        (Happening.RESOLVED, T0 + timedelta(hours=1), None),
    ]
    assert [t.what for t in newest.timeline] == [Happening.FIRED]
    assert newest.acked_by is None
    # By fingerprint: the newest episode; by id: either.
    assert await inbox.get("fp-1") == newest
    assert await inbox.get(earlier.id) == earlier
    both, _ = await inbox.page(Filters(fingerprint="fp-1"))
    assert [a.id for a in both] == [newest.id, earlier.id]


async def test_news_of_an_earlier_episode_is_recorded_in_its_entry_and_not_announced() -> None:
    inbox, _ = fake_inbox()
    first = firing(at=T0)
    await inbox.record(first)
    second = firing(at=T0 + timedelta(days=1), started=T0 + timedelta(hours=20))
    await inbox.record(second)
    # The first episode's resolution, consumed after the second firing.
    late = await inbox.record(resolved(first, at=T0 + timedelta(hours=1)))
    assert not late.current
    entry = await inbox.get(episode_id("fp-1", first.started_at))
    assert entry is not None and entry.state is AlertState.RESOLVED
    newest = await inbox.get("fp-1")
    assert newest is not None and newest.started_at == second.started_at
    assert newest.state is AlertState.FIRING


async def test_the_timeline_is_the_same_whatever_order_the_transitions_arrive_in() -> None:
    fire = firing(severity=Severity.INFO)
    transitions = [
        fire,
        escalation(fire, at=T0 + timedelta(hours=1), to=Severity.WARNING),
        escalation(fire, at=T0 + timedelta(hours=2), source=Severity.WARNING),
        resolved(fire, at=T0 + timedelta(hours=3)),
    ]
    timelines = set()
    for order in (transitions, transitions[::-1], [transitions[i] for i in (2, 0, 3, 1)]):
        inbox, _ = fake_inbox()
        for transition in order:
            await inbox.record(transition)
            await inbox.record(transition)  # redelivered: nothing more
        entry = await inbox.get("fp-1")
        assert entry is not None
        assert (entry.state, entry.severity) == (AlertState.RESOLVED, Severity.CRITICAL)
        timelines.add(tuple((t.what, t.at, t.severity) for t in entry.timeline))
    assert timelines == {
        (
            (Happening.FIRED, T0, Severity.INFO),
            (Happening.ESCALATED, T0 + timedelta(hours=1), Severity.WARNING),
            (Happening.ESCALATED, T0 + timedelta(hours=2), Severity.CRITICAL),
            (Happening.RESOLVED, T0 + timedelta(hours=3), None),
        )
    }


async def test_resolved_by_hand_then_by_the_rule_and_fired_again() -> None:
    inbox, redis = fake_inbox()
    fire = firing(at=T0)
    await inbox.record(fire)
    by_hand = T0 + timedelta(hours=1)
    done = await inbox.resolve("fp-1", by="mgr-1", comment="data error", at=by_hand)
    assert done is not None
    assert (done.state, done.resolved_by, done.resolve_comment) == (
        AlertState.RESOLVED,
        "mgr-1",
        "data error",
    )
    assert done.resolved_at == by_hand == done.updated_at
    assert [a.id for a in await inbox.list(state=AlertState.RESOLVED)] == [done.id]
    assert await inbox.list(state=AlertState.FIRING) == []
    assert await redis.pttl(episode_key(done.id)) > 0  # kept for the retention from now on
    with pytest.raises(NotFiring, match="resolved already"):
        await inbox.resolve(done.id, by="mgr-2", comment="", at=by_hand)
    with pytest.raises(NotFiring):
        await inbox.ack(done.id, by="mgr-2", comment="", at=by_hand)
    # A late escalation does not reopen it, and is not news.
    late = await inbox.record(escalation(fire, at=T0 + timedelta(minutes=30)))
    assert not late.current and late.alert.state is AlertState.RESOLVED
    # The rule's own resolution: news for the channels (they never heard of the hand), kept
    # in the timeline after the hand's; who resolved it by hand stays.
    rule_done = await inbox.record(resolved(fire, at=T0 + timedelta(hours=5)))
    assert rule_done.current
    entry = rule_done.alert
    assert (entry.resolved_by, entry.resolved_at) == ("mgr-1", T0 + timedelta(hours=5))
    assert [(t.what, t.by) for t in entry.timeline] == [
        (Happening.FIRED, None),
        (Happening.ESCALATED, None),
        (Happening.RESOLVED_BY_HAND, "mgr-1"),
        (Happening.RESOLVED, None),
    ]
    assert (await inbox.record(resolved(fire, at=T0 + timedelta(hours=5)))).alert == entry
    # A new firing is a new episode.
    await inbox.record(firing(at=T0 + timedelta(days=1), started=T0 + timedelta(hours=20)))
    newest = await inbox.get("fp-1")
    assert newest is not None and newest.state is AlertState.FIRING and newest.resolved_by is None


async def test_resolving_or_acknowledging_what_the_inbox_lacks_finds_nothing() -> None:
    inbox, _ = fake_inbox()
    assert await inbox.resolve("nope", by="x", comment="", at=T0) is None
    assert await inbox.ack("0123456789abcdef0123", by="x", comment="", at=T0) is None


async def test_an_acknowledgement_by_link_says_so() -> None:
    inbox, _ = fake_inbox()
    entry = (await inbox.record(firing())).alert
    acked = await inbox.ack(entry.id, by="mgr-1", comment="", at=T0, via=AckVia.SHARED_LINK)
    assert acked is not None
    assert [(a.by, a.via, a.comment) for a in acked.acknowledgements] == [
        ("mgr-1", AckVia.SHARED_LINK, None)
    ]
    assert acked.timeline[-1].via is AckVia.SHARED_LINK


async def test_the_org_unit_filter_finds_alerts_about_people_in_that_unit_and_below() -> None:
    inbox, _ = fake_inbox()
    await inbox.record(firing("fp-ward", at=T0), org_units=["ward-3", "radiology", "hospital"])
    await inbox.record(firing("fp-lab", at=T0 + timedelta(hours=1)), org_units=["lab", "hospital"])
    await inbox.record(firing("fp-nowhere", at=T0 + timedelta(hours=2)))

    async def fps(**given: Any) -> list[str]:
        alerts, _ = await inbox.page(Filters(**given))
        return [alert.fingerprint for alert in alerts]

    assert await fps(org_unit="hospital") == ["fp-lab", "fp-ward"]
    assert await fps(org_unit="radiology") == ["fp-ward"]
    assert await fps(org_unit="ward-3") == ["fp-ward"]
    assert await fps(org_unit="lab", recipient="mgr-1") == ["fp-lab"]
    assert await fps(org_unit="elsewhere") == []
    assert await fps(fingerprint="fp-lab") == ["fp-lab"]
    assert await fps(fingerprint="fp-lab", org_unit="radiology") == []
    # The unit the subject was in when it fired stays, whatever a later transition says.
    fire = firing("fp-ward", at=T0)
    await inbox.record(resolved(fire, at=T0 + timedelta(hours=3)), org_units=["surgery"])
    assert await fps(org_unit="radiology") == ["fp-ward"]
    assert await fps(org_unit="surgery") == []


# --- the earlier layout ------------------------------------------------------------------


async def _legacy(redis: FakeAsyncRedis, entry: dict[str, Any], *, ttl_ms: int | None) -> None:
    """An entry as the earlier layout wrote it: by fingerprint, indexed by fingerprint."""
    fingerprint, score = entry["fingerprint"], datetime.fromisoformat(entry["updated_at"])
    await redis.set(f"goalwatch:notifier:alert:{fingerprint}", json.dumps(entry), px=ttl_ms)
    for index in (INDEX_ALL, f"goalwatch:notifier:index:state:{entry['state']}"):
        await redis.zadd(index, {fingerprint: score.timestamp()})
    for recipient in entry["recipients"]:
        await redis.zadd(recipient_index(recipient["id"]), {fingerprint: score.timestamp()})


async def test_entries_of_the_earlier_layout_are_moved_to_one_per_episode() -> None:
    inbox, redis = fake_inbox()
    fire = firing("fp-old", at=T0 - timedelta(days=1))
    done = merge(merge(None, fire).alert, resolved(fire, at=T0 - timedelta(hours=1))).alert
    old_resolved = {
        k: v for k, v in done.model_dump(mode="json").items() if k not in _NEW_FIELDS
    } | {"acked_at": "2026-11-19T09:00:00Z", "acked_by": "mgr-1", "ack_comment": "on it"}
    open_one = merge(None, firing("fp-open", at=T0)).alert
    old_firing = {k: v for k, v in open_one.model_dump(mode="json").items() if k not in _NEW_FIELDS}
    await _legacy(redis, old_resolved, ttl_ms=3_600_000)
    await _legacy(redis, old_firing, ttl_ms=None)
    await redis.set("goalwatch:notifier:alert:fp-broken", "{not json")

    assert await inbox.migrate() == 2
    assert await redis.keys("goalwatch:notifier:alert:*") == []
    moved = await inbox.get("fp-old")
    assert moved is not None and moved.id == episode_id("fp-old", fire.started_at)
    assert (moved.state, moved.acked_by, moved.ack_comment) == (
        AlertState.RESOLVED,
        "mgr-1",
        "on it",
    )
    assert [(t.what, t.by) for t in moved.timeline] == [
        (Happening.FIRED, None),
        (Happening.ACKNOWLEDGED, "mgr-1"),
        (Happening.RESOLVED, None),
    ]
    assert [a.by for a in moved.acknowledgements] == ["mgr-1"]
    # Listed as before, by episode id now; the fingerprints are out of the indexes.
    assert [a.fingerprint for a in await inbox.list(recipient="mgr-1")] == ["fp-open", "fp-old"]
    assert await redis.zscore(INDEX_ALL, "fp-old") is None
    assert await redis.zscore(recipient_index("emp-1"), "fp-open") is None
    assert await redis.pttl(episode_key(open_one.id)) == -1  # firing: kept while it fires
    # The rule's transitions carry on in the moved entry: a replayed one changes nothing.
    assert (await inbox.record(resolved(fire, at=T0 - timedelta(hours=1)))).alert == moved
    # Once more (another replica, a restart): nothing left to move.
    assert await inbox.migrate() == 0


async def test_an_entry_written_in_the_new_layout_wins_over_its_earlier_copy() -> None:
    inbox, redis = fake_inbox()
    fire = firing("fp-both", at=T0)
    stale = merge(None, fire).alert
    await _legacy(
        redis,
        {k: v for k, v in stale.model_dump(mode="json").items() if k not in _NEW_FIELDS},
        ttl_ms=None,
    )
    await inbox.record(resolved(fire, at=T0 + timedelta(hours=1)))
    assert await inbox.migrate() == 0
    entry = await inbox.get("fp-both")
    assert entry is not None and entry.state is AlertState.RESOLVED
    assert await redis.exists("goalwatch:notifier:alert:fp-both") == 0


_NEW_FIELDS = set(InboxAlert.model_fields) - {"updated_at", "acked_at", "acked_by", "ack_comment"}
_NEW_FIELDS -= set(AlertNotification.model_fields)


# --- comments ----------------------------------------------------------------------------


async def test_comments_stay_with_the_episode_through_its_resolution_and_announce_it() -> None:
    inbox, _ = fake_inbox()
    fire = firing()
    entry = (await inbox.record(fire)).alert
    # An async generator: closed below, so its Redis subscription ends with the test.
    listening = cast(AsyncGenerator[InboxAlert | None, None], inbox.updates())
    assert await anext(listening) is None
    said = await inbox.comment(
        entry.id, by="mgr-1", name="Dr Gao", text="calling her", at=T0 + timedelta(hours=1)
    )
    assert said is not None
    assert [(c.id, c.by, c.name, c.text) for c in said.comments] == [
        ("1", "mgr-1", "Dr Gao", "calling her")
    ]
    # Announced on the stream, and it does not move the alert up the inbox.
    assert (await anext(listening)) == said
    assert said.updated_at == entry.updated_at
    await listening.aclose()

    done = (await inbox.record(resolved(fire, at=T0 + timedelta(days=1)))).alert
    assert done.state is AlertState.RESOLVED
    assert [c.text for c in done.comments] == ["calling her"]
    again = await inbox.comment(
        fire.fingerprint, by="emp-1", name=None, text="fixed", at=T0 + timedelta(days=2)
    )
    assert again is not None and [c.id for c in again.comments] == ["1", "2"]
    assert await inbox.comment("nope", by="x", name=None, text="t", at=T0) is None


def test_an_entry_keeps_its_latest_comments_only() -> None:
    entry = merge(None, firing()).alert
    for number in range(MAX_COMMENTS + 5):
        entry = commented(entry, by="mgr-1", name=None, text=str(number), at=T0)
    assert len(entry.comments) == MAX_COMMENTS
    assert entry.comments[0].text == "5"
    assert entry.comments[-1].id == str(MAX_COMMENTS + 5)
