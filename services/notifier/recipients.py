"""Who receives an alert: the rule's ``notify`` roles resolved against the goals service.

Roles: ``subject`` is the person the alert is about (``owner`` says the same in
dependency-impact rules: the owner of the affected goals), ``manager`` is their nearest manager,
and any other string is taken as an explicit person id. A person the directory does not know is
still notified under their id (an alert must not be lost because the directory is incomplete);
the goals service being unreachable is an error, so the message is redelivered later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from goalwatch.contracts import PersonRead, Recipient, RecipientRole
from goalwatch.goals_client import PersonDirectory

logger = logging.getLogger(__name__)

SUBJECT = RecipientRole.SUBJECT.value
MANAGER = RecipientRole.MANAGER.value
# A dependency-impact alert's subject is the owner of the affected goals.
OWNER = "owner"


@dataclass(frozen=True)
class Audience:
    """Everyone to notify about an alert, once each."""

    recipients: list[Recipient]


def _recipient(person: PersonRead | None, *, person_id: str, role: RecipientRole) -> Recipient:
    if person is None:
        return Recipient(id=person_id, name=person_id, role=role)
    return Recipient(id=person.id, name=person.name, email=person.email, role=role)


async def resolve_recipients(
    *, directory: PersonDirectory, subject: str, notify: list[str], fingerprint: str
) -> Audience:
    """Resolve ``notify`` roles for an alert about ``subject``; one recipient per person id.

    Raises GoalsUnavailable when the directory cannot be asked; unknown ids are logged, not fatal.
    """
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
            add(_recipient(subject_person, person_id=subject, role=RecipientRole.SUBJECT))
        elif role == MANAGER:
            if subject_person is None or not subject_person.managers:
                logger.warning(
                    "no manager known for subject %r; the manager is not notified",
                    subject,
                    extra={**log_extra, "person_id": subject},
                )
                continue
            manager_id = subject_person.managers[0]
            manager = await directory.get_person(manager_id)
            if manager is None:
                logger.warning(
                    "manager %r of %r is not in the goals directory; notifying by id",
                    manager_id,
                    subject,
                    extra={**log_extra, "person_id": manager_id},
                )
            add(_recipient(manager, person_id=manager_id, role=RecipientRole.MANAGER))
        else:
            person = subject_person if role == subject else await directory.get_person(role)
            if person is None:
                logger.warning(
                    "explicit recipient %r is not in the goals directory; notifying by id",
                    role,
                    extra={**log_extra, "person_id": role},
                )
            add(_recipient(person, person_id=role, role=RecipientRole.EXPLICIT))
    return Audience(recipients=list(recipients.values()))
