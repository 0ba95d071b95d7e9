"""Redis state that JetStream can rebuild: a checkpoint per consumer, a replay after a loss.

A consumer that keeps state in Redis acks a message once its writes are done, but Redis with
AOF ``everysec`` acknowledges writes before they reach the disk: a power cut loses up to the
last second of them, while JetStream still holds every message. So each batch is bracketed:

- :meth:`Checkpoint.begin` asks Redis who it is (``run_id``, new with every start of the
  server). If it is not the instance the last checkpoint was committed to, writes may have
  been lost since: it answers the range of stream sequences to replay — from the committed
  ack floor to the last message delivered — and the caller re-applies those messages (the
  state must be idempotent per message) before handling the batch.
- :meth:`Checkpoint.commit`, after the batch's writes, stores the consumer's ack floor as it
  was at ``begin`` with the ``run_id`` seen then, in one script that refuses if the server
  restarted meanwhile. Every message at or below that floor was acked, so its writes came
  before the checkpoint in Redis's append-only file: if the checkpoint survives a cut, so do
  they.

The cost is one ``INFO`` and one consumer-info request per batch and one script call after it.

:class:`Recovery` is the loop around one or more checkpoints that every such consumer runs:
catch up (replay what a restarted Redis may have lost) before handling messages, commit after,
and check on a timer while no messages arrive, all taking turns under one lock. The evaluator
brackets each batch with it; the notifier, which handles messages one by one and concurrently,
checks Redis's ``run_id`` before each message and commits on the timer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import FetchTimeoutError, NotFoundError
from redis.asyncio import Redis

logger = logging.getLogger(__name__)

KEY_PREFIX: Final = "goalwatch:checkpoint:"

# Store the checkpoint only if the server is the one `begin` saw, atomically: a checkpoint
# written to a restarted server would claim writes it never received.
_COMMIT: Final = """
if string.find(redis.call('INFO', 'server'), 'run_id:' .. ARGV[1], 1, true) then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

REPLAY_BATCH: Final = 200


@dataclass(frozen=True)
class Replay:
    """Stream sequences ``first`` to ``last`` (inclusive) must be applied again."""

    first: int
    last: int


@dataclass(frozen=True)
class _Committed:
    floor: int
    run_id: str


async def server_run_id(redis: Redis) -> str:
    """The Redis server's ``run_id``: new each time the server starts."""
    info: dict[str, Any] = await redis.info("server")
    return str(info["run_id"])


class StateCheckpoint(Protocol):
    """Where a consumer's Redis state stands against its stream (:class:`Checkpoint`)."""

    @property
    def confirmed(self) -> str | None:
        """The ``run_id`` of the Redis server the last commit of this process went to."""

    async def run_id(self) -> str:
        """The ``run_id`` of the Redis server now."""

    async def begin(self) -> Replay | None:
        """What must be applied again before the next messages, if anything."""

    async def commit(self) -> bool:
        """Record that the writes of the messages handled since :meth:`begin` are done."""

    def messages(self, replay: Replay) -> AsyncIterator[list[tuple[int, bytes]]]:
        """The stream's messages in ``replay``, in order."""


