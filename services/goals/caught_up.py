"""Writes that wait for the goals service's store to catch up with its streams.

After a Redis restart that may have lost writes, the store replays what it published since
its last checkpoint (``GOALWATCH_GOALS``, ``GOALWATCH_PEOPLE``) before it writes again, or a
goal, person or org unit would get a version (and event ids) it already had. Each write
script takes the Redis ``run_id`` the store is caught up with and refuses (``stale``) when
the server is another one: no restart can slip in between a check and the write.
"""

from __future__ import annotations

from typing import Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from goalwatch.checkpoints import NotCaughtUp


class CaughtUp(Protocol):
    """Keeps the store caught up with its streams (a :class:`~goalwatch.checkpoints.
    Recovery`)."""

    @property
    def confirmed(self) -> str | None:
        """The Redis ``run_id`` the store is known to be caught up with, if any."""

    async def ready(self) -> None:
        """Catch up if Redis is not the server the store last caught up with."""


class WriteGuard:
    """The ``run_id`` a write script checks, caught up first when there is none yet."""

    def __init__(self, caught_up: CaughtUp | None) -> None:
        """Without ``caught_up`` writes are not checked (a script gets an empty ``run_id``)."""
        self._caught_up = caught_up

    async def run_id(self) -> str:
        """The ``run_id`` to pass to a write script."""
        if self._caught_up is None:
            return ""
        return self._caught_up.confirmed or await self.catch_up()

    async def catch_up(self) -> str:
        """Replay what a restarted Redis lost, if it did (after a ``stale`` answer, and before
        every request); the ``run_id`` the store is now caught up with. Raises :class:`NotCaughtUp` (a 503) when it cannot."""
        if self._caught_up is None:
            return ""
        try:
            await self._caught_up.ready()
        except (RedisConnectionError, RedisTimeoutError):
            raise  # answered as Redis being down (a 503 saying so)
        except Exception as exc:  # NATS trouble: the client retries after a 503
            raise NotCaughtUp(
                f"the goal store could not catch up with its streams: {exc!r}"
            ) from exc
        confirmed = self._caught_up.confirmed
        if confirmed is None:
            raise NotCaughtUp("the goal store could not record that it caught up with its streams")
        return confirmed
