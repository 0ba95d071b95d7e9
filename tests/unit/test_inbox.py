"""Inbox: how transitions merge, and ordering/filters over fakeredis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
    Filters,
    Inbox,
    NotFiring,
    alert_key,
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


def test_a_new_episode_replaces_the_old_one() -> None:
    old = firing(at=T0)
    gone = merge(merge(None, old).alert, resolved(old, at=T0 + timedelta(hours=1))).alert
    again = firing(at=T0 + timedelta(days=1), started=T0 + timedelta(hours=20))
    result = merge(gone, again)
    assert result.current
    assert result.alert.state is AlertState.FIRING
    assert result.alert.started_at == again.started_at
    assert result.alert.resolved_at is None
    # And the old episode's resolution arriving late does not reopen history.
    stale = merge(result.alert, resolved(old, at=T0 + timedelta(hours=1)))
    assert not stale.current
    assert stale.alert == result.alert


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
    assert late.alert == entry
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


def test_a_new_episode_forgets_the_old_escalation() -> None:
    old = firing(at=T0)
    entry = merge(merge(None, old).alert, escalation(old, at=T0 + timedelta(hours=5))).alert
    entry = merge(entry, resolved(old, at=T0 + timedelta(hours=6))).alert
    again = merge(entry, firing(at=T0 + timedelta(days=1), started=T0 + timedelta(hours=20)))
    assert again.current
    assert again.alert.severity is Severity.WARNING
    assert again.alert.escalated_at is None and again.alert.escalated_from is None
    # An escalation of the old episode arriving now changes nothing.
    stale = merge(again.alert, escalation(old, at=T0 + timedelta(hours=5)))
    assert stale == type(stale)(alert=again.alert, current=False)


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


async def test_recipient_dropped_in_a_new_episode_leaves_their_index() -> None:
    inbox, redis = fake_inbox()
    await inbox.record(firing(at=T0, recipients=[person("emp-1"), person("old-mgr")]))
    await inbox.record(
        firing(
            at=T0 + timedelta(days=3), started=T0 + timedelta(days=2), recipients=[person("emp-1")]
        )
    )
    assert await redis.zscore(recipient_index("old-mgr"), "fp-1") is None
    assert await inbox.list(recipient="old-mgr") == []


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
    # Firing: kept however old. Resolved 10 days ago: kept 20 days more.
    assert await redis.pttl(alert_key("fp-open")) == -1
    await inbox.record(resolved(fire, at=now - timedelta(days=10)))
    left = await redis.pttl(alert_key("fp-old"))
    assert timedelta(days=19) < timedelta(milliseconds=left) <= timedelta(days=20)
    # Once it has expired, a listing leaves it out and takes it out of the index it walked.
    await redis.delete(alert_key("fp-old"))
    assert [alert.fingerprint for alert in await inbox.list()] == ["fp-open"]
    assert await redis.zscore(INDEX_ALL, "fp-old") is None


async def test_an_acknowledgement_holds_for_its_episode_and_only_while_firing() -> None:
    inbox, _ = fake_inbox()
    fire = firing("fp-ack", at=T0)
    await inbox.record(fire)
    assert await inbox.ack("fp-none", by="x", comment="", at=T0) is None
    acked = await inbox.ack("fp-ack", by="mgr-1", comment="on it", at=T0 + timedelta(minutes=5))
    assert acked is not None and acked.acked_by == "mgr-1" and acked.ack_comment == "on it"
    # The first acknowledgement stands.
    again = await inbox.ack("fp-ack", by="mgr-2", comment="me too", at=T0 + timedelta(hours=1))
    assert again is not None and again.acked_by == "mgr-1"
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
    # It fires again: a new episode, not acknowledged.
    await inbox.record(firing("fp-ack", at=T0 + timedelta(days=1)))
    entry = await inbox.get("fp-ack")
    assert entry is not None and entry.acked_at is None
    # The channels never see the inbox's own fields.
    assert "acked_by" not in entry.notification().model_dump()
