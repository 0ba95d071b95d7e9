"""Message handlers, their verdicts, and the one redelivery policy every consumer follows.

A service's message handling lives in a domain class with a ``handle`` method that takes the
decoded contract model and returns a :data:`Verdict`: :class:`Ack`, :class:`Retry` (redeliver
after a delay) or :class:`Reject` (keep the message as a dead letter, then ack). The functions
here turn verdicts into JetStream acks, naks and dead letters, so no handler acks, naks or
builds a dead letter itself, and every consumer retries, gives up and names its dead letters
the same way:

- :class:`RedeliveryPolicy` decides retry-or-dead-letter from the delivery count;
- :func:`dead_letter` builds every dead letter; :func:`dead_letter_id` names it
  (``Nats-Msg-Id``), once per message and cause, again for a replay (a new stream sequence);
- :class:`Consumers` subscribes handlers and settles what escapes them: a payload that is
  not the contract model never reaches a handler (FastStream's decoding raises, and it is
  dead-lettered), and an exception is retried like any failure.
"""

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

from faststream import AckPolicy
from faststream.middlewares import ExceptionMiddleware
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, TypeAdapter, ValidationError

from goalwatch.contracts import DeadLetter, ErrorDetail, subjects
from goalwatch.renewal import renewing

logger = logging.getLogger(__name__)

M = TypeVar("M", contravariant=True)
T = TypeVar("T")


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Ack:
    """Done with the message: acknowledge it."""


@dataclass(frozen=True)
class Retry:
    """Not done, and it may work later: redeliver after ``delay`` seconds."""

    delay: float
    reason: str


@dataclass(frozen=True)
class Reject:
    """It will not work: keep the message as a dead letter for an operator, then ack it."""

    reason: str
    errors: tuple[ErrorDetail, ...] = ()
    # Distinguishes dead letters of one message made for different causes (see dead_letter_id).
    cause: str = "rejected"


Verdict = Ack | Retry | Reject
"""What a handler decided about one message."""

ACK = Ack()


@dataclass(frozen=True)
class RedeliveryPolicy:
    """How often a message is delivered before it is dead-lettered, and how far apart.

    Delays start at ``first_delay`` seconds and double per delivery up to ``max_delay``; the
    ``max_deliver``-th delivery that fails is the last: its message becomes a dead letter
    instead of being redelivered (JetStream would otherwise drop it silently at the limit).
    """

    max_deliver: int
    first_delay: float
    max_delay: float

    def delay(self, deliveries: int) -> float:
        """Seconds to wait before the next delivery, after ``deliveries`` so far."""
        return float(min(self.first_delay * 2 ** (max(deliveries, 1) - 1), self.max_delay))

    def on_failure(self, *, deliveries: int, reason: str) -> Retry | Reject:
        """Retry, or, after the last allowed delivery, dead-letter the message."""
        if deliveries < self.max_deliver:
            return Retry(delay=self.delay(deliveries), reason=reason)
        return Reject(reason=f"{reason}; gave up after {deliveries} deliveries", cause="gave-up")


# ---------------------------------------------------------------- consumers


