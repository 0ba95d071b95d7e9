"""Signed one-click acknowledgement links: ``{GOALWATCH_PUBLIC_URL}/v1/ack/{token}``.

A token says which episode it acknowledges, until when, and for whom, and is signed with
``GOALWATCH_LINK_SECRET``::

    <episode id>.<expiry, Unix seconds>.<recipient id, base64url; empty: shared>.<signature>

where the signature is the base64url HMAC-SHA256, under the secret, of ``goalwatch-ack-v1``,
a newline, and the three fields as written. Every part is URL-safe, and nothing in it is
secret: the episode id is opaque, the expiry and the recipient readable. What cannot be done
without the secret is to make another one, or change one: the signature is compared in
constant time, before anything else in the token is believed.

A link made for one person acknowledges as that person: it is for a message that reaches
them alone (an e-mail per person; no channel sends one yet). A link in a message others may
read too (a chat group, one e-mail to everyone: every channel today) is *shared*: the page it
opens asks which of the recipients is acknowledging. There is no sign-in yet, so a link acts
for whoever holds it until it expires: forwarding one lends it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import SecretStr

PATH: Final = "/v1/ack/"
PURPOSE: Final = b"goalwatch-ack-v1\n"
"""Signed ahead of every token: a signature made for something else never passes here."""
MAX_TOKEN: Final = 600
"""Characters of the longest token read; anything longer is refused unread."""
_EPISODE: Final = re.compile(r"^[0-9a-f]{1,64}$")
_EXPIRY: Final = re.compile(r"^[0-9]{1,12}$")


class LinkError(Exception):
    """A link that does not acknowledge anything; the message says why, for people."""


class LinkInvalid(LinkError):
    """Not a link this notifier made: cut short, changed, or signed with another secret."""


class LinkExpired(LinkError):
    """A link this notifier made, past its expiry."""

    def __init__(self, grant: Grant) -> None:
        super().__init__(f"the link expired at {grant.expires_at.isoformat()}")
        self.grant = grant


@dataclass(frozen=True)
class Grant:
    """What a genuine token allows: acknowledging ``episode`` as ``recipient`` (None: any of
    the episode's recipients, who says which) until ``expires_at``."""

    episode: str
    recipient: str | None
    expires_at: datetime

    @property
    def shared(self) -> bool:
        """True for a link sent to several people."""
        return self.recipient is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AckLinks:
    """Makes and checks acknowledgement links for one notifier."""

    def __init__(self, *, base_url: str, secret: SecretStr, lifetime: timedelta) -> None:
        """``base_url``: the notifier as people's browsers reach it, e.g.
        ``https://goalwatch.example.org``; ``lifetime``: how long a link works."""
        self._base = base_url.rstrip("/")
        self._key = secret.get_secret_value().encode()
        self._lifetime = lifetime

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._key, PURPOSE + payload.encode(), hashlib.sha256).digest())

    def token(self, *, episode: str, recipient: str | None, expires_at: datetime) -> str:
        """The signed token of a :class:`Grant`."""
        who = _b64(recipient.encode()) if recipient else ""
        payload = f"{episode}.{int(expires_at.timestamp())}.{who}"
        return f"{payload}.{self._signature(payload)}"

    def url(self, *, episode: str, recipient: str | None, now: datetime) -> str:
        """The link acknowledging ``episode`` as ``recipient`` (None: shared), working for the
        configured lifetime from ``now``."""
        token = self.token(episode=episode, recipient=recipient, expires_at=now + self._lifetime)
        return f"{self._base}{PATH}{token}"

    def verify(self, token: str, *, now: datetime) -> Grant:
        """The grant of ``token``; :class:`LinkInvalid` unless this notifier signed it as it
        is, :class:`LinkExpired` (carrying the grant) once it is past its expiry."""
        if len(token) > MAX_TOKEN:
            raise LinkInvalid("the link is longer than any this notifier makes")
        payload, _, signature = token.rpartition(".")
        expected = self._signature(payload)
        # Constant time: how much of a guess matched must not show in how long it took.
        if not payload or not hmac.compare_digest(expected.encode(), signature.encode()):
            raise LinkInvalid(
                "the link is not one this notifier made, or part of it was changed or cut off"
            )
        parts = payload.split(".")
        if len(parts) != 3 or not _EPISODE.match(parts[0]) or not _EXPIRY.match(parts[1]):
            raise LinkInvalid("the link's contents are not in the form this notifier makes")
        try:
            recipient = _unb64(parts[2]).decode() if parts[2] else None
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise LinkInvalid("the link's recipient cannot be read") from None
        grant = Grant(
            episode=parts[0],
            recipient=recipient,
            expires_at=datetime.fromtimestamp(int(parts[1]), UTC),
        )
        if now >= grant.expires_at:
            raise LinkExpired(grant)
        return grant
