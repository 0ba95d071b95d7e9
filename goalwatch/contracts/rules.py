"""Versions of a rule as stored in the rules stream: the history of every change.

Each change to a rule (created, updated, enabled, disabled, deleted, rolled back, imported
from a file) is one message on ``goalwatch.rules.v1.<rule id>`` in ``GOALWATCH_RULES``; the
newest message of a rule's subject is the rule as it stands.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from goalwatch.contracts.base import Contract


class RuleAction(StrEnum):
    """What a change did to a rule."""

    CREATED = "created"
    UPDATED = "updated"
    ENABLED = "enabled"
    DISABLED = "disabled"
    DELETED = "deleted"
    ROLLED_BACK = "rolled_back"
    IMPORTED = "imported"  # read from a rule file at start-up, new or changed


class RuleVersion(Contract):
    """One version of a rule: what it says, whether it runs, and who changed it, when, why."""

    rule_id: str = Field(description="The rule's id.")
    version: int = Field(ge=1, description="1 for the first version, one more per change.")
    action: RuleAction = Field(description="What this change did.")
    source: str | None = Field(
        description="The rule as its author wrote it (YAML); null once the rule is deleted."
    )
    enabled: bool = Field(description="Whether the rule runs; false when disabled or deleted.")
    author: str = Field(description="Who made the change (file: for an imported file).")
    at: AwareDatetime = Field(description="When the change was stored.")
    comment: str = Field(description="Why the change was made.")
    file: str | None = Field(
        default=None, description="The rule file it was last imported from, if any."
    )
    file_digest: str | None = Field(
        default=None,
        description="SHA-256 of that file's text when it was imported: the file is imported "
        "again only once it changes.",
    )

    @property
    def deleted(self) -> bool:
        """Whether this version deleted the rule."""
        return self.source is None
