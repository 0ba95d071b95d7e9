"""Threshold state in Redis, one hash per (subject, metric), around the kernel's decisions.

What an observation or a fired timer means is :mod:`goalwatch.rules.threshold` (pure
functions). Every threshold rule of a metric reaches the same subject's hash, so one event
costs :class:`StreakStore` one read of the states of every alert key the event reaches, the
decisions in Python, and one compare-and-set script writing every state that changed: the
script writes only if the hash's version is still the one read, so two replicas (or a
redelivery racing the first delivery, or a timer of the same subject's metric) cannot both
act; the loser reads again and decides every rule again. The transition an input caused is
stored with the state, under the input's id, until :meth:`StreakStore.mark_published`
confirms it is in the alerts stream: a redelivered input whose alert was not yet published
publishes it again, while a resend days later cannot announce an old alert again.

Redis key (``{h}`` is :func:`metric_hash` of subject and metric; the braces make it a
cluster hash tag): ``goalwatch:evaluator:{h}:threshold`` HASH

- ``v``: the version of the whole hash, one more with every write;
- ``doc:<fp>``: JSON of the state of the alert key ``fp`` (a rule, or a rule and its ``by``
  labels' values): kept observations, firing, started_at, pending_since, severity, armed,
  labels, raw observations, and ``rev``, the rule's revision the verdicts were judged
  under (with ``measure`` for a window rule; a state of another revision is judged again
  at its next input, see :func:`goalwatch.rules.threshold.revise`);
- ``out:<fp>:<input id>``: JSON of a transition of ``fp`` not yet confirmed published (an
  event id, or ``timer:<due time>`` for a fired timer);
- ``keep``: the alert keys of the hash that are firing, pending or waiting on a timer,
  space-separated (see :func:`_expiry_ms`).

A hash none of whose keys is firing or waiting on a timer expires after
:data:`IDLE_EXPIRY` without input, so a subject that stopped reporting costs nothing
forever; one with a firing key is kept until it resolves.

Earlier versions kept one hash per alert key, ``goalwatch:evaluator:{fp}:threshold`` (``v``,
``doc``, ``out:<input id>``), and before that ``{fp}:data`` and ``{fp}:alert``. An alert key
with no ``doc:<fp>`` yet is read from those once, and they are deleted once its state is
written here (see :meth:`StreakStore._forget_legacy` for when that delete can be lost).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from goalwatch.contracts import AlertState, Severity
from goalwatch.rules.threshold import (
    Decision,
    Judge,
    Policy,
    StreakState,
    TimerJudge,
    due,
    observe,
)
from goalwatch.rules.transitions import Point, Transition, Verdict
from services.evaluator.autopipeline import AutoPipeline, Queue
from services.evaluator.versioned import MAX_ATTEMPTS, gave_up

KEY_PREFIX: Final = "goalwatch:evaluator:"
IDLE_EXPIRY: Final = timedelta(days=400)
"""How long a hash with nothing firing or waiting on a timer outlives its last write: over a
year, so a yearly metric still finds its previous value."""
_IDLE_MS: Final = str(int(IDLE_EXPIRY.total_seconds() * 1000))

# KEYS: the hash. ARGV: the version read ("" for none), expiry in ms ("0": none), then
# field, value pairs to set.
_WRITE: Final = """
local v = redis.call('HGET', KEYS[1], 'v') or ''
if v ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', (tonumber(ARGV[1]) or 0) + 1, unpack(ARGV, 3))
if ARGV[2] == '0' then redis.call('PERSIST', KEYS[1])
else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS: an alert key's hash in the previous layout, then its observations and its alert in
# the one before (one hash slot). ARGV: the input's out field in the previous layout.
# Returns nil if the key is in neither, {doc, out} if in the previous one, else
# {false, false, observations, alert} (each as HGETALL answers).
_LEGACY: Final = """
local found = redis.call('HMGET', KEYS[1], 'doc', ARGV[1])
if found[1] then return found end
if redis.call('EXISTS', KEYS[2], KEYS[3]) == 0 then return nil end
return {false, false, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""


def metric_hash(subject: str, metric: str) -> str:
    """Stable short id of ``subject``'s ``metric``: the hash tag of its threshold state."""
    return hashlib.sha256(f"{subject}|{metric}".encode()).hexdigest()[:16]


