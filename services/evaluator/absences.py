"""Overdue (absence) state per (rule, subject, metric), kept in Redis around the decision.

What a report or a fired timer means is :func:`goalwatch.rules.overdue.decide`, a pure
function; :class:`AbsenceStore` reads the state, writes what the decision returns in one
optimistic transaction, and remembers the transition until it is published, so that a
redelivered input publishes it again (under the same ``Nats-Msg-Id``) instead of losing it.

Redis key (``{fp}`` is the alert fingerprint, a cluster hash tag):
``goalwatch:evaluator:{fp}:absence`` STRING JSON {last, deadline, firing, started_at,
unpublished}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import WatchError

from goalwatch.contracts import AlertState
from goalwatch.rules.overdue import AbsenceState, Due, Seen, decide
from goalwatch.rules.transitions import Point, Transition

KEY_PREFIX: Final = "goalwatch:evaluator:"
MAX_ATTEMPTS: Final = 50


@dataclass(frozen=True)
class Applied:
    """What an input did: the transition to publish, the deadline to arm, the report behind."""

    transition: Transition | None
    arm: datetime | None
    last: Seen | None


def _key(fp: str) -> str:
    return f"{KEY_PREFIX}{{{fp}}}:absence"


class AbsenceStore:
    """Absence state in Redis, updated atomically per key."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def apply(
        self, fp: str, change: Seen | Due, *, now: datetime, absent_for: timedelta
    ) -> Applied:
        """Apply a report or a fired timer to the key ``fp``; idempotent per input."""
        key = _key(fp)
        async with self._redis.pipeline(transaction=True) as pipe:
            for _ in range(MAX_ATTEMPTS):
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    doc: dict[str, Any] = json.loads(str(raw)) if raw is not None else {}
                    state = _state(doc)
                    decision = decide(state, now, change, absent_for=absent_for)
                    if decision.repeat:
                        pending = doc.get("unpublished")
                        replay = None
                        if pending is not None:
                            replay = Transition(
                                AlertState(pending["state"]),
                                datetime.fromisoformat(pending["started_at"]),
                                _history(state.last),
                                replayed=True,
                            )
                        return Applied(replay, decision.arm, state.last)
                    if decision.state == state:
                        return Applied(None, decision.arm, state.last)
                    new = _dump(decision.state)
                    transition = decision.transition
                    new["unpublished"] = (
                        None
                        if transition is None
                        else {
                            "state": transition.state.value,
                            "started_at": transition.started_at.isoformat(),
                        }
                    )
                    pipe.multi()  # type: ignore[no-untyped-call]  # untyped in redis-py
                    pipe.set(key, json.dumps(new))
                    await pipe.execute()
                    return Applied(transition, decision.arm, decision.state.last)
                except WatchError:
                    continue
        raise RuntimeError(f"gave up updating absence state {fp} after {MAX_ATTEMPTS} attempts")

    async def mark_published(self, fp: str) -> None:
        """Note that the key's last transition is in the alerts stream."""
        key = _key(fp)
        raw = await self._redis.get(key)
        if raw is None:
            return
        doc = json.loads(str(raw))
        if doc.get("unpublished") is not None:
            doc["unpublished"] = None
            await self._redis.set(key, json.dumps(doc))


def _history(last: Seen | None) -> tuple[Point, ...]:
    return () if last is None else (Point(last.event_id, last.time, last.value, breach=True),)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _state(doc: dict[str, Any]) -> AbsenceState:
    last = doc.get("last")
    return AbsenceState(
        last=None
        if last is None
        else Seen(
            last["event_id"],
            datetime.fromisoformat(last["time"]),
            float(last["value"]),
            dict(last.get("labels") or {}),
        ),
        deadline=_time(doc.get("deadline")),
        firing=bool(doc.get("firing")),
        started_at=_time(doc.get("started_at")),
    )


def _dump(state: AbsenceState) -> dict[str, Any]:
    last = state.last
    return {
        "last": None
        if last is None
        else {
            "event_id": last.event_id,
            "time": last.time.isoformat(),
            "value": last.value,
            "labels": dict(last.labels),
        },
        "deadline": None if state.deadline is None else state.deadline.isoformat(),
        "firing": state.firing,
        "started_at": None if state.started_at is None else state.started_at.isoformat(),
    }
