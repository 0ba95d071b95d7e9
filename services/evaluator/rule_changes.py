"""Changes to the rules: checked as ``goalwatch rules lint`` checks them, stored as versions.

Every change is a new :class:`~goalwatch.contracts.rules.RuleVersion` in the rules stream, with
who made it, when and why; nothing is overwritten, so any version can be looked at again and
restored (:meth:`RuleChanges.rollback`). A draft that fails the checks is refused with the
lint messages and never reaches the stream, hence never an evaluator.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
from collections.abc import Sequence
from datetime import UTC, datetime

from goalwatch.catalogue import Catalogue
from goalwatch.contracts.rules import RuleAction, RuleVersion
from goalwatch.file_errors import FileError
from goalwatch.rules import LoadedRule, RuleLoadError
from goalwatch.rules.catalogued import catalogue_problems, unloaded_metric_problems
from goalwatch.rules.loader import parse_rule_text
from services.evaluator.live_rules import LiveRules, stored_file_name
from services.evaluator.rule_store import RuleStore, Stored, VersionConflict

APPLIED_TIMEOUT = 5.0
"""Seconds a change waits to be applied by the evaluator that stored it before answering."""


class NoSuchRule(LookupError):
    """The rule does not exist (or was deleted)."""


class Refused(Exception):
    """The change cannot be made as asked: ``problems`` say why, as lint does."""

    def __init__(self, problems: Sequence[FileError]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(error.lint_line() for error in self.problems))


class Conflict(Exception):
    """The change clashes with the rule as it stands (it exists already, or changed since
    the version the change was based on)."""


def diff(before: RuleVersion | None, after: RuleVersion) -> str:
    """What ``after`` changed in the rule's text since ``before``, as a unified diff."""
    old = "" if before is None or before.source is None else before.source
    new = after.source or ""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{after.rule_id} v{before.version}" if before else "/dev/null",
            tofile=f"{after.rule_id} v{after.version}",
        )
    )


