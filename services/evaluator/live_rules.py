"""The rules an evaluator runs, kept current from the rules stream while it serves.

How rule files and API changes live together:

- At start-up the files in the rules folder are read and checked (an invalid file stops the
  evaluator, as it always has), then **imported**: a file whose rule the stream does not hold,
  or whose text changed since it was last imported, is stored as a new version (author
  ``file:<name>``). A file unchanged since its last import is not imported again, so a change
  made over the API survives restarts until the file itself changes; a file whose text is
  what the rule already says is not imported either (what ``goalwatch rules export`` writes).
- The stream, not the folder, is then what runs: every replica watches it and swaps in each
  version as it is stored (:class:`LiveRules`).
- A rule removed from the folder is not deleted: delete it over the API (the stream may hold
  it because of an API change, not because of the file).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from goalwatch.contracts.rules import RuleAction, RuleVersion
from goalwatch.rules import LoadedRule, RuleLoadError
from goalwatch.rules.loader import parse_rule_text
from services.evaluator.metrics import RULE_CHANGES, RULES_ACTIVE
from services.evaluator.rule_store import RuleStore, VersionConflict, Watch

logger = logging.getLogger(__name__)

IMPORT_ATTEMPTS = 5
"""Tries to import one file while other replicas import it too (each try re-reads)."""


@dataclass(frozen=True)
class Entry:
    """A rule this evaluator holds: its stored version (None until the stream was read) and
    the rule that version says."""

    version: RuleVersion | None
    rule: LoadedRule

    @property
    def enabled(self) -> bool:
        """Whether the rule is judged (a rule not yet stored is)."""
        return self.version is None or self.version.enabled


def file_digest(text: str) -> str:
    """SHA-256 of a rule file's text, hex."""
    return hashlib.sha256(text.encode()).hexdigest()


def stored_file_name(rule_id: str) -> str:
    """The file name a rule is known by when it was not imported from a file."""
    return f"{rule_id}.yaml"


def load_version(version: RuleVersion) -> LoadedRule:
    """The rule a stored version says; raises :class:`RuleLoadError` if it does not load."""
    assert version.source is not None, "a deleted rule has no text"
    return parse_rule_text(version.source, file=version.file or stored_file_name(version.rule_id))


class LiveRules:
    """The rules judged, swapped in as versions arrive; ``on_change`` is called with the
    enabled rules, in file-name order, whenever they change after :meth:`start`."""

    def __init__(
        self,
        rules: Sequence[LoadedRule],
        *,
        on_change: Callable[[list[LoadedRule]], None],
    ) -> None:
        """``rules``: the files read at start-up, held (and judged) until the stream is read."""
        self._entries = {rule.spec.id: Entry(None, rule) for rule in rules}
        self._on_change = on_change
        self._watch: Watch | None = None
        self._changed = asyncio.Condition()
        # The version that deleted each deleted rule, for :meth:`wait_for`.
        self._deleted: dict[str, int] = {}
        self._count()

    def entries(self) -> list[Entry]:
        """Every rule held, enabled or not, by file name."""
        return sorted(self._entries.values(), key=lambda entry: entry.rule.path.name)

    def entry(self, rule_id: str) -> Entry | None:
        """The rule ``rule_id``, enabled or not; None if there is none (or it was deleted)."""
        return self._entries.get(rule_id)

    def enabled(self) -> list[LoadedRule]:
        """The rules judged, by file name."""
        return [entry.rule for entry in self.entries() if entry.enabled]

    async def start(self, store: RuleStore, files: Sequence[LoadedRule]) -> None:
        """Import ``files`` (see the module's description), then hold what the stream holds
        and follow it; returns once the stream's rules are judged."""
        for rule in files:
            await import_file(store, rule)
        self._entries = {}
        self._watch = await store.watch(self._apply)
        self._swap()
        logger.info(
            "rules from the rules stream: %d enabled, %d disabled",
            len(self.enabled()),
            len(self._entries) - len(self.enabled()),
        )

    async def stop(self) -> None:
        """Stop following the stream."""
        if self._watch is not None:
            await self._watch.stop()

    async def wait_for(self, rule_id: str, version: int) -> None:
        """Return once this evaluator holds ``version`` of ``rule_id`` or a later one."""

        def holds() -> bool:
            entry = self._entries.get(rule_id)
            held = self._deleted.get(rule_id, 0)
            if entry is not None and entry.version is not None:
                held = max(held, entry.version.version)
            return held >= version

        async with self._changed:
            await self._changed.wait_for(holds)

    async def _apply(self, version: RuleVersion) -> None:
        """Hold ``version`` of its rule; swap the rules in if the stream was read."""
        if version.deleted:
            self._entries.pop(version.rule_id, None)
            self._deleted[version.rule_id] = version.version
        else:
            try:
                rule = load_version(version)
            except RuleLoadError as exc:
                # Stored versions were checked when stored; one that no longer loads (a
                # later language change) leaves the rule as it was, loudly.
                RULE_CHANGES.labels(outcome="refused").inc()
                logger.error(
                    "rule %s version %d not applied, the previous one stays: %s",
                    version.rule_id,
                    version.version,
                    "; ".join(str(error) for error in exc.errors),
                )
                return
            self._entries[version.rule_id] = Entry(version, rule)
        RULE_CHANGES.labels(outcome="applied").inc()
        if self._watch is not None:
            self._swap()
            logger.info(
                "rule %s is now version %d (%s by %s: %s)",
                version.rule_id,
                version.version,
                version.action.value,
                version.author,
                version.comment,
            )
        async with self._changed:
            self._changed.notify_all()

    def _swap(self) -> None:
        self._count()
        self._on_change(self.enabled())

    def _count(self) -> None:
        enabled = len(self.enabled())
        RULES_ACTIVE.labels(state="enabled").set(enabled)
        RULES_ACTIVE.labels(state="disabled").set(len(self._entries) - enabled)


async def import_file(store: RuleStore, rule: LoadedRule) -> RuleVersion | None:
    """Store the rule file ``rule`` as a new version if it is new or changed since it was
    last imported (see the module's description); the version stored, if one was."""
    text = rule.source()
    digest = file_digest(text)
    rule_id = rule.spec.id
    for _ in range(IMPORT_ATTEMPTS):
        stored = await store.latest(rule_id)
        latest = None if stored is None else stored.version
        if latest is not None and (latest.file_digest == digest or latest.source == text):
            return None
        if latest is None:
            comment = f"imported from {rule.path.name}"
        elif latest.deleted:
            comment = f"imported from {rule.path.name}: the file is back"
        else:
            comment = f"imported from {rule.path.name}: the file changed"
        version = RuleVersion(
            rule_id=rule_id,
            version=1 if latest is None else latest.version + 1,
            action=RuleAction.IMPORTED,
            source=text,
            enabled=latest is None or latest.deleted or latest.enabled,
            author=f"file:{rule.path.name}",
            at=datetime.now(UTC),
            comment=comment,
            file=rule.path.name,
            file_digest=digest,
        )
        try:
            await store.write(version, after=0 if stored is None else stored.seq)
        except VersionConflict:
            continue  # another replica imported it (or an API change came) first: look again
        logger.info("rule %s version %d %s", rule_id, version.version, comment)
        return version
    raise RuntimeError(f"rule {rule_id}: {Path(rule.path).name} could not be imported")
