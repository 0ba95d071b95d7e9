"""The one interface every notification channel implements.

Channels are registered explicitly in ``app.create_app``; a channel whose configuration is
wrong fails there, at start-up, rather than being skipped while alerts go nowhere.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import Field

from goalwatch.contracts import AlertNotification, DeliveryStatus
from goalwatch.contracts.base import Contract


class DeliveryResult(Contract):
    """What became of one notification on one channel."""

    status: DeliveryStatus = Field(description="sent, or failed after all retries.")
    attempts: int = Field(ge=1, description="Delivery attempts made.")
    error: str | None = Field(default=None, description="Last error when failed.")


class Channel(Protocol):
    """Delivers notifications somewhere people read them.

    ``deliver`` retries what is worth retrying itself and reports the final outcome; it raises
    only for bugs, never for a receiver that is down or refuses the message.
    """

    @property
    def name(self) -> str:
        """Channel name used in metrics labels and NotificationSent.channel."""
        ...

    async def deliver(self, *, notification: AlertNotification) -> DeliveryResult:
        """Deliver one notification and report the outcome."""
        ...