class Checkpoint:
    """Where one durable consumer's Redis state stands against its stream."""

    replay_when_new = False
    """Whether a Redis with no checkpoint at all replays the whole stream: only for state
    that is idempotent per message and cheap to check (else it is built from new messages)."""

    def __init__(
        self,
        *,
        redis: Redis,
        connection: Callable[[], Client],
        stream: str,
        subject: str,
        consumer: str,
        filter_subjects: Sequence[str] = (),
        inherits: Sequence[str] = (),
    ) -> None:
        """``connection`` returns the connected NATS client (the broker's, once it started);
        ``filter_subjects``: the subjects the consumer reads when it reads several
        (``subject`` a pattern covering them). ``inherits`` names the consumers this one
        replaced: until it has a checkpoint of its own, theirs stand for it (the oldest of
        them), so a Redis that lost writes around the change still has them replayed."""
        self._redis = redis
        self._connection = connection
        self._stream = stream
        self._subject = subject
        self._filter_subjects = list(filter_subjects)
        self._consumer = consumer
        self._key = f"{KEY_PREFIX}{consumer}"
        self._inherited_keys = [f"{KEY_PREFIX}{name}" for name in inherits]
        self._confirmed: str | None = None  # run_id the last commit went to, in this process
        self._begun: _Committed | None = None

    @property
    def confirmed(self) -> str | None:
        """The ``run_id`` the last commit of this process went to (None before the first):
        while Redis still answers with it, nothing was lost since."""
        return self._confirmed

    async def run_id(self) -> str:
        """The Redis server's ``run_id`` now (one ``INFO``)."""
        return await server_run_id(self._redis)

    async def begin(self) -> Replay | None:
        """Before a batch: what must be replayed first, if Redis may have lost writes."""
        run_id = await self.run_id()
        floor, delivered = await self._positions()
        self._begun = _Committed(floor=floor, run_id=run_id)
        if run_id == self._confirmed:
            return None
        committed = await self._committed() or await self._inherited()
        if committed is None:
            # Never committed here: nothing to compare with (a first start, or a Redis that
            # lost everything, which a checkpoint cannot tell apart).
            if self.replay_when_new and delivered:
                logger.warning(
                    "no checkpoint for %s in Redis: replaying %s from its first message to %d",
                    self._consumer,
                    self._stream,
                    delivered,
                )
                return Replay(first=1, last=delivered)
            if floor:
                logger.warning(
                    "no checkpoint for consumer %s in Redis: state is built from new messages "
                    "only (stream %s is at ack floor %d)",
                    self._consumer,
                    self._stream,
                    floor,
                )
            return None
        if committed.run_id == run_id:
            # The server that holds the checkpoint has run since: it lost nothing after it.
            self._confirmed = run_id
            return None
        if committed.floor >= delivered:
            return None
        logger.warning(
            "Redis restarted since consumer %s last committed its state (at stream sequence "
            "%d): replaying %s sequences %d to %d",
            self._consumer,
            committed.floor,
            self._stream,
            committed.floor + 1,
            delivered,
        )
        return Replay(first=committed.floor + 1, last=delivered)

    async def commit(self) -> bool:
        """After a batch's writes: record the floor seen at :meth:`begin`. False if Redis
        restarted during the batch (the next :meth:`begin` then asks for a replay)."""
        begun = self._begun
        if begun is None:
            raise RuntimeError("commit() without begin()")
        value = json.dumps({"floor": begun.floor, "run_id": begun.run_id})
        stored = await self._redis.eval(_COMMIT, 1, self._key, begun.run_id, value)
        if stored:
            self._confirmed = begun.run_id
            if self._inherited_keys:
                # This checkpoint stands for the inherited ones from now on.
                await self._redis.delete(*self._inherited_keys)
                self._inherited_keys = []
            return True
        self._confirmed = None
        logger.warning("Redis restarted during a batch of consumer %s", self._consumer)
        return False

    async def messages(self, replay: Replay) -> AsyncIterator[list[tuple[int, bytes]]]:
        """The stream's messages in ``replay``, in order, as (sequence, data) batches."""
        js = self._connection().jetstream()
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=replay.first,
            ack_policy=AckPolicy.NONE,
            # Removed by the server if this process dies before removing it.
            inactive_threshold=60.0,
            filter_subjects=self._filter_subjects or None,
        )
        subscription = await js.pull_subscribe(self._subject, stream=self._stream, config=config)
        try:
            done = False
            while not done:
                try:
                    fetched = await subscription.fetch(REPLAY_BATCH, timeout=1.0)
                except FetchTimeoutError:
                    return  # nothing more in the stream
                batch: list[tuple[int, bytes]] = []
                for msg in fetched:
                    sequence = msg.metadata.sequence.stream
                    if sequence > replay.last:
                        done = True
                        break
                    batch.append((sequence, msg.data))
                    done = sequence >= replay.last
                if batch:
                    yield batch
        finally:
            await subscription.unsubscribe()
            if config.name:  # set by pull_subscribe: the ephemeral consumer's name
                with suppress(NotFoundError):
                    await js.delete_consumer(self._stream, config.name)

    async def _positions(self) -> tuple[int, int]:
        """(ack floor, last delivered) of the consumer: every message up to the floor had its
        writes done; those after it up to the last delivered may not have."""
        info = await self._connection().jetstream().consumer_info(self._stream, self._consumer)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        delivered = info.delivered.stream_seq if info.delivered else 0
        return floor or 0, delivered or 0

    async def _committed(self, key: str | None = None) -> _Committed | None:
        raw = await self._redis.get(key or self._key)
        if raw is None:
            return None
        doc = json.loads(str(raw))
        return _Committed(floor=int(doc["floor"]), run_id=str(doc["run_id"]))

    async def _inherited(self) -> _Committed | None:
        """The checkpoints of the replaced consumers as one: the oldest floor, on the Redis
        server they all name (none, forcing a replay, when they disagree or one is missing).
        None when there are none."""
        found = [await self._committed(key) for key in self._inherited_keys]
        present = [committed for committed in found if committed is not None]
        if not present:
            return None
        run_ids = {committed.run_id for committed in found if committed is not None}
        agreed = len(run_ids) == 1 and len(present) == len(found)
        return _Committed(
            floor=min(committed.floor for committed in present),
            run_id=run_ids.pop() if agreed else "",
        )


class PublishedCheckpoint(Checkpoint):
    """Where state stands against the stream it publishes to, for a writer with an outbox.

    A writer that stores a change and the events it owes in one Redis step, and publishes
    the events after, has every message in its stream written to Redis before it was
    published. So the floor is simply the stream's last sequence when :meth:`begin` looks:
    no consumer is needed, and after a Redis restart everything published since the last
    commit is replayed; a Redis with no checkpoint replays the whole stream. ``consumer``
    only names the checkpoint.
    """

    replay_when_new = True

    async def _positions(self) -> tuple[int, int]:
        info = await self._connection().jetstream().stream_info(self._stream)
        last = info.state.last_seq or 0
        return last, last


