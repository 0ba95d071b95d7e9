"""Display names of subjects, for alert messages, from the goals service's people directory.

Asked only when an alert fires or resolves, so there is no cache. A name is a nicety: if goals
does not know the subject or cannot be reached in time, the message shows the subject id and
the alert goes out regardless.
"""

from __future__ import annotations

import logging
from typing import Protocol
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from goalwatch.contracts import PersonRead

logger = logging.getLogger(__name__)


class Names(Protocol):
    """Where the evaluator looks up a subject's display name."""

    async def name_of(self, *, subject: str) -> str:
        """The subject's display name, or ``subject`` itself when unknown."""


class GoalsNames:
    """Names from ``GET {goals_url}/v1/people/{id}``."""

    def __init__(self, client: httpx.AsyncClient, *, goals_url: str) -> None:
        self._client = client
        self._base = goals_url.rstrip("/")

    async def name_of(self, *, subject: str) -> str:
        """The person's name; the id when goals has no such person or does not answer."""
        try:
            response = await self._client.get(f"{self._base}/v1/people/{quote(subject, safe='')}")
        except httpx.HTTPError as exc:
            logger.warning("goals unreachable, naming %r by id: %s", subject, exc)
            return subject
        if response.status_code != 200:
            if response.status_code != 404:
                logger.warning(
                    "goals answered %d for %r; naming it by id", response.status_code, subject
                )
            return subject
        try:
            return PersonRead.model_validate_json(response.content).name
        except ValidationError:
            logger.warning("goals answered something other than a person for %r", subject)
            return subject
