"""Where the evaluator's alert transitions go: the two alert subjects of the ALERTS stream."""

from __future__ import annotations

from faststream.nats import NatsBroker

from goalwatch.consumers import provisioned
from goalwatch.contracts import AlertFired, AlertResolved, subjects


class AlertPublisher:
    """Publishes alert transitions, declared on the broker so the AsyncAPI document shows them."""

    def __init__(self, broker: NatsBroker) -> None:
        self._publishers = {
            subject: broker.publisher(
                subject,
                stream=provisioned(subjects.STREAM_ALERTS),
                schema=model,
                title=f"evaluator:{subject}",
                description=f"Every {model.__name__}, once per alert transition.",
            )
            for subject, model in (
                (subjects.ALERTS_FIRED, AlertFired),
                (subjects.ALERTS_RESOLVED, AlertResolved),
            )
        }

    async def __call__(self, alert: AlertFired | AlertResolved, subject: str, msg_id: str) -> None:
        """Publish ``alert`` on ``subject``, de-duplicated by ``msg_id``; wait for the ack."""
        await self._publishers[subject].publish(alert, headers={"Nats-Msg-Id": msg_id})
