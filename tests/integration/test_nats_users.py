"""NATS users against a real nats-server started with the dev stack's generated configuration:
nobody forges an alert or a validated metric event, the publisher only publishes raw events,
anonymous connections are refused, and no user but a stream's owner reconfigures it.

A bare nats-server is enough (no services): it runs with ``nats.conf`` exactly as
:class:`goalwatch.dev.stack.Stack` writes it, and the streams and consumers are provisioned
by each service's own user, as the services do when they start.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig, StreamSource
from pydantic import SecretStr

from goalwatch.connections import NatsAccess, connect_nats
from goalwatch.contracts import subjects
from goalwatch.dev.stack import free_port, nats_passwords, write_nats_config
from goalwatch.messaging import STREAMS, ensure_streams
from goalwatch.nats_users import OPERATOR, PUBLISHER, PUBLISHER_INBOX_PREFIX
from services.evaluator import app as evaluator
from services.ingestion import app as ingestion
from services.notifier.app import NotifierSettings, alert_consumer, timers_consumer

pytestmark = pytest.mark.integration

# A refused publish is dropped without an answer: JetStream's ack never comes.
REFUSED_WITHIN = 1.0


@dataclass
class Server:
    """nats-server with the stack's generated users, on a free port."""

    state: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def access(self, user: str, password: str | None = None) -> NatsAccess:
        secret = password if password is not None else nats_passwords(self.state)[user]
        return NatsAccess(url=self.url, user=user, password=SecretStr(secret))

    def start(self) -> None:
        config = write_nats_config(self.state)
        binary = Path(sys.executable).parent / "nats-server"
        self.process = subprocess.Popen(
            [str(binary), "--config", str(config), "--jetstream",
             "--store_dir", str(self.state / "nats"), "--addr", "127.0.0.1",
             "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(state=tmp_path_factory.mktemp("nats-users"))
    running.start()
    yield running
    running.stop()


class Session:
    """A connection as one user that keeps the errors the server reports to it."""

    def __init__(self, client: Client, errors: list[str]) -> None:
        self.client = client
        self.errors = errors

    async def violation(self, subject: str) -> bool:
        """Whether the server reported a permissions violation about ``subject``."""
        await self.client.flush()
        wanted = f'"{subject.lower()}"'
        for _ in range(40):
            if any("permissions violation" in e and wanted in e for e in self.errors):
                return True
            await asyncio.sleep(0.05)
        return False


async def _session(server: Server, user: str, **options: object) -> Session:
    errors: list[str] = []

    async def keep(exc: Exception) -> None:
        errors.append(str(exc).lower())

    # The server may still be starting when the first test connects.
    for _ in range(100):
        try:
            client = await connect_nats(
                server.access(user), error_cb=keep, max_reconnect_attempts=0, **options
            )
        except (OSError, nats.errors.NoServersError):
            await asyncio.sleep(0.05)
            continue
        return Session(client, errors)
    raise AssertionError(f"nats-server did not start on {server.url}")


SessionAs = Callable[..., Awaitable[Session]]


@pytest.fixture
async def session(server: Server) -> AsyncIterator[SessionAs]:
    """Whoever a test connects as, closed afterwards (``await session_as(user)``)."""
    opened: list[Session] = []

    async def session_as(user: str, **options: object) -> Session:
        one = await _session(server, user, **options)
        opened.append(one)
        return one

    yield session_as
    for one in opened:
        await one.client.close()


@pytest.fixture(scope="module")
async def provisioned(server: Server) -> None:
    """Every service's streams and consumers, provisioned by its own user, the last of the
    pipeline first: each waits for the streams of the others, whatever the order."""
    notifier = NotifierSettings.model_construct()
    consumers = {
        "notifier": [alert_consumer(notifier), timers_consumer(notifier)],
        "evaluator": [
            evaluator.CONSUMER,
            evaluator.TIMERS_CONSUMER,
            evaluator.GOAL_OVERDUE_CONSUMER,
            evaluator.IMPACT_CONSUMER,
            evaluator.DIRECTORY_CONSUMER,
        ],
        "ingestion": [ingestion.CONSUMER],
        "goals": [],
    }
    await (await _session(server, OPERATOR)).client.close()  # the server is up
    started = []
    for owner, specs in consumers.items():
        started.append(
            asyncio.create_task(ensure_streams(server.access(owner), owner=owner, consumers=specs))
        )
        await asyncio.sleep(0.3)  # the later owners start while the first ones wait
    await asyncio.wait_for(asyncio.gather(*started), timeout=30)


async def _messages(server: Server, stream: str) -> int:
    nc = await connect_nats(server.access(OPERATOR))
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


async def test_services_provision_their_streams_in_any_order(
    server: Server, provisioned: None
) -> None:
    nc = await connect_nats(server.access(OPERATOR))
    try:
        names = [info.config.name for info in await nc.jetstream().streams_info()]
    finally:
        await nc.close()
    assert sorted(names) == sorted(config.name for config in STREAMS)


async def test_ingestion_cannot_forge_an_alert(
    server: Server, provisioned: None, session: SessionAs
) -> None:
    forger = await session("ingestion")
    alert = b'{"rule_id": "forged", "severity": "critical"}'
    await forger.client.publish(subjects.ALERTS_FIRED, alert)
    assert await forger.violation(subjects.ALERTS_FIRED)
    with pytest.raises(nats.errors.TimeoutError):
        await forger.client.jetstream().publish(
            subjects.ALERTS_FIRED,
            alert,
            stream=subjects.STREAM_ALERTS,
            timeout=REFUSED_WITHIN,
        )
    assert await _messages(server, subjects.STREAM_ALERTS) == 0


@pytest.mark.parametrize("user", ["goals", "evaluator", "notifier", PUBLISHER])
async def test_only_ingestion_publishes_validated_metric_events(
    server: Server, provisioned: None, session: SessionAs, user: str
) -> None:
    forger = await session(user)
    await forger.client.publish(subjects.METRICS_RECORDED, b'{"metric": "forged"}')
    assert await forger.violation(subjects.METRICS_RECORDED)
    assert await _messages(server, subjects.STREAM_METRICS) == 0


async def test_the_publisher_publishes_raw_metric_events_only(
    server: Server, provisioned: None, session: SessionAs
) -> None:
    publisher = await session(PUBLISHER, inbox_prefix=PUBLISHER_INBOX_PREFIX)
    js = publisher.client.jetstream()
    ack = await js.publish(subjects.METRICS_IN, b'{"metric": "visits"}', timeout=5)
    assert ack.stream == subjects.STREAM_INGEST
    for subject in (subjects.ALERTS_FIRED, subjects.GOAL_CREATED, subjects.DEADLETTER_METRICS):
        await publisher.client.publish(subject, b"{}")
        assert await publisher.violation(subject), subject
    info = f"$JS.API.STREAM.INFO.{subjects.STREAM_INGEST}"
    with pytest.raises(nats.errors.TimeoutError):
        await publisher.client.request(info, b"", timeout=REFUSED_WITHIN)
    assert await publisher.violation(info)
    # Nor may it read what others receive.
    await publisher.client.subscribe(subjects.ALERTS_FIRED)
    assert await publisher.violation(subjects.ALERTS_FIRED)


async def _refused(**options: object) -> None:
    async def quiet(_: Exception) -> None:
        pass

    # One attempt more, not none: nats-py 2.14 waits for ever on a server that refuses the
    # first connection when max_reconnect_attempts is 0.
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(
            **options,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            connect_timeout=2,
            error_cb=quiet,
        )


async def test_an_anonymous_connection_is_refused(server: Server, provisioned: None) -> None:
    await _refused(servers=[server.url])
    await _refused(servers=[server.url], user="ingestion", password="wrong")
    await _refused(servers=[f"nats://nobody:nothing@127.0.0.1:{server.port}"])


@pytest.mark.parametrize("user", ["ingestion", "goals", "notifier", PUBLISHER])
async def test_no_user_but_its_owner_reconfigures_the_alert_stream(
    server: Server, provisioned: None, session: SessionAs, user: str
) -> None:
    # Sources would copy messages into the alert stream from one the user may publish on.
    intruder = await session(user)
    js = intruder.client.jetstream(timeout=REFUSED_WITHIN)
    alerts = next(config for config in STREAMS if config.name == subjects.STREAM_ALERTS)
    sourced = replace(alerts, sources=[StreamSource(name=subjects.STREAM_INGEST)])
    with pytest.raises(nats.errors.TimeoutError):
        await js.update_stream(sourced)
    assert await intruder.violation(f"$JS.API.STREAM.UPDATE.{subjects.STREAM_ALERTS}")
    # Nor create a stream of its own that would catch the alert subjects first.
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_stream(StreamConfig(name="FORGED", subjects=["goalwatch.alerts.forged.v1"]))
    nc = await connect_nats(server.access(OPERATOR))
    try:
        kept = (await nc.jetstream().stream_info(subjects.STREAM_ALERTS)).config
    finally:
        await nc.close()
    assert not kept.sources and sorted(kept.subjects or []) == sorted(alerts.subjects or [])
