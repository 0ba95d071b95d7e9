"""Rule state kept as one versioned Redis hash per alert key, changed by compare-and-set.

The hash holds ``v`` (the version, one more with every write), ``doc`` (JSON of the kind's
state) and ``out:<input id>`` (JSON of the transition an input caused, until it is confirmed
published). A kind's store reads the three in one round trip (:meth:`VersionedHashes.read`),
decides in Python, and writes the new state in a second (:meth:`VersionedHashes.write`): the
script writes only if ``v`` is still the one read, so two writers of one key (replicas, a
redelivery racing the first delivery) cannot both act; the loser reads and decides again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from services.evaluator.autopipeline import AutoPipeline

MAX_ATTEMPTS: Final = 50
"""Compare-and-set retries before giving up (the input is then redelivered)."""

# KEYS: the state key, then keys of earlier layouts to delete.
# ARGV: version read ("" for none), state JSON, expiry in ms (0: none), out field, out JSON.
_WRITE: Final = """
local v = redis.call('HGET', KEYS[1], 'v') or ''
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', (tonumber(ARGV[1]) or 0) + 1, 'doc', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], ARGV[4], ARGV[5]) end
if ARGV[3] == '0' then redis.call('PERSIST', KEYS[1])
else redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"""


@dataclass(frozen=True)
class Read:
    """A key as read: its version (None: no such key), state and the input's pending
    transition, both as JSON documents."""

    version: str | None
    doc: dict[str, Any] | None
    pending: dict[str, Any] | None


class VersionedHashes:
    """Reads and compare-and-set writes of versioned state hashes."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._write = redis.register_script(_WRITE)
        # Concurrent subjects' reads and writes share round trips (see autopipeline.py).
        self._pipe = AutoPipeline(redis)

    async def read(self, key: str, cause: str) -> Read:
        """The key's version, state and the transition ``cause`` left pending, if any."""
        fields = ["v", "doc", _out(cause)]
        version, doc, pending = await self._pipe.call(lambda pipe: pipe.hmget(key, fields))
        return Read(
            version=None if version is None else str(version),
            doc=None if doc is None else json.loads(str(doc)),
            pending=None if pending is None else json.loads(str(pending)),
        )

    async def write(
        self,
        key: str,
        read: Read,
        doc: dict[str, Any],
        *,
        cause: str,
        out: dict[str, Any] | None,
        expiry_ms: int,
        legacy: tuple[str, ...] = (),
    ) -> bool:
        """Write ``doc`` (and ``out`` under the input ``cause``) if the key is still at the
        version ``read`` saw; delete ``legacy`` keys with it. False: it changed meanwhile."""
        keys = [key, *legacy]
        args = [
            read.version or "",
            json.dumps(doc),
            str(expiry_ms),
            _out(cause) if out is not None else "",
            json.dumps(out) if out is not None else "",
        ]
        try:
            written = await self._pipe.call(
                lambda pipe: pipe.evalsha(self._write.sha, len(keys), *keys, *args)
            )
        except NoScriptError:
            # Redis restarted or was flushed since the script was loaded: load and run it.
            written = await self._write(keys=keys, args=args)
        return bool(written)

    async def published(self, key: str, cause: str) -> None:
        """Forget the transition ``cause`` caused: it is in the alerts stream."""
        field = _out(cause)
        await self._pipe.call(lambda pipe: pipe.hdel(key, field))


def _out(cause: str) -> str:
    return f"out:{cause}"


def gave_up(cause: str, fp: str) -> RuntimeError:
    """The error when a key kept changing under every attempt."""
    return RuntimeError(
        f"gave up recording {cause!r} (alert {fp}) after {MAX_ATTEMPTS} attempts: "
        "another replica kept changing the same key"
    )
