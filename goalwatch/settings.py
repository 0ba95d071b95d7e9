"""Settings fragments shared by every service.

Settings are read from the environment (prefix ``GOALWATCH_``) only when a service's
``create_app``/``main`` builds them; tests construct them directly instead.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from goalwatch.auth.settings import AuthSettings
from goalwatch.durations import duration_of

Port = Annotated[int, Field(ge=1, le=65535)]
"""A TCP port number."""

S = TypeVar("S", bound=BaseSettings)


def duration_setting(value: Any) -> Any:
    """A duration setting's value as pydantic reads a timedelta: ``30d`` as the rules and the
    catalogue write it, seconds, or ISO 8601 (``P30D``), which pydantic reads itself."""
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.isdigit() else duration_of(text) or text
    return value


class ServiceSettings(AuthSettings):
    """What every service needs: where NATS and Redis are, where to listen, how to log, and
    who may sign in (:class:`~goalwatch.auth.settings.AuthSettings`).

    Every setting is read from the environment variable `GOALWATCH_<FIELD NAME>`; a service's
    port is a field named for the service (`goals_port` is `GOALWATCH_GOALS_PORT`).
    """

    model_config = SettingsConfigDict(env_prefix="GOALWATCH_", extra="ignore")

    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server URL (`tls://` for TLS); credentials go in the settings below.",
    )
    nats_user: str | None = Field(
        None, description="NATS user name (each service has its own: docs/security-nats.md)."
    )
    nats_password: SecretStr | None = Field(None, description="The NATS user's password.")
    nats_creds_file: Path | None = Field(
        None,
        description="NATS credentials file (user JWT and NKey seed), instead of user/password.",
    )
    nats_nkey_seed_file: Path | None = Field(
        None, description="File holding the NATS user's NKey seed, instead of user/password."
    )
    nats_tls_ca_file: Path | None = Field(
        None, description="CA certificates (PEM) that NATS's server certificate must chain to."
    )
    nats_tls_cert_file: Path | None = Field(
        None, description="Client certificate (PEM) presented to NATS, for mutual TLS."
    )
    nats_tls_key_file: Path | None = Field(
        None, description="Private key (PEM) of the NATS client certificate."
    )
    nats_stream_replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="How many JetStream servers keep a copy of each stream the service owns "
        "(its consumers follow): 3 on a 3-node cluster, so that one server may fail; 1 on a "
        "single server. Set every service to the same value.",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL.")
    host: str = Field("127.0.0.1", description="Interface the HTTP API listens on.")
    log_level: str = Field("INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the HTTP API answers to besides localhost, 127.0.0.1, ::1 and "
        "`host`, comma-separated (`*.example.com` for a domain, `*` for any); a request with "
        "another Host header is refused with 400.",
    )
    http_max_body_bytes: int = Field(
        1024 * 1024,
        ge=1,
        description="Largest HTTP request body, in bytes (413 beyond); ingestion has its own.",
    )
    http_body_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a client has to send a whole request body (408 after).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Web origins whose pages may call the HTTP API from a browser "
        "(`https://console.example.com`), comma-separated; none by default.",
    )
    tls_cert_file: str | None = Field(
        None, description="Serve HTTPS with this certificate (PEM; with `tls_key_file`)."
    )
    tls_key_file: str | None = Field(None, description="The private key of `tls_cert_file`.")
    tls_client_ca_file: str | None = Field(
        None, description="Require client certificates signed by this CA (mutual TLS)."
    )
    metrics_retention: timedelta = Field(
        timedelta(days=30),
        gt=timedelta(0),
        description="How long stored metric events (stream GOALWATCH_METRICS) are kept: how "
        "far back `goalwatch rules backtest` can look. Written 30d, 12h, 1d12h, or seconds. "
        "Read by ingestion, which provisions that stream.",
    )
    metrics_partitions: int = Field(
        16,
        ge=1,
        le=1024,
        description="Partitions of the metric events (stream GOALWATCH_METRICS): ingestion "
        "stores each event on the partition of its subject, each evaluator replica evaluates "
        "the partitions it holds; at most this many evaluator replicas share the work. Give "
        "ingestion and the evaluator the same value; change it only with the metrics drained "
        "(docs/scaling.md).",
    )
    shutdown_grace_seconds: float = Field(
        25.0,
        gt=0,
        description="On SIGTERM, how long the service may take to finish and acknowledge the "
        "messages it holds and hand its partitions over before it exits anyway; keep it below "
        "the pod's terminationGracePeriodSeconds (30 by default).",
    )
    # Redis credentials and TLS (docs/security-redis.md); redis_url is `rediss://` for TLS.
    redis_username: str | None = Field(
        None, description="Redis ACL user the service connects as (docs/security-redis.md)."
    )
    redis_password: SecretStr | None = Field(None, description="Password of the Redis user.")
    redis_tls_ca_file: Path | None = Field(
        None,
        description="CA certificates (PEM) that signed the Redis server's certificate, for a "
        "`rediss://` URL (without it: the system's CAs).",
    )
    redis_tls_cert_file: Path | None = Field(
        None,
        description="Client certificate (PEM) for a Redis that asks for one "
        "(`tls-auth-clients`); with `redis_tls_key_file`.",
    )
    redis_tls_key_file: Path | None = Field(
        # Checked even when unset: a certificate without its key is refused.
        None,
        description="Private key (PEM) of `redis_tls_cert_file`.",
        validate_default=True,
    )

    audit_retention: timedelta = Field(
        timedelta(days=400),
        gt=timedelta(0),
        description="How long audit records (stream GOALWATCH_AUDIT) are kept; nobody can "
        "delete them sooner. Written like metrics_retention; give every service the same value.",
    )
    audit_trust_forwarded: bool = Field(
        False,
        description="Record the first X-Forwarded-For hop as where a request came from, not "
        "the connecting address: set it only behind a proxy that writes that header itself.",
    )
    audit_publish_timeout: float = Field(
        1.0,
        gt=0,
        description="Seconds to wait for JetStream to store one audit record before counting "
        "it lost (the answer to the request is already sent).",
    )
    consumer_lag_seconds: float = Field(
        10.0,
        gt=0,
        description="How often the service reads its durable consumers' pending and "
        "unacknowledged counts from JetStream for /metrics (each read waits at most this long).",
    )

    @model_validator(mode="after")
    def _one_nats_login(self) -> ServiceSettings:
        logins = [
            name
            for name, given in (
                ("GOALWATCH_NATS_USER", self.nats_user is not None),
                ("GOALWATCH_NATS_CREDS_FILE", self.nats_creds_file is not None),
                ("GOALWATCH_NATS_NKEY_SEED_FILE", self.nats_nkey_seed_file is not None),
            )
            if given
        ]
        if len(logins) > 1:
            raise ValueError(f"set one way to log in to NATS, not {' and '.join(logins)}")
        if (self.nats_user is None) != (self.nats_password is None):
            raise ValueError("GOALWATCH_NATS_USER and GOALWATCH_NATS_PASSWORD go together")
        if (self.nats_tls_cert_file is None) != (self.nats_tls_key_file is None):
            raise ValueError(
                "GOALWATCH_NATS_TLS_CERT_FILE and GOALWATCH_NATS_TLS_KEY_FILE go together"
            )
        return self

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("metrics_retention", "audit_retention", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return duration_setting(value)

    @field_validator("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file")
    @classmethod
    def _tls_needs_rediss(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        url = str(info.data.get("redis_url", ""))
        if value is not None and not url.startswith("rediss://"):
            raise ValueError(
                "a Redis TLS file is set but GOALWATCH_REDIS_URL does not start with "
                "rediss://; write rediss://host:port/0 to connect over TLS"
            )
        if info.field_name == "redis_tls_key_file" and (value is None) != (
            info.data.get("redis_tls_cert_file") is None
        ):
            raise ValueError(
                "set GOALWATCH_REDIS_TLS_CERT_FILE and GOALWATCH_REDIS_TLS_KEY_FILE together "
                "(a client certificate and its key), or neither"
            )
        return value


class StateCheckSettings(ServiceSettings):
    """Settings of a service whose Redis state is checkpointed against a stream
    (:mod:`goalwatch.checkpoints`)."""

    state_check_seconds: float = Field(
        5.0,
        gt=0,
        description="How often, with no messages arriving, to check that Redis did not restart "
        "and lose state that must be replayed from the stream (messages always check first).",
    )


def environment() -> Mapping[str, str]:
    """The process environment, for the few values named indirectly (a routing file's
    ``${VARIABLE}`` references) rather than by a settings field."""
    return os.environ


def settings_or_exit(cls: type[S]) -> S:
    """``cls()`` from the environment, or exit 2 naming each bad variable and what is wrong.

    Values are not echoed: they could be secrets.
    """
    try:
        return cls()
    except ValidationError as exc:
        problems = "\n".join(
            f"  {_variable(error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        print(f"goalwatch: invalid settings in the environment:\n{problems}", file=sys.stderr)
        raise SystemExit(2) from None


def redacted_url(url: str) -> str:
    """``url`` without credentials or query, fit for logs: webhook URLs carry tokens there."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


def _variable(loc: tuple[int | str, ...]) -> str:
    name = "_".join(str(part) for part in loc).upper()
    return name if name.startswith("GOALWATCH_") else f"GOALWATCH_{name}"


def environment_help(cls: type[BaseSettings], *, title: str = "environment variables") -> str:
    """The environment variables ``cls`` reads, each with its meaning and default, as
    plain text for a command's ``--help`` (secrets' defaults are never set, so none shows)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    rows: list[tuple[str, str]] = []
    for name, field in cls.model_fields.items():
        variable = f"{prefix}{name}".upper()
        meaning = (field.description or "").rstrip(".")
        default = field.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            default = None  # a secret's value is never shown
        if default is not None and default != "" and default != []:
            meaning += f" (default {default})"
        rows.append((variable, meaning))
    lines = [f"{title}:"]
    for variable, meaning in rows:
        lines.append(f"  {variable}")
        lines += textwrap.wrap(meaning, width=88, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)
