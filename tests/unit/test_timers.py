"""The message that arms a durable timer (no server: what is published)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from goalwatch.contracts import TimerFired
from goalwatch.timers import TimerKey, schedule

KEY = TimerKey(owner="evaluator", name="absence", key="abc123")


def test_the_schedule_targets_the_owners_fired_subject_and_carries_the_body() -> None:
    at = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    arm = schedule(KEY, at, data={"rule_id": "r"}, now=at - timedelta(hours=1))
    assert arm.subject == "goalwatch.timers.v1.schedule.evaluator.absence.abc123"
    assert arm.headers["Nats-Schedule"] == "@at 2026-12-02T10:00:00.000Z"
    assert arm.headers["Nats-Schedule-Target"] == "goalwatch.timers.v1.fired.evaluator"
    body = TimerFired.model_validate_json(arm.body)
    assert (body.key, body.due_at, body.data) == ("abc123", at, {"rule_id": "r"})


def test_a_deadline_between_milliseconds_is_scheduled_at_the_next_one_never_before() -> None:
    at = datetime(2026, 12, 2, 10, 0, 0, 123_001, tzinfo=UTC)
    assert schedule(KEY, at).headers["Nats-Schedule"] == "@at 2026-12-02T10:00:00.124Z"
    exact = datetime(2026, 12, 2, 10, 0, 0, 123_000, tzinfo=UTC)
    assert schedule(KEY, exact).headers["Nats-Schedule"] == "@at 2026-12-02T10:00:00.123Z"
    late_in_second = datetime(2026, 12, 2, 10, 0, 59, 999_500, tzinfo=UTC)
    assert schedule(KEY, late_in_second).headers["Nats-Schedule"] == "@at 2026-12-02T10:01:00.000Z"


def test_other_offsets_are_written_in_utc() -> None:
    at = datetime(2026, 12, 2, 18, 0, tzinfo=timezone(timedelta(hours=8)))
    assert schedule(KEY, at).headers["Nats-Schedule"] == "@at 2026-12-02T10:00:00.000Z"


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule(KEY, datetime(2026, 12, 2, 10, 0))