# How long a batch consumer keeps collecting before it handles what it has, by default: the
# most latency batching adds when traffic is light; under load batches fill long before. An
# idle batch consumer fetches this often too: with all five of the evaluator's at 20 ms, the
# idle evaluator took 13% of a core and nats-server 8% (6% and 4.5% at 50 ms).
BATCH_WINDOW_SECONDS = 0.05


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer: what it reads, how it is redelivered, how much it fetches.

    :func:`goalwatch.messaging.ensure_streams` provisions it like the streams: FastStream only
    creates a consumer that is missing, so a changed setting (``max_deliver``, ``ack_wait``)
    reaches one that already exists only this way.
    """

    name: str
    stream: str
    subject: str
    """The subject it reads; with ``filter_subjects``, a pattern that covers all of them."""
    policy: RedeliveryPolicy
    ack_wait: float
    batch_size: int
    # For a batch consumer: how long a fetch that found the stream empty waits for a batch
    # to fill once its first message came (see BATCH_WINDOW_SECONDS).
    batch_window: float = BATCH_WINDOW_SECONDS
    filter_subjects: tuple[str, ...] = ()
    """The subjects of the stream it reads, when it reads several: exactly these, whatever
    else the stream or ``subject`` may come to cover."""
    replaces: tuple[str, ...] = ()
    """Durable consumers of the same stream whose work this one takes over: when it is
    created, it starts at the first message one of them still owed, and they are deleted
    (:func:`goalwatch.messaging.ensure_streams`)."""
    max_ack_pending: int | None = None
    """The most messages handed out and not yet acknowledged (None: the server's default);
    a leased consumer's is its batch size (:mod:`goalwatch.partitions`)."""

    @property
    def subjects(self) -> tuple[str, ...]:
        """Every subject it reads."""
        return self.filter_subjects or (self.subject,)

    def config(self) -> ConsumerConfig:
        """The consumer's JetStream settings (where it starts is decided when it is created)."""
        several = len(self.subjects) > 1
        return ConsumerConfig(
            durable_name=self.name,
            filter_subject=None if several else self.subjects[0],
            filter_subjects=list(self.subjects) if several else None,
            ack_policy=JsAckPolicy.EXPLICIT,
            max_deliver=self.policy.max_deliver,
            ack_wait=self.ack_wait,
            max_ack_pending=self.max_ack_pending,
        )


@dataclass(frozen=True)
class Received:
    """Where a JetStream message sits in its stream, how often it came, and its headers."""

    consumer: str
    sequence: int | None  # stream sequence: the same for every delivery, new for a replay
    deliveries: int = 1  # deliveries so far, this one included
    headers: Mapping[str, str] = field(default_factory=dict)
    stream: str | None = None

    def header(self, name: str) -> str | None:
        """A header by name, whatever its case: NATS headers are case-sensitive, senders are not."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


def received(raw: Msg, *, consumer: str) -> Received:
    """The delivery facts of ``raw``; sequence None when it carries no JetStream metadata."""
    headers = dict(raw.headers or {})
    try:
        metadata = raw.metadata
        sequence, deliveries = int(metadata.sequence.stream), int(metadata.num_delivered)
    except Exception:  # in-memory test brokers deliver plain messages
        return Received(consumer, None, headers=headers)
    return Received(consumer, sequence, deliveries, headers, stream=metadata.stream)


class Handler(Protocol[M]):
    """Handles one message at a time."""

    async def handle(self, message: M, received: Received) -> Verdict:
        """Decide what becomes of ``message``."""
        ...


class BatchHandler(Protocol[M]):
    """Handles a fetched batch at once, e.g. to keep per-key order across it."""

    async def handle_batch(
        self, messages: Sequence[M], received: Sequence[Received]
    ) -> Sequence[Verdict]:
        """One verdict per message, in order."""
        ...


# How long one pull request may wait for its batch to fill. A request that finds the stream
# empty lingers on the server for this long and can hold back a message that arrives meanwhile
# (seen as seconds of extra latency with 5 s). nats-py 2.14's fetch(n > 1) does worse: once a
# fetch expired empty, the next message can wait out the whole next request (a pull request
# left behind takes it, nats-io/nats.py#933; reproduced with nats-py alone: a message every
# 0.8 s on a fetch(10, timeout=0.5) loop arrives p50 101 ms, max 501 ms late, on fetch(1)
# 1-2 ms). So the timeout bounds how late an alert reaches the notifier on a quiet stream:
# 0.5 s made p95 of the overdue bench's AlertFired -> webhook hop 510 ms, 0.1 s makes it
# 115 ms (docs/benchmarks.md), for about ten empty fetches a second per idle consumer (the
# batch consumers already fetch every BATCH_WINDOW_SECONDS).
FETCH_TIMEOUT_SECONDS = 0.1


@dataclass(frozen=True)
class _Subscription:
    spec: ConsumerSpec
    model: TypeAdapter[Any] | None  # None: the handler takes the raw bytes
    batch: bool


def provisioned(stream: str) -> JStream:
    """A reference to a stream :func:`goalwatch.messaging.ensure_streams` provisions.

    Every subscriber and publisher must name its stream this way: given a bare name, FastStream
    declares the stream when the broker starts and, finding it configured differently,
    *replaces* its configuration with defaults (no age limit, a 2-minute duplicate window).
    """
    return JStream(stream, declare=False)


class Consumers:
    """The durable consumers of one service: handlers subscribed, verdicts applied.

    Whatever escapes a handler is settled here too, so no message is left to JetStream's
    ``max_deliver``, which drops it without a trace: a payload that does not decode into the
    handler's model is dead-lettered at once, any other exception is retried by the policy
    and dead-lettered after the last delivery.
    """

    def __init__(
        self,
        broker: NatsBroker,
        *,
        service: str,
        seconds: Histogram,
        dead_letters: Counter | None = None,
    ) -> None:
        """``seconds`` (labels service, handler) times every message or batch handled;
        ``dead_letters`` (label origin_subject) counts the messages kept as dead letters."""
        self._broker = broker
        self._service = service
        self._seconds = seconds
        self._dead_letters = dead_letters
        self._by_subject: dict[str, _Subscription] = {}
        self._dead_letter_subjects: set[str] = set()
        broker.add_middleware(
            ExceptionMiddleware(handlers={ValidationError: self._invalid, Exception: self._failed})
        )

    @property
    def specs(self) -> list[ConsumerSpec]:
        """Every consumer subscribed, for :func:`goalwatch.messaging.ensure_streams`."""
        return [subscription.spec for subscription in self._by_subject.values()]

    def add(
        self,
        spec: ConsumerSpec,
        model: type[BaseModel] | type[bytes],
        handler: Handler[Any],
        *,
        description: str,
        keep_alive: bool = False,
    ) -> None:
        """Subscribe ``handler`` to ``spec``, one message per call, a fetched batch concurrently.

        ``model`` is the contract the payload is decoded into (``bytes``: the raw body, for a
        handler that reports errors in the payload itself). ``keep_alive`` tells JetStream,
        every third of ``ack_wait``, that a slow message is still being worked on.
        """
        broker, dead_letters = self._broker, self._dead_letters
        timer = self._seconds.labels(service=self._service, handler=spec.name)

        async def on_message(body: Any, msg: NatsMessage) -> None:
            facts = received(msg.raw_message, consumer=spec.name)
            with timer.time():
                async with _heartbeat(msg, every=spec.ack_wait / 3 if keep_alive else None):
                    verdict = await handler.handle(body, facts)
                await settle(broker, msg.raw_message, verdict, received=facts, counter=dead_letters)

        decoded = None if issubclass(model, bytes) else TypeAdapter(model)
        _annotate(on_message, model)
        decoder = _raw if decoded is None else None
        self._subscribe(spec, on_message, description, batch=False, decoder=decoder)
        self._register(_Subscription(spec, decoded, batch=False))

    def add_batch(
        self,
        spec: ConsumerSpec,
        model: type[BaseModel],
        handler: BatchHandler[Any],
        *,
        description: str,
    ) -> None:
        """Subscribe ``handler`` to ``spec`` for whole batches: one batch at a time, in order."""
        broker, dead_letters = self._broker, self._dead_letters
        timer = self._seconds.labels(service=self._service, handler=spec.name)

        async def on_batch(body: list[Any], msg: NatsMessage) -> None:
            raws = cast(list[Msg], msg.raw_message)
            facts = [received(raw, consumer=spec.name) for raw in raws]
            with timer.time():
                verdicts = await handler.handle_batch(body, facts)
                for raw, verdict, fact in zip(raws, verdicts, facts, strict=True):
                    await settle(broker, raw, verdict, received=fact, counter=dead_letters)

        _annotate(on_batch, list[model])  # type: ignore[valid-type]
        self._subscribe(spec, on_batch, description, batch=True, decoder=None)
        self._register(_Subscription(spec, TypeAdapter(model), batch=True))

    def add_ordered(
        self,
        spec: ConsumerSpec,
        model: Any,
        handler: Handler[Any],
        *,
        key: Callable[[Any], str],
        description: str,
    ) -> None:
        """Subscribe ``handler`` to ``spec``, one message per call, in order per ``key``.

        The messages of a fetched batch that share a key (an alert's fingerprint) are handled
        one after another, in stream order; different keys concurrently, as :meth:`add` does
        the whole batch. ``model`` is the contract the payload is decoded into, or a union of
        contracts that no payload can satisfy two of (each ``extra="forbid"``, with required
        fields of its own). Each message is kept alive (every third of ``ack_wait``) from the
        fetch until it is settled, so one waiting behind its key is not redelivered, and is
        settled as soon as its verdict is known.
        """
        broker, dead_letters = self._broker, self._dead_letters
        timer = self._seconds.labels(service=self._service, handler=spec.name)

        async def on_batch(body: list[Any], msg: NatsMessage) -> None:
            raws = cast(list[Msg], msg.raw_message)
            facts = [received(raw, consumer=spec.name) for raw in raws]
            unsettled = set(range(len(raws)))

            async def one(index: int) -> None:
                raw, fact = raws[index], facts[index]
                with timer.time():
                    try:
                        verdict = await handler.handle(body[index], fact)
                    except Exception as exc:
                        logger.exception("handler of %s failed", spec.name)
                        verdict = spec.policy.on_failure(
                            deliveries=fact.deliveries, reason=f"handling failed: {exc!r}"
                        )
                    try:
                        await settle(broker, raw, verdict, received=fact, counter=dead_letters)
                    except Exception:  # NATS trouble: JetStream redelivers after ack_wait
                        logger.exception("settling a message of %s failed", spec.name)
                unsettled.discard(index)

            async def in_order(indexes: list[int]) -> None:
                # A redelivery can share a batch with a later message of its key: stream
                # order, not the order of the batch.
                for index in sorted(indexes, key=lambda i: facts[i].sequence or 0):
                    await one(index)

            async def keep_alive() -> None:
                alive = [raws[i].in_progress() for i in sorted(unsettled)]
                await asyncio.gather(*alive, return_exceptions=True)

            async with renewing(
                keep_alive, every=spec.ack_wait / 3, what=f"a batch of {spec.name}"
            ):
                await asyncio.gather(*(in_order(group) for group in by_key(body, key)))

        _annotate(on_batch, list[model])
        self._subscribe(spec, on_batch, description, batch=True, decoder=None)
        self._register(_Subscription(spec, TypeAdapter(model), batch=True))

    def describe(self, spec: ConsumerSpec, model: Any, *, description: str) -> None:
        """Document ``spec`` (its subject may be a pattern covering several consumers) in the
        AsyncAPI document without consuming it through FastStream: it is served elsewhere,
        by the replica holding its lease (:class:`goalwatch.partitions.LeasedConsumers`)."""

        async def on_batch(body: list[Any], msg: NatsMessage) -> None:
            raise RuntimeError(f"{spec.name} is served by its lease holder, not here")

        _annotate(on_batch, list[model])
        subscriber = self._broker.subscriber(
            spec.subject,
            stream=provisioned(spec.stream),
            durable=spec.name,
            pull_sub=PullSub(batch_size=spec.batch_size, timeout=spec.batch_window, batch=True),
            config=spec.config(),
            ack_policy=AckPolicy.MANUAL,
            title=f"{spec.name}:{spec.subject}",
            description=description,
        )
        subscriber(on_batch)
        # Declared for the document only: the broker must not start consuming it.
        subscriber.start = _not_started  # type: ignore[method-assign]
        for subject in spec.subjects:
            self._declare_dead_letters(subjects.dead_letter_subject(subject))

    def _register(self, subscription: _Subscription) -> None:
        for subject in subscription.spec.subjects:
            self._by_subject[subject] = subscription

    def _subscribe(
        self,
        spec: ConsumerSpec,
        func: Callable[..., Awaitable[None]],
        description: str,
        *,
        batch: bool,
        decoder: Callable[[NatsMessage], Awaitable[Any]] | None,
    ) -> None:
        timeout = spec.batch_window if batch else FETCH_TIMEOUT_SECONDS
        several = len(spec.subjects) > 1
        self._broker.subscriber(
            # Several subjects are the consumer's filter, one AsyncAPI channel each.
            "" if several else spec.subject,
            stream=provisioned(spec.stream),
            durable=spec.name,
            pull_sub=PullSub(batch_size=spec.batch_size, timeout=timeout, batch=batch),
            config=spec.config(),
            ack_policy=AckPolicy.MANUAL,
            decoder=decoder,
            title=spec.name if several else f"{spec.name}:{spec.subject}",
            description=description,
        )(func)
        for subject in spec.subjects:
            self._declare_dead_letters(subjects.dead_letter_subject(subject))
            if self._dead_letters is not None and not {"*", ">"} & set(subject.split(".")):
                # Exported at 0 from the start: the first dead letter is then an increase.
                self._dead_letters.labels(origin_subject=subject)

    def _declare_dead_letters(self, subject: str) -> None:
        """Declare the dead-letter subject :func:`settle` publishes to, for the AsyncAPI
        document (publishing goes through :func:`publish_dead_letter`)."""
        if subject in self._dead_letter_subjects:
            return
        self._dead_letter_subjects.add(subject)
        self._broker.publisher(
            subject,
            stream=provisioned(subjects.STREAM_DEADLETTER),
            schema=DeadLetter,
            title=f"{self._service}:{subject}",
            description="Messages this service could not process, with the reason and the "
            "payload, kept for an operator to inspect and replay.",
        )

    async def _invalid(self, exc: ValidationError, message: NatsMessage) -> None:
        await self._settle_escaped(exc, message)

    async def _failed(self, exc: Exception, message: NatsMessage) -> None:
        await self._settle_escaped(exc, message)

    async def _settle_escaped(self, exc: Exception, message: NatsMessage) -> None:
        """Settle the messages a handler never gave a verdict for.

        Each message that does not decode into the model is dead-lettered. When the error
        came from elsewhere, a single message is retried (and dead-lettered after its last
        delivery); the valid messages of a batch that held an invalid one are handed back at
        once and come again without it.
        """
        raw: Msg | list[Msg] = message.raw_message
        batch = raw if isinstance(raw, list) else [raw]
        subscription = self._subscription_of(batch[0].subject)
        if subscription is None:  # not one of ours: leave it to JetStream's redelivery
            raise exc
        spec = subscription.spec
        for one in batch:
            facts = received(one, consumer=spec.name)
            errors = _decode_errors(subscription.model, one.data)
            if errors:
                verdict: Verdict = Reject(
                    reason=f"not a valid message for {one.subject} ({len(errors)} error(s)): "
                    + "; ".join(f"{e.loc}: {e.msg}" for e in errors[:3])
                    + f"; fix the publisher and republish the corrected payload to {one.subject}",
                    errors=tuple(errors),
                    cause="invalid",
                )
            elif subscription.batch and isinstance(exc, ValidationError):
                await one.nak()
                continue
            else:
                logger.exception("handler of %s failed", spec.name, exc_info=exc)
                verdict = spec.policy.on_failure(
                    deliveries=facts.deliveries, reason=f"handling failed: {exc!r}"
                )
            await settle(self._broker, one, verdict, received=facts, counter=self._dead_letters)

    def _subscription_of(self, subject: str) -> _Subscription | None:
        """The subscription a message on ``subject`` came through: by its filter subject,
        which may hold wildcards (``goalwatch.goals.*.v1``)."""
        exact = self._by_subject.get(subject)
        if exact is not None:
            return exact
        return next(
            (
                sub
                for pattern, sub in self._by_subject.items()
                if subjects.matches(pattern, subject)
            ),
            None,
        )


async def _not_started() -> None:
    return None


async def _raw(msg: NatsMessage) -> bytes:
    return bytes(msg.body)


def _decode_errors(model: TypeAdapter[Any] | None, data: bytes) -> list[ErrorDetail]:
    if model is None:
        return []
    try:
        model.validate_json(data)
    except ValidationError as exc:
        return validation_errors(exc)
    return []


def by_key(messages: Sequence[T], key: Callable[[T], str]) -> list[list[int]]:
    """The positions of ``messages`` grouped by ``key``, each group in the order given, the
    groups in the order of their first message."""
    groups: dict[str, list[int]] = {}
    for index, message in enumerate(messages):
        groups.setdefault(key(message), []).append(index)
    return list(groups.values())


def _annotate(func: Callable[..., Any], body: Any) -> None:
    """Annotate ``func``'s body: FastStream decodes (and documents) by the annotation."""
    signature = inspect.signature(func)
    parameters = [
        p.replace(annotation=body) if p.name == "body" else p.replace(annotation=NatsMessage)
        for p in signature.parameters.values()
    ]
    func.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]


@asynccontextmanager
async def _heartbeat(msg: NatsMessage, *, every: float | None) -> AsyncIterator[None]:
    if every is None:
        yield
        return
    # A lost heartbeat only risks a redelivery, which every handler tolerates.
    async with renewing(msg.in_progress, every=every, what="a message's ack deadline"):
        yield


# ---------------------------------------------------------------- settling and dead letters


async def settle(
    broker: NatsBroker,
    raw: Msg,
    verdict: Verdict,
    *,
    received: Received,
    counter: Counter | None = None,
) -> None:
    """Tell JetStream what ``verdict`` says about ``raw``; a rejected message is kept first
    (and counted in ``counter``, labelled origin_subject)."""
    extra = {"consumer": received.consumer, "sequence": received.sequence}
    if isinstance(verdict, Ack):
        await raw.ack()
    elif isinstance(verdict, Retry):
        logger.warning(
            "%s (delivery %d), retrying in %.1f s",
            verdict.reason,
            received.deliveries,
            verdict.delay,
            extra=extra,
        )
        await raw.nak(delay=verdict.delay)
    else:
        logger.error("dead-lettered: %s", verdict.reason, extra=extra)
        await publish_dead_letter(
            broker,
            dead_letter(
                origin_subject=raw.subject,
                reason=verdict.reason,
                errors=verdict.errors,
                payload=raw.data,
                origin_stream=received.stream,
                origin_sequence=received.sequence,
            ),
            msg_id=dead_letter_id(received, cause=verdict.cause),
            counter=counter,
        )
        await raw.ack()


def dead_letter(
    *,
    origin_subject: str,
    reason: str,
    payload: bytes,
    errors: Sequence[ErrorDetail] = (),
    at: datetime | None = None,
    origin_stream: str | None = None,
    origin_sequence: int | None = None,
) -> DeadLetter:
    """The dead letter of a message from ``origin_subject``, kept whole for a replay.

    Text taken from the message (a reason or an error naming a field) may hold a lone
    surrogate, which no JSON encoder can write as UTF-8: it is kept as its escape, so that
    building the dead letter never fails and the message is not lost at ``max_deliver``.
    """
    return DeadLetter(
        origin_subject=origin_subject,
        reason=_printable(reason),
        errors=[
            error.model_copy(
                update={
                    "loc": _printable(error.loc),
                    "msg": _printable(error.msg),
                    "event_id": None if error.event_id is None else _printable(error.event_id),
                }
            )
            for error in errors
        ],
        payload=payload.decode("utf-8", errors="replace"),
        payload_bytes=len(payload),
        origin_stream=origin_stream,
        origin_sequence=origin_sequence,
        at=at or datetime.now(UTC),
    )


def fitted(letter: DeadLetter, *, max_bytes: int) -> DeadLetter:
    """``letter`` cut down so that its JSON takes at most ``max_bytes``.

    A message close to the server's ``max_payload`` cannot be kept whole inside a dead letter
    (the reason, the errors and JSON escaping add to it), and a dead letter that cannot be
    stored would leave its message redelivered for ever. Its payload is then cut to what fits,
    marked ``payload_truncated``; the dead letter names the stream and sequence that still
    hold the whole body.
    """

    def size(keep: int) -> int:
        return len(cut(keep).model_dump_json().encode())

    def cut(keep: int) -> DeadLetter:
        return letter.model_copy(update={"payload": payload[:keep], "payload_truncated": True})

    payload = letter.payload
    if len(letter.model_dump_json().encode()) <= max_bytes:
        return letter
    # Escaping makes a character take 1 to 6 bytes: search for the longest beginning that fits.
    fits, too_long = 0, len(payload)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        fits, too_long = (middle, too_long) if size(middle) <= max_bytes else (fits, middle)
    return cut(fits)


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def dead_letter_id(received: Received, *, cause: str) -> str | None:
    """The ``Nats-Msg-Id`` of a dead letter: one per consumer, stream sequence and cause.

    Every delivery of one message shares it, so a message redelivered after its dead letter
    was stored (but before its ack) is kept once; a replay has a new sequence, so a replay that
    fails again is kept again. None (no de-duplication) without a sequence.
    """
    if received.sequence is None:
        return None
    return message_id("deadletter", received.consumer, str(received.sequence), cause)


# Bytes kept free for what NATS counts beside the JSON body: the subject and headers.
_HEADROOM = 4096


def message_id(*parts: str) -> str:
    """The one way goalwatch spells a ``Nats-Msg-Id``: its parts joined by ``:``."""
    return ":".join(parts)


async def publish_dead_letter(
    broker: NatsBroker, letter: DeadLetter, *, msg_id: str | None, counter: Counter | None = None
) -> None:
    """Store ``letter`` on its dead-letter subject and wait for the stream to confirm it; then
    count it in ``counter`` (labelled origin_subject), if given.

    A letter too large for the server's ``max_payload`` is stored with its payload cut
    (:func:`fitted`).
    """
    headers = {} if msg_id is None else {"Nats-Msg-Id": msg_id}
    max_payload = _max_payload(broker)
    if max_payload is not None:
        letter = fitted(letter, max_bytes=max_payload - _HEADROOM)
    await broker.publish(
        letter,
        subjects.dead_letter_subject(letter.origin_subject),
        stream=subjects.STREAM_DEADLETTER,
        headers=headers,
    )
    if counter is not None:
        counter.labels(origin_subject=letter.origin_subject).inc()


def _max_payload(broker: NatsBroker) -> int | None:
    """The connected server's ``max_payload``; None before connecting (or in a test broker)."""
    try:
        value = broker.connection.max_payload
    except Exception:  # not connected: nothing to fit the letter to
        return None
    return value if isinstance(value, int) and value > _HEADROOM else None


def validation_errors(exc: ValidationError, *, prefix: str = "") -> list[ErrorDetail]:
    """Pydantic's errors as dead-letter error details (``loc`` dotted, ``$`` for the whole)."""
    return [
        ErrorDetail(
            loc=prefix + (".".join(str(part) for part in error["loc"]) or "$"),
            msg=error["msg"],
        )
        for error in exc.errors(include_url=False)
    ]
