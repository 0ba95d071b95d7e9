"""How goalwatch signs what it sends out, and how a receiver checks it.

Every outbound webhook carries ``X-Goalwatch-Timestamp`` (unix seconds at signing) and
``X-Goalwatch-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>``.
Signing the timestamp with the body lets a receiver refuse a captured request replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import SecretStr

SIGNATURE_HEADER = "X-Goalwatch-Signature"
TIMESTAMP_HEADER = "X-Goalwatch-Timestamp"
SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE_SECONDS = 300.0


def _as_bytes(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def sign(*, secret: str | bytes | SecretStr, timestamp: int | str, body: bytes) -> str:
    """The ``X-Goalwatch-Signature`` value for ``body`` signed at ``timestamp``."""
    mac = hmac.new(_as_bytes(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    *,
    secret: str | bytes | SecretStr,
    timestamp: int | str,
    body: bytes,
    signature: str,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` is valid for ``body`` at ``timestamp``, and the timestamp is fresh.

    ``timestamp`` and ``signature`` are the raw header values; ``tolerance`` is how far (seconds)
    the timestamp may be from ``now`` (default: the current time) in either direction.
    """
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    expected = sign(secret=secret, timestamp=stamp, body=body)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())
