"""Who receives an alert: the rule's ``notify`` roles resolved against the goals service.

Roles: ``subject`` is the person the alert is about (``owner`` says the same in
dependency-impact rules: the owner of the affected goals), ``manager`` is their nearest manager
and ``manager:N`` the N-th up their chain (``manager:2``, the manager's manager), ``unit_head``
and ``hrbp`` the head and the HR business partner of their org unit (the nearest unit up the
tree that has one; for the head, not the subject themselves), ``group:NAME`` everyone in the
named group (the ``groups`` mapping, from the routing configuration), and any other string is
taken as an explicit person id. A person the directory does not know is
still notified under their id (an alert must not be lost because the directory is incomplete);
the goals service being unreachable is an error, so the message is redelivered later.

Each recipient carries what the directory says about reaching them (preferred channels,
language, time zone, org unit), so that channels can follow each person's preferences; a
person the directory does not know has none of these.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from goalwatch.contracts import PersonRead, Recipient, RecipientRole
from goalwatch.goals_client import OrgUnits, PersonDirectory
from goalwatch.rules.spec import group_name

logger = logging.getLogger(__name__)

SUBJECT = RecipientRole.SUBJECT.value
MANAGER = RecipientRole.MANAGER.value
# A dependency-impact alert's subject is the owner of the affected goals.
OWNER = "owner"
UNIT_HEAD = RecipientRole.UNIT_HEAD.value
HRBP = RecipientRole.HRBP.value
# Org units walked up from the subject's, at most: deeper than any org chart, and a cycle
# in the data cannot hold an alert.
MAX_UNIT_DEPTH = 30


@dataclass(frozen=True)
class Audience:
    """Everyone to notify about an alert, once each; and the subject as the directory has
    them (None: not in it), whose org unit files the alert in the inbox."""

    recipients: list[Recipient]
    subject: PersonRead | None = None


def recipient_of(
    person: PersonRead | None, *, person_id: str, role: RecipientRole, group: str | None = None
) -> Recipient:
    if person is None:
        return Recipient(id=person_id, name=person_id, role=role, group=group)
    return Recipient(
        id=person.id,
        name=person.name,
        email=person.email,
        role=role,
        group=group,
        channels=person.channels,
        language=person.language,
        time_zone=person.time_zone,
        org_unit_id=person.org_unit_id,
    )


async def _unit_person(org_units: OrgUnits, subject: PersonRead, role: str) -> str | None:
    """The head or HRBP (``role``) of the nearest org unit up from ``subject``'s that has
    one other than the subject."""
    unit_id, seen = subject.org_unit_id, set[str]()
    while unit_id is not None and unit_id not in seen and len(seen) < MAX_UNIT_DEPTH:
        seen.add(unit_id)
        unit = await org_units.get_org_unit(unit_id)
        if unit is None:
            return None
        found = unit.head_id if role == UNIT_HEAD else unit.hrbp_id
        if found is not None and found != subject.id:
            return found
        unit_id = unit.parent_id
    return None


async def resolve_recipients(
    *,
    directory: PersonDirectory,
    subject: str,
    notify: list[str],
    fingerprint: str,
    org_units: OrgUnits | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> Audience:
    """Resolve ``notify`` roles for an alert about ``subject``; one recipient per person id.

    ``groups``: each named group's members (person ids), for ``group:NAME``; none by default.
    Raises GoalsUnavailable when the directory cannot be asked; unknown ids and unknown
    groups are logged, not fatal.
    """
    groups = groups or {}
    log_extra = {"fingerprint": fingerprint}
    subject_person = await directory.get_person(subject)
    if subject_person is None:
        logger.warning(
            "subject %r is not in the goals directory; notifying by id",
            subject,
            extra={**log_extra, "person_id": subject},
        )
    recipients: dict[str, Recipient] = {}

    def add(recipient: Recipient) -> None:
        # The first role a person is reached by is the one they are told about.
        recipients.setdefault(recipient.id, recipient)

    for role in notify:
        if role in (SUBJECT, OWNER):
            add(recipient_of(subject_person, person_id=subject, role=RecipientRole.SUBJECT))
        elif role == MANAGER or role.startswith(f"{MANAGER}:"):
            level = 1 if role == MANAGER else int(role.partition(":")[2])
            chain = [] if subject_person is None else subject_person.managers
            if len(chain) < level:
                logger.warning(
                    "no manager known for subject %r at level %d up the chain; not notified",
                    subject,
                    level,
                    extra={**log_extra, "person_id": subject},
                )
                continue
            manager_id = chain[level - 1]
            manager = await directory.get_person(manager_id)
            if manager is None:
                logger.warning(
                    "manager %r of %r is not in the goals directory; notifying by id",
                    manager_id,
                    subject,
                    extra={**log_extra, "person_id": manager_id},
                )
            add(recipient_of(manager, person_id=manager_id, role=RecipientRole.MANAGER))
        elif role in (UNIT_HEAD, HRBP):
            found = None
            if subject_person is not None and org_units is not None:
                found = await _unit_person(org_units, subject_person, role)
            if found is None:
                logger.warning(
                    "no %s known for subject %r (their org unit and those above it name "
                    "none); not notified",
                    role,
                    subject,
                    extra={**log_extra, "person_id": subject},
                )
                continue
            person = await directory.get_person(found)
            add(recipient_of(person, person_id=found, role=RecipientRole(role)))
        elif (group := group_name(role)) is not None:
            members = groups.get(group)
            if members is None:
                logger.warning(
                    "no group %r is defined in the routing configuration; its members are "
                    "not notified",
                    group,
                    extra={**log_extra, "group": group},
                )
                continue
            for member_id in members:
                member = subject_person if member_id == subject else None
                if member is None:
                    member = await directory.get_person(member_id)
                if member is None:
                    logger.warning(
                        "member %r of group %r is not in the goals directory; notifying by id",
                        member_id,
                        group,
                        extra={**log_extra, "person_id": member_id, "group": group},
                    )
                add(
                    recipient_of(member, person_id=member_id, role=RecipientRole.GROUP, group=group)
                )
        else:
            person = subject_person if role == subject else await directory.get_person(role)
            if person is None:
                logger.warning(
                    "explicit recipient %r is not in the goals directory; notifying by id",
                    role,
                    extra={**log_extra, "person_id": role},
                )
            add(recipient_of(person, person_id=role, role=RecipientRole.EXPLICIT))
    return Audience(recipients=list(recipients.values()), subject=subject_person)


async def unit_chain(org_units: OrgUnits | None, unit_id: str | None) -> list[str]:
    """``unit_id`` and every org unit above it, nearest first (only ``unit_id`` without the
    org chart; up to an unknown unit, a cycle or :data:`MAX_UNIT_DEPTH`)."""
    chain: list[str] = []
    while unit_id is not None and unit_id not in chain and len(chain) < MAX_UNIT_DEPTH:
        chain.append(unit_id)
        unit = None if org_units is None else await org_units.get_org_unit(unit_id)
        unit_id = None if unit is None else unit.parent_id
    return chain
