"""The evaluator's own view of the people directory, fed by ``GOALWATCH_PEOPLE``.

The goals service publishes every change of a person or an org unit, whole and with the
record's version (:mod:`goalwatch.contracts.directory_events`). The ``evaluator-directory``
consumer keeps what rules and alerts need of them in Redis (:mod:`.directory_store`), each
record applied only over an older version, so the order of changes does not matter and a
redelivery or a replay changes nothing. The rest of the evaluator reads it through
:class:`Directory`:

- rules scoped by ``org_unit`` get each subject's unit and its ancestors
  (:class:`OrgUnitScopes`);
- alerts get the subject's name from it (:class:`DirectoryNames`), and ask the goals service
  only about a subject the view does not know.

The view is caught up after a Redis loss like the rest of the evaluator's state: its
checkpoint is one of the views of the metrics handler's ``Recovery``, replayed first, so the
metric events replayed after it are judged against a directory that lost nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Protocol

from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from goalwatch.checkpoints import Checkpoint, NotCaughtUp, Recovery
from goalwatch.consumers import ACK, Received, RedeliveryPolicy, Verdict
from goalwatch.contracts import RuleKind
from goalwatch.rules.fraud_spec import OffHoursCondition, OutlierCondition
from goalwatch.rules.spec import RuleSpec, ThresholdCondition
from services.evaluator.directory_store import DirectoryStore, PersonView, Record
from services.evaluator.metrics import DIRECTORY_APPLIED, DIRECTORY_REPLAYED, SUBJECT_NAMES
from services.evaluator.names import Names
from services.evaluator.verdicts import all_wait

logger = logging.getLogger(__name__)


class _Person(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str
    org_unit_id: str | None = None
    time_zone: str | None = None
    manager_id: str | None = None


class _OrgUnit(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    parent_id: str | None = None


class DirectoryChange(BaseModel):
    """A ``PersonChanged`` or ``OrgUnitChanged`` as the evaluator reads it: the record's id,
    version and the fields the view keeps.

    Lenient (unknown fields ignored), unlike the contract: a field the goals service adds to
    people must not make the evaluator dead-letter every change until it is upgraded.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str = Field(description="Id of the change (its Nats-Msg-Id).")
    version: int = Field(description="The record's version after the change.")
    occurred_at: datetime = Field(description="When the goals service made the change.")
    person: _Person | None = Field(default=None, description="The person, if one changed.")
    org_unit: _OrgUnit | None = Field(default=None, description="The unit, if one changed.")

    @model_validator(mode="after")
    def _one_record(self) -> DirectoryChange:
        if (self.person is None) == (self.org_unit is None):
            raise ValueError("a directory change carries exactly one of person, org_unit")
        return self

    def record(self) -> Record:
        """The record the view stores for this change."""
        if self.person is not None:
            person = self.person
            fields = {
                "name": person.name,
                "org_unit": person.org_unit_id,
                "time_zone": person.time_zone,
                "manager": person.manager_id,
            }
            return Record("person", person.id, self.version, _present(fields))
        assert self.org_unit is not None
        unit = self.org_unit
        return Record("org_unit", unit.id, self.version, _present({"parent": unit.parent_id}))


def _present(fields: Mapping[str, str | None]) -> dict[str, str]:
    return {name: value for name, value in fields.items() if value is not None}


class DirectoryCheckpoint(Checkpoint):
    """The directory consumer's checkpoint. A Redis with no checkpoint at all (one that lost
    everything) replays the whole stream: applying a record is idempotent and cheap, and
    without it the view would hold only the people changed since."""

    replay_when_new = True


