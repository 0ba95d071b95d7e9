"""The evaluator's directory view without servers: changes read, batches looked up once,
names from the view, rules scoped by org unit, and the view replayed first after a loss.

The Redis scripts themselves are tested on a real Redis (tests/integration/test_directory.py)
against the same expectations as :class:`MemoryDirectoryStore` here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from pydantic import ValidationError

from goalwatch.checkpoints import Recovery, Replay
from goalwatch.consumers import ACK, Received, RedeliveryPolicy, Retry
from goalwatch.contracts import PersonUpsert
from goalwatch.contracts.directory_events import OrgUnitChanged, PersonChanged
from goalwatch.contracts.goals import OrgUnitKind, OrgUnitUpsert
from goalwatch.rules import RuleSpec, load_rules, metric_rules
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.scope import ancestry
from services.evaluator.consumer import MetricsHandler
from services.evaluator.directory import (
    Directory,
    DirectoryChange,
    DirectoryHandler,
    DirectoryNames,
    OrgUnitScopes,
    replay_changes,
)
from services.evaluator.directory_store import PersonView, Record
from services.evaluator.evaluation import Evaluator
from services.evaluator.metrics import SUBJECT_NAMES
from tests.unit.test_evaluator import MemoryStreaks, Names, Published, rework
from tests.unit.test_evaluator_recovery import FakeCheckpoint

REPO = Path(__file__).resolve().parents[2]
POLICY = RedeliveryPolicy(max_deliver=5, first_delay=1.0, max_delay=60.0)
AT = datetime(2026, 11, 1, tzinfo=UTC)


class MemoryDirectoryStore:
    """The DirectoryStore's contract in memory, counting round trips."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], Record] = {}
        self.lookups: list[list[str]] = []
        self.fail: Exception | None = None

    async def apply(self, records: Sequence[Record]) -> int:
        if self.fail is not None:
            raise self.fail
        applied = 0
        for record in records:
            stored = self.records.get((record.kind, record.id))
            if stored is None or record.version > stored.version:
                self.records[(record.kind, record.id)] = record
                applied += 1
        return applied

    async def people(self, subjects: Sequence[str]) -> dict[str, PersonView | None]:
        self.lookups.append(list(subjects))
        parents = {
            unit_id: record.fields.get("parent")
            for (kind, unit_id), record in self.records.items()
            if kind == "org_unit"
        }
        found: dict[str, PersonView | None] = {}
        for subject in subjects:
            record = self.records.get(("person", subject))
            found[subject] = (
                None
                if record is None
                else PersonView(
                    id=subject,
                    name=record.fields["name"],
                    org_units=tuple(ancestry(record.fields.get("org_unit"), parents)),
                    time_zone=record.fields.get("time_zone"),
                    manager_id=record.fields.get("manager"),
                )
            )
        return found


def person_changed(version: int = 1, **fields: str) -> PersonChanged:
    person = PersonUpsert.model_validate({"name": f"Dr {fields['id']}", **fields})
    return PersonChanged(
        event_id=f"person:{person.id}:{version}", version=version, occurred_at=AT, person=person
    )


def unit_changed(unit_id: str, parent: str | None = None, version: int = 1) -> OrgUnitChanged:
    unit = OrgUnitUpsert(id=unit_id, name=unit_id, kind=OrgUnitKind.DEPARTMENT, parent_id=parent)
    return OrgUnitChanged(
        event_id=f"org_unit:{unit_id}:{version}", version=version, occurred_at=AT, org_unit=unit
    )


def changes(*events: PersonChanged | OrgUnitChanged) -> list[DirectoryChange]:
    return [DirectoryChange.model_validate_json(event.model_dump_json()) for event in events]


CHART = (
    unit_changed("hospital"),
    unit_changed("radiology", "hospital"),
    unit_changed("radiology-ct", "radiology"),
    unit_changed("cardiology", "hospital"),
)


async def _store_with(*events: PersonChanged | OrgUnitChanged) -> MemoryDirectoryStore:
    store = MemoryDirectoryStore()
    await store.apply([change.record() for change in changes(*CHART, *events)])
    return store


def _directory(store: MemoryDirectoryStore) -> Directory:
    return Directory(store)  # type: ignore[arg-type]


# ---------------------------------------------------------------- reading the stream


def test_a_person_change_keeps_what_rules_and_alerts_need() -> None:
    [change] = changes(
        person_changed(
            3,
            id="li-na",
            org_unit_id="radiology-ct",
            time_zone="Asia/Shanghai",
            manager_id="zhang-wei",
            email="li.na@example.org",
        )
    )
    assert change.record() == Record(
        "person",
        "li-na",
        3,
        {
            "name": "Dr li-na",
            "org_unit": "radiology-ct",
            "time_zone": "Asia/Shanghai",
            "manager": "zhang-wei",
        },
    )
    [unit] = changes(unit_changed("radiology", "hospital", version=2))
    assert unit.record() == Record("org_unit", "radiology", 2, {"parent": "hospital"})
    [root] = changes(unit_changed("hospital"))
    assert root.record().fields == {}


