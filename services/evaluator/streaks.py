"""Threshold state per (rule, subject, metric), kept in Redis around the kernel's decision.

What an observation or a fired timer means is :mod:`goalwatch.rules.threshold` (pure
functions); :class:`StreakStore` reads the key's state with one command, decides, and
writes the new state with a compare-and-set script in a second: the script writes only if
the key's version is still the one read, so two replicas (or a redelivery racing the first
delivery) cannot both fire; the loser reads again and decides again. The transition an input
caused is stored with the state, under the input's id, until :meth:`mark_published` confirms
it is in the alerts stream: a redelivered input whose alert was not yet published publishes
it again, while a resend days later cannot announce an old alert again.

Both commands (a read script and the write script) go through an
:class:`~services.evaluator.autopipeline.AutoPipeline`: the reads and writes of the subjects
evaluated concurrently share one round trip, each still its own command.

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
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from goalwatch.contracts import AlertState, Severity
from goalwatch.rules.threshold import Decision, Judge, Policy, StreakState, due, observe
from goalwatch.rules.transitions import Point, Transition, Verdict
from services.evaluator.autopipeline import AutoPipeline

KEY_PREFIX: Final = "goalwatch:evaluator:"
# Compare-and-set retries before giving up (the input is then redelivered).
MAX_ATTEMPTS: Final = 50
IDLE_EXPIRY: Final = timedelta(days=400)
"""How long a key neither firing nor waiting on a timer outlives its last input: over a year,
so a yearly metric still finds its previous value."""

# KEYS: the state key, then keys of earlier versions to delete.
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


# KEYS: the state key, then the two keys of the earlier layout. ARGV: the out field.
# One command for what took an HMGET and, for a key not yet written, two HGETALLs: the
# earlier layout is read only when the key has no state (``v``) yet.
_READ: Final = """
local got = redis.call('HMGET', KEYS[1], 'v', 'doc', ARGV[1])
if got[1] then return {got[1], got[2], got[3], {}, {}} end
return {false, false, got[3], redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""


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
        self._write = redis.register_script(_WRITE)
        self._read = redis.register_script(_READ)
        # Concurrent subjects' reads and writes share round trips (see autopipeline.py).
        self._pipe = AutoPipeline(redis)

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
        state = _Keys(fp).state
        await self._pipe.call(lambda pipe: pipe.hdel(state, f"out:{cause}"))

    async def _apply(self, fp: str, cause: str, decide: Any) -> Applied:
        keys = _Keys(fp)
        out = f"out:{cause}"
        for _ in range(MAX_ATTEMPTS):
            version, doc, pending, data, alert = await self._script(
                self._read, [keys.state, *keys.legacy], [out]
            )
            legacy: tuple[str, ...] = ()
            if version is None:
                state = _legacy(_pairs(data), _pairs(alert))
                legacy = keys.legacy
            else:
                state = _state(json.loads(str(doc)))
            if pending is not None:
                # Caused before, not yet confirmed published: publish it again.
                return Applied(_transition(json.loads(str(pending))), state.armed, state, cause)
            decision: Decision = decide(state)
            if decision.duplicate or (decision.state == state and not legacy):
                return Applied(None, decision.arm, state, cause)
            transition = decision.transition
            written = await self._script(
                self._write,
                [keys.state, *legacy],
                [
                    "" if version is None else str(version),
                    json.dumps(_dump(decision.state)),
                    str(_expiry_ms(decision.state)),
                    out if transition is not None else "",
                    json.dumps(_dump_transition(transition)) if transition is not None else "",
                ],
            )
            if written:
                return Applied(transition, decision.arm, decision.state, cause)
        raise RuntimeError(
            f"gave up recording {cause!r} (alert {fp}) after {MAX_ATTEMPTS} attempts: "
            "another replica kept changing the same key"
        )

    async def _script(self, script: AsyncScript, keys: list[str], args: list[str]) -> Any:
        """``script``'s answer, sent with the commands of concurrent subjects."""
        try:
            return await self._pipe.call(
                lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args)
            )
        except NoScriptError:
            # Redis restarted or was flushed since the script was loaded: load and run it.
            return await script(keys=keys, args=args)


def _pairs(flat: list[Any]) -> dict[str, Any]:
    """A hash as HGETALL inside a script answers it, ``[field, value, ...]``, as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _legacy(data: dict[str, Any], alert: dict[str, Any]) -> StreakState:
    """The state as earlier versions kept it (event id -> observation; alert state)."""
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


def _dump_transition(transition: Transition) -> dict[str, Any]:
    return {
        "state": transition.state.value,
        "started_at": transition.started_at.isoformat(),
        "severity": None if transition.severity is None else transition.severity.value,
        "escalated_from": (
            None if transition.escalated_from is None else transition.escalated_from.value
        ),
        "history": _rows(transition.history),
    }


def _transition(doc: dict[str, Any]) -> Transition:
    return Transition(
        AlertState(doc["state"]),
        datetime.fromisoformat(doc["started_at"]),
        _points(doc["history"]),
        replayed=True,
        severity=_severity(doc.get("severity")),
        escalated_from=_severity(doc.get("escalated_from")),
    )
