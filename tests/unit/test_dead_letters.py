"""Replaying a dead letter, without NATS: the content type ingestion needs, the whole body of
a cut message, no message id, and subjects the replaying user may not publish on refused."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from goalwatch import dead_letters
from goalwatch.contracts import DeadLetter, subjects
from goalwatch.nats_users import GOALS, user


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"id": "e1"}', "application/json"),
        ("not json at all", "application/json"),
        ('{"specversion": "1.0", "id": "e1"}', "application/cloudevents+json"),
        ('[{"specversion": "1.0"}]', "application/cloudevents-batch+json"),
        ('[{"id": "e1"}]', "application/json"),
    ],
)
def test_the_content_type_is_what_ingestion_reads_the_payload_as(
    payload: str, expected: str
) -> None:
    assert dead_letters.content_type(payload) == expected


class Stored:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.subject = "goalwatch.deadletter.v1.metrics"


class FakeJetStream:
    def __init__(self, messages: dict[tuple[str, int], bytes]) -> None:
        self.messages = messages
        self.published: list[tuple[str, bytes, dict[str, str] | None]] = []

    async def get_msg(self, stream: str, seq: int) -> Stored:
        if (stream, seq) not in self.messages:
            raise NotFoundError
        return Stored(self.messages[(stream, seq)])

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None, **_: Any
    ) -> PubAck:
        self.published.append((subject, payload, headers))
        return PubAck(stream=subjects.STREAM_INGEST, seq=77)


def letter(**fields: Any) -> DeadLetter:
    return DeadLetter.model_validate(
        {
            "origin_subject": subjects.METRICS_IN,
            "reason": "bad",
            "payload": '{"id": "e1"}',
            "at": datetime(2026, 12, 1, tzinfo=UTC),
            **fields,
        }
    )


def replay(js: FakeJetStream, dead: DeadLetter) -> dead_letters.Republished:
    may = user(GOALS).permissions.may_publish
    return asyncio.run(dead_letters.replay(js, dead, may_publish=may))  # type: ignore[arg-type]


def test_a_replay_publishes_the_body_on_its_origin_without_a_message_id() -> None:
    js = FakeJetStream({})
    done = replay(js, letter())
    assert done == dead_letters.Republished(subjects.METRICS_IN, subjects.STREAM_INGEST, 77)
    [(subject, body, headers)] = js.published
    assert (subject, body) == (subjects.METRICS_IN, b'{"id": "e1"}')
    assert headers == {"content-type": "application/json"}


def test_a_cut_message_is_replayed_whole_from_its_origin_stream() -> None:
    whole = json.dumps({"id": "e1", "pad": "x" * 100}).encode()
    js = FakeJetStream({(subjects.STREAM_INGEST, 5): whole})
    cut = letter(payload=whole[:10].decode(), payload_truncated=True,
                 origin_stream=subjects.STREAM_INGEST, origin_sequence=5)  # fmt: skip
    replay(js, cut)
    assert js.published[0][1] == whole


def test_a_cut_message_no_longer_in_its_stream_is_not_replayed() -> None:
    js = FakeJetStream({})
    cut = letter(payload="{", payload_truncated=True, origin_stream=subjects.STREAM_INGEST,
                 origin_sequence=5)  # fmt: skip
    with pytest.raises(dead_letters.NotReplayable, match="no longer holds"):
        replay(js, cut)
    assert js.published == []


@pytest.mark.parametrize(
    "origin", [subjects.ALERTS_FIRED, subjects.ALERTS_RESOLVED, "goalwatch.metrics.recorded.v1.3"]
)
def test_goals_does_not_replay_what_only_the_evaluator_or_ingestion_publishes(
    origin: str,
) -> None:
    js = FakeJetStream({})
    with pytest.raises(dead_letters.NotReplayable, match="NATS operator"):
        replay(js, letter(origin_subject=origin))
    assert js.published == []


def test_goals_replays_its_own_changes() -> None:
    js = FakeJetStream({})
    replay(js, letter(origin_subject=subjects.PERSON_CHANGED))
    assert js.published[0][0] == subjects.PERSON_CHANGED


@pytest.mark.parametrize(
    ("origin", "service"),
    [
        (subjects.ALERTS_FIRED, "evaluator"),
        (subjects.ALERTS_RESOLVED, "evaluator"),
        (subjects.metrics_partition_subject(0), "ingestion"),
        (subjects.metrics_partition_subject(15), "ingestion"),
        (subjects.METRICS_IN, "goals"),
        (subjects.PERSON_CHANGED, "goals"),
        (subjects.ORG_UNIT_CHANGED, "goals"),
        # Fired timers are published by the server alone: the NATS operator replays them.
        ("goalwatch.timers.v1.fired.notifier", None),
    ],
)
def test_a_dead_letter_is_replayed_by_the_service_whose_user_publishes_its_origin(
    origin: str, service: str | None
) -> None:
    assert dead_letters.replayer(origin) == service
    if service is not None:
        # Derived from the permissions, which stay as strict: it is the only one.
        others = [name for name in ("goals", "ingestion", "evaluator", "notifier")
                  if name != service and user(name).permissions.may_publish(origin)]  # fmt: skip
        assert others == []
