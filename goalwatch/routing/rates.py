"""Rates in the routing file: ``rate_limit: 20/1m`` on a receiver's channel."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_RATE: Final = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` messages in any ``seconds``."""

    count: int
    seconds: int

    def __str__(self) -> str:
        for unit, size in (("h", 3600), ("m", 60)):
            if self.seconds % size == 0:
                return f"{self.count}/{self.seconds // size}{unit}"
        return f"{self.count}/{self.seconds}s"


def parse_rate(text: str) -> RateLimit:
    """``20/1m``, ``20/m``, ``5/1s``, ``100/1h``: a count per window; raises ValueError."""
    found = _RATE.match(text)
    if found is None or int(found.group(1)) < 1:
        raise ValueError(
            f"{text!r} is not a rate: write messages per window, e.g. 20/1m or 5/1s, or off"
        )
    amount = int(found.group(2) or "1")
    if amount < 1:
        raise ValueError(f"{text!r}: the window must be at least 1{found.group(3)}")
    return RateLimit(count=int(found.group(1)), seconds=amount * _UNIT_SECONDS[found.group(3)])
