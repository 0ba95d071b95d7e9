"""Who receives an alert: the rule's ``notify`` roles resolved against the goals service.

Roles: ``subject`` is the person the alert is about, ``manager`` is their nearest manager, and
any other string is taken as an explicit person id. A person the directory does not know is
still notified under their id (an alert must not be lost because the directory is incomplete);
the goals service being unreachable is an error, so the message is redelivered later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import httpx
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from goalwatch.contracts import PersonRead, Recipient
from services.notifier.notification import SubjectRef

logger = logging.getLogger(__name__)

SUBJECT = "subject"
MANAGER = "manager"
EXPLICIT = "explicit"


class GoalsUnavailable(Exception):
    """The goals service could not answer a person lookup (after retries, or wrongly)."""


class _Transient(Exception):
    """A lookup failure worth retrying: network trouble, timeout, 5xx or 429."""


class PersonDirectory(Protocol):
    """Looks people up by id."""

    async def get_person(self, person_id: str) -> PersonRead | None:
        """The person, or None when the directory has no such id."""
        ...


class GoalsClient:
    """``GET {goals_url}/v1/people/{id}`` with timeouts and retries of transient failures."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        attempts: int = 3,
        backoff: float = 0.2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep

    async def get_person(self, person_id: str) -> PersonRead | None:
        """The person with ``person_id``, or None on 404; raises GoalsUnavailable otherwise."""
        url = f"{self._base_url}/v1/people/{quote(person_id, safe='')}"
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(multiplier=self._backoff, max=5.0, jitter=self._backoff),
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._get_once(url, person_id)
        except _Transient as exc:
            raise GoalsUnavailable(
                f"goals service did not answer for person {person_id!r} after "
                f"{self._attempts} attempts: {exc}"
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _get_once(self, url: str, person_id: str) -> PersonRead | None:
        try:
            response = await self._client.get(url)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out ({type(exc).__name__}) on GET {url}") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"could not reach {url}: {exc!r}") from exc
        if response.status_code == 404:
            return None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(f"GET {url} answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise GoalsUnavailable(
                f"GET {url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            return PersonRead.model_validate_json(response.content)
        except ValidationError as exc:
            raise GoalsUnavailable(
                f"GET {url} returned a body that is not a PersonRead: {exc}"
            ) from exc


@dataclass(frozen=True)
class Audience:
    """The subject of an alert, named, and everyone to notify about it."""

    subject: SubjectRef
    recipients: list[Recipient]


def _recipient(person: PersonRead | None, *, person_id: str, role: str) -> Recipient:
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
        if role == SUBJECT:
            add(_recipient(subject_person, person_id=subject, role=SUBJECT))
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
            add(_recipient(manager, person_id=manager_id, role=MANAGER))
        else:
            person = subject_person if role == subject else await directory.get_person(role)
            if person is None:
                logger.warning(
                    "explicit recipient %r is not in the goals directory; notifying by id",
                    role,
                    extra={**log_extra, "person_id": role},
                )
            add(_recipient(person, person_id=role, role=EXPLICIT))
    name = subject_person.name if subject_person is not None else subject
    return Audience(subject=SubjectRef(id=subject, name=name), recipients=list(recipients.values()))
