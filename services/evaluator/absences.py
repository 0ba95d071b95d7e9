"""Overdue (absence) state per (rule, subject, metric), kept in Redis around the decision.

What a report or a fired timer means is :func:`goalwatch.rules.overdue.decide`, a pure
function; :class:`AbsenceStore` reads the state and writes what the decision returns with a
compare-and-set on the key's version (:mod:`services.evaluator.versioned`: one read, one
script), and remembers the transition until it is published, so that a redelivered input
publishes it again (under the same ``Nats-Msg-Id``) instead of losing it.

Redis key (``{fp}`` is the alert fingerprint, a cluster hash tag):
``goalwatch:evaluator:{fp}:overdue`` HASH ``v`` and ``doc``, JSON {last, deadline, firing,
started_at, unpublished}. A key of the earlier layout (``{fp}:absence``, a string) is read
once and replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from redis.asyncio import Redis

from goalwatch.contracts import AlertState
from goalwatch.rules.overdue import AbsenceState, Due, Seen, decide
from goalwatch.rules.transitions import Point, Transition
from services.evaluator.versioned import MAX_ATTEMPTS, Read, VersionedHashes, gave_up

KEY_PREFIX: Final = "goalwatch:evaluator:"


@dataclass(frozen=True)
class Applied:
    """What an input did: the transition to publish, the deadline to arm, the report behind."""

    transition: Transition | None
    arm: datetime | None
    last: Seen | None


def _key(fp: str) -> str:
    return f"{KEY_PREFIX}{{{fp}}}:overdue"


def _legacy_key(fp: str) -> str:
    return f"{KEY_PREFIX}{{{fp}}}:absence"


class AbsenceStore:
    """Absence state in Redis, updated atomically per key."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._hashes = VersionedHashes(redis)

    async def apply(
        self, fp: str, change: Seen | Due, *, now: datetime, absent_for: timedelta
    ) -> Applied:
        """Apply a report or a fired timer to the key ``fp``; idempotent per input."""
        for _ in range(MAX_ATTEMPTS):
            read, doc, legacy = await self._read(fp)
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
            if decision.state == state and not legacy:
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
            if await self._write(fp, read, new, legacy):
                return Applied(transition, decision.arm, decision.state.last)
        raise gave_up(str(change), fp)

    async def mark_published(self, fp: str) -> None:
        """Note that the key's last transition is in the alerts stream."""
        for _ in range(MAX_ATTEMPTS):
            read, doc, legacy = await self._read(fp)
            if doc.get("unpublished") is None:
                return
            if await self._write(fp, read, {**doc, "unpublished": None}, legacy):
                return
        raise gave_up("published", fp)

    async def _read(self, fp: str) -> tuple[Read, dict[str, Any], bool]:
        """The key as read, its state document, and whether it is the earlier layout's."""
        read = await self._hashes.read(_key(fp), "-")
        if read.doc is not None:
            return read, read.doc, False
        raw = await self._redis.get(_legacy_key(fp))
        return read, ({} if raw is None else json.loads(str(raw))), raw is not None

    async def _write(self, fp: str, read: Read, doc: dict[str, Any], legacy: bool) -> bool:
        # Absence state is never idle for long: its key holds a deadline or an alert, and
        # the metric's next report replaces it, so it has no expiry.
        return await self._hashes.write(
            _key(fp),
            read,
            doc,
            cause="-",
            out=None,
            expiry_ms=0,
            legacy=(_legacy_key(fp),) if legacy else (),
        )


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
