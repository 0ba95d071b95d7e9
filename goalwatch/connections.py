"""Connections every service opens the same way."""

from __future__ import annotations

import ssl
from typing import Any

from faststream.nats import NatsBroker
from redis.asyncio import Redis

from goalwatch.settings import ServiceSettings
from goalwatch.telemetry import ReadyCheck


def redis_client(where: str | ServiceSettings) -> Redis:
    """A Redis client that fails fast when Redis hangs, instead of hanging with it.

    ``where``: a service's settings (its URL, ACL user and password, TLS files), or a URL
    alone, as tools pass one (``redis://user:password@host:port/0``; ``rediss://`` for TLS
    with the system's CAs).

    A command that times out raises, so a message is retried later and ``/readyz`` says
    "down" rather than never answering.
    """
    options: dict[str, Any] = {}
    if isinstance(where, ServiceSettings):
        url = where.redis_url
        # Apart from the URL, so that the password is never in a URL that gets logged.
        if where.redis_username is not None:
            options["username"] = where.redis_username
        if where.redis_password is not None:
            options["password"] = where.redis_password.get_secret_value()
        if url.startswith("rediss://"):
            options["ssl_min_version"] = ssl.TLSVersion.TLSv1_2
            if where.redis_tls_ca_file is not None:
                options["ssl_ca_certs"] = str(where.redis_tls_ca_file)
            if where.redis_tls_cert_file is not None:
                options["ssl_certfile"] = str(where.redis_tls_cert_file)
            if where.redis_tls_key_file is not None:
                options["ssl_keyfile"] = str(where.redis_tls_key_file)
    else:
        url = where
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        **options,
    )


def ready_checks(*, broker: NatsBroker, redis: Redis | None = None) -> dict[str, ReadyCheck]:
    """The ``/readyz`` checks of a service using ``broker`` and, if given, ``redis``."""
    checks: dict[str, ReadyCheck] = {"nats": lambda: broker.ping(1.0)}
    if redis is not None:

        async def redis_up() -> bool:
            return bool(await redis.ping())

        checks["redis"] = redis_up
    return checks
