"""Threshold state per (rule, subject, metric), kept in Redis around the kernel's decision.

What an observation or a fired timer means is :mod:`goalwatch.rules.threshold` (pure
functions); :class:`StreakStore` reads the key's state in one round trip, decides, and
writes the new state with a compare-and-set script in a second: the script writes only if
the key's version is still the one read, so two replicas (or a redelivery racing the first
delivery) cannot both fire; the loser reads again and decides again. The transition an input
caused is stored with the state, under the input's id, until :meth:`mark_published` confirms
it is in the alerts stream: a redelivered input whose alert was not yet published publishes
it again, while a resend days later cannot announce an old alert again.

Redis key (``{fp}`` is the alert fingerprint; the braces make it a cluster hash tag):
``goalwatch:evaluator:{fp}:threshold`` HASH

- ``v``: the version, one more with every write;
- ``doc``: JSON of the state (kept observations, firing, started_at, pending_since,
  severity, armed, labels);
- ``out:<input id>``: JSON of a transition not yet confirmed published (an event id, or
  ``timer:<due time>`` for a fired timer).

A key that is neither firing nor waiting on a timer expires after :data:`IDLE_EXPIRY`
without input, so a subject that stopped reporting costs nothing forever; a firing one is
kept until it resolves. Keys written by earlier versions (``{fp}:data`` and ``{fp}:alert``)
are read once and replaced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from redis.asyncio import Redis

from goalwatch.contracts import AlertState, Severity
from goalwatch.rules.threshold import Decision, Judge, Policy, StreakState, due, observe
from goalwatch.rules.transitions import Point, Transition, Verdict
from services.evaluator.versioned import MAX_ATTEMPTS, VersionedHashes, gave_up

KEY_PREFIX: Final = "goalwatch:evaluator:"
IDLE_EXPIRY: Final = timedelta(days=400)
"""How long a key neither firing nor waiting on a timer outlives its last input: over a year,
so a yearly metric still finds its previous value."""


@dataclass(frozen=True)
class Applied:
    """What one input did to a key: the transition to publish (``replayed`` if it was
    caused before and not yet confirmed published), the time to arm the key's timer for,
    the state after, and the input's id (for :meth:`StreakStore.mark_published`)."""

    transition: Transition | None
    arm: datetime | None
    state: StreakState
    cause: str


def timer_cause(at: datetime) -> str:
    """The input id of the key's timer fired for ``at``."""
    return f"timer:{at.isoformat()}"


class _Keys:
    def __init__(self, fp: str) -> None:
        base = f"{KEY_PREFIX}{{{fp}}}"
        self.state = f"{base}:threshold"
        self.legacy = (f"{base}:data", f"{base}:alert")


