"""Keep something alive while a block of code runs: a lease, a claim, an ack deadline.

Two things in goalwatch live exactly as long as the work that holds them: a JetStream message
being handled (``in_progress`` pushes its ``ack_wait`` back) and a notifier delivery claim
(its TTL is pushed back). Both are renewed on a timer while the work runs and simply lapse
when the process dies, which is what hands the work to someone else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

logger = logging.getLogger(__name__)


@asynccontextmanager
async def renewing(
    renew: Callable[[], Awaitable[bool | None]], *, every: float, what: str
) -> AsyncIterator[None]:
    """Call ``renew`` every ``every`` seconds while the block runs.

    ``renew`` returning False means the thing is gone (another owner took it): renewing
    stops, and the block goes on — it finds out for itself when it next touches the thing.
    A failed renewal is logged and tried again at the next tick: a lapse only risks the work
    being redone, which every caller tolerates.
    """

    async def loop() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                if await renew() is False:
                    logger.warning("%s lapsed while in use", what)
                    return
            except Exception as exc:
                logger.warning("renewing %s failed: %s", what, exc)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