def test_a_field_goals_adds_later_is_ignored_and_a_change_must_carry_one_record() -> None:
    body = person_changed(id="li-na").model_dump(mode="json")
    body["person"]["pager"] = "1234"
    assert DirectoryChange.model_validate(body).record().id == "li-na"
    with pytest.raises(ValidationError, match="exactly one of person, org_unit"):
        DirectoryChange.model_validate({"event_id": "x", "version": 1, "occurred_at": AT})


# ---------------------------------------------------------------- reading the view


async def test_a_batch_looks_its_subjects_up_once() -> None:
    store = await _store_with(person_changed(id="li-na", org_unit_id="radiology-ct"))
    directory = _directory(store)
    async with directory.batch(["li-na", "guest"]):
        person = await directory.person("li-na")
        assert await directory.person("guest") is None
        assert len(store.lookups) == 1
    assert person is not None
    assert person.org_units == ("radiology-ct", "radiology", "hospital")
    # Outside the batch nothing is kept: the next read asks the store again.
    await directory.person("li-na")
    assert store.lookups == [["li-na", "guest"], ["li-na"]]


async def test_names_come_from_the_view_and_goals_only_for_the_unknown() -> None:
    store = await _store_with(person_changed(id="li-na"))
    names = DirectoryNames(_directory(store), Names(guest="Guest from goals"))
    from_view = SUBJECT_NAMES.labels(source="directory")._value.get()
    from_goals = SUBJECT_NAMES.labels(source="goals")._value.get()
    assert await names.name_of(subject="li-na") == "Dr li-na"
    assert await names.name_of(subject="guest") == "Guest from goals"
    assert await names.name_of(subject="nobody") == "nobody"
    assert SUBJECT_NAMES.labels(source="directory")._value.get() == from_view + 1
    assert SUBJECT_NAMES.labels(source="goals")._value.get() == from_goals + 2


async def test_goals_answers_are_kept_for_a_while_and_the_view_still_comes_first() -> None:
    class Counting:
        def __init__(self) -> None:
            self.asked: list[str] = []

        async def name_of(self, *, subject: str) -> str:
            self.asked.append(subject)
            return "Guest from goals" if subject == "guest" else subject

    now = [0.0]
    store = MemoryDirectoryStore()
    goals = Counting()
    names = DirectoryNames(_directory(store), goals, cache_seconds=60, timer=lambda: now[0])
    from_cache = SUBJECT_NAMES.labels(source="cache")._value.get()
    for _ in range(3):
        assert await names.name_of(subject="ward-7") == "ward-7"
        assert await names.name_of(subject="guest") == "Guest from goals"
    assert goals.asked == ["ward-7", "guest"]
    assert SUBJECT_NAMES.labels(source="cache")._value.get() == from_cache + 4
    # A person the view learns of is named from it at once, whatever goals said before.
    await store.apply([change.record() for change in changes(person_changed(id="ward-7"))])
    assert await names.name_of(subject="ward-7") == "Dr ward-7"
    now[0] = 61.0
    assert await names.name_of(subject="guest") == "Guest from goals"
    assert goals.asked == ["ward-7", "guest", "guest"]


async def test_no_cache_asks_goals_every_time() -> None:
    class Counting:
        asked = 0

        async def name_of(self, *, subject: str) -> str:
            Counting.asked += 1
            return subject

    names = DirectoryNames(_directory(MemoryDirectoryStore()), Counting(), cache_seconds=0)
    await names.name_of(subject="ward-7")
    await names.name_of(subject="ward-7")
    assert Counting.asked == 2


async def test_goals_unreachable_for_an_unknown_subject_raises() -> None:
    class Down:
        async def name_of(self, *, subject: str) -> str:
            raise ConnectionError("goals is down")

    names = DirectoryNames(_directory(MemoryDirectoryStore()), Down())
    with pytest.raises(ConnectionError):
        await names.name_of(subject="guest")


# ---------------------------------------------------------------- rules scoped by org unit

SCOPED = RuleSpec.model_validate(
    {
        "id": "radiology-turnaround-slow",
        "name": "slow",
        "kind": "threshold",
        "metric": "report_rework_rate",
        "org_unit": "radiology",
        "condition": {"op": ">", "value": 0.08},
        "severity": "warning",
        "notify": ["subject"],
        "message": "{subject_name}: {value}",
    }
)


