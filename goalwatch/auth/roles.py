"""The roles goalwatch grants, and the people-relationships it reads from the org chart.

Roles are granted: to a person by the identity provider's roles claim (mapped with
``GOALWATCH_OIDC_ROLE_MAP``), to a system by its client's claims. Manager, HRBP and employee
are not granted: they follow from the org chart in the goals service, so a change of manager
there changes what each side may see, without a restart (:mod:`goalwatch.auth.scope`).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A role granted to a person or a system (see :data:`ROLE_DESCRIPTIONS`)."""

    OPERATOR = "operator"
    HR_ADMIN = "hr_admin"
    PUBLISHER = "publisher"
    GOALS_WRITER = "goals_writer"
    DIRECTORY_WRITER = "directory_writer"
    SERVICE = "service"


ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.OPERATOR: "runs goalwatch: health, metrics, the delivery log, dead letters, streams, "
    "routing as deployed; no person's data beyond what an incident needs",
    Role.HR_ADMIN: "runs the programme: rules, the metric catalogue, routing, silences; "
    "people, org units, goals and alerts of the whole company",
    Role.PUBLISHER: "a system publishing metric events, for the metrics and sources its grant "
    "names",
    Role.GOALS_WRITER: "a system writing goals and check-ins (the goal tool)",
    Role.DIRECTORY_WRITER: "a system writing people and org units (the HR information system)",
    Role.SERVICE: "a goalwatch service reading another's data for its own work (the notifier "
    "reading people from goals)",
}
"""What each role may do, in words (for errors and docs)."""

PEOPLE = "a signed-in person, within their own part of the org chart"
"""How a route open to every person, scoped by the org chart, is described."""
