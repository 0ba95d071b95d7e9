"""Work that one replica at a time must do, shared fairly among a service's live replicas.

Some consumers must not be read by two processes at once: the evaluator's partitions of the
metric events (one subject's events must be evaluated in their order, and a shared pull
consumer hands consecutive batches to different processes) and its consumers of goal
changes. Each such consumer is a *slot*; a replica serves a slot only while it holds the
slot's lease in Redis.

- **Leases** (:class:`Leases`): ``SET key <holder> NX PX <ttl>``, renewed every third of the
  TTL, released (only by their holder) on a graceful stop. A replica that dies stops renewing
  and its leases expire after the TTL.
- **Fair share**: every replica records itself in a sorted set of live replicas each time it
  renews; each serves at most ``ceil(slots / live replicas)`` slots, gives back what is over
  that (after the batch it is handling) and takes free slots while it is under. Replicas that
  come and go move slots within a renewal or two; none is served by two replicas, and every
  slot has a replica as long as one is alive.
- **Fencing**: a replica checks that it still holds a slot's lease after handling a batch and
  before acknowledging it; if it lost the lease (it stalled past the TTL) it acknowledges
  nothing and stops serving the slot. Leased consumers have ``max_ack_pending`` equal to
  their batch size, so the next holder cannot be handed messages after those the last one
  still holds; instead, a holder taking a slot whose consumer still has unacknowledged
  messages (its last holder died or was fenced) re-creates the consumer at the first message
  it owed, so those messages come again at once, in order, rather than after ``ack_wait``.
  What a fenced replica wrote to Redis before it noticed is harmless: evaluation is
  idempotent per event, its state changes are compare-and-set, and the alerts stream drops a
  transition published twice (by ``Nats-Msg-Id``).
- **Drain** (:meth:`LeasedConsumers.drain`): on SIGTERM each slot finishes the batch at hand,
  acknowledges it, and releases its lease; the replica leaves the live set, so the others
  take its slots at their next renewal.

Each slot's loop fetches from its durable pull consumer, decodes the batch into the slot's
contract (a payload that does not decode is dead-lettered), hands it to the slot's
:class:`goalwatch.consumers.BatchHandler` and settles the verdicts like every other consumer
(:func:`goalwatch.consumers.settle`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any, Final

import nats.errors
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis

from goalwatch.consumers import (
    BatchHandler,
    ConsumerSpec,
    Received,
    Reject,
    Verdict,
    received,
    settle,
    validation_errors,
)
from goalwatch.messaging import takeover_start

logger = logging.getLogger(__name__)

# An idle slot long-polls for one message this long: a message that arrives is handed over
# at once (a pull request for one message does not hold a later one back, see
# goalwatch.consumers.FETCH_TIMEOUT_SECONDS), and an idle replica makes two requests a
# second per slot instead of one per batch window. It also bounds how long a drain waits for
# an idle slot.
IDLE_FETCH_SECONDS: Final = 0.5

# Renewing a lease takes one script per replica every third of the TTL.
_RENEW: Final = """
local held = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[#held + 1] = i
  end
end
return held
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: the live set. ARGV: holder, its expiry (ms), now (ms), the set's own TTL (ms).
_BEAT: Final = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCARD', KEYS[1])
"""
_LEAVE: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
return 0
"""


def holder_id() -> str:
    """A name for this process among its replicas: host (the pod's name), pid and a random
    part (a restarted process on the same host is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Leases:
    """Leases on a service's slots, and the set of its live replicas, in Redis.

    Keys (``{lease}`` is a cluster hash tag: every key of a service in one slot, so one
    script renews them all): ``goalwatch:<service>:{lease}:<slot>`` (STRING, the holder,
    with the TTL) and ``goalwatch:<service>:{lease}:live`` (ZSET of holders by the time,
    on the replicas' clocks, until which each counts as live).
    """

    def __init__(self, redis: Redis, *, service: str, ttl: float, holder: str | None = None):
        """``ttl``: seconds a lease and a replica's place in the live set last unrenewed."""
        self._redis = redis
        self._prefix = f"goalwatch:{service}:{{lease}}:"
        self.ttl = ttl
        self.holder = holder or holder_id()
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._beat = redis.register_script(_BEAT)
        self._leave = redis.register_script(_LEAVE)

    def key(self, slot: str) -> str:
        """The Redis key of ``slot``'s lease."""
        return f"{self._prefix}{slot}"

    @property
    def _live(self) -> str:
        return f"{self._prefix}live"

    async def beat(self) -> int:
        """Count this replica live for one more TTL; the number of live replicas."""
        now = int(time.time() * 1000)
        ttl = int(self.ttl * 1000)
        live = await self._beat(keys=[self._live], args=[self.holder, now + ttl, now, ttl * 10])
        return max(int(live), 1)

    async def acquire(self, slot: str) -> bool:
        """Take ``slot``'s lease if nobody holds it."""
        return bool(
            await self._redis.set(self.key(slot), self.holder, nx=True, px=int(self.ttl * 1000))
        )

    async def renew(self, slots: Sequence[str]) -> set[str]:
        """Extend the leases of ``slots`` this replica still holds; those it holds."""
        if not slots:
            return set()
        held = await self._renew(
            keys=[self.key(slot) for slot in slots], args=[self.holder, int(self.ttl * 1000)]
        )
        return {slots[int(index) - 1] for index in held}

    async def holds(self, slot: str) -> bool:
        """Whether this replica holds ``slot``'s lease now (renewing it)."""
        return slot in await self.renew([slot])

    async def release(self, slot: str) -> None:
        """Give ``slot``'s lease back, if this replica still holds it."""
        await self._release(keys=[self.key(slot)], args=[self.holder])

    async def leave(self) -> None:
        """Leave the live set: the others' fair share grows at their next renewal."""
        await self._leave(keys=[self._live], args=[self.holder])

    async def holders(self, slots: Sequence[str]) -> dict[str, str | None]:
        """Who holds each of ``slots`` (None: nobody), for tests and operators."""
        values = await self._redis.mget([self.key(slot) for slot in slots])
        return {
            slot: None if value is None else value.decode() if isinstance(value, bytes) else value
            for slot, value in zip(slots, values, strict=True)
        }


def fair_share(slots: int, live: int) -> int:
    """The most slots one of ``live`` replicas serves: together they serve all."""
    return math.ceil(slots / max(live, 1))


@dataclass
class _Slot:
    name: str
    spec: ConsumerSpec
    model: TypeAdapter[Any]
    handler: BatchHandler[Any]
    on_acquire: Callable[[], Awaitable[None]] | None = None
    on_release: Callable[[], Awaitable[None]] | None = None
    # Set while the slot is served: stop asks its loop to finish the batch and give it back.
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class LeasedConsumers:
    """A service's slots: durable pull consumers each served by one replica at a time."""

    def __init__(
        self,
        *,
        leases: Leases,
        broker: NatsBroker,
        connection: Callable[[], Client],
        service: str,
        seconds: Histogram,
        dead_letters: Counter | None = None,
    ) -> None:
        """``connection`` returns the connected NATS client (the broker's once it started);
        ``seconds`` (labels service, handler) times every batch; ``dead_letters`` (label
        origin_subject) counts the messages kept as dead letters."""
        self._leases = leases
        self._broker = broker
        self._connection = connection
        self._service = service
        self._seconds = seconds
        self._dead_letters = dead_letters
        self._slots: dict[str, _Slot] = {}
        self._draining = False
        self.changed = asyncio.Event()
        """Set whenever this replica starts or stops serving a slot (tests await it)."""

    @property
    def leases(self) -> Leases:
        """The leases the slots are served under."""
        return self._leases

    @property
    def specs(self) -> list[ConsumerSpec]:
        """Every slot's consumer, for :func:`goalwatch.messaging.ensure_streams`."""
        return [slot.spec for slot in self._slots.values()]

    @property
    def serving(self) -> list[str]:
        """The slots this replica serves now."""
        return [name for name, slot in self._slots.items() if slot.task is not None]

    def add(
        self,
        name: str,
        spec: ConsumerSpec,
        model: Any,
        handler: BatchHandler[Any],
        *,
        on_acquire: Callable[[], Awaitable[None]] | None = None,
        on_release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Serve ``spec`` as slot ``name`` while holding its lease: batches decoded into
        ``model`` (a contract, or a union of contracts) go to ``handler``. ``on_acquire`` runs
        before the first batch once the lease is taken, ``on_release`` after the last."""
        if spec.max_ack_pending != spec.batch_size:
            raise ValueError(
                f"a leased consumer's max_ack_pending must be its batch size ({spec.name}): "
                "the next holder must not be handed messages after those the last one holds"
            )
        self._slots[name] = _Slot(name, spec, TypeAdapter(model), handler, on_acquire, on_release)

    async def run(self) -> None:
        """Renew, rebalance and serve until cancelled (every third of the lease TTL)."""
        every = self._leases.ttl / 3
        while True:
            try:
                await self.rebalance()
            except Exception as exc:  # Redis down: leases lapse, the slots' fences notice
                logger.warning("%s: could not renew or rebalance its slots: %r", self._service, exc)
            await asyncio.sleep(every)

    async def rebalance(self) -> None:
        """One renewal: count the live replicas, renew what this one serves, stop what it lost,
        give back what is over its fair share and take free slots while under it."""
        if self._draining:
            return
        live = await self._leases.beat()
        serving = self.serving
        held = await self._leases.renew(serving)
        for name in serving:
            if name not in held:
                logger.warning(
                    "%s lost the lease of %s (it expired, another replica may serve it now): "
                    "stops serving it",
                    self._service,
                    name,
                )
                self._slots[name].stop.set()
        share = fair_share(len(self._slots), live)
        serving = [name for name in self.serving if not self._slots[name].stop.is_set()]
        for name in serving[share:]:
            # Given back after the batch at hand; another replica takes it at its renewal.
            self._slots[name].stop.set()
        if len(serving) >= share:
            return
        # Each replica tries the free slots from its own place in the ring, so replicas
        # starting together rarely race for the same ones.
        names = list(self._slots)
        start = zlib.crc32(self._leases.holder.encode()) % len(names)
        for name in names[start:] + names[:start]:
            if len(serving) >= share:
                break
            if self._slots[name].task is not None or not await self._leases.acquire(name):
                continue
            self._start(self._slots[name])
            serving.append(name)

    def _start(self, slot: _Slot) -> None:
        slot.stop = asyncio.Event()
        slot.task = asyncio.create_task(self._serve(slot), name=f"slot {slot.name}")
        self.changed.set()

    async def drain(self, *, within: float) -> None:
        """Stop taking slots, let every slot finish and acknowledge the batch at hand, give
        the leases back and leave the live set; after ``within`` seconds the slots still
        busy are abandoned (their messages come again to the next holder)."""
        self._draining = True
        tasks = [slot.task for slot in self._slots.values() if slot.task is not None]
        for slot in self._slots.values():
            slot.stop.set()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=within)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        with suppress(Exception):
            await self._leases.leave()

    async def retire(
        self, name: str, spec: ConsumerSpec, model: Any, handler: BatchHandler[Any]
    ) -> bool:
        """Serve ``spec`` under lease ``name`` until it owes nothing, then delete it.

        For a consumer whose work others take over from a given point (the evaluator's one
        consumer of every metric event, before partitions): True once it is deleted, False if
        another replica holds its lease (or took it meanwhile): try again later.
        """
        if not await self._leases.acquire(name):
            return False
        slot = _Slot(name, spec, TypeAdapter(model), handler)
        js = self._connection().jetstream()
        try:
            await self._take_over(spec)
            pull = await js.pull_subscribe_bind(durable=spec.name, stream=spec.stream)
            try:
                while True:
                    messages = await _fetch(pull, spec, idle=False)
                    if messages:
                        if not await self._handle(slot, messages):
                            return False
                        continue
                    if not await self._leases.holds(name):
                        return False
                    info = await js.consumer_info(spec.stream, spec.name)
                    if not info.num_pending and not info.num_ack_pending:
                        await js.delete_consumer(spec.stream, spec.name)
                        logger.warning(
                            "consumer %s of %s handled everything it owed and is deleted",
                            spec.name,
                            spec.stream,
                        )
                        return True
            finally:
                with suppress(Exception):
                    await pull.unsubscribe()
        finally:
            with suppress(Exception):
                await self._leases.release(name)

    async def _serve(self, slot: _Slot) -> None:
        name = slot.name
        try:
            if slot.on_acquire is not None:
                await slot.on_acquire()
            await self._take_over(slot.spec)
            # The holder (host:pid:...) tells replicas apart: they all log as the service.
            logger.info("%s %s serves %s", self._service, self._leases.holder, name)
            await self._loop(slot)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s: serving %s failed; the slot is given back", self._service, name)
        finally:
            if slot.on_release is not None:
                with suppress(Exception):
                    await slot.on_release()
            with suppress(Exception):
                await self._leases.release(name)
            slot.task = None
            self.changed.set()
            logger.info("%s %s no longer serves %s", self._service, self._leases.holder, name)

    async def _take_over(self, spec: ConsumerSpec) -> None:
        """Make the messages the slot's last holder did not acknowledge come again now.

        Its last holder died or was fenced holding them; they would come again after
        ``ack_wait``. A graceful holder acknowledges all it fetched before it gives the slot
        back, so there is nothing to do then.
        """
        js = self._connection().jetstream()
        info = await js.consumer_info(spec.stream, spec.name)
        if not info.num_ack_pending:
            return
        start = await takeover_start(js, spec.stream, [spec.name])
        assert start is not None  # the consumer exists
        await js.delete_consumer(spec.stream, spec.name)
        await js.add_consumer(
            spec.stream,
            replace(
                spec.config(), deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
            ),
        )
        logger.warning(
            "consumer %s held %d unacknowledged message(s) of a replica that is gone: "
            "re-created at stream sequence %d so they come again now",
            spec.name,
            info.num_ack_pending,
            start,
        )

    async def _loop(self, slot: _Slot) -> None:
        spec = slot.spec
        js = self._connection().jetstream()
        pull = await js.pull_subscribe_bind(durable=spec.name, stream=spec.stream)
        try:
            idle = True
            while not slot.stop.is_set():
                messages = await _fetch(pull, spec, idle=idle)
                idle = len(messages) < spec.batch_size
                if messages and not await self._handle(slot, messages):
                    return
        finally:
            with suppress(Exception):
                await pull.unsubscribe()

    async def _handle(self, slot: _Slot, messages: list[Msg]) -> bool:
        """Handle and settle one batch; False if the lease was lost meanwhile (nothing is
        acknowledged then: the next holder handles the batch again)."""
        spec = slot.spec
        facts = [received(raw, consumer=spec.name) for raw in messages]
        verdicts: list[Verdict | None] = []
        decoded: list[Any] = []
        for raw in messages:
            try:
                decoded.append(slot.model.validate_json(raw.data))
                verdicts.append(None)
            except ValidationError as exc:
                errors = validation_errors(exc)
                verdicts.append(
                    Reject(
                        reason=f"not a valid message for {raw.subject} ({len(errors)} "
                        f"error(s)): " + "; ".join(f"{e.loc}: {e.msg}" for e in errors[:3]),
                        errors=tuple(errors),
                        cause="invalid",
                    )
                )
        valid = [i for i, verdict in enumerate(verdicts) if verdict is None]
        with self._seconds.labels(service=self._service, handler=spec.name).time():
            if valid:
                try:
                    handled = await slot.handler.handle_batch(decoded, [facts[i] for i in valid])
                except Exception as exc:
                    logger.exception("handler of %s failed", spec.name)
                    handled = [_failed(spec, facts[i], exc) for i in valid]
                for index, outcome in zip(valid, handled, strict=True):
                    verdicts[index] = outcome
            if not await self._leases.holds(slot.name):
                logger.warning(
                    "%s lost the lease of %s while handling a batch of %d: not acknowledging "
                    "it, the next holder handles it again",
                    self._service,
                    slot.name,
                    len(messages),
                )
                return False
            for raw, settled, fact in zip(messages, verdicts, facts, strict=True):
                assert settled is not None
                await settle(self._broker, raw, settled, received=fact, counter=self._dead_letters)
        return True


def _failed(spec: ConsumerSpec, facts: Received, exc: Exception) -> Verdict:
    return spec.policy.on_failure(deliveries=facts.deliveries, reason=f"handling failed: {exc!r}")


async def _fetch(pull: Any, spec: ConsumerSpec, *, idle: bool) -> list[Msg]:
    """The next batch: after an idle spell, one message long-polled and then what else is
    there within the batch window; under load, a whole batch."""
    try:
        if not idle:
            return list(await pull.fetch(spec.batch_size, timeout=spec.batch_window))
        first = list(await pull.fetch(1, timeout=IDLE_FETCH_SECONDS))
    except (nats.errors.TimeoutError, TimeoutError):
        return []
    if spec.batch_size == 1:
        return first
    try:
        more = list(await pull.fetch(spec.batch_size - 1, timeout=spec.batch_window))
    except (nats.errors.TimeoutError, TimeoutError):
        more = []
    return first + more


def metric_slot(partition: int) -> str:
    """The slot name of metrics partition ``partition``."""
    return f"metrics-{partition}"


def partition_specs(base: ConsumerSpec, partitions: int) -> list[tuple[str, ConsumerSpec]]:
    """One leased consumer per partition, named ``<base>-p<partition>``, each reading its
    partition's subject of ``base.subject``."""
    return [
        (
            metric_slot(partition),
            replace(
                base,
                name=f"{base.name}-p{partition}",
                subject=f"{base.subject}.{partition}",
                max_ack_pending=base.batch_size,
            ),
        )
        for partition in range(partitions)
    ]
