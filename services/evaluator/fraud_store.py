"""Fraud state in Redis: per alert key around the kernel's decision, and the peers' values
per group for the outlier pattern.

What a record or a fired timer means is :mod:`goalwatch.rules.fraud`; :class:`FraudStore`
keeps each key's state in a versioned hash (:mod:`services.evaluator.versioned`):
``goalwatch:evaluator:{fp}:fraud``, ``doc`` holding the recent records the pattern needs
(bounded by the pattern: its window, at most 1,000), the open alert (since when, its last
finding, the findings so far) and the armed timer; ``out:<input>`` the transition an input
caused, with the measures behind it, until it is published. A key without a firing alert
or an armed timer expires after :data:`IDLE_EXPIRY`.

:class:`PeerGroups` keeps, per (rule, group), each subject's latest value and its event
time, ``goalwatch:evaluator:peers:{<rule>}:<group>`` HASH subject -> "<epoch ms> <value>";
one script stores a subject's value, drops values older than the window, and returns the
others', so a group costs one round trip per record. Peers' values are not rebuilt exactly
after Redis loses writes: the replayed records put back what they carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from redis.asyncio import Redis

from goalwatch.rules import fraud
from goalwatch.rules.fraud import FraudState, Judge, Record
from goalwatch.rules.fraud_spec import FraudCondition, OutlierCondition
from goalwatch.rules.transitions import Transition
from services.evaluator.streaks import dump_transition, load_transition, timer_cause
from services.evaluator.versioned import MAX_ATTEMPTS, VersionedHashes, gave_up

KEY_PREFIX: Final = "goalwatch:evaluator:"
IDLE_EXPIRY: Final = timedelta(days=30)
"""How long a key without a firing alert or an armed timer outlives its last record: longer
than any window a pattern looks back over is useful for."""
MAX_PEERS: Final = 10_000
"""Subjects a peer group keeps at most; beyond that the oldest values are dropped."""

# KEYS: the group. ARGV: subject, its event time (epoch ms), its value, the oldest time kept
# (epoch ms), the most members kept. Returns the other members' values, as strings.
_PEERS: Final = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or tonumber(string.match(current, '^(%S+)')) <= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
end
local entries = redis.call('HGETALL', KEYS[1])
local values, members = {}, {}
for i = 1, #entries, 2 do
  local at, value = string.match(entries[i + 1], '^(%S+) (%S+)$')
  if tonumber(at) < tonumber(ARGV[4]) then
    redis.call('HDEL', KEYS[1], entries[i])
  else
    table.insert(members, {tonumber(at), entries[i]})
    if entries[i] ~= ARGV[1] then table.insert(values, value) end
  end
end
if #members > tonumber(ARGV[5]) then
  table.sort(members, function(a, b) return a[1] < b[1] end)
  for i = 1, #members - tonumber(ARGV[5]) do redis.call('HDEL', KEYS[1], members[i][2]) end
end
return values
"""


@dataclass(frozen=True)
class Applied:
    """What one input did to a key (see :class:`services.evaluator.streaks.Applied`), with
    the measures and the findings count behind a transition."""

    transition: Transition | None
    arm: datetime | None
    state: FraudState
    cause: str
    measures: Mapping[str, float] = field(default_factory=dict)
    findings: int = 0


def _key(fp: str) -> str:
    return f"{KEY_PREFIX}{{{fp}}}:fraud"


class FraudStore:
    """Fraud state in Redis, updated atomically per key."""

    def __init__(self, redis: Redis) -> None:
        self._hashes = VersionedHashes(redis)

    async def observe(
        self,
        fp: str,
        record: Record,
        condition: FraudCondition,
        *,
        judge: Judge,
        peers: Sequence[float] | None,
        labels: Mapping[str, str],
    ) -> Applied:
        """Record ``record``; idempotent per event id."""
        return await self._apply(
            fp,
            record.event_id,
            lambda state: fraud.observe(
                state, record, condition, judge=judge, peers=peers, labels=labels
            ),
        )

    async def due(self, fp: str, at: datetime, condition: FraudCondition) -> Applied:
        """The key's timer armed for ``at`` fired; idempotent per timer."""
        return await self._apply(fp, timer_cause(at), lambda state: fraud.due(state, at, condition))

    async def mark_published(self, fp: str, cause: str) -> None:
        """Note that the transition ``cause`` caused is in the alerts stream."""
        await self._hashes.published(_key(fp), cause)

    async def _apply(self, fp: str, cause: str, decide: Any) -> Applied:
        key = _key(fp)
        for _ in range(MAX_ATTEMPTS):
            read = await self._hashes.read(key, cause)
            state = FraudState() if read.doc is None else _state(read.doc)
            if read.pending is not None:
                pending = read.pending
                return Applied(
                    load_transition(pending["transition"]),
                    state.armed,
                    state,
                    cause,
                    dict(pending.get("measures") or {}),
                    int(pending.get("findings") or 0),
                )
            decision: fraud.Decision = decide(state)
            if decision.duplicate or decision.state == state:
                return Applied(None, decision.arm, state, cause)
            transition = decision.transition
            out = None
            if transition is not None:
                out = {
                    "transition": dump_transition(transition),
                    "measures": dict(decision.measures),
                    "findings": decision.state.findings,
                }
            written = await self._hashes.write(
                key,
                read,
                _dump(decision.state),
                cause=cause,
                out=out,
                expiry_ms=_expiry_ms(decision.state),
            )
            if written:
                return Applied(
                    transition,
                    decision.arm,
                    decision.state,
                    cause,
                    dict(decision.measures),
                    decision.state.findings,
                )
        raise gave_up(cause, fp)


class PeerGroups:
    """The peers' latest values per (rule, group), for the outlier pattern."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_PEERS)

    async def others(
        self, rule_id: str, group: str, condition: OutlierCondition, record: Record, subject: str
    ) -> list[float]:
        """Store ``subject``'s value (unless a newer one is stored) and return the other
        members' values within the window before ``record``."""
        oldest = record.time - condition.within
        values = await self._script(
            keys=[f"{KEY_PREFIX}peers:{{{rule_id}}}:{group}"],
            args=[subject, _ms(record.time), repr(record.value), _ms(oldest) + 1, MAX_PEERS],
        )
        return [float(value) for value in values]


def _ms(time: datetime) -> int:
    return int(time.timestamp() * 1000)


def _expiry_ms(state: FraudState) -> int:
    if state.firing or state.armed is not None:
        return 0
    return int(IDLE_EXPIRY.total_seconds() * 1000)


def _iso(time: datetime | None) -> str | None:
    return None if time is None else time.isoformat()


def _time(text: Any) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text))


def _dump(state: FraudState) -> dict[str, Any]:
    return {
        "records": [
            [r.event_id, r.time.isoformat(), r.value, r.digest, r.off_hours] for r in state.records
        ],
        "firing": state.firing,
        "started_at": _iso(state.started_at),
        "last_finding": _iso(state.last_finding),
        "findings": state.findings,
        "armed": _iso(state.armed),
        "labels": dict(state.labels),
    }


def _state(doc: dict[str, Any]) -> FraudState:
    return FraudState(
        records=tuple(
            Record(event_id, datetime.fromisoformat(time), float(value), digest, bool(off))
            for event_id, time, value, digest, off in doc["records"]
        ),
        firing=bool(doc["firing"]),
        started_at=_time(doc.get("started_at")),
        last_finding=_time(doc.get("last_finding")),
        findings=int(doc.get("findings") or 0),
        armed=_time(doc.get("armed")),
        labels=dict(doc.get("labels") or {}),
    )