class Directory:
    """People as the evaluator's view knows them, read in bulk.

    Reads go to Redis, except inside :meth:`batch`: the metrics handler's batch looks its
    subjects up once (one script call, whatever the batch's size) and every read of one of
    them during the batch — the engine's scope, an alert's name — is answered from that
    snapshot. The snapshot lives in a context variable, so it is seen only by the batch
    that made it (and the tasks it starts) and is gone when the batch ends. It cannot be
    stale wrongly: the view changes only under the directory consumer's batches, which
    take turns with the metric batches under one lock, so during a batch Redis holds what
    the snapshot holds. No cache outlives a batch: a read outside one (a fired timer's
    alert) goes to Redis.
    """

    def __init__(self, store: DirectoryStore) -> None:
        self._store = store
        self._snapshot: ContextVar[Mapping[str, PersonView | None] | None] = ContextVar(
            f"directory-snapshot-{id(self)}", default=None
        )

    async def people(self, subjects: Collection[str]) -> dict[str, PersonView | None]:
        """Each of ``subjects`` (None: unknown to the view); at most one Redis call."""
        snapshot = self._snapshot.get() or {}
        found = {subject: snapshot[subject] for subject in subjects if subject in snapshot}
        missing = [subject for subject in subjects if subject not in snapshot]
        if missing:
            found.update(await self._store.people(missing))
        return found

    async def person(self, subject: str) -> PersonView | None:
        """``subject`` as the view knows them, or None."""
        return (await self.people([subject]))[subject]

    @asynccontextmanager
    async def batch(self, subjects: Collection[str]) -> AsyncIterator[None]:
        """Look ``subjects`` up once; reads of them inside the block use the result."""
        views = await self._store.people(list(subjects))
        token = self._snapshot.set(views)
        try:
            yield
        finally:
            self._snapshot.reset(token)


class Scopes(Protocol):
    """Where the evaluator finds a subject's org units (:class:`OrgUnitScopes`)."""

    def batch(self, subjects: Collection[str]) -> AbstractAsyncContextManager[None]:
        """Look a batch's subjects up at once; reads inside the block use the result."""
        ...

    async def of(self, subject: str) -> tuple[str, ...]:
        """The subject's unit and its ancestors, nearest first; empty if in none."""
        ...

    async def zone_of(self, subject: str) -> str | None:
        """The subject's time zone (an IANA name), if the directory has one."""
        ...


class OrgUnitScopes:
    """Each subject's org units (their unit and its ancestors, nearest first) for the rules
    scoped by ``org_unit`` and the fraud rules whose peers are an org unit; nothing is looked
    up when no loaded rule needs them."""

    def __init__(self, directory: Directory, rules: Sequence[RuleSpec]) -> None:
        self._directory = directory
        self._needed = any(
            rule.scope or _peers_by_unit(rule) or _on_subjects_clock(rule) for rule in rules
        )

    @asynccontextmanager
    async def batch(self, subjects: Collection[str]) -> AsyncIterator[None]:
        """Look a batch's subjects up at once (see :meth:`Directory.batch`)."""
        if not self._needed:
            yield
            return
        async with self._directory.batch(subjects):
            yield

    async def of(self, subject: str) -> tuple[str, ...]:
        """``subject``'s org units; empty for a subject the view does not know (in no unit)."""
        if not self._needed:
            return ()
        person = await self._directory.person(subject)
        return () if person is None else person.org_units

    async def zone_of(self, subject: str) -> str | None:
        """``subject``'s time zone; None for a subject the view does not know or without one."""
        if not self._needed:
            return None
        person = await self._directory.person(subject)
        return None if person is None else person.time_zone


def _peers_by_unit(rule: RuleSpec) -> bool:
    return (
        rule.kind is RuleKind.FRAUD
        and isinstance(rule.condition, OutlierCondition)
        and rule.condition.peer_label is None
    )


def _on_subjects_clock(rule: RuleSpec) -> bool:
    """Whether ``rule`` counts days on the subject's clock (no time zone of its own)."""
    condition = rule.condition
    if isinstance(condition, OffHoursCondition):
        return condition.time_zone is None
    return isinstance(condition, ThresholdCondition) and (
        condition.per is not None and condition.time_zone is None
    )