class RuleChanges:
    """Checks and stores changes to the rules; waits until this evaluator runs them."""

    def __init__(self, store: RuleStore, live: LiveRules, catalogue: Catalogue | None) -> None:
        """``catalogue``: the metrics and labels a rule may name (None: not checked)."""
        self._store = store
        self._live = live
        self._catalogue = catalogue

    def check(self, source: str, *, file: str) -> LoadedRule:
        """The rule ``source`` says, checked as lint checks a file named ``file``; raises
        :class:`Refused` with every problem."""
        try:
            rule = parse_rule_text(source, file=file)
        except RuleLoadError as exc:
            problems = list(exc.errors)
            if self._catalogue is not None and not any(e.field == "metric" for e in problems):
                # As lint: a misspelt field does not hide a misspelt metric.
                problems += unloaded_metric_problems(file, source, self._catalogue)
                problems.sort(key=lambda error: error.line or 0)
            raise Refused(problems) from exc
        if self._catalogue is not None:
            problems = catalogue_problems([rule], self._catalogue)
            if problems:
                raise Refused(problems)
        return rule

    async def create(
        self, source: str, *, author: str, comment: str, file: str | None = None
    ) -> RuleVersion:
        """Store a new rule; :class:`Conflict` if its id is taken."""
        rule = self.check(source, file=file or "draft.yaml")
        rule_id = rule.spec.id
        stored = await self._store.latest(rule_id)
        if stored is not None and not stored.version.deleted:
            raise Conflict(
                f"a rule with id '{rule_id}' exists (version {stored.version.version}); "
                f"change it with PUT /v1/rules/{rule_id}, or give the new rule another id"
            )
        return await self._write(
            stored,
            rule_id,
            RuleAction.CREATED,
            source=source,
            enabled=True,
            author=author,
            comment=comment,
        )

    async def update(
        self,
        rule_id: str,
        source: str,
        *,
        author: str,
        comment: str,
        based_on: int | None = None,
        file: str | None = None,
    ) -> RuleVersion:
        """Store a new text for ``rule_id``; with ``based_on``, only if that is still its
        version. Text equal to the rule's stores nothing and answers the rule's version."""
        stored = await self._existing(rule_id)
        rule = self.check(source, file=file or stored_file_name(rule_id))
        if rule.spec.id != rule_id:
            raise Refused(
                [
                    FileError(
                        file or stored_file_name(rule_id),
                        None,
                        "id",
                        f"the draft's id is '{rule.spec.id}', not '{rule_id}': a rule's id "
                        f"does not change; create '{rule.spec.id}' as a new rule and delete "
                        f"'{rule_id}'",
                    )
                ]
            )
        if based_on is not None and based_on != stored.version.version:
            raise Conflict(
                f"rule '{rule_id}' is at version {stored.version.version}, not {based_on}: "
                "someone changed it meanwhile; look at its versions and apply your change "
                "to the newest"
            )
        if source == stored.version.source:
            return stored.version
        return await self._write(
            stored,
            rule_id,
            RuleAction.UPDATED,
            source=source,
            enabled=stored.version.enabled,
            author=author,
            comment=comment,
        )

    async def set_enabled(
        self, rule_id: str, enabled: bool, *, author: str, comment: str
    ) -> RuleVersion:
        """Switch ``rule_id`` on or off; one that already is stores nothing."""
        stored = await self._existing(rule_id)
        if stored.version.enabled == enabled:
            return stored.version
        return await self._write(
            stored,
            rule_id,
            RuleAction.ENABLED if enabled else RuleAction.DISABLED,
            source=stored.version.source,
            enabled=enabled,
            author=author,
            comment=comment,
        )

    async def delete(self, rule_id: str, *, author: str, comment: str) -> RuleVersion:
        """Delete ``rule_id``: a version without text (its history stays, and a rollback
        brings it back)."""
        stored = await self._existing(rule_id)
        return await self._write(
            stored,
            rule_id,
            RuleAction.DELETED,
            source=None,
            enabled=False,
            author=author,
            comment=comment,
        )

    async def rollback(
        self, rule_id: str, to_version: int, *, author: str, comment: str
    ) -> RuleVersion:
        """Make ``rule_id`` what it was at ``to_version`` (text and on/off), as a new
        version; also brings a deleted rule back."""
        history = await self._store.history(rule_id)
        if not history:
            raise NoSuchRule(_missing(rule_id))
        target = next((v for v in history if v.version == to_version), None)
        if target is None:
            raise Refused(
                [
                    FileError(
                        stored_file_name(rule_id),
                        None,
                        "version",
                        f"rule '{rule_id}' has no version {to_version}; its versions are "
                        f"1 to {history[-1].version}",
                    )
                ]
            )
        if target.source is None:
            raise Refused(
                [
                    FileError(
                        stored_file_name(rule_id),
                        None,
                        "version",
                        f"version {to_version} deleted the rule; roll back to a version "
                        "before it, or delete the rule",
                    )
                ]
            )
        # Checked again: the catalogue may have changed since that version was stored.
        self.check(target.source, file=target.file or stored_file_name(rule_id))
        stored = await self._store.latest(rule_id)
        note = f"rolled back to version {to_version}"
        return await self._write(
            stored,
            rule_id,
            RuleAction.ROLLED_BACK,
            source=target.source,
            enabled=target.enabled,
            author=author,
            comment=f"{note}: {comment}" if comment else note,
        )

    async def history(self, rule_id: str) -> list[RuleVersion]:
        """Every version of ``rule_id``, oldest first; :class:`NoSuchRule` if it never
        existed."""
        history = await self._store.history(rule_id)
        if not history:
            raise NoSuchRule(_missing(rule_id))
        return history

    async def _existing(self, rule_id: str) -> Stored:
        stored = await self._store.latest(rule_id)
        if stored is None or stored.version.deleted:
            raise NoSuchRule(_missing(rule_id))
        return stored

    async def _write(
        self,
        stored: Stored | None,
        rule_id: str,
        action: RuleAction,
        *,
        source: str | None,
        enabled: bool,
        author: str,
        comment: str,
    ) -> RuleVersion:
        latest = None if stored is None else stored.version
        version = RuleVersion(
            rule_id=rule_id,
            version=1 if latest is None else latest.version + 1,
            action=action,
            source=source,
            enabled=enabled,
            author=author,
            at=datetime.now(UTC),
            comment=comment,
            # Kept: the file is imported again only once it changes (live_rules.py).
            file=None if latest is None else latest.file,
            file_digest=None if latest is None else latest.file_digest,
        )
        try:
            await self._store.write(version, after=0 if stored is None else stored.seq)
        except VersionConflict as exc:
            raise Conflict(f"{exc}; look at its versions and try again") from exc
        # Answered once this evaluator runs it: a GET right after shows the change.
        with contextlib.suppress(TimeoutError):  # stored all the same: answered as it stands
            async with asyncio.timeout(APPLIED_TIMEOUT):
                await self._live.wait_for(rule_id, version.version)
        return version


def _missing(rule_id: str) -> str:
    return f"no rule with id '{rule_id}'"
