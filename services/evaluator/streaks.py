"""Threshold state per (rule, subject, metric), kept in Redis around the kernel's decision.

What an observation means is :func:`goalwatch.rules.threshold.decide`, a pure function;
:class:`StreakStore` reads the state it needs and writes what it returns in one optimistic
Redis transaction, and remembers the transition each event caused until it is published.

Redis keys (``{fp}`` is the alert fingerprint; the braces make it a cluster hash tag, keeping a
key's entries on one shard for the transaction):

- ``goalwatch:evaluator:{fp}:data``  HASH event id -> JSON {time, value, breach, transition}
- ``goalwatch:evaluator:{fp}:alert`` HASH state (firing|resolved), started_at, event_id
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import WatchError

from goalwatch.contracts import AlertState
from goalwatch.rules.threshold import StreakState, decide
from goalwatch.rules.transitions import Point, Transition, fingerprint

KEY_PREFIX: Final = "goalwatch:evaluator:"
# Optimistic transaction retries before giving up (the message is then redelivered).
MAX_ATTEMPTS: Final = 50


class _Keys:
    def __init__(self, fp: str) -> None:
        base = f"{KEY_PREFIX}{{{fp}}}"
        self.data = f"{base}:data"
        self.alert = f"{base}:alert"


class StreakStore:
    """Observations and alert state in Redis, updated atomically per key."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def record(
        self, *, rule_id: str, subject: str, metric: str, consecutive: int, point: Point
    ) -> Transition | None:
        """Record ``point`` and return the alert transition it causes, if any.

        Idempotent: recording an event id again changes nothing and returns the transition
        the event caused the first time (marked ``replayed``) until :meth:`mark_published`
        confirms it went out, so a redelivered event whose alert was not yet published can
        publish it, while a resend days later cannot announce an old alert again. Two
        replicas recording the same key cannot both fire: the transaction is retried if the
        key changed underneath it.
        """
        return await self._record(
            fingerprint(rule_id, subject, metric), consecutive=consecutive, point=point
        )

    async def mark_published(
        self, *, rule_id: str, subject: str, metric: str, event_id: str
    ) -> None:
        """Note that the transition ``event_id`` caused is in the alerts stream."""
        keys = _Keys(fingerprint(rule_id, subject, metric))
        raw = await self._redis.hget(keys.data, event_id)
        if raw is None:  # trimmed meanwhile: nothing left to replay anyway
            return
        doc = json.loads(str(raw))
        if doc.get("transition") is not None:
            doc["transition"]["published"] = True
            await self._redis.hset(keys.data, event_id, json.dumps(doc))

    async def _record(self, fp: str, *, consecutive: int, point: Point) -> Transition | None:
        keys = _Keys(fp)
        async with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(MAX_ATTEMPTS):
                try:
                    await pipe.watch(keys.data, keys.alert)
                    raw = _texts(await pipe.hgetall(keys.data))
                    alert = _texts(await pipe.hgetall(keys.alert))
                    if point.event_id in raw:
                        # Leaving the pipeline block resets it, which unwatches.
                        return _replay(raw[point.event_id])
                    state = StreakState(
                        kept=tuple(_point(event_id, data) for event_id, data in raw.items()),
                        firing=alert.get("state") == AlertState.FIRING,
                        started_at=_time(alert["started_at"]) if "started_at" in alert else None,
                    )
                    decision = decide(state, point, consecutive=consecutive)
                    kept = {p.event_id for p in decision.state.kept}
                    drop = [event_id for event_id in raw if event_id not in kept]
                    pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py
                    if point.event_id in kept:
                        pipe.hset(keys.data, point.event_id, _dump(point, decision.transition))
                    if drop:
                        pipe.hdel(keys.data, *drop)
                    if decision.transition is not None:
                        pipe.hset(
                            keys.alert,
                            mapping={
                                "state": decision.transition.state.value,
                                "started_at": decision.transition.started_at.isoformat(),
                                "event_id": point.event_id,
                            },
                        )
                    await pipe.execute()
                    return decision.transition
                except WatchError:
                    continue
        raise RuntimeError(
            f"gave up recording event {point.event_id!r} (alert {fp}) after {MAX_ATTEMPTS} "
            "attempts: another replica kept changing the same key"
        )


def _texts(mapping: dict[bytes | str, bytes | str]) -> dict[str, str]:
    """The client decodes responses; the annotations of redis-py do not know that."""
    return {str(key): str(value) for key, value in mapping.items()}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _point(event_id: str, data: str) -> Point:
    doc = json.loads(data)
    return Point(event_id, _time(doc["time"]), float(doc["value"]), bool(doc["breach"]))


def _dump(point: Point, transition: Transition | None) -> str:
    doc: dict[str, Any] = {
        "time": point.time.isoformat(),
        "value": point.value,
        "breach": point.breach,
        "transition": None,
    }
    if transition is not None:
        doc["transition"] = {
            "state": transition.state.value,
            "started_at": transition.started_at.isoformat(),
            "published": False,
            "history": [
                [p.event_id, p.time.isoformat(), p.value, p.breach] for p in transition.history
            ],
        }
    return json.dumps(doc)


def _replay(data: str) -> Transition | None:
    doc = json.loads(data).get("transition")
    if doc is None or doc.get("published"):
        return None
    history = tuple(
        Point(event_id, _time(time), float(value), bool(breach))
        for event_id, time, value, breach in doc["history"]
    )
    return Transition(AlertState(doc["state"]), _time(doc["started_at"]), history, replayed=True)
