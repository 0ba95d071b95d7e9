"""Redis commands issued in the same turn of the event loop, sent in one pipeline.

The evaluator handles up to 32 subjects at once, and each (event, rule) costs a read and a
compare-and-set write. Sent one by one, every command pays redis-py's whole path (a pooled
connection taken and given back, a socket write, a timeout, a turn of the loop for the
answer): measured, that per-command overhead was most of the evaluator's time. Coroutines
resumed together issue their next command together, so collecting what is issued before
the loop's next turn and sending it as one non-transactional pipeline pays that path once
for all of them (the "auto-pipelining" of ioredis and node-redis).

Nothing about a command changes: each is still its own command with its own answer, in the
order its caller issued it; a pipeline is not a transaction, and the store's compare-and-set
scripts keep every key's write atomic as before. An error answer (e.g. ``NOSCRIPT``) goes to
the caller of that command only; a connection error goes to every command of the pipeline,
as it would have reached each of them sent alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

Queue = Callable[[Pipeline], Any]
"""Adds one command to a pipeline, e.g. ``lambda pipe: pipe.hmget(key, fields)``."""


class AutoPipeline:
    """Sends the commands given to :meth:`call` before the loop's next turn in one pipeline."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queued: list[tuple[Queue, asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, queue: Queue) -> Any:
        """The answer to the one command ``queue`` adds, sent with its neighbours."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            # After the callbacks already ready: coroutines resumed in this turn queue theirs.
            loop.call_soon(self._flush)
        self._queued.append((queue, future))
        return await future

    async def call_all(self, queues: Sequence[Queue]) -> list[Any]:
        """The answers to the commands ``queues`` add, in their order, sent together (and
        with their neighbours); an error answer is raised (the first, if several)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        for queue in queues:
            if not self._queued:
                loop.call_soon(self._flush)
            future = loop.create_future()
            self._queued.append((queue, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Queue, asyncio.Future[Any]]]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for queue, _ in batch:
                    queue(pipe)
                answers = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is closing): cancel its callers too
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