class NoScopes:
    """No rule is scoped by org unit (an evaluator built without a directory)."""

    @asynccontextmanager
    async def batch(self, subjects: Collection[str]) -> AsyncIterator[None]:
        """Nothing to look up."""
        yield

    async def of(self, subject: str) -> tuple[str, ...]:
        """No units."""
        return ()

    async def zone_of(self, subject: str) -> str | None:
        """No time zone."""
        return None


class DirectoryNames:
    """Subjects' names from the directory view first, from ``fallback`` (the goals service)
    for a subject the view does not know.

    ``fallback`` keeps today's answers for those: unknown to goals, the id; goals
    unreachable, an exception, so the event is retried. The view may trail goals by the
    consumer's lag: a name changed a moment ago can still be the old one.

    Goals' answers are kept for ``cache_seconds`` (at most ``cache_size`` subjects): subjects
    that are not people (a ward, a machine, a generated id) are never in the view, and without
    the cache every alert about them waits on one HTTP request to the one goals service, which
    all evaluator replicas then share (measured: docs/benchmarks.md). A person added to the
    directory is named from the view as soon as the view has them, cache or not.
    """

    def __init__(
        self,
        directory: Directory,
        fallback: Names,
        *,
        cache_seconds: float = 60.0,
        cache_size: int = 10_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._fallback = fallback
        self._from_goals: TTLCache[str, str] | None = (
            TTLCache(maxsize=cache_size, ttl=cache_seconds, timer=timer)
            if cache_seconds > 0
            else None
        )

    async def name_of(self, *, subject: str) -> str:
        """The subject's display name."""
        person = await self._directory.person(subject)
        if person is not None:
            SUBJECT_NAMES.labels(source="directory").inc()
            return person.name
        if self._from_goals is not None and (name := self._from_goals.get(subject)) is not None:
            SUBJECT_NAMES.labels(source="cache").inc()
            return name
        SUBJECT_NAMES.labels(source="goals").inc()
        name = await self._fallback.name_of(subject=subject)
        if self._from_goals is not None:
            self._from_goals[subject] = name
        return name


class DirectoryHandler:
    """Applies batches of directory changes to the view, in turn with the evaluator's other
    batches (``recovery`` is the metrics handler's), so that a Redis restart is caught up
    before a change is applied and the checkpoint commits after it.

    A batch is one script call: if it fails (Redis trouble), the whole batch is retried by
    the consumer's policy. Order needs no care: each record is applied only over an older
    version.
    """

    def __init__(
        self, *, store: DirectoryStore, recovery: Recovery, policy: RedeliveryPolicy
    ) -> None:
        self._store = store
        self._recovery = recovery
        self._policy = policy

    async def handle_batch(
        self, messages: Sequence[DirectoryChange], received: Sequence[Received]
    ) -> list[Verdict]:
        """One verdict per change, in order."""
        records = [change.record() for change in messages]
        try:
            applied = await self._recovery.in_turn(lambda: self._store.apply(records))
        except NotCaughtUp as exc:
            return all_wait(received, str(exc), policy=self._policy)
        except Exception as exc:
            return all_wait(received, f"directory changes not stored: {exc!r}", policy=self._policy)
        DIRECTORY_APPLIED.labels(outcome="stored").inc(applied)
        DIRECTORY_APPLIED.labels(outcome="older").inc(len(records) - applied)
        return [ACK] * len(messages)


async def replay_changes(store: DirectoryStore, batch: list[tuple[int, bytes]]) -> int:
    """Apply directory changes from ``GOALWATCH_PEOPLE`` again (after a Redis loss); how
    many the batch held. Raises if Redis fails: the replay is then tried again, whole."""
    records: list[Record] = []
    for _, data in batch:
        try:
            records.append(DirectoryChange.model_validate_json(data).record())
        except ValidationError:
            continue  # dead-lettered when it was first delivered
    stored = await store.apply(records)
    DIRECTORY_REPLAYED.inc(stored)
    return len(records)
