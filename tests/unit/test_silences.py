"""Silences: matchers on an alert's labels, states over time, the store over fakeredis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from fakeredis import FakeAsyncRedis
from pydantic import ValidationError
from redis.asyncio import Redis

from goalwatch.routing.matchers import alert_labels, parse_matcher
from services.notifier.silences import Matcher, SilenceCreate, Silences, SilenceState
from tests.unit.test_inbox import firing

T0 = datetime.now(UTC)


def matcher(text: str) -> Matcher:
    return Matcher.model_validate(parse_matcher(text))


def test_matchers_on_the_alerts_labels() -> None:
    labels = alert_labels(firing("fp-1", rule="rework-high"))
    assert labels["rule"] == "rework-high" and labels["severity"] == "warning"
    assert matcher("rule=rework-high").matches(labels)
    assert not matcher("rule!=rework-high").matches(labels)
    assert matcher("rule=~rework-.*").matches(labels)
    assert not matcher("rule=~rework").matches(labels)  # a regex matches the whole value
    assert matcher("department!~.+").matches({})  # a missing label is ""
    with pytest.raises(ValueError, match="is not a matcher"):
        parse_matcher("rule")
    with pytest.raises(ValidationError, match="not a regular expression"):
        matcher("rule=~(")


async def test_a_silence_is_pending_active_then_expired_and_matches_only_while_active() -> None:
    store = Silences(
        cast(Redis, FakeAsyncRedis(decode_responses=True)), retention=timedelta(days=1)
    )
    asked = SilenceCreate(
        matchers=[matcher("rule=rework-high")],
        starts_at=T0 + timedelta(hours=1),
        ends_at=T0 + timedelta(hours=2),
        comment="audit",
    )
    silence = await store.create(asked, author="hr.li", now=T0)
    alert = firing("fp-1", rule="rework-high")
    assert silence.state_at(T0) is SilenceState.PENDING
    assert await store.matching(alert, T0) is None
    at = T0 + timedelta(minutes=90)
    assert (await store.matching(alert, at)) == silence
    assert await store.matching(firing("fp-2", rule="other"), at) is None
    ended = await store.expire(silence.id, at)
    assert ended is not None and ended.state_at(at) is SilenceState.EXPIRED
    assert await store.matching(alert, at) is None
    # Kept for the retention after its end, then dropped.
    assert [s.id for s in await store.all(at + timedelta(hours=23))] == [silence.id]
    assert await store.all(at + timedelta(days=2)) == []
    with pytest.raises(ValidationError, match="in the past"):
        SilenceCreate(matchers=[matcher("rule=x")], ends_at=T0 - timedelta(1), comment="c")
