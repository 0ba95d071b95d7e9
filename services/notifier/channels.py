"""The one interface every notification channel implements.

Channels are registered explicitly in ``app.create_app``; a channel whose configuration is
wrong fails there, at start-up, rather than being skipped while alerts go nowhere.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import Field

from goalwatch.contracts import AlertDigest, AlertNotification, DeliveryStatus
from goalwatch.contracts.base import Contract


class DeliveryResult(Contract):
    """What became of one notification on one channel."""

    status: DeliveryStatus = Field(description="sent, or failed.")
    attempts: int = Field(ge=1, description="Delivery attempts made.")
    error: str | None = Field(default=None, description="Last error when failed.")
    retry_in: float | None = Field(
        default=None,
        ge=0,
        description="Failed, but worth another attempt after this many seconds; None when "
        "sent, or when the channel has given up (a permanent error, or no attempts left).",
    )


class Channel(Protocol):
    """Delivers notifications somewhere people read them.

    ``deliver`` makes one attempt and reports it: sent, failed for good, or failed with the
    delay after which another attempt is worth making (``retry_in``). It never waits for a
    retry itself: the notifier asks JetStream to redeliver the alert after that delay, so a
    failing receiver holds no consumer. It raises only for bugs, never for a receiver that
    is down or refuses the message.
    """

    @property
    def name(self) -> str:
        """Channel name used in metrics labels and NotificationSent.channel."""
        ...

    async def deliver(self, *, notification: AlertNotification, attempt: int) -> DeliveryResult:
        """Make attempt number ``attempt`` (from 1) at delivering ``notification``."""
        ...

    async def deliver_digest(self, *, digest: AlertDigest, attempt: int) -> DeliveryResult:
        """Make attempt number ``attempt`` at delivering several alerts as one message, with
        the same rules as :meth:`deliver` (one attempt, ``retry_in`` when worth another)."""
        ...
