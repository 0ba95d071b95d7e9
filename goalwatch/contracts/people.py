"""People and their manager chain, as served by the goals service's HTTP API."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field, StringConstraints

from goalwatch.contracts.base import Contract
from goalwatch.contracts.metrics import Name, PersonId

# One @, something on each side, no spaces; at most 254 characters (RFC 5321's path limit).
EMAIL_PATTERN: Final = r"^[^@\s]+@[^@\s]+$"
Email = Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254)]


class PersonUpsert(Contract):
    """Create or replace a person."""

    id: PersonId = Field(
        description="Person id, the same id metric events use as subject: 1-128 of "
        "A-Z a-z 0-9 . _ @ -, not starting with a dot, so that GET /v1/people/{id} reaches it.",
        examples=["li-na"],
    )
    name: Name = Field(description="Display name (1-200 characters).", examples=["Dr. Li Na"])
    email: Email | None = Field(
        default=None,
        description="E-mail address (name@domain, at most 254 characters).",
        examples=["li.na@example.org"],
    )
    manager_id: PersonId | None = Field(
        default=None,
        description="Id of this person's manager, in the same alphabet as id.",
        examples=["zhang-wei"],
    )
    department: Name | None = Field(
        default=None, description="Department or org unit (1-200 characters)."
    )


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
