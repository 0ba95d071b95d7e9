"""Connections every service opens the same way."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from faststream.nats import NatsBroker
from faststream.nats.security import NatsCredentials, NatsNKey, NatsSecurity, NatsUserPassword
from faststream.nats.security import parse_security as _parse_security
from nats.aio.client import Client as NatsClient
from pydantic import SecretStr
from redis.asyncio import Redis

from goalwatch.settings import ServiceSettings
from goalwatch.telemetry import ReadyCheck


@dataclass(frozen=True)
class NatsAccess:
    """Where NATS is and how to log in to it: a server URL, at most one login (user and
    password, a credentials file or an NKey seed file) and TLS files.

    Everything that connects to NATS takes one of these, or a plain URL (``NatsTarget``),
    and connects through :func:`nats_options` / :func:`nats_security`, so a login or TLS
    setting reaches every connection. The password never shows in a repr or a log.
    """

    url: str
    user: str | None = None
    password: SecretStr | None = None
    creds_file: Path | None = None
    nkey_seed_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @property
    def login(self) -> str:
        """Who connects, for messages: the user, the credentials file, or anonymous."""
        if self.user:
            return f"user {self.user}"
        if self.creds_file:
            return f"credentials {self.creds_file}"
        if self.nkey_seed_file:
            return f"NKey seed {self.nkey_seed_file}"
        return "no login"


NatsTarget = NatsAccess | str
"""A :class:`NatsAccess`, or a bare server URL (which may carry ``user:password@``)."""


def nats_access(settings: ServiceSettings) -> NatsAccess:
    """The NATS access ``settings`` describe (``GOALWATCH_NATS_*``)."""
    return NatsAccess(
        url=settings.nats_url,
        user=settings.nats_user,
        password=settings.nats_password,
        creds_file=settings.nats_creds_file,
        nkey_seed_file=settings.nats_nkey_seed_file,
        tls_ca_file=settings.nats_tls_ca_file,
        tls_cert_file=settings.nats_tls_cert_file,
        tls_key_file=settings.nats_tls_key_file,
    )


def _access(target: NatsTarget) -> NatsAccess:
    return target if isinstance(target, NatsAccess) else NatsAccess(url=target)


def _tls_context(access: NatsAccess) -> ssl.SSLContext | None:
    if access.tls_ca_file is None and access.tls_cert_file is None:
        return None  # a tls:// URL alone still verifies against the system's CAs
    context = ssl.create_default_context(
        cafile=str(access.tls_ca_file) if access.tls_ca_file else None
    )
    if access.tls_cert_file is not None:
        context.load_cert_chain(
            str(access.tls_cert_file),
            str(access.tls_key_file) if access.tls_key_file else None,
        )
    return context


def nats_security(target: NatsTarget) -> NatsSecurity | None:
    """The login and TLS of ``target`` as FastStream's broker takes them (``security=``);
    None when there are neither."""
    access = _access(target)
    tls = _tls_context(access)
    if access.user is not None and access.password is not None:
        return NatsUserPassword(access.user, access.password.get_secret_value(), ssl_context=tls)
    if access.creds_file is not None:
        return NatsCredentials.from_file(access.creds_file, ssl_context=tls)
    if access.nkey_seed_file is not None:
        return NatsNKey.from_file(access.nkey_seed_file, ssl_context=tls)
    if tls is not None:
        return NatsSecurity(ssl_context=tls)
    return None


def nats_options(target: NatsTarget) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect``: the servers, the login and TLS of ``target``."""
    access = _access(target)
    options = _parse_security(nats_security(access))
    # FastStream's defaults for what was not set (tls_handshake_first=False, None) are
    # nats-py's too; leaving them out keeps a plain URL's connect exactly as before.
    return {"servers": [access.url], **{k: v for k, v in options.items() if v}}


async def connect_nats(target: NatsTarget, **options: Any) -> NatsClient:
    """A nats-py client connected to ``target``; ``options`` add to (or override) the
    connection's (timeouts, reconnects, callbacks)."""
    return await nats.connect(**{**nats_options(target), **options})


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
