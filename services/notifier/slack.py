"""Slack incoming webhook: one message per alert transition or digest, blocks with a text
fallback.

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
    until it fits; the fallback ``text`` is the one-line title. A digest is a section per part
    (its title, the firing alerts, the resolved ones), well under the 50 blocks a message
    holds; its list of alerts is shortened until every section fits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Final

import httpx

from goalwatch.contracts import AlertDigest, AlertNotification
from services.notifier.channels import DeliveryResult
from services.notifier.digests import digest_title, render_digest_fitted
from services.notifier.http_delivery import HttpDelivery, masked_url
from services.notifier.messages import render_fitted, slack_escape, slack_link
from services.notifier.templates import Language, render

SECTION_LIMIT: Final = 3000
"""Characters of mrkdwn text one section block holds."""
BLOCK_LIMIT: Final = 50
"""Blocks one message holds (a digest uses three at most: title, firing, resolved)."""


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

    def digest_payload(self, digest: AlertDigest) -> dict[str, Any]:
        """The request body for ``digest``: a section block for the title, one for the firing
        alerts and one for the resolved, each within Slack's limit."""
        text = render_digest_fitted(
            "slack.digest",
            self.language,
            digest,
            esc=slack_escape,
            bold=slack_bold,
            link=slack_link,
            limit=SECTION_LIMIT,
            size=_longest_section,
        )
        return {
            "text": digest_title(self.language, digest, esc=slack_escape),
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": section}}
                for section in _sections(text)
            ],
        }

    async def deliver_digest(self, *, digest: AlertDigest, attempt: int) -> DeliveryResult:
        """Post the digest once; say whether and when another attempt is worth it."""
        return await self._http.post_json(
            self._url,
            self.digest_payload(digest),
            attempt=attempt,
            fingerprint=digest.id,
        )


def _sections(text: str) -> list[str]:
    """The parts of a digest's text that are apart by an empty line: one block each. No part
    is empty, and no escaped name holds a line break, so none can start a block."""
    return [part.strip() for part in text.split("\n\n") if part.strip()][:BLOCK_LIMIT]


def _longest_section(text: str) -> int:
    return max((len(part) for part in _sections(text)), default=0)
