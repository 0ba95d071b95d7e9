"""People and org units written with the events they owe, and rebuilt from the stream.

A write stores each person or org unit, bumps its version and appends its change record to
the directory outbox in one script (:data:`services.goals.scripts.UPSERT_DIRECTORY`); the
outbox relay publishes them to ``GOALWATCH_PEOPLE`` as :class:`PersonChanged` and
:class:`OrgUnitChanged`, the same way goal changes reach ``GOALWATCH_GOALS``. After a Redis
restart that lost writes, :meth:`Directory.replay` writes each record from the stream again
where the store holds an older version or none.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field
from redis.asyncio import Redis

from goalwatch.contracts import subjects
from goalwatch.contracts.base import Contract
from goalwatch.contracts.directory_events import DirectoryEvent, OrgUnitChanged, PersonChanged
from goalwatch.contracts.goals import OrgUnitUpsert
from goalwatch.contracts.people import PersonUpsert
from services.goals import keys
from services.goals.caught_up import CaughtUp, WriteGuard
from services.goals.scripts import UPSERT_DIRECTORY

Kind = Literal["person", "org_unit"]


@dataclass(frozen=True)
class _Layout:
    prefix: str
    ids: str
    ids_type: Literal["set", "zset"]
    versions: str


_LAYOUT: dict[Kind, _Layout] = {
    "person": _Layout(keys.person(""), keys.PEOPLE_IDS, "set", keys.PERSON_VERSIONS),
    "org_unit": _Layout(keys.org_unit(""), keys.ORG_UNIT_IDS, "zset", keys.ORG_UNIT_VERSIONS),
}

SUBJECT_OF: dict[type[DirectoryEvent], str] = {
    PersonChanged: subjects.PERSON_CHANGED,
    OrgUnitChanged: subjects.ORG_UNIT_CHANGED,
}
"""The subject each directory event is published on."""


class DirectoryRecord(Contract):
    """One change of a person or an org unit, as the directory outbox holds it."""

    kind: Kind = Field(description="person or org_unit.")
    id: str = Field(description="The person's or org unit's id.")
    version: int = Field(description="Its version after the change.")
    at: AwareDatetime = Field(description="When the change was made.")
    doc: dict[str, Any] = Field(description="The record as stored.")


def event_of(record: DirectoryRecord) -> PersonChanged | OrgUnitChanged:
    """The event ``record`` stands for (pure: relayed twice, the same event and id)."""
    base = {"event_id": f"{record.kind}:{record.id}:{record.version}", "version": record.version}
    if record.kind == "person":
        person = PersonUpsert.model_validate(record.doc)
        return PersonChanged(**base, occurred_at=record.at, person=person)
    unit = OrgUnitUpsert.model_validate(record.doc)
    return OrgUnitChanged(**base, occurred_at=record.at, org_unit=unit)


@dataclass(frozen=True)
class Written:
    """What a directory write did."""

    created: int
    replaced: int
    unchanged: int


def _now() -> datetime:
    return datetime.now(UTC)


class Directory:
    """Writes and replays people and org units."""

    def __init__(
        self,
        redis: Redis,
        *,
        caught_up: CaughtUp | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._redis = redis
        self._guard = WriteGuard(caught_up)
        self._clock = clock
        self._script = redis.register_script(UPSERT_DIRECTORY)

    async def write(self, kind: Kind, records: Sequence[PersonUpsert | OrgUnitUpsert]) -> Written:
        """Store ``records`` (ids unique) in one step; each changed one owes an event."""
        items = [{"id": r.id, "doc": r.model_dump_json()} for r in records]
        while True:
            run_id = await self._guard.run_id()
            answer = await self._run(kind, items, run_id=run_id, mode="write")
            if answer[0] != "stale":
                break
            await self._guard.catch_up()  # Redis restarted: replay, then write
        created, unchanged = int(answer[1]), int(answer[2])
        return Written(created=created, replaced=len(items) - created, unchanged=unchanged)

    async def replay(self, messages: Sequence[tuple[int, bytes]]) -> int:
        """Apply directory events from ``GOALWATCH_PEOPLE`` again, in order, each where the
        store holds an older version or none; how many were written."""
        applied = 0
        for _, data in messages:
            event = json.loads(data)
            kind: Kind
            record: PersonUpsert | OrgUnitUpsert
            if "person" in event:
                kind, record = "person", PersonUpsert.model_validate(event["person"])
            else:
                kind, record = "org_unit", OrgUnitUpsert.model_validate(event["org_unit"])
            # As the write stores it, so that a later identical write is seen as unchanged.
            item = {"id": record.id, "doc": record.model_dump_json(), "version": event["version"]}
            answer = await self._run(kind, [item], run_id="", mode="replay")
            applied += int(answer[1])
        return applied

    async def _run(
        self, kind: Kind, items: list[dict[str, Any]], *, run_id: str, mode: str
    ) -> list[str]:
        layout = _LAYOUT[kind]
        args = [
            kind,
            layout.prefix,
            layout.ids,
            layout.ids_type,
            layout.versions,
            json.dumps(items),
            run_id,
            mode,
            self._clock().isoformat(),
        ]
        answer = await self._script(keys=[keys.DIRECTORY_OUTBOX], args=args)
        return [str(part) for part in answer]
