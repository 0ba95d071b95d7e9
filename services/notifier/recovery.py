"""The inbox kept caught up with the alerts stream when Redis loses its last writes.

The alert consumer (fired and resolved alike) has a :class:`goalwatch.checkpoints.Checkpoint`.
It handles messages one at a time (a fetched batch concurrently, one alert's in order), and
acknowledges each one after its inbox write (and its channels): so its ack floor, read at any
moment, is a stream sequence at or below which every alert already has its inbox write
confirmed by Redis. Committing that floor afterwards, to the same Redis server, puts the
checkpoint after those writes in the append-only file: if a cut keeps the checkpoint, it
kept them. After a restart (a new ``run_id``) the alerts from the committed floor to the
last one delivered are merged into the inbox again — the inbox only: see
:meth:`services.notifier.pipeline.Notifier.restore`.

Before each message :class:`InboxHandler` asks Redis for its ``run_id`` (one ``INFO``) and
catches up first if it changed, so no alert is judged against an inbox that is behind (a
transition that arrives after a later one it lost would otherwise be announced as new). The
checkpoints are committed every ``GOALWATCH_STATE_CHECK_SECONDS``, by the same check that
notices a restart while no alerts arrive.
"""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from goalwatch.checkpoints import Apply, Recovery
from goalwatch.consumers import Received, RedeliveryPolicy, Verdict
from services.notifier.metrics import INBOX_REPLAYED
from services.notifier.notification import Alert
from services.notifier.pipeline import Notifier

# A payload is one or the other by its fields (both contracts forbid extra ones).
_ALERT: TypeAdapter[Alert] = TypeAdapter(Alert)


def inbox_replay(notifier: Notifier) -> Apply:
    """What re-applies a replayed batch of the alerts stream: each alert into the inbox."""

    async def apply(batch: list[tuple[int, bytes]]) -> int:
        applied = 0
        for _, data in batch:
            try:
                alert = _ALERT.validate_json(data)
            except ValidationError:
                continue  # dead-lettered when it was first delivered
            restored = await notifier.restore(alert)
            INBOX_REPLAYED.labels("restored" if restored else "kept").inc()
            applied += 1
        return applied

    return apply


class InboxHandler:
    """The notifier's handler of alert messages, on an inbox caught up with the stream."""

    def __init__(self, *, notifier: Notifier, recovery: Recovery, policy: RedeliveryPolicy) -> None:
        self._notifier = notifier
        self._recovery = recovery
        self._policy = policy

    async def handle(self, message: Alert, received: Received) -> Verdict:
        """Catch the inbox up if Redis restarted, then handle the alert."""
        try:
            await self._recovery.ready()
        except Exception as exc:  # Redis, NATS or goals trouble: the alert waits for it
            # The verdict is logged where it is applied (a warning while it is retried).
            return self._policy.on_failure(
                deliveries=received.deliveries,
                reason=f"inbox could not be brought up to date: {exc!r}",
            )
        return await self._notifier.handle(message, received)
