"""The operator's APIs on the real stack: each service's consumers' backlog, dead letters
listed by goals and replayed by the service that publishes their origin subject
(docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from goalwatch.consumers import dead_letter
from goalwatch.contracts import MetricRecorded, subjects
from goalwatch.dev.stack import Stack
from tests.integration.helpers import (
    await_drained,
    first_message,
    make_dead_letter,
    post_events,
    rework_event,
    unique,
)

pytestmark = pytest.mark.integration

PARTITIONS = 16
"""GOALWATCH_METRICS_PARTITIONS of the test stack (the default)."""


def _letters(http: httpx.Client, stack: Stack, **params: Any) -> list[dict[str, Any]]:
    answer = http.get(
        f"{stack.settings.url('goals')}/v1/dead-letters",
        params=params,
        headers=stack.auth_headers("ops"),
    )
    assert answer.status_code == 200, answer.text
    letters: list[dict[str, Any]] = answer.json()["dead_letters"]
    return letters


def _stored(stack: Stack, stream: str, sequence: int) -> bytes:
    async def get() -> bytes:
        nc = await nats.connect(stack.settings.nats_url)
        try:
            return (await nc.jetstream().get_msg(stream, sequence)).data or b""
        finally:
            await nc.close()

    return asyncio.run(get())


def test_a_dead_letter_is_listed_and_replayed_once_through_ingestion_again(stack: Stack) -> None:
    marker = unique("ops-bad")
    sequence = make_dead_letter(stack.settings.nats_url, marker)
    goals = stack.settings.url("goals")
    ops = stack.auth_headers("ops")
    with stack.client(timeout=15.0) as http:
        [letter] = [one for one in _letters(http, stack) if one["sequence"] == sequence]
        assert letter["origin_subject"] == subjects.METRICS_IN
        assert letter["subject"] == subjects.DEADLETTER_METRICS
        assert letter["reason"] and marker in letter["payload"]
        assert letter["replayable"] is True and letter["replayed"] is None

        replayed = http.post(f"{goals}/v1/dead-letters/{sequence}/replay", headers=ops)
        assert replayed.status_code == 200, replayed.text
        done = replayed.json()["replayed"]
        assert done["stream"] == subjects.STREAM_INGEST
        assert done["subject"] == subjects.METRICS_IN
        assert done["by"] == "person:ops"
        # The very body, back where it came from, without the original message id.
        assert _stored(stack, done["stream"], done["sequence"]) == letter["payload"].encode()

        # Ingestion read it again and, the event being still invalid, dead-lettered it anew.
        _, again = first_message(
            stack.settings.nats_url,
            subjects.DEADLETTER_METRICS,
            stream=subjects.STREAM_DEADLETTER,
            match=lambda found: (
                marker in found["payload"] and found.get("origin_sequence") == done["sequence"]
            ),
        )
        assert again > sequence

        # Once: a second click gets 409, and the list says when and by whom it was replayed.
        twice = http.post(f"{goals}/v1/dead-letters/{sequence}/replay", headers=ops)
        assert twice.status_code == 409, twice.text
        assert "already replayed" in twice.json()["detail"]
        [listed] = [one for one in _letters(http, stack) if one["sequence"] == sequence]
        assert listed["replayed"] == done

        # Older pages: the cursor goes below the first page.
        page = http.get(f"{goals}/v1/dead-letters", params={"limit": 1}, headers=ops).json()
        assert len(page["dead_letters"]) == 1
        if page["next_cursor"] is not None:
            older = http.get(
                f"{goals}/v1/dead-letters",
                params={"limit": 1, "cursor": page["next_cursor"]},
                headers=ops,
            ).json()["dead_letters"]
            assert older and older[0]["sequence"] < page["dead_letters"][0]["sequence"]

        missing = http.post(f"{goals}/v1/dead-letters/999999999/replay", headers=ops)
        assert missing.status_code == 404, missing.text


def test_an_alerts_dead_letter_is_replayed_once_by_the_evaluator(stack: Stack) -> None:
    marker = unique("ops-alert")
    body = json.dumps({"not": "an alert", "marker": marker}).encode()
    asyncio.run(_publish(stack, subjects.ALERTS_FIRED, body))
    _, sequence = first_message(
        stack.settings.nats_url,
        subjects.DEADLETTER_ALERTS,
        stream=subjects.STREAM_DEADLETTER,
        match=lambda letter: marker in letter["payload"],
    )
    ops = stack.auth_headers("ops")
    evaluator = f"{stack.settings.url('evaluator')}/v1/evaluator/dead-letters/{sequence}/replay"
    with stack.client(timeout=15.0) as http:
        [letter] = [one for one in _letters(http, stack) if one["sequence"] == sequence]
        assert letter["replayable"] is True and letter["replayed_by"] == "evaluator"

        # Goals' NATS user may not publish alerts, nor may ingestion's: each says who does.
        for wrong in (
            f"{stack.settings.url('goals')}/v1/dead-letters/{sequence}/replay",
            f"{stack.settings.url('ingestion')}/v1/ingestion/dead-letters/{sequence}/replay",
        ):
            refused = http.post(wrong, headers=ops)
            assert refused.status_code == 409, refused.text
            assert f"/v1/evaluator/dead-letters/{sequence}/replay" in refused.json()["detail"]

        replayed = http.post(evaluator, headers=ops)
        assert replayed.status_code == 200, replayed.text
        done = replayed.json()["replayed"]
        assert done["service"] == "evaluator" and done["by"] == "person:ops"
        assert (done["stream"], done["subject"]) == (subjects.STREAM_ALERTS, subjects.ALERTS_FIRED)
        assert _stored(stack, done["stream"], done["sequence"]) == body

        twice = http.post(evaluator, headers=ops)
        assert twice.status_code == 409, twice.text
        assert "already replayed" in twice.json()["detail"]
        [listed] = [one for one in _letters(http, stack) if one["sequence"] == sequence]
        assert listed["replayed"] == done


def test_a_validated_event_dead_letter_is_replayed_by_ingestion_and_evaluated_once(
    stack: Stack,
) -> None:
    """The evaluator gave up on the third breaching day's event; replayed through ingestion
    onto its partition, it is evaluated once: the alert fires, once."""
    subject = unique("ops-recorded")
    ingestion = stack.settings.url("ingestion")
    with stack.client(timeout=15.0) as http:
        post_events(http, ingestion, [rework_event(subject, day, 0.3) for day in (1, 2)])
    event = MetricRecorded.model_validate(rework_event(subject, 3, 0.3))
    partition = subjects.metrics_partition(subject, PARTITIONS)
    origin = subjects.metrics_partition_subject(partition)
    letter = dead_letter(
        origin_subject=origin,
        reason=f"evaluating '{subject}' failed at event '{event.id}': gave up after 10 deliveries",
        payload=event.model_dump_json().encode(),
    )
    asyncio.run(_publish(stack, subjects.DEADLETTER_METRICS, letter.model_dump_json().encode()))
    _, sequence = first_message(
        stack.settings.nats_url,
        subjects.DEADLETTER_METRICS,
        stream=subjects.STREAM_DEADLETTER,
        match=lambda found: found["origin_subject"] == origin and subject in found["payload"],
    )
    ops = stack.auth_headers("ops")
    replay = f"{ingestion}/v1/ingestion/dead-letters/{sequence}/replay"
    with stack.client(timeout=15.0) as http:
        [listed] = [one for one in _letters(http, stack) if one["sequence"] == sequence]
        assert listed["replayable"] is True and listed["replayed_by"] == "ingestion"
        refused = http.post(
            f"{stack.settings.url('evaluator')}/v1/evaluator/dead-letters/{sequence}/replay",
            headers=ops,
        )
        assert refused.status_code == 409, refused.text
        assert f"/v1/ingestion/dead-letters/{sequence}/replay" in refused.json()["detail"]

        replayed = http.post(replay, headers=ops)
        assert replayed.status_code == 200, replayed.text
        done = replayed.json()["replayed"]
        assert done["service"] == "ingestion"
        assert (done["stream"], done["subject"]) == (subjects.STREAM_METRICS, origin)
        again = http.post(replay, headers=ops)
        assert again.status_code == 409, again.text

    fired, _ = first_message(
        stack.settings.nats_url,
        subjects.ALERTS_FIRED,
        stream=subjects.STREAM_ALERTS,
        match=lambda alert: _about(alert) == subject,
    )
    await_drained(stack.settings.nats_url, timeout=60)
    alerts = asyncio.run(_all(stack, subjects.ALERTS_FIRED, subjects.STREAM_ALERTS))
    assert [a["fingerprint"] for a in alerts if _about(a) == subject] == [fired["fingerprint"]]


def _about(alert: dict[str, Any]) -> str | None:
    """Whom an alert is about; None for what is no alert (other tests publish some)."""
    found = alert.get("subject")
    return found if isinstance(found, str) else None


async def _publish(stack: Stack, subject: str, body: bytes) -> None:
    nc = await nats.connect(stack.settings.nats_url)
    try:
        await nc.jetstream().publish(subject, body)
    finally:
        await nc.close()


async def _all(stack: Stack, subject: str, stream: str) -> list[dict[str, Any]]:
    """Every message on ``subject`` stored so far, in order."""
    nc = await nats.connect(stack.settings.nats_url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream, subjects_filter=subject)).state
        stored = (state.subjects or {}).get(subject, 0)
        sub = await js.subscribe(
            subject, stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        found: list[dict[str, Any]] = []
        for _ in range(stored):
            msg = await sub.next_msg(timeout=10)
            found.append(json.loads(msg.data))
        return found
    finally:
        await nc.close()


def test_each_service_tells_its_consumers_backlog(stack: Stack) -> None:
    expected = {
        "ingestion": subjects.STREAM_INGEST,
        "evaluator": subjects.STREAM_METRICS,
        "notifier": subjects.STREAM_ALERTS,
    }
    with stack.client(timeout=15.0) as http:
        for service, stream in expected.items():
            url = f"{stack.settings.url(service)}/v1/{service}/consumers"
            deadline = time.monotonic() + 30
            while True:
                answer = http.get(url, headers=stack.auth_headers("ops"))
                assert answer.status_code == 200, answer.text
                body = answer.json()
                if any(c["stream"] == stream for c in body["consumers"]):
                    break
                assert time.monotonic() < deadline, f"{service}: no consumer of {stream}: {body}"
                time.sleep(0.5)
            assert body["service"] == service
            for consumer in body["consumers"]:
                assert consumer["pending"] >= 0 and consumer["ack_pending"] >= 0
                assert 0 <= consumer["age_seconds"] <= 3 * body["every_seconds"]


def test_only_operators_read_or_replay(stack: Stack) -> None:
    with stack.client(timeout=15.0) as http:
        for caller in ("zhang-wei", "wang-fang"):
            headers = stack.auth_headers(caller)
            goals = stack.settings.url("goals")
            assert http.get(f"{goals}/v1/dead-letters", headers=headers).status_code == 403
            assert (
                http.post(f"{goals}/v1/dead-letters/1/replay", headers=headers).status_code == 403
            )
            for service in ("evaluator", "ingestion"):
                url = f"{stack.settings.url(service)}/v1/{service}/dead-letters/1/replay"
                assert http.post(url, headers=headers).status_code == 403
            notifier = stack.settings.url("notifier")
            consumers = http.get(f"{notifier}/v1/notifier/consumers", headers=headers)
            assert consumers.status_code == 403


def test_a_message_cut_in_its_dead_letter_is_replayed_whole(stack: Stack) -> None:
    marker = unique("ops-huge")

    async def publish() -> bytes:
        nc = await nats.connect(stack.settings.nats_url)
        try:
            head = b'{"id": "' + marker.encode() + b'", "metric": "m", "value": 1, "pad": "'
            # Escaped quotes double in the dead letter's JSON: the whole body cannot fit in it.
            payload = head + b'\\"' * ((nc.max_payload - len(head) - 1024) // 2) + b'"}'
            await nc.jetstream().publish(subjects.METRICS_IN, payload)
            return payload
        finally:
            await nc.close()

    payload = asyncio.run(publish())
    _, sequence = first_message(
        stack.settings.nats_url,
        subjects.DEADLETTER_METRICS,
        stream=subjects.STREAM_DEADLETTER,
        match=lambda letter: marker in letter["payload"],
    )
    goals = stack.settings.url("goals")
    with stack.client(timeout=15.0) as http:
        [letter] = [one for one in _letters(http, stack) if one["sequence"] == sequence]
        assert letter["payload_truncated"] is True and letter["payload_shortened"] is True
        assert letter["payload_bytes"] == len(payload)
        replayed = http.post(
            f"{goals}/v1/dead-letters/{sequence}/replay", headers=stack.auth_headers("ops")
        )
        assert replayed.status_code == 200, replayed.text
    done = replayed.json()["replayed"]
    assert _stored(stack, done["stream"], done["sequence"]) == payload
