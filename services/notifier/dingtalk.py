"""DingTalk (钉钉) custom robot: one signed markdown message per alert transition or digest.

Request
    ``POST https://oapi.dingtalk.com/robot/send?access_token=T&timestamp=MS&sign=S`` with
    ``{"msgtype": "markdown", "markdown": {"title": "...", "text": "..."}}``.

Signing ("加签")
    ``timestamp`` is the current time in **milliseconds**; ``sign`` is
    ``urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")))``. DingTalk
    refuses a timestamp more than an hour away, so every attempt is signed afresh.

Answers
    HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``; another ``errcode`` means not posted.
    130101 and 410100 (more than 20 messages a minute) pass later and are retried; every
    other code (310000: a bad signature, keyword or IP; 300001: no such token) is permanent.

Limits
    20 messages a minute per robot, after which DingTalk throttles it for 10 minutes. The
    text is kept within 4096 bytes (no limit is documented; a longer chat message is not
    read), shortening the history and impact lists (a digest's list of alerts) first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

import httpx
from pydantic import SecretStr

from goalwatch.contracts import AlertDigest, AlertNotification
from goalwatch.settings import redacted_url
from services.notifier.channels import DeliveryResult
from services.notifier.digests import digest_title, render_digest_fitted
from services.notifier.http_delivery import HttpDelivery, error_code_check
from services.notifier.messages import markdown_escape, markdown_link, plain, render_fitted
from services.notifier.templates import Language, render
from services.notifier.wecom import markdown_bold

TEXT_LIMIT: Final = 4096
"""Bytes of markdown text goalwatch sends."""
RETRY_CODES: Final = frozenset({130101, 410100, -1})
"""errcodes that pass on a later attempt: rate limits and a busy system."""


def signature(*, secret: SecretStr, timestamp_ms: int) -> str:
    """DingTalk's ``sign`` query value for ``timestamp_ms`` (already URL-encoded)."""
    key = secret.get_secret_value().encode()
    message = f"{timestamp_ms}\n{secret.get_secret_value()}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


class DingTalkChannel:
    """Posts signed markdown messages to one DingTalk custom robot."""

    def __init__(
        self,
        *,
        url: str,
        secret: SecretStr,
        client: httpx.AsyncClient,
        language: Language = "zh",
        timeout: float = 5.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._url = url
        self._secret = secret
        self._clock = clock
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
        """Always ``dingtalk``."""
        return "dingtalk"

    def payload(self, notification: AlertNotification) -> dict[str, Any]:
        """The request body for ``notification``."""
        text = render_fitted(
            "dingtalk",
            self.language,
            notification,
            esc=markdown_escape,
            bold=markdown_bold,
            limit=TEXT_LIMIT,
        )
        # The title is what the chat list and the phone notification show: plain text.
        title = render("chat_title", self.language, notification, esc=plain).strip()
        return {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": text.strip()},
            "at": {"atMobiles": [], "isAtAll": False},
        }

    def signed_url(self) -> str:
        """The robot URL with this moment's ``timestamp`` and ``sign``."""
        timestamp_ms = int(self._clock() * 1000)
        sign = signature(secret=self._secret, timestamp_ms=timestamp_ms)
        separator = "&" if "?" in self._url else "?"
        return f"{self._url}{separator}timestamp={timestamp_ms}&sign={sign}"

    async def deliver(self, *, notification: AlertNotification, attempt: int) -> DeliveryResult:
        """Post the message once, signed now; say whether and when another attempt is worth it."""
        return await self._http.post_json(
            self.signed_url(),
            self.payload(notification),
            attempt=attempt,
            fingerprint=notification.fingerprint,
            check=self._check,
        )

    def digest_payload(self, digest: AlertDigest) -> dict[str, Any]:
        """The request body for ``digest``: one markdown message, a line per alert."""
        text = render_digest_fitted(
            "dingtalk.digest",
            self.language,
            digest,
            esc=markdown_escape,
            bold=markdown_bold,
            link=markdown_link,
            limit=TEXT_LIMIT,
        )
        return {
            "msgtype": "markdown",
            "markdown": {
                "title": digest_title(self.language, digest, esc=plain),
                "text": text.strip(),
            },
            "at": {"atMobiles": [], "isAtAll": False},
        }

    async def deliver_digest(self, *, digest: AlertDigest, attempt: int) -> DeliveryResult:
        """Post the digest once, signed now; say whether and when another attempt is worth it."""
        return await self._http.post_json(
            self.signed_url(),
            self.digest_payload(digest),
            attempt=attempt,
            fingerprint=digest.id,
            check=self._check,
        )
