"""Redis users on a real redis-server, as the stack starts it: each service reaches its own
keys with the commands it needs and nothing else, and a connection without a user gets
nothing at all. That the services work with their users is what every other integration
test shows; here, that they do connect as them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from goalwatch import dead_letters
from goalwatch.dev import redis_acl
from goalwatch.dev.stack import Stack, StackSettings
from goalwatch.redis_users import OPERATOR, service_users
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

SERVICES = [u.name for u in service_users()]
STATEFUL = [name for name in SERVICES if name != "ingestion"]
"""The services that keep state of their own; ingestion reaches only the replay marks."""

# Commands no service may run: server administration, wiping data, reading every key name.
FORBIDDEN: list[tuple[str, ...]] = [
    ("CONFIG", "GET", "maxmemory"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("DEBUG", "SLEEP", "0"),
    ("KEYS", "*"),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "intruder", "on", ">x", "~*", "+@all"),
    ("CLIENT", "LIST"),
    ("SCRIPT", "FLUSH"),
    ("SHUTDOWN", "NOSAVE"),
    ("MONITOR",),
    ("SWAPDB", "0", "1"),
    ("BGREWRITEAOF",),
    ("RANDOMKEY",),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """nats-server and redis-server exactly as the stack starts them, no services."""
    state = tmp_path_factory.mktemp("acl-state")
    running = Stack(settings=StackSettings.on_free_ports(state, REPO / "rules"))
    running.start_servers()
    try:
        yield running
    finally:
        running.stop()


def _as(stack: Stack, user: str) -> redis.Redis:
    return redis.Redis(
        host=stack.settings.host,
        port=stack.settings.redis_port,
        username=user,
        password=redis_acl.password(stack.settings.state_dir, user),
        decode_responses=True,
    )


def _probe(service: str) -> str:
    return f"goalwatch:{service}:acl-probe:{uuid.uuid4().hex}"


def test_a_connection_without_a_user_can_run_nothing(servers: Stack) -> None:
    anonymous = redis.Redis(host=servers.settings.host, port=servers.settings.redis_port)
    with pytest.raises(AuthenticationError):
        anonymous.ping()
    with pytest.raises(AuthenticationError):
        anonymous.get("goalwatch:goals:people")
    # The default user is off, whatever password is tried.
    with pytest.raises(AuthenticationError):
        redis.Redis(
            host=servers.settings.host,
            port=servers.settings.redis_port,
            username="default",
            password="",
        ).ping()


def test_a_wrong_password_is_refused(servers: Stack) -> None:
    for name in [*SERVICES, OPERATOR]:
        with pytest.raises(AuthenticationError):
            redis.Redis(
                host=servers.settings.host,
                port=servers.settings.redis_port,
                username=name,
                password="not-the-password",
            ).ping()


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("command", FORBIDDEN, ids=lambda c: " ".join(c[:2]))
def test_a_service_cannot_administer_or_wipe_redis(
    servers: Stack, service: str, command: tuple[str, ...]
) -> None:
    with _as(servers, service) as client, pytest.raises(NoPermissionError):
        client.execute_command(*command)


@pytest.mark.parametrize("service", STATEFUL)
def test_a_service_uses_its_own_keys_with_scripts_and_transactions(
    servers: Stack, service: str
) -> None:
    key = _probe(service)
    with _as(servers, service) as client:
        assert client.ping()
        client.set(key, "1", px=60_000)
        client.hset(f"{key}:h", mapping={"v": "1"})
        with client.pipeline(transaction=True) as pipe:
            pipe.watch(key)
            pipe.multi()
            pipe.incr(key)
            pipe.execute()
        # A script that builds its key names itself, and reads the server's run_id as the
        # checkpoints do (INFO, "dangerous" in Redis 6.2, is given back).
        script = client.register_script(
            "redis.call('SET', ARGV[1] .. ':s', 'x', 'PX', 60000)"
            " return {redis.call('GET', ARGV[1]),"
            " string.find(redis.call('INFO', 'server'), 'run_id:', 1, true) ~= nil}"
        )
        assert script(args=[key]) == ["2", 1]
        assert client.info("server")["run_id"]
        checkpoint = f"goalwatch:checkpoint:{service}-acl-probe"
        client.set(checkpoint, "{}", px=60_000)
        assert client.get(checkpoint) == "{}"
        client.delete(key, f"{key}:h", f"{key}:s", checkpoint)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_cannot_touch_another_services_keys(servers: Stack, service: str) -> None:
    with _as(servers, OPERATOR) as operator:
        others = {o: _probe(o) for o in SERVICES if o != service}
        for key in others.values():
            operator.set(key, "secret", px=60_000)
        others_checkpoints = [f"goalwatch:checkpoint:{o}-acl-probe" for o in others]
        with _as(servers, service) as client:
            for key in [*others.values(), *others_checkpoints, "unprefixed", "goalwatch:x"]:
                with pytest.raises(NoPermissionError):
                    client.get(key)
                with pytest.raises(NoPermissionError):
                    client.set(key, "changed")
                with pytest.raises(NoPermissionError):
                    client.delete(key)
                # Nor from inside a script, by a key name it builds itself.
                with pytest.raises(ResponseError, match="can't access"):
                    client.eval("return redis.call('GET', ARGV[1])", 0, key)
        assert all(operator.get(key) == "secret" for key in others.values())
        operator.delete(*others.values())


def test_only_the_notifier_publishes_and_listens_on_the_inbox_channel(servers: Stack) -> None:
    channel = "goalwatch:notifier:updates"
    with _as(servers, "notifier") as notifier:
        assert notifier.publish(channel, "{}") == 0
        with pytest.raises(NoPermissionError):
            notifier.publish("goalwatch:goals:updates", "{}")
        listener = notifier.pubsub()
        listener.subscribe(channel)
        assert listener.get_message(timeout=1)["type"] == "subscribe"  # type: ignore[index]
        listener.close()
    for service in SERVICES:
        if service == "notifier":
            continue
        with _as(servers, service) as client, pytest.raises(NoPermissionError):
            client.publish(channel, "{}")


def test_only_the_notifier_may_scan(servers: Stack) -> None:
    """SCAN lists every key's name whatever the user's patterns (Redis 6.2): only the
    notifier, which moves inbox entries of an earlier layout at start-up, has it."""
    with _as(servers, "notifier") as notifier:
        list(notifier.scan_iter(match="goalwatch:notifier:alert:*", count=10))
    for service in SERVICES:
        if service == "notifier":
            continue
        with _as(servers, service) as client, pytest.raises(NoPermissionError):
            client.scan(0)


def test_the_operator_may_do_everything(servers: Stack) -> None:
    with redis.Redis.from_url(servers.settings.redis_url, decode_responses=True) as operator:
        assert operator.acl_whoami() == OPERATOR
        assert operator.config_get("appendonly") == {"appendonly": "yes"}
        assert {u for u in operator.acl_users()} == {"default", OPERATOR, *SERVICES}


def test_passwords_are_kept_for_the_owner_only(servers: Stack) -> None:
    folder = redis_acl.passwords_dir(servers.settings.state_dir)
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in [*SERVICES, OPERATOR]:
        assert (folder / name).stat().st_mode & 0o777 == 0o600
    acl = redis_acl.acl_path(servers.settings.state_dir)
    assert acl.stat().st_mode & 0o777 == 0o600
    # The ACL file holds hashes only.
    text = acl.read_text()
    assert not any(redis_acl.password(servers.settings.state_dir, n) in text for n in SERVICES)


def test_the_services_that_replay_dead_letters_share_their_marks_and_nothing_more(
    servers: Stack,
) -> None:
    mark = f"{dead_letters.REPLAY_MARKS}{uuid.uuid4().int % 10**9}"
    with _as(servers, "ingestion") as ingestion:
        assert ingestion.set(mark, "{}", nx=True, px=60_000)
        with pytest.raises(NoPermissionError):
            ingestion.set(_probe("ingestion"), "1")
    for replaying in ("goals", "evaluator"):
        with _as(servers, replaying) as client:
            # Claimed by another replaying service: not claimed again.
            assert not client.set(mark, "{}", nx=True, px=60_000)
    with _as(servers, "notifier") as notifier, pytest.raises(NoPermissionError):
        notifier.get(mark)


def test_each_service_connects_as_its_own_user(stack: Stack) -> None:
    deadline = time.monotonic() + 10
    with redis.Redis.from_url(stack.settings.redis_url, decode_responses=True) as operator:
        # A service may be between connections (a pool reconnecting): ask again briefly.
        while True:
            clients = operator.client_list()
            users = {client["user"] for client in clients}
            if set(STATEFUL) <= users or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    # Ingestion connects only to replay a dead letter; every other service is connected.
    assert set(STATEFUL) <= users, clients
    assert users <= {*SERVICES, OPERATOR, "default"}, clients
    # A connection shows as "default" until its AUTH is through; none gets further.
    anonymous = [c for c in clients if c["user"] == "default"]
    assert all(c["cmd"] in ("NULL", "auth", "hello") for c in anonymous), anonymous


def test_the_password_stays_out_of_the_services_command_lines(stack: Stack) -> None:
    for service in SERVICES:
        cmdline = Path(f"/proc/{stack.pid(service)}/cmdline").read_bytes()
        assert redis_acl.password(stack.settings.state_dir, service).encode() not in cmdline
