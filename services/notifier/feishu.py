"""Feishu / Lark (飞书) custom bot: one signed interactive card per alert transition or digest.

Request
    ``POST https://open.feishu.cn/open-apis/bot/v2/hook/ID`` (Lark: ``open.larksuite.com``)
    with ``{"timestamp": "SEC", "sign": "...", "msg_type": "interactive", "card": {...}}``:
    a card whose header carries the title, coloured by severity (blue info, yellow warning,
    red critical, green resolved), and one ``lark_md`` block with the message.

Signing ("签名校验")
    ``timestamp`` is the current time in **seconds**; ``sign`` is
    ``base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))`` — the key and the message
    are the other way round from DingTalk. Feishu refuses a timestamp more than an hour away,
    so every attempt is signed afresh. The hook id in the URL is a credential too: it is
    logged masked.

Answers
    HTTP 200 with ``{"code": 0, "msg": "success"}`` (older hooks: ``StatusCode``); another
    code means not posted. 9499 and 11232 (too many requests) pass later and are retried;
    every other code (19021: a bad signature, 19024: a keyword check) is permanent.

Limits
    The request body is at most 20 KB; about 100 messages a minute and 5 a second per hook.
    The impact and history lists (a digest's list of alerts) are shortened until the whole
    body fits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from typing import Any, Final

import httpx
from pydantic import SecretStr

from goalwatch.contracts import AlertDigest, AlertNotification, AlertState, Severity
from services.notifier.channels import DeliveryResult
from services.notifier.digests import digest_title, highest_severity, render_digest_fitted
from services.notifier.http_delivery import HttpDelivery, error_code_check, masked_url
from services.notifier.messages import lark_md_escape, markdown_link, plain, render_fitted
from services.notifier.templates import Language, render
from services.notifier.wecom import markdown_bold

BODY_LIMIT: Final = 20 * 1024
"""Bytes of request body Feishu accepts."""
RETRY_CODES: Final = frozenset({9499, 11232})
"""codes that pass on a later attempt: the hook's rate limits."""
HEADER_COLOURS: Final = {
    Severity.INFO: "blue",
    Severity.WARNING: "yellow",
    Severity.CRITICAL: "red",
}
RESOLVED_COLOUR: Final = "green"


def signature(*, secret: SecretStr, timestamp_s: int) -> str:
    """Feishu's ``sign`` for ``timestamp_s``."""
    key = f"{timestamp_s}\n{secret.get_secret_value()}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def header_colour(notification: AlertNotification) -> str:
    """The card header's colour template for ``notification``."""
    if notification.state is AlertState.RESOLVED:
        return RESOLVED_COLOUR
    return HEADER_COLOURS[notification.severity]


def digest_colour(digest: AlertDigest) -> str:
    """The card header's colour for ``digest``: its loudest firing alert's, green when every
    alert has resolved."""
    top = highest_severity(digest.firing)
    return RESOLVED_COLOUR if top is None else HEADER_COLOURS[top]


# Sizes are measured as sent; a base64 SHA-256 signature is 44 characters.
_SIGN_PLACEHOLDER: Final = "=" * 44


def _digest_card(*, title: str, colour: str, content: str) -> dict[str, Any]:
    return {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": title}, "template": colour},
        "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": content}}],
    }


def _body(card: dict[str, Any], *, timestamp_s: int, sign: str) -> bytes:
    return json.dumps(
        {"timestamp": str(timestamp_s), "sign": sign, "msg_type": "interactive", "card": card},
        ensure_ascii=False,
    ).encode()


class FeishuChannel:
    """Posts signed interactive cards to one Feishu or Lark custom bot."""

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
            # /open-apis/bot/v2/hook/<id>: the id is the hook's credential.
            where=masked_url(url, keep_segments=4),
            timeout=timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            clock=clock,
            jitter=jitter,
        )
        self._check = error_code_check(
            code_fields=("code", "StatusCode"),
            message_fields=("msg", "StatusMessage"),
            retry_codes=RETRY_CODES,
        )

    @property
    def name(self) -> str:
        """Always ``feishu``."""
        return "feishu"

    def card(self, notification: AlertNotification) -> dict[str, Any]:
        """The interactive card for ``notification``, within the body limit once signed."""
        title = render("chat_title", self.language, notification, esc=plain).strip()

        def card_with(content: str) -> dict[str, Any]:
            return {
                "config": {"wide_screen_mode": True},
                "header": {
                    "title": {"tag": "plain_text", "content": title},
                    "template": header_colour(notification),
                },
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": content}}],
            }

        # Measured as sent: JSON escaping and the signature fields count towards the 20 KB.
        placeholder = "=" * 44  # a base64 SHA-256 is 44 characters

        def size(content: str) -> int:
            return len(_body(card_with(content), timestamp_s=10**10, sign=placeholder))

        content = render_fitted(
            "feishu",
            self.language,
            notification,
            esc=lark_md_escape,
            bold=markdown_bold,
            limit=BODY_LIMIT,
            size=size,
        )
        return card_with(content.strip())

    async def deliver(self, *, notification: AlertNotification, attempt: int) -> DeliveryResult:
        """Post the card once, signed now; say whether and when another attempt is worth it."""
        timestamp_s = int(self._clock())
        body = _body(
            self.card(notification),
            timestamp_s=timestamp_s,
            sign=signature(secret=self._secret, timestamp_s=timestamp_s),
        )
        return await self._http.deliver(
            url=self._url,
            content=body,
            headers={"Content-Type": "application/json"},
            attempt=attempt,
            fingerprint=notification.fingerprint,
            check=self._check,
        )

    def digest_card(self, digest: AlertDigest) -> dict[str, Any]:
        """The interactive card for ``digest`` (a line per alert), within the body limit once
        signed; its header is coloured by the loudest firing alert, green when all resolved."""
        title = digest_title(self.language, digest, esc=plain)
        colour = digest_colour(digest)

        def size(content: str) -> int:
            card = _digest_card(title=title, colour=colour, content=content)
            return len(_body(card, timestamp_s=10**10, sign=_SIGN_PLACEHOLDER))

        content = render_digest_fitted(
            "feishu.digest",
            self.language,
            digest,
            esc=lark_md_escape,
            bold=markdown_bold,
            link=markdown_link,
            limit=BODY_LIMIT,
            size=size,
        )
        return _digest_card(title=title, colour=colour, content=content.strip())

    async def deliver_digest(self, *, digest: AlertDigest, attempt: int) -> DeliveryResult:
        """Post the digest's card once, signed now; say whether and when another attempt is
        worth it."""
        timestamp_s = int(self._clock())
        body = _body(
            self.digest_card(digest),
            timestamp_s=timestamp_s,
            sign=signature(secret=self._secret, timestamp_s=timestamp_s),
        )
        return await self._http.deliver(
            url=self._url,
            content=body,
            headers={"Content-Type": "application/json"},
            attempt=attempt,
            fingerprint=digest.id,
            check=self._check,
        )
