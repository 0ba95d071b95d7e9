"""Small builders shared by the integration tests."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import httpx
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from goalwatch.contracts import subjects
from goalwatch.settings import ServiceSettings

DAY0 = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)

# Every durable consumer of the pipeline, upstream first: (stream, consumer name).
PIPELINE_CONSUMERS = (
    (subjects.STREAM_PEOPLE, "evaluator-directory"),
    (subjects.STREAM_INGEST, "ingestion"),
    # One consumer per partition of the metric events (the stacks' default number).
    *(
        (subjects.STREAM_METRICS, f"evaluator-p{partition}")
        for partition in range(ServiceSettings.model_fields["metrics_partitions"].default)
    ),
    (subjects.STREAM_GOALS, "evaluator-impact"),
    (subjects.STREAM_GOALS, "evaluator-goal-overdue"),
    (subjects.STREAM_TIMERS, "evaluator-timers"),
    (subjects.STREAM_ALERTS, "notifier-alerts"),
    (subjects.STREAM_TIMERS, "notifier-timers"),
)


def unique(prefix: str) -> str:
    """An id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rework_event(subject: str, day: int, value: float, **extra: Any) -> dict[str, Any]:
    """A ``report_rework_rate`` event for ``subject`` on day ``day`` (1-based) of November 2026."""
    time = DAY0 + timedelta(days=day - 1)
    return {
        "id": f"{subject}-d{day}",
        "metric": "report_rework_rate",
        "value": value,
        "time": time.isoformat(),
        "subject": subject,
        "source": "his",
        "labels": {"department": "radiology"},
        **extra,
    }


def add_doctor(client: httpx.Client, goals_url: str) -> tuple[str, str]:
    """A department head and a doctor reporting to them; returns (doctor id, head id)."""
    head, doctor = unique("head"), unique("doctor")
    people = [
        {"id": head, "name": f"Head {head}", "email": f"{head}@example.org"},
        {"id": doctor, "name": f"Dr {doctor}", "manager_id": head, "department": "radiology"},
    ]
    response = client.post(f"{goals_url}/v1/people", json=people)
    assert response.status_code == 200, response.text
    return doctor, head


