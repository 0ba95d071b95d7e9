"""Changes to the rules, over an in-memory rule store: checks, versions, imports, rollbacks.

The real store (JetStream) is exercised in tests/integration/test_rules_api.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from goalwatch.contracts.rules import RuleAction, RuleVersion
from goalwatch.rules import LoadedRule
from goalwatch.rules.loader import load_rule_file
from services.evaluator.live_rules import LiveRules, import_file
from services.evaluator.rule_changes import Conflict, NoSuchRule, Refused, RuleChanges, diff
from services.evaluator.rule_store import Stored, VersionConflict

REPO = Path(__file__).resolve().parents[2]
RULE = (REPO / "rules" / "report-rework-rate.yaml").read_text(encoding="utf-8")
RULE_ID = "report-rework-rate-high"


class MemoryStore:
    """The rule store's contract in memory: one list of versions per rule, compare-and-set."""

    def __init__(self) -> None:
        self.versions: dict[str, list[tuple[RuleVersion, int]]] = {}
        self.seq = 0
        self.watchers: list[Callable[[RuleVersion], Awaitable[None]]] = []

    async def latest(self, rule_id: str) -> Stored | None:
        kept = self.versions.get(rule_id)
        return Stored(*kept[-1]) if kept else None

    async def history(self, rule_id: str) -> list[RuleVersion]:
        return [version for version, _ in self.versions.get(rule_id, [])]

    async def write(self, version: RuleVersion, *, after: int) -> int:
        kept = self.versions.setdefault(version.rule_id, [])
        if (kept[-1][1] if kept else 0) != after:
            raise VersionConflict("changed meanwhile")
        self.seq += 1
        kept.append((version, self.seq))
        for apply in self.watchers:
            await apply(version)
        return self.seq


class Watched:
    """What :meth:`RuleStore.watch` answers."""

    async def stop(self) -> None:
        return None


async def live_over(
    store: MemoryStore, files: list[LoadedRule]
) -> tuple[LiveRules, list[list[str]]]:
    swaps: list[list[str]] = []
    live = LiveRules(files, on_change=lambda rules: swaps.append([r.spec.id for r in rules]))

    async def watch(apply: Callable[[RuleVersion], Awaitable[None]]) -> Watched:
        for kept in store.versions.values():
            await apply(kept[-1][0])
        store.watchers.append(apply)
        return Watched()

    store.watch = watch  # type: ignore[attr-defined]
    await live.start(store, files)  # type: ignore[arg-type]
    return live, swaps


def rule_file(tmp_path: Path, text: str = RULE) -> LoadedRule:
    path = tmp_path / "report-rework-rate.yaml"
    path.write_text(text, encoding="utf-8")
    return load_rule_file(path)


async def test_a_file_is_imported_once_and_again_only_when_it_changes(tmp_path: Path) -> None:
    store = MemoryStore()
    first = await import_file(store, rule_file(tmp_path))  # type: ignore[arg-type]
    assert first is not None and first.version == 1 and first.action is RuleAction.IMPORTED
    assert first.author == "file:report-rework-rate.yaml"
    assert await import_file(store, rule_file(tmp_path)) is None  # type: ignore[arg-type]
    changed = rule_file(tmp_path, RULE.replace("value: 0.08", "value: 0.09"))
    second = await import_file(store, changed)  # type: ignore[arg-type]
    assert second is not None and second.version == 2
    assert second.comment == "imported from report-rework-rate.yaml: the file changed"


async def test_an_api_change_survives_a_restart_until_the_file_changes(tmp_path: Path) -> None:
    store = MemoryStore()
    files = [rule_file(tmp_path)]
    live, _ = await live_over(store, files)
    changes = RuleChanges(store, live, None)  # type: ignore[arg-type]
    await changes.set_enabled(RULE_ID, False, author="hr", comment="noisy")
    # A restart with the same file imports nothing: the rule stays off.
    again, _ = await live_over(store, files)
    entry = again.entry(RULE_ID)
    assert entry is not None and not entry.enabled and again.enabled() == []
    # The file changed in git: it is imported, and stays off as it was switched.
    edited = [rule_file(tmp_path, RULE.replace("value: 0.08", "value: 0.1"))]
    after, _ = await live_over(store, edited)
    entry = after.entry(RULE_ID)
    assert entry is not None and entry.version is not None and entry.version.version == 3
    assert entry.version.action is RuleAction.IMPORTED and not entry.enabled