Apply = Callable[[list[tuple[int, bytes]]], Awaitable[int]]
"""Applies replayed messages (stream sequence, data) to the state again; returns how many it
applied. Raises if one could not be applied: the replay is then tried again, whole."""


T = TypeVar("T")


class NotCaughtUp(Exception):
    """Redis state could not be brought up to date, so the messages at hand must wait."""


class Recovery:
    """Keeps Redis state caught up with the streams of its checkpoints.

    Each checkpoint comes with what re-applies its stream's messages. Catching up, committing
    and the idle check take turns under :attr:`turn`, so each checkpoint's ``begin`` and
    ``commit`` pair up.
    """

    def __init__(self, *, views: Sequence[tuple[StateCheckpoint, Apply]], what: str) -> None:
        """``what`` names the state in logs ("rule state", "inbox")."""
        if not views:
            raise ValueError("Recovery needs at least one checkpoint")
        self._views = tuple(views)
        self._what = what
        self.turn = asyncio.Lock()
        """Held while catching up or committing; a batch consumer holds it around its batch."""

    async def catch_up(self) -> None:
        """Begin every checkpoint and replay what Redis may have lost; hold :attr:`turn`."""
        for checkpoint, apply in self._views:
            replay = await checkpoint.begin()
            if replay is None:
                continue
            applied = 0
            async for batch in checkpoint.messages(replay):
                applied += await apply(batch)
            logger.warning(
                "%s replayed from stream sequences %d to %d: %d messages",
                self._what,
                replay.first,
                replay.last,
                applied,
            )

    @property
    def confirmed(self) -> str | None:
        """The Redis ``run_id`` every checkpoint last committed to, if they agree: while Redis
        answers with it, the state lost nothing since."""
        run_ids = {checkpoint.confirmed for checkpoint, _ in self._views}
        return run_ids.pop() if len(run_ids) == 1 else None

    async def in_turn(
        self, work: Callable[[], Awaitable[T]], *, only: StateCheckpoint | None = None
    ) -> T:
        """Catch up, run ``work``, commit: one turn, as a batch consumer takes it.

        ``only``: the checkpoint of the consumer whose messages ``work`` handles. While Redis
        is the server every checkpoint last committed to, only that one is begun and
        committed (one consumer's position read, not every view's); otherwise every view
        catches up first, in order, as without it.

        Raises :class:`NotCaughtUp` (and ``work`` does not run) when catching up failed —
        Redis or NATS trouble that a retry of the messages can outlast.
        """
        async with self.turn:
            try:
                begun = await self._begin(only)
            except Exception as exc:
                raise NotCaughtUp(f"{self._what} could not be brought up to date: {exc!r}") from exc
            result = await work()
            await self._commit(begun)
        return result

    async def _begin(self, only: StateCheckpoint | None) -> Sequence[StateCheckpoint]:
        # Short-circuits: begin only while every checkpoint's Redis is still the one now.
        if only is not None and self._confirms(await only.run_id()) and await only.begin() is None:
            return (only,)
        await self.catch_up()
        return [checkpoint for checkpoint, _ in self._views]

    async def commit(self) -> None:
        """Commit every checkpoint; hold :attr:`turn`. A failure is logged, not raised: the
        next catch-up then replays a little more."""
        await self._commit([checkpoint for checkpoint, _ in self._views])

    async def _commit(self, checkpoints: Sequence[StateCheckpoint]) -> None:
        for checkpoint in checkpoints:
            try:
                await checkpoint.commit()
            except Exception as exc:
                logger.warning("%s checkpoint not stored: %r", self._what, exc)

    async def use(self, views: Sequence[tuple[StateCheckpoint, Apply]]) -> None:
        """Keep ``views`` caught up from now on, in their order (a replica took or gave back
        a partition); waits for the turn under way."""
        if not views:
            raise ValueError("Recovery needs at least one checkpoint")
        async with self.turn:
            self._views = tuple(views)

    async def check(self) -> None:
        """Catch up and commit, so a Redis restart is noticed while no messages arrive."""
        async with self.turn:
            await self.catch_up()
            await self.commit()

    async def ready(self) -> None:
        """Before a message: one ``INFO``; if Redis is not the server every checkpoint last
        committed to (a restart, or the first message of this process), catch up first.
        Raises if that fails: the message must then wait for a retry."""
        if self._confirms(await self._views[0][0].run_id()):
            return
        async with self.turn:
            # Another message may have caught up while this one waited.
            if self._confirms(await self._views[0][0].run_id()):
                return
            await self.catch_up()
            await self.commit()

    async def watch(self, *, every: float, at_once: bool = False) -> None:
        """Run :meth:`check` every ``every`` seconds (first at once if ``at_once``) until
        cancelled."""
        if not at_once:
            await asyncio.sleep(every)
        while True:
            try:
                await self.check()
            except Exception as exc:  # Redis or NATS down: the next check or message retries
                logger.warning("%s check failed: %r", self._what, exc)
            await asyncio.sleep(every)

    def _confirms(self, run_id: str) -> bool:
        return all(checkpoint.confirmed == run_id for checkpoint, _ in self._views)
