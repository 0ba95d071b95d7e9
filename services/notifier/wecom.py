"""WeCom (企业微信) group robot: one markdown message per alert transition or digest.

Request
    ``POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY`` with
    ``{"msgtype": "markdown", "markdown": {"content": "..."}}``. The key in the URL is the
    credential: there is no signature, and the URL is never logged with its query.

Answers
    WeCom answers HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``; any other ``errcode``
    means the message was not posted. 130101 (more than 20 messages a minute to the robot)
    and 45009 (API frequency limit) and -1 (system busy) pass later, so they are retried like
    a 429; every other code (a wrong key, a malformed message) is permanent.

Limits
    The markdown ``content`` is at most 4096 bytes: the recent history and the impact list
    are shortened ("… and N more") until the message fits; so is a digest's list of alerts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Final

import httpx

from goalwatch.contracts import AlertDigest, AlertNotification
from goalwatch.settings import redacted_url
from services.notifier.channels import DeliveryResult
from services.notifier.digests import render_digest_fitted
from services.notifier.http_delivery import HttpDelivery, error_code_check
from services.notifier.messages import markdown_escape, markdown_link, render_fitted
from services.notifier.templates import Language

CONTENT_LIMIT: Final = 4096
"""Bytes of markdown content WeCom accepts."""
RETRY_CODES: Final = frozenset({130101, 45009, -1})
"""errcodes that pass on a later attempt: rate limits and a busy system."""


def markdown_bold(text: str) -> str:
    """Bold in WeCom's and DingTalk's markdown."""
    return f"**{text}**"


class WeComChannel:
    """Posts markdown messages to one WeCom group robot."""

    def __init__(
        self,
        *,
        url: str,
        client: httpx.AsyncClient,
        language: Language = "zh",
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
            where=redacted_url(url),
            timeout=timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            clock=clock,
            jitter=jitter,
        )
        self._check = error_code_check(
            code_fields=("errcode",), message_fields=("errmsg",), retry_codes=RETRY_CODES
        )

    @property
    def name(self) -> str:
        """Always ``wecom``."""
        return "wecom"

    def payload(self, notification: AlertNotification) -> dict[str, Any]:
        """The request body for ``notification``."""
        content = render_fitted(
            "wecom",
            self.language,
            notification,
            esc=markdown_escape,
            bold=markdown_bold,
            limit=CONTENT_LIMIT,
        )
        return {"msgtype": "markdown", "markdown": {"content": content.strip()}}

    async def deliver(self, *, notification: AlertNotification, attempt: int) -> DeliveryResult:
        """Post the message once; say whether and when another attempt is worth it."""
        return await self._http.post_json(
            self._url,
            self.payload(notification),
            attempt=attempt,
            fingerprint=notification.fingerprint,
            check=self._check,
        )

    def digest_payload(self, digest: AlertDigest) -> dict[str, Any]:
        """The request body for ``digest``: one markdown message, a line per alert."""
        content = render_digest_fitted(
            "wecom.digest",
            self.language,
            digest,
            esc=markdown_escape,
            bold=markdown_bold,
            link=markdown_link,
            limit=CONTENT_LIMIT,
        )
        return {"msgtype": "markdown", "markdown": {"content": content.strip()}}

    async def deliver_digest(self, *, digest: AlertDigest, attempt: int) -> DeliveryResult:
        """Post the digest once; say whether and when another attempt is worth it."""
        return await self._http.post_json(
            self._url,
            self.digest_payload(digest),
            attempt=attempt,
            fingerprint=digest.id,
            check=self._check,
        )