def post_events(
    client: httpx.Client, ingestion_url: str, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Post events one request each (in order) and return the last answer."""
    answer: dict[str, Any] = {}
    for event in events:
        response = client.post(f"{ingestion_url}/v1/events", json=event)
        assert response.status_code == 200, response.text
        answer = response.json()
    return answer


def inbox(client: httpx.Client, notifier_url: str, **filters: str) -> list[dict[str, Any]]:
    """The notifier's inbox with ``filters`` (recipient, rule, state)."""
    response = client.get(f"{notifier_url}/v1/alerts", params=filters)
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


def await_notification(nats_url: str, *, subject_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait for the notifier's record of a delivery about ``subject_id`` and return it."""
    return asyncio.run(_await_notification(nats_url, subject_id, wait=timeout))


async def _await_notification(nats_url: str, subject_id: str, *, wait: float) -> dict[str, Any]:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(
            subjects.NOTIFICATIONS_SENT,
            stream=subjects.STREAM_NOTIFICATIONS,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        while True:
            msg = await sub.next_msg(timeout=wait)
            notification: dict[str, Any] = json.loads(msg.data)
            if any(r["id"] == subject_id for r in notification["recipients"]):
                await sub.unsubscribe()
                return notification
    finally:
        await nc.close()


def await_drained(nats_url: str, *, timeout: float = 30.0) -> None:
    """Wait until every pipeline consumer has handled and acknowledged all it was given.

    Checked upstream first, each once it is drained: a service acknowledges a message only after
    publishing what follows from it, so once the evaluator is drained every alert its events
    cause is in the ALERTS stream, and once the notifiers are drained every alert is delivered.
    Call it after the events are accepted; fails the test after ``timeout``.
    """
    asyncio.run(_await_drained(nats_url, wait=timeout))


async def _await_drained(nats_url: str, *, wait: float) -> None:
    deadline = time.monotonic() + wait
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for stream, consumer in PIPELINE_CONSUMERS:
            while True:
                info = await js.consumer_info(stream, consumer)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"consumer {consumer} on {stream} did not drain in {wait} s: "
                        f"{info.num_pending} pending, {info.num_ack_pending} unacknowledged, "
                        f"{info.num_redelivered} redelivered"
                    )
                await asyncio.sleep(0.02)  # the server's counters: there is no event to await
    finally:
        await nc.close()


def alerts_about(
    nats_url: str, subject_id: str, *, timeout: float = 10.0
) -> list[tuple[str, dict[str, Any]]]:
    """Every alert in the ALERTS stream about ``subject_id``, in order, as (NATS subject, alert):
    ``goalwatch.alerts.fired.v1`` or ``goalwatch.alerts.resolved.v1``."""
    return asyncio.run(_alerts_about(nats_url, subject_id, wait=timeout))


async def _alerts_about(
    nats_url: str, subject_id: str, *, wait: float
) -> list[tuple[str, dict[str, Any]]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(subjects.STREAM_ALERTS)).state.last_seq
        if last == 0:
            return []
        # An ordered ephemeral consumer over the whole stream: it reads, it does not take.
        sub = await js.subscribe(
            "goalwatch.alerts.*.v1",
            stream=subjects.STREAM_ALERTS,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        found: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + wait
        try:
            while True:
                msg = await sub.next_msg(timeout=max(0.1, deadline - time.monotonic()))
                alert: dict[str, Any] = json.loads(msg.data)
                # .get: the stream may hold what is no alert (a test's junk, dead-lettered).
                if isinstance(alert, dict) and alert.get("subject") == subject_id:
                    found.append((msg.subject, alert))
                if msg.metadata.sequence.stream >= last:
                    return found
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()


def await_alerts(
    nats_url: str, subject_id: str, *, count: int, timeout: float = 30.0
) -> list[tuple[str, dict[str, Any]]]:
    """The first ``count`` alerts about ``subject_id`` in the ALERTS stream, as
    :func:`alerts_about` gives them, waiting for them to be published (timers included)."""
    return asyncio.run(_await_alerts(nats_url, subject_id, count=count, wait=timeout))


async def _await_alerts(
    nats_url: str, subject_id: str, *, count: int, wait: float
) -> list[tuple[str, dict[str, Any]]]:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(
            "goalwatch.alerts.*.v1",
            stream=subjects.STREAM_ALERTS,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        found: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + wait
        try:
            while len(found) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} of {count} alerts came: {found}")
                try:
                    msg = await sub.next_msg(timeout=left)
                except TimeoutError:
                    continue
                alert: dict[str, Any] = json.loads(msg.data)
                # .get: the stream may hold what is no alert (a test's junk, dead-lettered).
                if isinstance(alert, dict) and alert.get("subject") == subject_id:
                    found.append((msg.subject, alert))
            return found
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()


class Lines:
    """The lines a child process writes, each read with a deadline.

    A thread reads the pipe, so a child that prints nothing more fails the test in time
    instead of blocking it.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in stream:
                self._lines.put(line)
            self._lines.put(None)  # end of output

        threading.Thread(target=pump, name="child-output", daemon=True).start()

    def next(self, timeout: float = 10.0) -> str:
        """The next line; fails the test if none comes within ``timeout`` or output ended."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no output line within {timeout} s; so far: {self.seen}"
            ) from None
        if line is None:
            raise AssertionError(f"the process ended its output; so far: {self.seen}")
        self.seen.append(line)
        return line


def first_message(
    nats_url: str,
    subject: str,
    *,
    stream: str,
    match: Callable[[dict[str, Any]], bool],
    timeout: float = 30.0,
) -> tuple[dict[str, Any], int]:
    """The first message on ``subject`` for which ``match`` holds, with its stream sequence;
    waits for it to be stored, failing the test after ``timeout``."""
    return asyncio.run(_first_message(nats_url, subject, stream, match, wait=timeout))


async def _first_message(
    nats_url: str,
    subject: str,
    stream: str,
    match: Callable[[dict[str, Any]], bool],
    *,
    wait: float,
) -> tuple[dict[str, Any], int]:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(
            subject, stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message on {subject} within {wait} s")
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                continue
            doc: dict[str, Any] = json.loads(msg.data)
            if match(doc):
                return doc, int(msg.metadata.sequence.stream)
    finally:
        await nc.close()


def replay_dead_letter(nats_url: str, sequence: int) -> None:
    """Republish a dead letter's payload to its origin subject, as docs/operations.md says."""
    asyncio.run(_replay_dead_letter(nats_url, sequence))


async def _replay_dead_letter(nats_url: str, sequence: int) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        stored = await js.get_msg(subjects.STREAM_DEADLETTER, sequence)
        letter = json.loads(stored.data or b"{}")
        payload = letter["payload"].encode()
        if letter.get("payload_truncated"):  # the whole body is still in its own stream
            original = await js.get_msg(letter["origin_stream"], letter["origin_sequence"])
            payload = original.data or b""
        # No Nats-Msg-Id, as documented: the original one could make the stream drop it.
        await js.publish(
            letter["origin_subject"],
            payload,
            headers={"content-type": "application/json"},
        )
    finally:
        await nc.close()


async def goal_events(nats_url: str, goal_id: str, *, count: int) -> list[tuple[str, Any]]:
    """``(subject, event)`` of every event about ``goal_id`` in GOALWATCH_GOALS: waits up to
    10 s for each of the first ``count``, then 1 s for any that should not be there."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(
            subjects.GOALS_ALL,
            stream=subjects.STREAM_GOALS,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        found: list[tuple[str, Any]] = []
        while True:
            try:
                msg = await sub.next_msg(timeout=10 if len(found) < count else 1)
            except nats.errors.TimeoutError:
                return found
            event = json.loads(msg.data)
            if event["goal_id"] == goal_id:
                found.append((msg.subject, event))
    finally:
        await nc.close()


async def directory_events(nats_url: str, ids: set[str]) -> list[tuple[str, Any]]:
    """``(subject, event)`` of every event in GOALWATCH_PEOPLE about a person or org unit of
    ``ids``, in stream order (the stream as it stands: goals published them before it
    answered)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        last = (await js.stream_info(subjects.STREAM_PEOPLE)).state.last_seq
        sub = await js.subscribe(
            ">", stream=subjects.STREAM_PEOPLE, ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )  # fmt: skip
        found: list[tuple[str, Any]] = []
        try:
            while last:
                msg = await sub.next_msg(timeout=10)
                event = json.loads(msg.data)
                record = event.get("person") or event.get("org_unit")
                if record["id"] in ids:
                    found.append((msg.subject, event))
                if msg.metadata.sequence.stream >= last:
                    break
        finally:
            await sub.unsubscribe()
        return found
    finally:
        await nc.close()


def make_dead_letter(nats_url: str, marker: str) -> int:
    """Publish a raw metric event that ingestion refuses (no timestamp), whose id is
    ``marker``; the sequence of the dead letter it becomes."""
    bad = {"id": marker, "metric": "report_rework_rate", "value": 0.2, "subject": "x",
           "source": "his"}  # fmt: skip
    asyncio.run(_publish(nats_url, subjects.METRICS_IN, json.dumps(bad).encode()))
    _, sequence = first_message(
        nats_url,
        subjects.DEADLETTER_METRICS,
        stream=subjects.STREAM_DEADLETTER,
        match=lambda letter: marker in letter["payload"],
    )
    return sequence


def make_alert_dead_letter(nats_url: str, marker: str) -> int:
    """Publish, as the NATS operator, what is no alert onto ``goalwatch.alerts.fired.v1``: the
    notifier dead-letters it. The sequence of that dead letter (the evaluator replays it)."""
    body = json.dumps({"not": "an alert", "marker": marker}).encode()
    asyncio.run(_publish(nats_url, subjects.ALERTS_FIRED, body))
    _, sequence = first_message(
        nats_url,
        subjects.DEADLETTER_ALERTS,
        stream=subjects.STREAM_DEADLETTER,
        match=lambda letter: marker in letter["payload"],
    )
    return sequence


def make_recorded_dead_letter(nats_url: str, marker: str) -> int:
    """Publish, as the NATS operator, what is no ``MetricRecorded`` onto a partition of the
    validated metric events: the evaluator dead-letters it. The sequence of that dead letter
    (ingestion replays it)."""
    body = json.dumps({"not": "an event", "marker": marker}).encode()
    asyncio.run(_publish(nats_url, subjects.metrics_partition_subject(0), body))
    _, sequence = first_message(
        nats_url,
        subjects.DEADLETTER_METRICS,
        stream=subjects.STREAM_DEADLETTER,
        match=lambda letter: marker in letter["payload"],
    )
    return sequence


async def _publish(nats_url: str, subject: str, data: bytes) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(subject, data)
    finally:
        await nc.close()
