"""From one consumer of every metric event to one per partition, on an evaluator's start.

Versions before partitioning stored every metric event on ``goalwatch.metrics.recorded.v1``,
read by one durable consumer, ``evaluator``. Ingestion now stores them on
``goalwatch.metrics.recorded.v1.<partition>`` (the stream keeps both subjects), and the
evaluator reads each partition through a consumer of its own. An upgraded evaluator, before
it serves any partition, lets one replica (the holder of the ``legacy`` lease) evaluate what
the old consumer still owes, in stream order, and delete it; every replica waits until it is
gone, so no subject's newer events (on its partition) are evaluated before its older ones
(on the bare subject).

That holds once nothing stores on the bare subject any more: the old consumer is retired only
after an ingestion that partitions has provisioned the stream (its metadata names the number
of partitions), so ingestion is upgraded first (docs/scaling.md). The number of partitions
recorded there must be the evaluator's own: an evaluator with another number would leave
partitions unread, so it refuses to start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from goalwatch.consumers import ConsumerSpec
from goalwatch.contracts import MetricRecorded
from goalwatch.messaging import stream_partitions
from goalwatch.partitions import LeasedConsumers
from services.evaluator.consumer import PartitionHandler

logger = logging.getLogger(__name__)

LEGACY_SLOT = "legacy"
"""The lease of the consumer of every metric event while it is being retired."""

# How often a replica waiting for the old consumer to be retired looks again, and says so.
_WAIT_SECONDS = 1.0
_SAY_SECONDS = 10.0


class PartitionsMismatch(RuntimeError):
    """Ingestion stores on a number of partitions other than the evaluator's setting."""


class Migration:
    """Retires the evaluator's consumer of every metric event, if there is one."""

    def __init__(
        self,
        *,
        leased: LeasedConsumers,
        legacy: ConsumerSpec,
        handler: PartitionHandler,
        partitions: int,
        connection: Callable[[], Client],
    ) -> None:
        """``legacy``: the old consumer; ``handler`` evaluates its events (with its own
        checkpoint); ``partitions``: the evaluator's GOALWATCH_METRICS_PARTITIONS."""
        self._leased = leased
        self._legacy = legacy
        self._handler = handler
        self._partitions = partitions
        self._connection = connection

    async def run(self) -> None:
        """Return once partitions may be served: the numbers agree and the old consumer, if
        any, is gone. Raises :class:`PartitionsMismatch` when they do not agree."""
        js = self._connection().jetstream()
        said = 0.0
        while True:
            recorded = await stream_partitions(js)
            if recorded is not None and recorded != self._partitions:
                raise PartitionsMismatch(
                    f"ingestion stores metric events on {recorded} partitions (metadata of "
                    f"stream {self._legacy.stream}) but GOALWATCH_METRICS_PARTITIONS is "
                    f"{self._partitions} here: give ingestion and the evaluator the same value "
                    "(docs/scaling.md says how to change it)"
                )
            try:
                await js.consumer_info(self._legacy.stream, self._legacy.name)
            except NotFoundError:
                return
            if recorded is None:
                if time.monotonic() - said >= _SAY_SECONDS:
                    said = time.monotonic()
                    logger.warning(
                        "consumer %s of %s still reads the unpartitioned subject: waiting for "
                        "ingestion to be upgraded (it records the partitions in the stream) "
                        "before retiring it",
                        self._legacy.name,
                        self._legacy.stream,
                    )
                await asyncio.sleep(_WAIT_SECONDS)
                continue
            await self._handler.taken()
            try:
                retired = await self._leased.retire(
                    LEGACY_SLOT, self._legacy, MetricRecorded, self._handler
                )
            finally:
                await self._handler.given_back()
            if not retired:
                if time.monotonic() - said >= _SAY_SECONDS:
                    said = time.monotonic()
                    logger.warning(
                        "another replica is retiring consumer %s: waiting until it is gone",
                        self._legacy.name,
                    )
                await asyncio.sleep(self._leased.leases.ttl / 3)
