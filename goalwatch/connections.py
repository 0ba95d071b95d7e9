"""Connections every service opens the same way."""

from __future__ import annotations

from faststream.nats import NatsBroker
from redis.asyncio import Redis

from goalwatch.telemetry import ReadyCheck


def redis_client(url: str) -> Redis:
    """A Redis client that fails fast when Redis hangs, instead of hanging with it.

    A command that times out raises, so a message is retried later and ``/readyz`` says
    "down" rather than never answering.
    """
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
    )


def ready_checks(*, broker: NatsBroker, redis: Redis | None = None) -> dict[str, ReadyCheck]:
    """The ``/readyz`` checks of a service using ``broker`` and, if given, ``redis``."""
    checks: dict[str, ReadyCheck] = {"nats": lambda: broker.ping(1.0)}
    if redis is not None:

        async def redis_up() -> bool:
            return bool(await redis.ping())

        checks["redis"] = redis_up
    return checks