def state_key(subject: str, metric: str) -> str:
    """The hash holding the threshold state of every alert key of ``subject``'s ``metric``."""
    return f"{KEY_PREFIX}{{{metric_hash(subject, metric)}}}:threshold"


def legacy_keys(fp: str) -> tuple[str, str, str]:
    """The keys earlier versions kept the alert key ``fp`` in: one hash of its own, and
    before that its observations and its alert (one hash slot: ``{fp}``)."""
    base = f"{KEY_PREFIX}{{{fp}}}"
    return f"{base}:threshold", f"{base}:data", f"{base}:alert"


@dataclass(frozen=True)
class Observation:
    """One threshold rule's view of an event: the alert key ``fp``, the observation with the
    rule's verdict, the rule's policy, and the engine's ``judge`` of a value standing for the
    event's: a period's or window's value, or a kept observation's when the state was judged
    under another revision of the rule (needed for rules with periods or a window, and for
    any rule that may have changed)."""

    fp: str
    point: Point
    policy: Policy
    judge: Judge | None = None


@dataclass(frozen=True)
class Applied:
    """What one input did to an alert key: the transition to publish (``replayed`` if it
    was caused before and not yet confirmed published), the time to arm the key's timer
    for, the state after, the key and the input's id (for
    :meth:`StreakStore.mark_published`)."""

    transition: Transition | None
    arm: datetime | None
    state: StreakState
    cause: str
    fp: str
    # The state had been judged under another revision of its rule and was judged again.
    revised: bool = False


def timer_cause(at: datetime) -> str:
    """The input id of the key's timer fired for ``at``."""
    return f"timer:{at.isoformat()}"


Decide = Callable[[StreakState], Decision]


@dataclass(frozen=True)
class _Legacy:
    """An alert key as an earlier version kept it: its state, the transition the input
    left pending there, and which of its keys exist (to delete)."""

    state: StreakState
    pending: str | None
    keys: tuple[str, ...]


