"""The kernel's consumer plumbing: the redelivery policy, and verdicts applied to messages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from faststream.nats import JStream, NatsBroker, TestNatsBroker
from faststream.nats.testing import PatchedMessage

from goalwatch.consumers import (
    ACK,
    Consumers,
    ConsumerSpec,
    Received,
    RedeliveryPolicy,
    Reject,
    Retry,
    Verdict,
    by_key,
    dead_letter,
    dead_letter_id,
    fitted,
)
from goalwatch.contracts import DeadLetter, MetricRecorded, subjects
from goalwatch.telemetry import dead_letters, handler_seconds, service_registry

POLICY = RedeliveryPolicy(max_deliver=4, first_delay=1.0, max_delay=3.0)
SPEC = ConsumerSpec(
    name="probe",
    stream=subjects.STREAM_METRICS,
    subject=subjects.METRICS_RECORDED,
    policy=POLICY,
    ack_wait=30,
    batch_size=10,
)
EVENT = MetricRecorded(
    id="e-1",
    metric="report_rework_rate",
    value=0.11,
    time="2026-11-20T18:00:00+08:00",
    subject="li-na",
    source="his",
)


def test_delays_double_up_to_the_cap() -> None:
    assert [POLICY.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_failures_are_retried_until_the_last_delivery_then_rejected() -> None:
    assert POLICY.on_failure(deliveries=1, reason="redis down") == Retry(1.0, "redis down")
    assert POLICY.on_failure(deliveries=3, reason="redis down") == Retry(3.0, "redis down")
    last = POLICY.on_failure(deliveries=4, reason="redis down")
    assert last == Reject("redis down; gave up after 4 deliveries", cause="gave-up")


def test_dead_letter_ids_name_consumer_sequence_and_cause() -> None:
    received = Received("evaluator", 812, 3)
    assert dead_letter_id(received, cause="gave-up") == "deadletter:evaluator:812:gave-up"
    # No sequence (an in-memory broker): nothing to de-duplicate on.
    assert dead_letter_id(Received("evaluator", None), cause="invalid") is None


class Settled:
    """What the in-memory broker's messages were told: ack, or nak with a delay."""

    def __init__(self) -> None:
        self.acks = 0
        self.naks: list[float | None] = []


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settled]:
    record = Settled()

    # Only the consumer under test counts, not the one reading the dead letters.
    async def ack(self: PatchedMessage) -> None:
        record.acks += self.subject == SPEC.subject

    async def nak(self: PatchedMessage, delay: float | None = None) -> None:
        if self.subject == SPEC.subject:
            record.naks.append(delay)

    monkeypatch.setattr(PatchedMessage, "ack", ack)
    monkeypatch.setattr(PatchedMessage, "nak", nak)
    yield record


class Recording:
    def __init__(self, *verdicts: Verdict | Exception) -> None:
        self.verdicts = list(verdicts)
        self.handled: list[MetricRecorded] = []

    async def handle(self, message: MetricRecorded, received: Received) -> Verdict:
        self.handled.append(message)
        outcome = self.verdicts.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def handle_batch(
        self, messages: Sequence[MetricRecorded], received: Sequence[Received]
    ) -> list[Verdict]:
        return [await self.handle(m, r) for m, r in zip(messages, received, strict=True)]


def broker_with(
    handler: Recording, *, batch: bool = False, ordered: bool = False
) -> tuple[NatsBroker, list[DeadLetter]]:
    broker = NatsBroker()
    consumers = Consumers(broker, service="test", seconds=handler_seconds(service_registry()))
    if batch:
        consumers.add_batch(SPEC, MetricRecorded, handler, description="probe")
    elif ordered:
        consumers.add_ordered(
            SPEC, MetricRecorded, handler, key=lambda event: event.subject, description="probe"
        )
    else:
        consumers.add(SPEC, MetricRecorded, handler, description="probe")
    letters: list[DeadLetter] = []

    @broker.subscriber(
        subjects.DEADLETTER_METRICS, stream=JStream(subjects.STREAM_DEADLETTER, declare=False)
    )
    async def keep(letter: DeadLetter) -> None:
        letters.append(letter)

    return broker, letters


MODES = {"one": {}, "batch": {"batch": True}, "ordered": {"ordered": True}}


@pytest.mark.parametrize("mode", MODES)
async def test_a_valid_message_reaches_the_handler_as_its_model_and_is_acked(
    settled: Settled, mode: str
) -> None:
    handler = Recording(ACK)
    broker, letters = broker_with(handler, **MODES[mode])
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(EVENT, subjects.METRICS_RECORDED)
    assert handler.handled == [EVENT]
    assert (settled.acks, settled.naks, letters) == (1, [], [])


@pytest.mark.parametrize("mode", MODES)
async def test_an_invalid_payload_is_dead_lettered_without_reaching_the_handler(
    settled: Settled, mode: str
) -> None:
    handler = Recording()
    broker, letters = broker_with(handler, **MODES[mode])
    body = b'{"id": "e-2", "metric": "report_rework_rate", "value": "high"}'
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(body, subjects.METRICS_RECORDED)
    assert handler.handled == []
    (letter,) = letters
    assert letter.origin_subject == subjects.METRICS_RECORDED
    assert letter.payload == body.decode()
    assert {e.loc for e in letter.errors} >= {"value", "time", "subject", "source"}
    assert letter.reason.startswith(f"not a valid message for {subjects.METRICS_RECORDED}")
    assert settled.acks == 1 and settled.naks == []


