"""People and their manager chain, as served by the goals service's HTTP API."""

from __future__ import annotations

from pydantic import Field

from goalwatch.contracts.base import Contract
from goalwatch.contracts.metrics import Name


class PersonUpsert(Contract):
    """Create or replace a person."""

    id: Name = Field(description="Person id, the same id metric events use as subject.")
    name: Name = Field(description="Display name.")
    email: str | None = Field(default=None, description="E-mail address.")
    manager_id: str | None = Field(default=None, description="Id of this person's manager.")
    department: str | None = Field(default=None, description="Department or org unit.")


class PersonRead(Contract):
    """A person as stored, with their manager chain resolved (nearest manager first)."""

    id: str = Field(description="Person id.")
    name: str = Field(description="Display name.")
    email: str | None = Field(default=None, description="E-mail address.")
    manager_id: str | None = Field(default=None, description="Id of this person's manager.")
    department: str | None = Field(default=None, description="Department or org unit.")
    managers: list[str] = Field(
        default_factory=list, description="Manager chain ids, nearest first (read-only)."
    )
