"""NATS logins and TLS from settings: one way to log in, turned into connect options in one
place, the password never shown."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from goalwatch.connections import NatsAccess, nats_access, nats_options, nats_security
from goalwatch.messaging import new_broker
from goalwatch.settings import ServiceSettings, settings_or_exit


def test_a_user_and_password_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALWATCH_NATS_USER", "evaluator")
    monkeypatch.setenv("GOALWATCH_NATS_PASSWORD", "s3cret-value")
    access = nats_access(ServiceSettings())
    assert access.user == "evaluator"
    assert "s3cret-value" not in repr(access) and "s3cret-value" not in access.login
    options = nats_options(access)
    assert options["user"] == "evaluator" and options["password"] == "s3cret-value"
    assert options["servers"] == ["nats://127.0.0.1:4222"]


def test_a_plain_url_connects_as_before() -> None:
    assert nats_options("nats://u:p@10.0.0.5:4222") == {"servers": ["nats://u:p@10.0.0.5:4222"]}
    assert nats_security("nats://10.0.0.5:4222") is None


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"GOALWATCH_NATS_USER": "goals"}, "GOALWATCH_NATS_PASSWORD go together"),
        ({"GOALWATCH_NATS_PASSWORD": "x"}, "GOALWATCH_NATS_PASSWORD go together"),
        (
            {"GOALWATCH_NATS_USER": "goals", "GOALWATCH_NATS_PASSWORD": "x",
             "GOALWATCH_NATS_CREDS_FILE": "/run/goals.creds"},
            "not GOALWATCH_NATS_USER and GOALWATCH_NATS_CREDS_FILE",
        ),
        ({"GOALWATCH_NATS_TLS_CERT_FILE": "/tls/tls.crt"}, "GOALWATCH_NATS_TLS_KEY_FILE go together"),
    ],
)  # fmt: skip
def test_a_half_or_double_login_stops_start_up(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    named: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        settings_or_exit(ServiceSettings)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "x\n" not in err


def test_tls_files_make_a_verifying_context(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(_ca_pem())
    security = nats_security(NatsAccess(url="tls://nats:4222", tls_ca_file=ca))
    assert security is not None and security.ssl_context is not None
    assert security.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert nats_options(NatsAccess(url="tls://nats:4222", tls_ca_file=ca))["tls"] is not None


def test_the_broker_logs_in_with_the_settings() -> None:
    access = NatsAccess(url="nats://n:4222", user="notifier", password=SecretStr("pw"))
    broker = new_broker(access, name="notifier")
    # What the broker will hand nats-py when it connects (FastStream keeps it privately).
    assert broker._connection_kwargs["user"] == "notifier"
    assert broker._connection_kwargs["password"] == "pw"


def _ca_pem() -> str:
    """A self-signed certificate: any certificate loads as a CA bundle."""
    import subprocess

    done = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "/dev/null",
         "-subj", "/CN=test-ca", "-days", "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout
