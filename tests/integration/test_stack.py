"""`goalwatch up`'s supervisor: clear errors for taken ports, data kept across restarts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jwt
import pytest

from goalwatch.auth.client_credentials import ClientCredentials
from goalwatch.dev.stack import Stack, StackError, StackSettings
from tests.integration.conftest import REPO
from tests.integration.helpers import (
    add_doctor,
    await_notification,
    inbox,
    post_events,
    rework_event,
)

pytestmark = pytest.mark.integration


def _settings(state_dir: Path) -> StackSettings:
    return StackSettings.on_free_ports(state_dir, REPO / "rules")


def test_a_taken_port_names_the_variable_to_set(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.redis_port))
        holder.listen()
        with pytest.raises(StackError, match="GOALWATCH_REDIS_PORT=<port>"):
            Stack(settings=settings).start()


def test_a_second_start_finds_the_data_of_the_first(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = Stack(settings=settings)
    first.start()
    try:
        with first.client(timeout=10.0) as http:
            doctor, head = add_doctor(http, settings.url("goals"))
            post_events(
                http, settings.url("ingestion"), [rework_event(doctor, d, 0.5) for d in (1, 2, 3)]
            )
            # The notifier publishes what it delivered; wait for that before stopping.
            await_notification(settings.nats_url, subject_id=doctor)
            assert len(inbox(http, settings.url("notifier"), recipient=head)) == 1
    finally:
        first.stop()

    second = Stack(settings=settings)
    second.start()
    try:
        with second.client(timeout=10.0) as http:
            person = http.get(f"{settings.url('goals')}/v1/people/{doctor}").json()
            assert person["managers"] == [head]
            assert [a["state"] for a in inbox(http, settings.url("notifier"), recipient=head)] == [
                "firing"
            ]
            # A resend after the restart is still recognised: JetStream kept its de-dup window.
            again = http.post(
                f"{settings.url('ingestion')}/v1/events", json=rework_event(doctor, 3, 0.5)
            )
            assert again.json()["duplicated"] == 1
    finally:
        second.stop()


def test_goalwatch_up_runs_the_demo_shows_its_alert_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "state")
    env = {
        **os.environ,
        "GOALWATCH_STATE_DIR": str(settings.state_dir),
        "GOALWATCH_RULES_DIR": str(settings.rules_dir),
        "GOALWATCH_WEBHOOK_URL": "",  # whatever the developer's shell says: no webhook
        **{
            f"GOALWATCH_{name.upper()}_PORT": str(settings.port(name))
            for name in ("nats", "redis", "ingestion", "goals", "evaluator", "notifier", "idp")
        },
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "goalwatch.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    seen: list[str] = []
    # If the alert never shows, end `up` so the read below returns and the asserts explain.
    deadline = threading.Timer(90, up.kill)
    deadline.start()
    try:
        # The demo's alerts, in any order: Li Na's rework rate, Wu Hao's burst, and the
        # invalid store expansion's impact on the goals resting on it.
        expected = {
            "[warning] Dr. Li Na: report rework rate 12% is above 8%",
            "[critical] Wu Hao: 30 customer visits logged within 2m",
            "[warning] Store expansion 20% is invalid. Your goals resting on it (1): Report "
            "imaging of every new store within 24 h",
        }
        for line in up.stdout:  # ends if `up` exits early; the asserts below then say why
            seen.append(line)
            fired = [line for line in seen if line.startswith("alert FIRING")]
            if all(any(text in line for line in fired) for text in expected):
                break
        loaded = [line for line in seen if "demo company loaded" in line]
        # 6 rework rates and 32 visit records.
        assert loaded and "7 goals; 38 events accepted" in loaded[0], seen
        assert any(settings.url("notifier") in line for line in seen), seen
        assert any(line.split()[:2] == ["webhook", "none"] for line in seen), seen
        fired = [line for line in seen if line.startswith("alert FIRING")]
        assert all(any(text in line for line in fired) for text in expected), seen
    finally:
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=60)
        deadline.cancel()
    assert up.returncode == 0, rest
    assert rest.rstrip().endswith("goalwatch: stopped."), rest


def test_a_body_that_stops_arriving_is_timed_out(stack: Stack) -> None:
    """The stack runs with a 2 s body timeout; a client that sends less than it promised
    gets a 408 instead of holding the connection open."""

    port = stack.settings.port("goals")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/people HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{"
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 2 s" in answer


def test_a_foreign_host_is_refused_by_every_service(stack: Stack) -> None:
    with stack.client(timeout=10) as client:
        for name in ("ingestion", "goals", "evaluator", "notifier"):
            url = f"{stack.settings.url(name)}/healthz"
            assert client.get(url).status_code == 200, name
            refused = client.get(url, headers={"host": "rebound.example"})
            assert refused.status_code == 400, name
            assert refused.headers["content-type"] == "application/problem+json"


def test_the_stack_signs_people_and_clients_in(stack: Stack) -> None:
    """The provider starts with the stack; its tokens verify as the services will verify them
    (the JWKS fetched by PyJWKClient, issuer and audience checked)."""
    issuer = stack.settings.idp_url
    jwks = jwt.PyJWKClient(f"{issuer}/jwks")

    def claims(token: str) -> dict[str, Any]:
        key = jwks.get_signing_key_from_jwt(token)
        checked: dict[str, Any] = jwt.decode(
            token, key, algorithms=["RS256"], audience="goalwatch", issuer=issuer
        )
        return checked

    person = stack.token("zhang-wei")
    assert claims(person)["preferred_username"] == "zhang-wei"
    assert stack.token("zhang-wei") == person  # kept until near expiry
    assert stack.auth_headers("zhang-wei") == {"Authorization": f"Bearer {person}"}
    assert claims(stack.token())["roles"] == ["hr_admin", "operator", "publisher"]
    assert claims(stack.token(client="crm"))["goalwatch_sources"] == ["crm"]

    # Each service has its own client, and its secret gets it a token.
    environ = dict(
        line.split("=", 1)
        for line in Path(f"/proc/{stack.pid('goals')}/environ").read_text().split("\0")
        if "=" in line
    )
    assert environ["GOALWATCH_OIDC_ISSUER"] == issuer
    assert environ["GOALWATCH_OIDC_AUDIENCE"] == "goalwatch"
    assert environ["GOALWATCH_OIDC_CLIENT_ID"] == "goalwatch-goals"
    auth = ClientCredentials(issuer, "goalwatch-goals", environ["GOALWATCH_OIDC_CLIENT_SECRET"])
    with stack.client(auth=auth, timeout=10) as http:
        answer = http.get(f"{stack.settings.url('goals')}/healthz")
    assert answer.status_code == 200
    assert claims(answer.request.headers["authorization"].removeprefix("Bearer "))["roles"] == [
        "service"
    ]
