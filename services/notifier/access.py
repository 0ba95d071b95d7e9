"""Which alerts each caller of the notifier API may see.

Org-wide roles see every alert. A person sees an alert about someone in their part of the org
chart (:mod:`goalwatch.auth.scope`) — themselves, their reports, the units they head or are
the HRBP of — and one the rule addressed to them by name or group. The org chart is read from the notifier's copy of the
directory, which follows the goals service's change events, so a change of manager changes
what each side sees without a restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from goalwatch.auth.policy import Caller
from goalwatch.auth.scope import Scope
from goalwatch.contracts import OrgUnitRead, PersonRead, RecipientRole
from services.notifier.directory import Source as PeopleDirectory
from services.notifier.inbox import InboxAlert

NAMED = frozenset({RecipientRole.SUBJECT, RecipientRole.EXPLICIT, RecipientRole.GROUP})
"""Recipients who keep seeing an alert sent to them whatever the org chart says since: the
subject, and those the rule named or reached through a group. A manager, unit head or HRBP
was told because of where the subject stood; they see it while the org chart still says so."""


class DirectoryView:
    """The notifier's directory as :class:`goalwatch.auth.scope.Directory` reads it."""

    def __init__(self, directory: PeopleDirectory) -> None:
        self._directory = directory

    async def person(self, person_id: str) -> PersonRead | None:
        """The person, with their manager chain."""
        return await self._directory.get_person(person_id)

    async def org_unit(self, unit_id: str) -> OrgUnitRead | None:
        """The org unit."""
        return await self._directory.get_org_unit(unit_id)


class AlertAccess:
    """What each caller may see of the inbox."""

    def __init__(self, directory: PeopleDirectory) -> None:
        self._view = DirectoryView(directory)

    def filter(self, caller: Caller) -> Callable[[InboxAlert], Awaitable[bool]] | None:
        """Which alerts the caller may see (``None``: all of them)."""
        if caller.org_wide or caller.person_id is None:
            return None
        scope = Scope(caller.person_id, self._view)
        viewer = caller.person_id

        async def visible(alert: InboxAlert) -> bool:
            if any(
                recipient.id == viewer and recipient.role in NAMED for recipient in alert.recipients
            ):
                return True
            return await scope.sees_person_id(alert.subject.id)

        return visible

    async def name(self, person_id: str) -> str | None:
        """``person_id``'s display name, if the directory knows them."""
        person = await self._view.person(person_id)
        return None if person is None else person.name

    async def sees(self, caller: Caller, alert: InboxAlert) -> bool:
        """Whether the caller may see ``alert``."""
        check = self.filter(caller)
        return check is None or await check(alert)