async def test_a_scoped_rule_fires_for_subjects_under_its_unit_with_one_lookup_per_batch() -> None:
    store = await _store_with(
        person_changed(id="li-na", org_unit_id="radiology-ct"),
        person_changed(id="chen-jie", org_unit_id="cardiology"),
    )
    directory = _directory(store)
    published = Published()
    evaluator = Evaluator(
        engine=RuleEngine([SCOPED]),
        streaks=MemoryStreaks(),
        publish=published,
        names=DirectoryNames(directory, Names()),
        scopes=OrgUnitScopes(directory, [SCOPED]),
    )
    batch = [rework(1, 0.2, subject) for subject in ("li-na", "chen-jie", "guest")]
    assert await evaluator.handle_batch(batch) == {}
    assert [(alert.subject, alert.message) for alert, _, _ in published.messages] == [
        ("li-na", "Dr li-na: 0.2")
    ]
    # The scope and the alert's name both came from the batch's one lookup.
    assert store.lookups == [["li-na", "chen-jie", "guest"]]

    # Moved to cardiology: the next breach is outside the scope.
    await store.apply(
        [change.record() for change in changes(person_changed(2, id="li-na", org_unit_id="x"))]
    )
    published.messages.clear()
    assert await evaluator.handle_batch([rework(2, 0.3, "li-na")]) == {}
    assert published.messages == []


async def test_without_scoped_rules_nothing_is_looked_up_per_batch() -> None:
    store = await _store_with(person_changed(id="li-na"))
    rules = metric_rules(load_rules(REPO / "rules"))
    unscoped = [rule for rule in rules if not rule.scope]
    evaluator = Evaluator(
        engine=RuleEngine(unscoped),
        streaks=MemoryStreaks(),
        publish=Published(),
        names=Names(),
        scopes=OrgUnitScopes(_directory(store), unscoped),
    )
    assert await evaluator.handle_batch([rework(1, 0.2, "li-na")]) == {}
    assert store.lookups == []


# ---------------------------------------------------------------- the consumer


def _received(count: int) -> list[Received]:
    return [Received("evaluator-directory", sequence, 1) for sequence in range(1, count + 1)]


class ChangesCheckpoint(FakeCheckpoint):
    """A checkpoint over a stream of directory changes."""

    def __init__(self, stream: list[PersonChanged | OrgUnitChanged]) -> None:
        super().__init__([])
        self.changes = stream

    async def messages(self, replay: Replay) -> AsyncIterator[list[tuple[int, bytes]]]:
        yield [
            (sequence, event.model_dump_json().encode())
            for sequence, event in enumerate(self.changes, start=1)
            if replay.first <= sequence <= replay.last
        ] + [(0, b"not json: dead-lettered when first delivered")]


async def test_a_batch_is_stored_or_retried_whole() -> None:
    store = MemoryDirectoryStore()
    checkpoint = ChangesCheckpoint([])
    recovery = Recovery(views=[(checkpoint, partial(replay_changes, store))], what="state")
    handler = DirectoryHandler(store=store, recovery=recovery, policy=POLICY)  # type: ignore[arg-type]
    batch = changes(*CHART)
    assert await handler.handle_batch(batch, _received(4)) == [ACK] * 4
    assert checkpoint.commits == 1
    # Applied again (a redelivery): nothing changes, still acknowledged.
    assert await handler.handle_batch(batch, _received(4)) == [ACK] * 4

    store.fail = ConnectionError("Redis is down")
    verdicts = await handler.handle_batch(changes(unit_changed("icu")), _received(1))
    assert [type(verdict) for verdict in verdicts] == [Retry]
    assert "directory changes not stored" in verdicts[0].reason  # type: ignore[union-attr]


async def test_after_a_loss_the_directory_is_replayed_before_the_metric_events() -> None:
    """A metric event replayed after a Redis restart is judged against the replayed
    directory: the person's unit, lost with Redis, is back before their event is."""
    store = MemoryDirectoryStore()
    directory = _directory(store)
    stream = [*CHART, person_changed(id="li-na", org_unit_id="radiology")]
    directory_checkpoint = ChangesCheckpoint(stream)
    published = Published()
    evaluator = Evaluator(
        engine=RuleEngine([SCOPED]),
        streaks=MemoryStreaks(),
        publish=published,
        names=DirectoryNames(directory, Names()),
        scopes=OrgUnitScopes(directory, [SCOPED]),
    )
    metrics = [rework(1, 0.2, "li-na")]
    metrics_checkpoint = FakeCheckpoint(metrics)
    handler = MetricsHandler(
        evaluator=evaluator,
        policy=POLICY,
        checkpoint=metrics_checkpoint,
        before=[(directory_checkpoint, partial(replay_changes, store))],  # type: ignore[arg-type]
    )
    # Redis restarted with neither the directory nor the rule state.
    directory_checkpoint.replay = Replay(first=1, last=len(stream))
    metrics_checkpoint.replay = Replay(first=1, last=1)
    await handler.check()
    assert [alert.subject_name for alert, _, _ in published.messages] == ["Dr li-na"]
    assert ("person", "li-na") in store.records