class StreakStore:
    """Threshold state in Redis, updated atomically per (subject, metric)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._write = redis.register_script(_WRITE)
        self._read_legacy = redis.register_script(_LEGACY)
        # Concurrent subjects' reads and writes share round trips (see autopipeline.py).
        self._pipe = AutoPipeline(redis)

    async def observe(
        self,
        subject: str,
        metric: str,
        observations: Sequence[Observation],
        *,
        labels: Mapping[str, str],
    ) -> list[Applied]:
        """Record one event (with ``labels``) for every rule of ``subject``'s ``metric`` it
        reaches: one :class:`Applied` per observation, in their order. Each alert key at most
        once; idempotent per event id: see the module's description."""
        inputs = [(o.fp, o.point.event_id, _observer(o, labels)) for o in observations]
        return await self._apply(state_key(subject, metric), inputs)

    async def due(
        self,
        subject: str,
        metric: str,
        fp: str,
        at: datetime,
        policy: Policy,
        *,
        judge: TimerJudge | None = None,
    ) -> Applied:
        """The timer of the alert key ``fp`` (of ``subject``'s ``metric``) armed for ``at``
        fired; idempotent per timer. ``judge`` judges the key's state again if its rule
        changed since its last input."""

        def decide(state: StreakState) -> Decision:
            return due(state, at, policy, judge=None if judge is None else judge(state))

        inputs = [(fp, timer_cause(at), decide)]
        [applied] = await self._apply(state_key(subject, metric), inputs)
        return applied

    async def mark_published(self, subject: str, metric: str, published: Sequence[Applied]) -> None:
        """Note that the transitions of ``published`` are in the alerts stream: one command
        for all of them."""
        if not published:
            return
        key = state_key(subject, metric)
        fields = [_out(applied.fp, applied.cause) for applied in published]
        await self._pipe.call(lambda pipe: pipe.hdel(key, *fields))

    async def _apply(self, key: str, inputs: Sequence[tuple[str, str, Decide]]) -> list[Applied]:
        fps = [fp for fp, _, _ in inputs]
        if len(set(fps)) != len(fps):
            raise ValueError(f"an alert key appears twice among one input's rules: {fps}")
        n = len(inputs)
        fields = ["v", "keep"]
        fields += [f"doc:{fp}" for fp in fps]
        fields += [_out(fp, cause) for fp, cause, _ in inputs]
        for _ in range(MAX_ATTEMPTS):
            answer = await self._pipe.call(lambda pipe: pipe.hmget(key, fields))
            version, keep_text = answer[0], answer[1]
            docs, outs = answer[2 : 2 + n], answer[2 + n :]
            missing = [
                (fp, cause) for (fp, cause, _), doc in zip(inputs, docs, strict=True) if doc is None
            ]
            legacy = await self._legacy(missing) if missing else {}
            keep = set(keep_text.split()) if keep_text else set()
            kept_before = set(keep)
            results: list[Applied] = []
            changes: list[Any] = []
            for (fp, cause, decide), doc, out in zip(inputs, docs, outs, strict=True):
                old = legacy.get(fp)
                if doc is not None:
                    state = _state(orjson.loads(doc))
                elif old is not None:
                    state, out = old.state, out or old.pending
                else:
                    state = StreakState()
                if out is not None:
                    # Caused before, not yet confirmed published: publish it again.
                    replay = load_transition(orjson.loads(out))
                    applied = Applied(replay, state.armed, state, cause, fp)
                else:
                    decision = decide(state)
                    after = state if decision.duplicate else decision.state
                    revised = decision.revised and not decision.duplicate
                    applied = Applied(decision.transition, decision.arm, after, cause, fp, revised)
                results.append(applied)
                if old is None and (out is not None or applied.state == state):
                    continue  # nothing to write (a key moved from a legacy layout always is)
                changes += (f"doc:{fp}", orjson.dumps(_dump(applied.state)))
                if applied.transition is not None:
                    pending = out or orjson.dumps(dump_transition(applied.transition))
                    changes += (_out(fp, cause), pending)
                if _waiting(applied.state):
                    keep.add(fp)
                else:
                    keep.discard(fp)
            if not changes:
                return results
            if keep != kept_before:
                changes += ("keep", " ".join(sorted(keep)))
            if await self._cas(key, version, _expiry_ms(keep), changes):
                if legacy:
                    await self._forget_legacy(legacy.values())
                return results
        raise gave_up(",".join(cause for _, cause, _ in inputs[:1]), ",".join(fps))

    async def _cas(self, key: str, version: str | None, expiry_ms: str, changes: list[Any]) -> bool:
        """Set ``changes`` (field, value, ...) if the hash is still at ``version``."""
        [written] = await self._run(self._write, [([key], [version or "", expiry_ms, *changes])])
        return bool(written)

    async def _legacy(self, missing: Sequence[tuple[str, str]]) -> dict[str, _Legacy]:
        """The alert keys of ``missing`` (key, input id) that earlier versions kept: one
        script per alert key (its old keys share a hash slot), all in one round trip."""
        calls = [(list(legacy_keys(fp)), [f"out:{cause}"]) for fp, cause in missing]
        answers = await self._run(self._read_legacy, calls)
        found: dict[str, _Legacy] = {}
        for (fp, _), answer in zip(missing, answers, strict=True):
            if answer is None:
                continue  # never kept anywhere: a new alert key
            current, data_key, alert_key = legacy_keys(fp)
            if answer[0] is not None:
                # The one-hash layout; its older keys, if any, went when it was written.
                found[fp] = _Legacy(_state(json.loads(answer[0])), answer[1], (current,))
                continue
            data, alert = _pairs(answer[2]), _pairs(answer[3])
            keys = tuple(k for k, v in ((data_key, data), (alert_key, alert)) if v)
            found[fp] = _Legacy(_older_state(data, alert), None, keys)
        return found

    async def _run(
        self, script: AsyncScript, calls: list[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Run ``script`` once per (keys, arguments) of ``calls``, all in one round trip."""
        queues = [_evalsha(script.sha, keys, args) for keys, args in calls]
        try:
            return await self._pipe.call_all(queues)
        except NoScriptError:
            # Redis restarted or was flushed since the script was loaded (none of the calls
            # ran): load it, and run them again.
            await self._redis.script_load(script.script)
            return await self._pipe.call_all(queues)

    async def _forget_legacy(self, legacy: Iterable[_Legacy]) -> None:
        """Delete the earlier layouts' keys of alert keys now written in the new hash.

        A command of its own, after the write: the keys are in other hash slots, and deleted
        before the write is known to have succeeded they could be lost with it. If this
        delete is lost (the process dies between the two, or Redis is unreachable for it)
        the old keys stay behind, unread while the new hash has the alert key's ``doc``;
        they then expire on their own (a persisted one, of an alert firing or waiting when
        it was moved, does not). Only if the new hash is later dropped whole (idle for
        :data:`IDLE_EXPIRY`, or lost with Redis' last writes) is such a left-behind key read
        again, as the alert key's state from before the upgrade: a rare, bounded staleness,
        the same as replaying from an old checkpoint. (Redis losing its last second of writes
        cannot keep the delete and lose the write: its append-only file keeps them in order.)
        """
        await self._pipe.call_all([_delete(entry.keys) for entry in legacy])


def _observer(observation: Observation, labels: Mapping[str, str]) -> Decide:
    point, policy, judge = observation.point, observation.policy, observation.judge
    return lambda state: observe(state, point, policy, labels=labels, judge=judge)


def _evalsha(sha: str, keys: list[str], args: list[Any]) -> Queue:
    return lambda pipe: pipe.evalsha(sha, len(keys), *keys, *args)


def _pairs(flat: list[str]) -> dict[str, str]:
    """An HGETALL answer a script returned (field, value, ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _delete(keys: Sequence[str]) -> Queue:
    return lambda pipe: pipe.delete(*keys)


def _out(fp: str, cause: str) -> str:
    return f"out:{fp}:{cause}"


def _waiting(state: StreakState) -> bool:
    """Whether the alert key must outlive any idle time: firing, pending or armed."""
    return state.firing or state.pending_since is not None or state.armed is not None


def _expiry_ms(keep: set[str]) -> str:
    """The hash's expiry after a write: none while any of its alert keys is firing or
    waiting, else :data:`IDLE_EXPIRY`.

    The hash holds alert keys the input did not reach, so the write cannot tell from its own
    states alone. ``keep`` (the waiting keys, read with the states) answers it in the same
    read, and stays small: reading every state instead (HGETALL) would cost what every rule
    and ``by`` value of the metric ever kept on every event, and a count of waiting keys
    instead of their names would drift for good if it were ever wrong once.
    """
    return "0" if keep else _IDLE_MS


def _time(text: Any) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text))


def _severity(text: Any) -> Severity | None:
    return None if text is None else Severity(text)


def _older_state(data: Mapping[str, str], alert: Mapping[str, str]) -> StreakState:
    """The state as the oldest layout kept it (event id -> observation; alert state)."""
    points = sorted(
        (_older_point(event_id, json.loads(raw)) for event_id, raw in data.items()),
        key=lambda p: (p.time, p.event_id),
    )
    return StreakState(
        kept=tuple(points),
        firing=alert.get("state") == AlertState.FIRING,
        started_at=_time(alert.get("started_at")),
    )


def _older_point(event_id: str, doc: dict[str, Any]) -> Point:
    return Point(event_id, datetime.fromisoformat(doc["time"]), float(doc["value"]), doc["breach"])


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
        # Absent from states written before revisions were recorded: unknown, taken to be
        # the current rule's (see StreakState.revision).
        revision=doc.get("rev"),
        measure=doc.get("measure"),
    )


_VERDICTS: Final = {verdict.value: verdict for verdict in Verdict}


def _points(rows: list[list[Any]]) -> tuple[Point, ...]:
    fromiso, verdicts = datetime.fromisoformat, _VERDICTS
    return tuple(
        Point.of(event_id, fromiso(time), float(value), verdicts[verdict])
        for event_id, time, value, verdict in rows
    )


def _dump(state: StreakState) -> dict[str, Any]:
    """``state`` for :func:`orjson.dumps`, which writes a datetime as ``isoformat`` would
    (and several times faster than calling it)."""
    doc = {
        "kept": [[p.event_id, p.time, p.value, p.verdict.value] for p in state.kept],
        "firing": state.firing,
        "started_at": state.started_at,
        "pending_since": state.pending_since,
        "severity": None if state.severity is None else state.severity.value,
        "armed": state.armed,
        "labels": dict(state.labels),
        "raw": [[p.event_id, p.time, p.value, p.verdict.value] for p in state.raw],
        "rev": state.revision,
    }
    if state.measure is not None:  # window rules only
        doc["measure"] = state.measure
    return doc


def _rows(points: tuple[Point, ...]) -> list[list[Any]]:
    return [[p.event_id, p.time.isoformat(), p.value, p.verdict.value] for p in points]


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
