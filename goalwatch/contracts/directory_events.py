"""What the goals service publishes when its directory changes (stream ``GOALWATCH_PEOPLE``):
a person or an org unit created or replaced.

Each carries the whole record as stored and a version that grows by one with every change of
that person or org unit, so a consumer (and the goals service itself, rebuilding its store
after Redis lost writes) applies a record only over an older version. ``event_id`` is also
the ``Nats-Msg-Id``: a change relayed twice is stored once.
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from goalwatch.contracts.base import Contract
from goalwatch.contracts.goals import OrgUnitUpsert
from goalwatch.contracts.people import PersonUpsert


class DirectoryEvent(Contract):
    """What every directory event carries."""

    event_id: str = Field(
        description="Unique id of the change, also its Nats-Msg-Id: person:<id>:<version> or "
        "org_unit:<id>:<version>."
    )
    version: int = Field(description="The record's version after the change (1 at creation).")
    occurred_at: AwareDatetime = Field(description="When the goals service made the change.")


class PersonChanged(DirectoryEvent):
    """A person was created, or replaced by a different one (an identical upsert publishes
    nothing)."""

    person: PersonUpsert = Field(description="The person as stored now.")


class OrgUnitChanged(DirectoryEvent):
    """An org unit was created, or replaced by a different one."""

    org_unit: OrgUnitUpsert = Field(description="The org unit as stored now.")
