"""The notifier's directory cache: hits, misses, what each change event drops, the TTL, and
goals being down (no servers: a fake source and a fake clock)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import httpx
import pytest

from goalwatch.contracts import (
    OrgUnitChanged,
    OrgUnitRead,
    OrgUnitUpsert,
    PersonChanged,
    PersonRead,
    PersonUpsert,
    subjects,
)
from goalwatch.goals_client import GoalsClient, GoalsUnavailable
from services.notifier.directory import CachedDirectory
from services.notifier.metrics import REGISTRY
from services.notifier.recipients import resolve_recipients

AT = datetime(2026, 11, 20, 9, tzinfo=UTC)
R = TypeVar("R")


class Source:
    """People and org units by id, counting the lookups; ``down`` makes every lookup fail
    as the goals client does when goals cannot answer; a lookup of an id in ``held`` reads
    the record, then waits until the event is set before answering (a slow goals service)."""

    def __init__(self) -> None:
        self.people: dict[str, PersonRead] = {
            "nurse": PersonRead(
                id="nurse", name="Nurse Xu", manager_id="sister", managers=["sister"]
            ),
            "sister": PersonRead(id="sister", name="Sister Gao", org_unit_id="ward-3"),
        }
        self.units: dict[str, OrgUnitRead] = {
            "ward-3": OrgUnitRead(id="ward-3", name="Ward 3", kind="team"),
        }
        self.asked: list[str] = []
        self.down = False
        self.held: dict[str, asyncio.Event] = {}
        self.reached = asyncio.Event()  # set by the first lookup

    async def get_person(self, person_id: str) -> PersonRead | None:
        return await self._get(person_id, self.people)

    async def get_org_unit(self, unit_id: str) -> OrgUnitRead | None:
        return await self._get(unit_id, self.units)

    async def _get(self, key: str, table: dict[str, R]) -> R | None:
        self.asked.append(key)
        self.reached.set()
        found = table.get(key)
        if key in self.held:
            await self.held[key].wait()
        if self.down:
            raise GoalsUnavailable(f"goals service did not answer GET {key}")
        return found


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(source: Source, clock: Clock | None = None, **options: object) -> CachedDirectory:
    return CachedDirectory(source, clock=clock or Clock(), **options)  # type: ignore[arg-type]


def person_changed(person_id: str, **fields: object) -> bytes:
    upsert = PersonUpsert.model_validate({"id": person_id, "name": person_id, **fields})
    event = PersonChanged(
        event_id=f"person:{person_id}:2", version=2, occurred_at=AT, person=upsert
    )
    return event.model_dump_json().encode()


def unit_changed(unit_id: str) -> bytes:
    unit = OrgUnitUpsert(id=unit_id, name="Ward 3 East", kind="team")
    event = OrgUnitChanged(
        event_id=f"org_unit:{unit_id}:2", version=2, occurred_at=AT, org_unit=unit
    )
    return event.model_dump_json().encode()


def lookups(kind: str, outcome: str) -> float:
    labels = {"kind": kind, "outcome": outcome}
    return REGISTRY.get_sample_value("goalwatch_notifier_directory_lookups_total", labels) or 0.0


async def test_a_second_lookup_is_a_hit_and_asks_goals_nothing() -> None:
    source = Source()
    directory = cache(source)
    hits, misses = lookups("person", "hit"), lookups("person", "miss")
    first = await directory.get_person("nurse")
    second = await directory.get_person("nurse")
    assert first == second == source.people["nurse"]
    assert source.asked == ["nurse"]
    assert (lookups("person", "hit") - hits, lookups("person", "miss") - misses) == (1, 1)


async def test_a_rename_drops_that_person_only() -> None:
    source = Source()
    directory = cache(source)
    await directory.get_person("nurse")
    await directory.get_person("sister")
    source.people["sister"] = PersonRead(id="sister", name="Matron Gao", org_unit_id="ward-3")
    # Same manager (none) and unit as cached: nobody else's record derives from a name.
    directory.apply(subjects.PERSON_CHANGED, person_changed("sister", org_unit_id="ward-3"))
    assert (await directory.get_person("sister")).name == "Matron Gao"  # type: ignore[union-attr]
    await directory.get_person("nurse")
    assert source.asked == ["nurse", "sister", "sister"]


async def test_a_new_manager_drops_every_person_their_reports_chains_change_too() -> None:
    source = Source()
    directory = cache(source)
    await directory.get_person("nurse")
    await directory.get_person("sister")
    # Sister Gao gets a manager: the nurse's chain (derived by goals) now has two levels.
    source.people["nurse"] = PersonRead(
        id="nurse", name="Nurse Xu", manager_id="sister", managers=["sister", "matron"]
    )
    directory.apply(
        subjects.PERSON_CHANGED,
        person_changed("sister", manager_id="matron", org_unit_id="ward-3"),
    )
    assert (await directory.get_person("nurse")).managers == ["sister", "matron"]  # type: ignore[union-attr]
    assert source.asked == ["nurse", "sister", "nurse"]


async def test_a_move_to_another_unit_drops_every_person() -> None:
    source = Source()
    directory = cache(source)
    await directory.get_person("nurse")
    await directory.get_person("sister")
    directory.apply(subjects.PERSON_CHANGED, person_changed("sister", org_unit_id="ward-4"))
    await directory.get_person("nurse")
    assert source.asked == ["nurse", "sister", "nurse"]


async def test_a_change_to_someone_not_cached_drops_every_person() -> None:
    # The cache cannot tell whether their manager changed; they may be in a cached chain.
    source = Source()
    directory = cache(source)
    await directory.get_person("nurse")
    directory.apply(subjects.PERSON_CHANGED, person_changed("matron"))
    await directory.get_person("nurse")
    assert source.asked == ["nurse", "nurse"]


async def test_an_org_unit_change_drops_every_unit_and_no_person() -> None:
    source = Source()
    directory = cache(source)
    await directory.get_person("nurse")
    await directory.get_org_unit("ward-3")
    await directory.get_org_unit("nowhere")
    directory.apply(subjects.ORG_UNIT_CHANGED, unit_changed("ward-9"))
    await directory.get_org_unit("ward-3")
    await directory.get_org_unit("nowhere")
    await directory.get_person("nurse")
    assert source.asked == ["nurse", "ward-3", "nowhere", "ward-3", "nowhere"]


async def test_a_change_that_does_not_decode_drops_everything() -> None:
    source = Source()
    directory = cache(source)
    await directory.get_person("nurse")
    await directory.get_org_unit("ward-3")
    directory.apply(subjects.PERSON_CHANGED, b'{"person": "not a person"}')
    await directory.get_person("nurse")
    await directory.get_org_unit("ward-3")
    assert source.asked == ["nurse", "ward-3", "nurse", "ward-3"]


async def test_entries_expire_after_the_ttl() -> None:
    source, clock = Source(), Clock()
    directory = cache(source, clock, ttl=timedelta(minutes=10))
    await directory.get_person("nurse")
    clock.now += 599
    await directory.get_person("nurse")
    assert source.asked == ["nurse"]
    clock.now += 1
    await directory.get_person("nurse")
    assert source.asked == ["nurse", "nurse"]


async def test_not_found_is_kept_briefly_and_dropped_when_the_person_is_created() -> None:
    source, clock = Source(), Clock()
    directory = cache(source, clock, ttl=timedelta(minutes=10), not_found_ttl=timedelta(seconds=30))
    assert await directory.get_person("ward-7") is None
    assert await directory.get_person("ward-7") is None
    assert source.asked == ["ward-7"]
    clock.now += 30
    assert await directory.get_person("ward-7") is None
    assert source.asked == ["ward-7", "ward-7"]
    # Created a moment later: its change event drops the "not found" at once.
    source.people["ward-7"] = PersonRead(id="ward-7", name="Ward 7 lead")
    directory.apply(subjects.PERSON_CHANGED, person_changed("ward-7"))
    found = await directory.get_person("ward-7")
    assert found is not None and found.name == "Ward 7 lead"


async def test_goals_unavailable_passes_through_and_nothing_is_cached() -> None:
    source = Source()
    directory = cache(source)
    source.down = True
    with pytest.raises(GoalsUnavailable):
        await directory.get_person("nurse")
    with pytest.raises(GoalsUnavailable):
        await directory.get_org_unit("ward-3")
    source.down = False
    assert await directory.get_person("nurse") == source.people["nurse"]
    assert source.asked == ["nurse", "ward-3", "nurse"]


async def test_lookups_of_one_id_at_once_share_one_request() -> None:
    source = Source()
    directory = cache(source)
    source.held["nurse"] = asyncio.Event()
    joined = lookups("person", "joined")
    waiting = [asyncio.create_task(directory.get_person("nurse")) for _ in range(3)]
    await source.reached.wait()
    source.held["nurse"].set()
    assert await asyncio.gather(*waiting) == [source.people["nurse"]] * 3
    assert source.asked == ["nurse"]
    assert lookups("person", "joined") - joined == 2


async def test_a_lookup_in_flight_when_a_change_arrives_is_not_cached() -> None:
    # It may have read the record before the change: its callers get it, nobody later does.
    source = Source()
    directory = cache(source)
    release = source.held["nurse"] = asyncio.Event()
    before = asyncio.create_task(directory.get_person("nurse"))
    await source.reached.wait()  # the old record is read; the answer is on its way
    renamed = PersonRead(id="nurse", name="Nurse Xu Li", manager_id="sister", managers=["sister"])
    source.people["nurse"] = renamed
    directory.apply(
        subjects.PERSON_CHANGED, person_changed("nurse", name="Nurse Xu Li", manager_id="sister")
    )
    del source.held["nurse"]
    # A lookup after the change asks again rather than join the one in flight (joining,
    # it would wait for ``release`` and never end: the test's timeout would fail it).
    assert await directory.get_person("nurse") == renamed
    release.set()
    assert (await before).name == "Nurse Xu"  # type: ignore[union-attr]
    # The late answer did not replace the newer one in the cache.
    assert await directory.get_person("nurse") == renamed
    assert source.asked == ["nurse", "nurse"]


async def test_the_least_recently_used_person_goes_first_when_full() -> None:
    source = Source()
    source.people["matron"] = PersonRead(id="matron", name="Matron Lin")
    directory = cache(source, max_people=2)
    for person_id in ("nurse", "sister", "nurse", "matron"):
        await directory.get_person(person_id)
    await directory.get_person("nurse")  # still held: read more recently than sister
    await directory.get_person("sister")
    assert source.asked == ["nurse", "sister", "matron", "sister"]
    assert directory.sizes() == (2, 0)


async def test_recipients_of_two_alerts_cost_one_lookup_per_person() -> None:
    asked: list[str] = []

    def goals(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        person_id = request.url.path.removeprefix("/v1/people/")
        people = {
            "nurse": PersonRead(id="nurse", name="Nurse Xu", managers=["sister"]),
            "sister": PersonRead(id="sister", name="Sister Gao"),
        }
        if person_id not in people:
            return httpx.Response(404)
        return httpx.Response(200, content=people[person_id].model_dump_json())

    client = GoalsClient(
        client=httpx.AsyncClient(transport=httpx.MockTransport(goals)), base_url="http://goals"
    )
    directory = CachedDirectory(client)
    for fingerprint in ("fp-1", "fp-2"):
        audience = await resolve_recipients(
            directory=directory,
            subject="nurse",
            notify=["subject", "manager"],
            fingerprint=fingerprint,
        )
        assert [r.name for r in audience.recipients] == ["Nurse Xu", "Sister Gao"]
    assert asked == ["/v1/people/nurse", "/v1/people/sister"]