async def test_changes_are_versions_and_each_swaps_the_rules_in(tmp_path: Path) -> None:
    store = MemoryStore()
    live, swaps = await live_over(store, [rule_file(tmp_path)])
    changes = RuleChanges(store, live, None)  # type: ignore[arg-type]
    assert swaps == [[RULE_ID]]
    updated = await changes.update(
        RULE_ID, RULE.replace("value: 0.08", "value: 0.1"), author="hr", comment="fewer"
    )
    assert updated.version == 2 and updated.action is RuleAction.UPDATED
    # The same text again stores nothing.
    same = await changes.update(
        RULE_ID, RULE.replace("value: 0.08", "value: 0.1"), author="hr", comment=""
    )
    assert same.version == 2
    await changes.set_enabled(RULE_ID, False, author="hr", comment="")
    deleted = await changes.delete(RULE_ID, author="hr", comment="gone")
    assert deleted.source is None and live.entry(RULE_ID) is None
    assert swaps == [[RULE_ID], [RULE_ID], [], []]
    with pytest.raises(NoSuchRule):
        await changes.update(RULE_ID, RULE, author="hr", comment="")
    with pytest.raises(Refused, match="version 4 deleted the rule"):
        await changes.rollback(RULE_ID, 4, author="hr", comment="")
    back = await changes.rollback(RULE_ID, 2, author="hr", comment="oops")
    assert back.version == 5 and back.enabled and back.comment == "rolled back to version 2: oops"
    entry = live.entry(RULE_ID)
    assert entry is not None and "value: 0.1" in (entry.version.source or "")  # type: ignore[union-attr]
    assert swaps[-1] == [RULE_ID]


async def test_a_change_is_refused_on_a_stale_version_a_taken_id_or_a_new_id(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    live, _ = await live_over(store, [rule_file(tmp_path)])
    changes = RuleChanges(store, live, None)  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="exists"):
        await changes.create(RULE, author="hr", comment="")
    with pytest.raises(Conflict, match="is at version 1, not 7"):
        await changes.update(RULE_ID, RULE, author="hr", comment="", based_on=7)
    renamed = RULE.replace(f"id: {RULE_ID}", "id: rework-renamed")
    with pytest.raises(Refused, match="a rule's id does not change"):
        await changes.update(RULE_ID, renamed, author="hr", comment="")


def test_a_draft_that_fails_lint_is_refused_with_the_lint_lines() -> None:
    changes = RuleChanges(MemoryStore(), LiveRules([], on_change=lambda _: None), None)  # type: ignore[arg-type]
    with pytest.raises(Refused) as refused:
        changes.check(RULE.replace('op: ">"', "op: gt"), file="mine.yaml")
    [problem] = refused.value.problems
    assert problem.lint_line().startswith("mine.yaml:")
    assert "'gt' is not one of" in problem.message


def test_the_diff_of_a_version_names_both_versions() -> None:
    def version(number: int, source: str | None) -> RuleVersion:
        return RuleVersion.model_validate(
            {"rule_id": "r", "version": number, "action": "updated", "source": source,
             "enabled": True, "author": "hr", "at": "2026-12-06T10:00:00Z", "comment": ""}
        )  # fmt: skip

    text = diff(version(1, "a: 1\nb: 2\n"), version(2, "a: 1\nb: 3\n"))
    assert "--- r v1" in text and "+++ r v2" in text
    assert "-b: 2" in text and "+b: 3" in text
    assert "+a: 1" in diff(None, version(1, "a: 1\n"))
