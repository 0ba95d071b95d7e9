"""Rate limits per target: at most N messages in any window of T seconds, shared by replicas.

Chat robots refuse messages past a documented rate (WeCom and DingTalk: 20 a minute per
robot, DingTalk then locks the robot out for 10 minutes; Feishu: 100 a minute and 5 a second;
Slack: about one a second). The vendors count messages in a moving window, so the limiter
does too: a sorted set per target (``goalwatch:notifier:rate:<target>``) of the times messages
were let through, trimmed to the window, checked and added to in one Lua script so that
replicas share it. A message that would exceed a limit is not sent: the caller holds it back
and merges it with the others into one digest when the window has room
(:meth:`services.notifier.groups.Groups.hold`).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Final, cast

from redis.asyncio import Redis

from goalwatch.routing.rates import RateLimit
from services.notifier.inbox import PREFIX

# Every window of the target must have room; the answer is 0 (taken) or the milliseconds to
# wait until the fullest window has room again.
_SCRIPT: Final = """
local now = tonumber(ARGV[1])
local wait = 0
for i = 3, #ARGV, 2 do
  local count = tonumber(ARGV[i])
  local window = tonumber(ARGV[i + 1])
  local key = KEYS[1] .. ':' .. ARGV[i + 1]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= count then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local until_room = tonumber(oldest[2]) + window - now
    if until_room > wait then wait = until_room end
  end
end
if wait > 0 then return wait end
for i = 3, #ARGV, 2 do
  local key = KEYS[1] .. ':' .. ARGV[i + 1]
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, tonumber(ARGV[i + 1]))
end
return 0
"""


DEFAULT_LIMITS: Final[dict[str, tuple[RateLimit, ...]]] = {
    "wecom": (RateLimit(20, 60),),
    "dingtalk": (RateLimit(20, 60),),
    "feishu": (RateLimit(100, 60), RateLimit(5, 1)),
    "slack": (RateLimit(1, 1),),
}
"""The vendors' documented limits; e-mail, webhooks and Alertmanager have none by default."""


def target_id(kind: str, address: str) -> str:
    """The limiter's name for one target: the same robot reached by two receivers shares
    its limit."""
    return hashlib.sha256(f"{kind}|{address}".encode()).hexdigest()[:24]


class Limiter:
    """Moving-window rate limits in Redis."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script: Any = redis.register_script(_SCRIPT)

    async def take(self, target: str, limits: tuple[RateLimit, ...], now: datetime) -> float:
        """Let one message through ``target``'s limits (0.0), or the seconds to wait until
        every window has room, taking nothing."""
        if not limits:
            return 0.0
        args: list[Any] = [int(now.timestamp() * 1000), uuid.uuid4().hex]
        for limit in limits:
            args += [limit.count, limit.seconds * 1000]
        waited = cast(int, await self._script(keys=[f"{PREFIX}rate:{target}"], args=args))
        return int(waited) / 1000