class StreakStore:
    """Threshold state in Redis, updated atomically per key."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._hashes = VersionedHashes(redis)

    async def observe(
        self,
        fp: str,
        point: Point,
        policy: Policy,
        *,
        labels: Mapping[str, str],
        judge: Judge | None = None,
    ) -> Applied:
        """Record the observation ``point`` (of an event with ``labels``) for the key ``fp``;
        ``judge`` gives verdicts on period or window values.

        Idempotent per event id: see the module's description.
        """
        return await self._apply(
            fp,
            point.event_id,
            lambda state: observe(state, point, policy, labels=labels, judge=judge),
        )

    async def due(self, fp: str, at: datetime, policy: Policy) -> Applied:
        """The key's timer armed for ``at`` fired; idempotent per timer."""
        return await self._apply(fp, timer_cause(at), lambda state: due(state, at, policy))

    async def mark_published(self, fp: str, cause: str) -> None:
        """Note that the transition ``cause`` caused is in the alerts stream."""
        await self._hashes.published(_Keys(fp).state, cause)

    async def _apply(self, fp: str, cause: str, decide: Any) -> Applied:
        keys = _Keys(fp)
        for _ in range(MAX_ATTEMPTS):
            read = await self._hashes.read(keys.state, cause)
            legacy: tuple[str, ...] = ()
            if read.doc is None:
                state = await self._legacy(keys)
                legacy = keys.legacy
            else:
                state = _state(read.doc)
            if read.pending is not None:
                # Caused before, not yet confirmed published: publish it again.
                return Applied(load_transition(read.pending), state.armed, state, cause)
            decision: Decision = decide(state)
            if decision.duplicate or (decision.state == state and not legacy):
                return Applied(None, decision.arm, state, cause)
            transition = decision.transition
            written = await self._hashes.write(
                keys.state,
                read,
                _dump(decision.state),
                cause=cause,
                out=None if transition is None else dump_transition(transition),
                expiry_ms=_expiry_ms(decision.state),
                legacy=legacy,
            )
            if written:
                return Applied(transition, decision.arm, decision.state, cause)
        raise gave_up(cause, fp)

    async def _legacy(self, keys: _Keys) -> StreakState:
        """The state as earlier versions kept it (event id -> observation; alert state)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.legacy[0])
            pipe.hgetall(keys.legacy[1])
            data, alert = await pipe.execute()
        points = sorted(
            (_legacy_point(str(event_id), json.loads(str(raw))) for event_id, raw in data.items()),
            key=lambda p: (p.time, p.event_id),
        )
        firing = alert.get("state") == AlertState.FIRING
        return StreakState(
            kept=tuple(points),
            firing=firing,
            started_at=_time(alert.get("started_at")),
        )


def _expiry_ms(state: StreakState) -> int:
    if state.firing or state.pending_since is not None or state.armed is not None:
        return 0
    return int(IDLE_EXPIRY.total_seconds() * 1000)


def _time(text: Any) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text))


def _legacy_point(event_id: str, doc: dict[str, Any]) -> Point:
    return Point(event_id, datetime.fromisoformat(doc["time"]), float(doc["value"]), doc["breach"])


def _severity(text: Any) -> Severity | None:
    return None if text is None else Severity(text)


def _state(doc: dict[str, Any]) -> StreakState:
    return StreakState(
        kept=_points(doc["kept"]),
        firing=bool(doc["firing"]),
        started_at=_time(doc.get("started_at")),
        pending_since=_time(doc.get("pending_since")),
        severity=_severity(doc.get("severity")),
        armed=_time(doc.get("armed")),
        labels=dict(doc.get("labels") or {}),
        raw=_points(doc.get("raw") or []),
    )


def _points(rows: list[list[Any]]) -> tuple[Point, ...]:
    return tuple(
        Point.of(event_id, datetime.fromisoformat(time), float(value), Verdict(verdict))
        for event_id, time, value, verdict in rows
    )


def _rows(points: tuple[Point, ...]) -> list[list[Any]]:
    return [[p.event_id, p.time.isoformat(), p.value, p.verdict.value] for p in points]


def _iso(time: datetime | None) -> str | None:
    return None if time is None else time.isoformat()


def _dump(state: StreakState) -> dict[str, Any]:
    return {
        "kept": _rows(state.kept),
        "firing": state.firing,
        "started_at": _iso(state.started_at),
        "pending_since": _iso(state.pending_since),
        "severity": None if state.severity is None else state.severity.value,
        "armed": _iso(state.armed),
        "labels": dict(state.labels),
        "raw": _rows(state.raw),
    }


def dump_transition(transition: Transition) -> dict[str, Any]:
    """``transition`` as JSON, to be published again if its first publish is not confirmed."""
    return {
        "state": transition.state.value,
        "started_at": transition.started_at.isoformat(),
        "severity": None if transition.severity is None else transition.severity.value,
        "escalated_from": (
            None if transition.escalated_from is None else transition.escalated_from.value
        ),
        "history": _rows(transition.history),
    }


def load_transition(doc: dict[str, Any]) -> Transition:
    """The transition :func:`dump_transition` wrote, marked ``replayed``."""
    return Transition(
        AlertState(doc["state"]),
        datetime.fromisoformat(doc["started_at"]),
        _points(doc["history"]),
        replayed=True,
        severity=_severity(doc.get("severity")),
        escalated_from=_severity(doc.get("escalated_from")),
    )