@pytest.mark.parametrize("ordered", [False, True])
async def test_a_retry_verdict_naks_with_its_delay(settled: Settled, ordered: bool) -> None:
    broker, letters = broker_with(Recording(Retry(delay=7.0, reason="goals down")), ordered=ordered)
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(EVENT, subjects.METRICS_RECORDED)
    assert (settled.acks, settled.naks, letters) == (0, [7.0], [])


@pytest.mark.parametrize("ordered", [False, True])
async def test_a_reject_verdict_keeps_the_message_then_acks(
    settled: Settled, ordered: bool
) -> None:
    broker, letters = broker_with(Recording(Reject(reason="cannot be stored")), ordered=ordered)
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(EVENT, subjects.METRICS_RECORDED)
    (letter,) = letters
    assert letter.reason == "cannot be stored"
    assert MetricRecorded.model_validate_json(letter.payload) == EVENT
    assert settled.acks == 1


@pytest.mark.parametrize("ordered", [False, True])
async def test_an_exception_from_a_handler_is_retried_by_the_policy(
    settled: Settled, ordered: bool
) -> None:
    broker, letters = broker_with(Recording(RuntimeError("bug")), ordered=ordered)
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(EVENT, subjects.METRICS_RECORDED)
    # First delivery: retried after the policy's first delay, not dropped, not dead-lettered.
    assert (settled.acks, settled.naks, letters) == (0, [POLICY.first_delay], [])


@pytest.mark.parametrize("body", [b"a" * 10_000, b'\\"' * 5_000, "\u00e9".encode() * 5_000])
def test_a_dead_letter_too_large_is_cut_to_fit_and_says_so(body: bytes) -> None:
    letter = dead_letter(
        origin_subject=subjects.METRICS_IN,
        reason="event too large",
        payload=body,
        origin_stream=subjects.STREAM_INGEST,
        origin_sequence=41,
    )
    cut = fitted(letter, max_bytes=4_000)
    encoded = len(cut.model_dump_json().encode())
    assert encoded <= 4_000
    assert cut.payload_truncated and letter.payload.startswith(cut.payload)
    # The longest beginning that fits: one more character would not.
    longer = cut.model_copy(update={"payload": letter.payload[: len(cut.payload) + 1]})
    assert len(longer.model_dump_json().encode()) > 4_000
    assert (cut.payload_bytes, cut.origin_sequence) == (len(body), 41)


def test_a_dead_letter_that_fits_is_kept_whole() -> None:
    letter = dead_letter(origin_subject=subjects.METRICS_IN, reason="bad", payload=b"{}")
    assert fitted(letter, max_bytes=4_000) is letter


def test_a_batch_is_grouped_by_key_in_order_of_first_appearance() -> None:
    batch = ["a1", "b1", "a2", "c1", "b2", "a3"]
    assert by_key(batch, key=lambda name: name[0]) == [[0, 2, 5], [1, 4], [3]]
    assert by_key([], key=str) == []


def test_a_consumer_of_several_subjects_filters_on_exactly_those() -> None:
    spec = ConsumerSpec(
        name="notifier-alerts",
        stream=subjects.STREAM_ALERTS,
        subject=subjects.ALERTS_ALL,
        filter_subjects=(subjects.ALERTS_FIRED, subjects.ALERTS_RESOLVED),
        policy=POLICY,
        ack_wait=30,
        batch_size=10,
    )
    config = spec.config()
    assert config.filter_subject is None
    assert config.filter_subjects == [subjects.ALERTS_FIRED, subjects.ALERTS_RESOLVED]
    assert SPEC.config().filter_subject == subjects.METRICS_RECORDED
    assert SPEC.config().filter_subjects is None


@pytest.mark.parametrize("mode", MODES)
async def test_dead_letters_are_counted_by_origin_subject(settled: Settled, mode: str) -> None:
    registry = service_registry()
    counter = dead_letters(registry)
    broker = NatsBroker()
    consumers = Consumers(
        broker, service="test", seconds=handler_seconds(registry), dead_letters=counter
    )
    handler = Recording(Reject(reason="cannot be stored"), ACK)
    if MODES[mode].get("batch"):
        consumers.add_batch(SPEC, MetricRecorded, handler, description="probe")
    elif MODES[mode].get("ordered"):
        consumers.add_ordered(SPEC, MetricRecorded, handler, key=lambda e: e.id, description="p")
    else:
        consumers.add(SPEC, MetricRecorded, handler, description="probe")
    labels = {"origin_subject": subjects.METRICS_RECORDED}
    # Exported at 0 before the first one, so that the first counts as an increase.
    assert registry.get_sample_value("goalwatch_dead_letters_total", labels) == 0
    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish(EVENT, subjects.METRICS_RECORDED)
        await test_broker.publish(EVENT.model_copy(update={"id": "e-2"}), subjects.METRICS_RECORDED)
    assert registry.get_sample_value("goalwatch_dead_letters_total", labels) == 1
