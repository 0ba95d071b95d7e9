"""Who is asking: a person signed in through the identity provider, or a system."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from goalwatch.auth.roles import Role


class Kind(StrEnum):
    """What kind of caller a principal is."""

    PERSON = "person"
    SYSTEM = "system"


ANY = "*"
"""In a publisher's grant: every metric, or every source."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    ``subject`` is stable and unique per identity provider (the token's ``sub``); a person's
    ``person_id`` is their id in goals, from the claim ``GOALWATCH_OIDC_PERSON_CLAIM`` names.
    """

    subject: str
    kind: Kind
    roles: frozenset[Role] = frozenset()
    person_id: str | None = None
    client_id: str | None = None
    name: str | None = None
    metrics: frozenset[str] = field(default_factory=frozenset)
    """For a publisher: the metrics it may publish (``*``: all)."""
    sources: frozenset[str] = field(default_factory=frozenset)
    """For a publisher: the sources it may publish as (``*``: all)."""
    grants_unknown: bool = False
    """For a person: the roles granted in goalwatch could not be read (goals did not answer),
    so ``roles`` holds only the token's (:mod:`goalwatch.auth.grants`)."""

    @property
    def who(self) -> str:
        """How the audit log and errors name the caller: ``person:<id>`` or ``system:<client>``."""
        if self.kind is Kind.PERSON:
            return f"person:{self.person_id}"
        return f"system:{self.client_id or self.subject}"

    def has(self, *roles: Role) -> bool:
        """Whether the caller holds any of ``roles``."""
        return not self.roles.isdisjoint(roles)

    def may_publish(self, *, metric: str, source: str) -> bool:
        """Whether a publisher's grant covers an event of ``metric`` from ``source``."""
        if Role.PUBLISHER not in self.roles:
            return False
        metric_ok = ANY in self.metrics or metric in self.metrics
        return metric_ok and (ANY in self.sources or source in self.sources)
