"""Where the notifier reports what became of a delivery: outcomes and dead letters."""

from __future__ import annotations

from typing import Protocol

from faststream.nats import NatsBroker
from prometheus_client import Counter

from goalwatch.consumers import provisioned, publish_dead_letter
from goalwatch.contracts import DeadLetter, NotificationSent, subjects


class Outcomes(Protocol):
    """Records delivery outcomes and dead letters in JetStream (:class:`NatsOutcomes`)."""

    async def sent(self, outcome: NotificationSent) -> None:
        """Store ``outcome``, de-duplicated by its id; wait for the stream's ack."""

    async def dead_letter(self, letter: DeadLetter, *, msg_id: str | None) -> None:
        """Store ``letter``, de-duplicated by ``msg_id``; wait for the stream's ack."""


class NatsOutcomes:
    """:class:`Outcomes` on the NOTIFICATIONS and DEADLETTER streams."""

    def __init__(self, broker: NatsBroker, *, dead_letters: Counter | None = None) -> None:
        """``dead_letters`` (label origin_subject) counts the dead letters stored."""
        self._broker = broker
        self._dead_letters = dead_letters
        self._sent = broker.publisher(
            subjects.NOTIFICATIONS_SENT,
            stream=provisioned(subjects.STREAM_NOTIFICATIONS),
            schema=NotificationSent,
            title=f"notifier:{subjects.NOTIFICATIONS_SENT}",
            description="One NotificationSent per channel outcome of each alert transition, "
            "de-duplicated by its id.",
        )

    async def sent(self, outcome: NotificationSent) -> None:
        """Store ``outcome`` under ``Nats-Msg-Id`` = its id."""
        await self._sent.publish(outcome, headers={"Nats-Msg-Id": outcome.id})

    async def dead_letter(self, letter: DeadLetter, *, msg_id: str | None) -> None:
        """Store ``letter`` on its dead-letter subject."""
        await publish_dead_letter(self._broker, letter, msg_id=msg_id, counter=self._dead_letters)
