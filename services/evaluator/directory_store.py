"""The evaluator's view of the people directory in Redis: what rules and alerts need of each
person and org unit, each record applied only over an older version.

Keys (one hash each, all under the ``{directory}`` hash tag, so that the scripts below, which
walk from a person to their unit's ancestors, touch one cluster slot):

- ``goalwatch:evaluator:{directory}:person:<id>``: ``version``, ``name``, ``org_unit``,
  ``time_zone``, ``manager`` (a field the person does not have is absent);
- ``goalwatch:evaluator:{directory}:org_unit:<id>``: ``version``, ``parent`` (absent for a
  root such as the company).

Written only by the ``evaluator-directory`` consumer of ``GOALWATCH_PEOPLE``; rebuilt from that
stream after Redis lost writes (``docs/reliability.md``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from redis.asyncio import Redis

from goalwatch.rules.scope import MAX_DEPTH

KEY_PREFIX: Final = "goalwatch:evaluator:{directory}:"
PERSON_PREFIX: Final = f"{KEY_PREFIX}person:"
ORG_UNIT_PREFIX: Final = f"{KEY_PREFIX}org_unit:"

Kind = Literal["person", "org_unit"]

# Each record replaces the stored one only if its version is newer: a redelivered, replayed
# or late change of a record never overwrites a newer one. KEYS[i] is the key of ARGV's i-th
# record; the record's fields replace the hash whole, so a field it no longer has goes.
APPLY: Final = """
local records = cjson.decode(ARGV[1])
local applied = 0
for i, record in ipairs(records) do
  local stored = tonumber(redis.call('HGET', KEYS[i], 'version') or '0')
  if record.version > stored then
    local fields = {'version', record.version}
    for name, value in pairs(record.fields) do
      fields[#fields + 1] = name
      fields[#fields + 1] = value
    end
    redis.call('DEL', KEYS[i])
    redis.call('HSET', KEYS[i], unpack(fields))
    applied = applied + 1
  end
end
return applied
"""

# For each person key: {} when unknown, else {name, time_zone, manager, unit, parent, ...}:
# their unit and its ancestors, nearest first, followed inside Redis so that a batch of
# subjects costs one round trip whatever the depth of the chart. Like
# goalwatch.rules.scope.ancestry: a unit without a stored record ends the chain (it is still
# listed), a loop ends it at the first unit seen twice, and it stops after ARGV[2] units.
LOOKUP: Final = """
local out = {}
local prefix, most = ARGV[1], tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local person = redis.call('HMGET', key, 'version', 'name', 'time_zone', 'manager', 'org_unit')
  if not person[1] then
    out[i] = {}
  else
    local row = {person[2] or '', person[3] or '', person[4] or ''}
    local unit, seen, depth = person[5], {}, 0
    while unit and not seen[unit] and depth < most do
      seen[unit] = true
      depth = depth + 1
      row[#row + 1] = unit
      unit = redis.call('HGET', prefix .. unit, 'parent')
    end
    out[i] = row
  end
end
return out
"""


@dataclass(frozen=True)
class Record:
    """One person or org unit as the view keeps it: the fields rules and alerts need."""

    kind: Kind
    id: str
    version: int
    fields: dict[str, str]
    """``name``, ``org_unit``, ``time_zone``, ``manager`` of a person; ``parent`` of a unit;
    only those it has."""


@dataclass(frozen=True)
class PersonView:
    """A person as the evaluator's directory knows them."""

    id: str
    name: str
    org_units: tuple[str, ...]
    """Their org unit and all its ancestors, nearest first; empty when they have none."""
    time_zone: str | None
    manager_id: str | None


def key_of(kind: Kind, record_id: str) -> str:
    """The Redis key of a person's or an org unit's record."""
    return f"{PERSON_PREFIX if kind == 'person' else ORG_UNIT_PREFIX}{record_id}"


class DirectoryStore:
    """Applies directory records and reads people with their org units, a batch per call."""

    def __init__(self, redis: Redis) -> None:
        self._apply = redis.register_script(APPLY)
        self._lookup = redis.register_script(LOOKUP)

    async def apply(self, records: Sequence[Record]) -> int:
        """Store each record whose version is newer than the stored one (one script call);
        how many were stored. A record listed twice is applied in order."""
        if not records:
            return 0
        keys = [key_of(record.kind, record.id) for record in records]
        doc = [{"version": record.version, "fields": record.fields} for record in records]
        # cjson decodes an empty JSON object as an empty table: pairs() then yields nothing.
        return int(await self._apply(keys=keys, args=[json.dumps(doc)]))

    async def people(self, subjects: Sequence[str]) -> dict[str, PersonView | None]:
        """Each of ``subjects`` as the view knows them, None when it does not (one script
        call for all of them)."""
        unique = list(dict.fromkeys(subjects))
        if not unique:
            return {}
        rows: list[Any] = await self._lookup(
            keys=[key_of("person", subject) for subject in unique],
            args=[ORG_UNIT_PREFIX, MAX_DEPTH],
        )
        return {subject: _view(subject, row) for subject, row in zip(unique, rows, strict=True)}


def _view(subject: str, row: list[Any]) -> PersonView | None:
    if not row:
        return None
    name, time_zone, manager, *units = (_text(part) for part in row)
    return PersonView(
        id=subject,
        name=name,
        org_units=tuple(units),
        time_zone=time_zone or None,
        manager_id=manager or None,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
