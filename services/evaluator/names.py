"""Display names of subjects, for alert messages: from the evaluator's directory view
(:class:`services.evaluator.directory.DirectoryNames`), and from the goals service's people
directory for a subject that view does not know.

Asked only when an alert fires or resolves. A subject goals does not know is named by its id;
goals being unreachable raises, so the subject's events are retried and the alert waits for
the name instead of going out for good with the id in its place.
"""

from __future__ import annotations

from typing import Protocol


class Names(Protocol):
    """Where the evaluator looks up a subject's display name (a :class:`GoalsClient`)."""

    async def name_of(self, *, subject: str) -> str:
        """The subject's display name, or ``subject`` itself when unknown; raises if unsure."""
        ...
