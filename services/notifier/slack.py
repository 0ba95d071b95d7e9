"""Slack incoming webhook: one message per alert transition, blocks with a text fallback.

Request
    ``POST https://hooks.slack.com/services/T/B/X`` with
    ``{"text": "<title>", "blocks": [{"type": "section", "text": {"type": "mrkdwn", ...}}]}``.
    The URL is the credential (no signature); its path is logged masked.

Answers
    HTTP 200 ``ok``. 429 (about one message a second, with short bursts) carries
    ``Retry-After``, which is honoured (capped at 30 s); 5xx and network errors are retried;
    other 4xx (``invalid_payload``, ``channel_not_found``, ``channel_is_archived``) are
    permanent.

Limits
    A section's text is at most 3000 characters: the history and impact lists are shortened
    until it fits; the fallback ``text`` is the one-line title.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Final

import httpx

from goalwatch.contracts import AlertNotification
from services.notifier.channels import DeliveryResult
from services.notifier.http_delivery import HttpDelivery, masked_url
from services.notifier.messages import render_fitted, slack_escape, slack_link
from services.notifier.templates import Language, render

SECTION_LIMIT: Final = 3000
"""Characters of mrkdwn text one section block holds."""


def slack_bold(text: str) -> str:
    """Bold in Slack's mrkdwn."""
    return f"*{text}*"


class SlackChannel:
    """Posts messages to one Slack incoming webhook."""

    def __init__(
        self,
        *,
        url: str,
        client: httpx.AsyncClient,
        language: Language = "en",
        timeout: float = 5.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._url = url
        self.language: Language = language
        self._http = HttpDelivery(
            channel=self.name,
            client=client,
            # /services/T/B/X: the last part is the webhook's secret.
            where=masked_url(url, keep_segments=1),
            timeout=timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            clock=clock,
            jitter=jitter,
        )

    @property
    def name(self) -> str:
        """Always ``slack``."""
        return "slack"

    def payload(self, notification: AlertNotification) -> dict[str, Any]:
        """The request body for ``notification``."""
        text = render_fitted(
            "slack",
            self.language,
            notification,
            esc=slack_escape,
            bold=slack_bold,
            limit=SECTION_LIMIT,
            size=len,
            link=slack_link,
        )
        # The fallback shows in notifications and clients without blocks; Slack reads it as
        # mrkdwn too, so it is escaped the same way.
        fallback = render("chat_title", self.language, notification, esc=slack_escape).strip()
        return {
            "text": fallback,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text.strip()}}],
        }

    async def deliver(self, *, notification: AlertNotification, attempt: int) -> DeliveryResult:
        """Post the message once; say whether and when another attempt is worth it."""
        return await self._http.post_json(
            self._url,
            self.payload(notification),
            attempt=attempt,
            fingerprint=notification.fingerprint,
        )
