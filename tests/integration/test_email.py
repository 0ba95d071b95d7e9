"""Alert e-mails through the running services to a real SMTP server (aiosmtpd).

The server speaks STARTTLS with a self-signed certificate made here with the ``openssl``
command, requires it before anything else, and requires AUTH: every test's mail crosses TLS
and a login. It answers by the recipient's address: ``greylist-...`` gets ``451`` at DATA
once per message, then acceptance; ``refuse-...`` gets ``550`` at RCPT.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from nats.js.api import ConsumerConfig, DeliverPolicy

from goalwatch.contracts import subjects
from goalwatch.dev.stack import Stack
from tests.integration.conftest import WebhookReceiver, free_port, stack_of_its_own
from tests.integration.helpers import (
    add_doctor,
    await_drained,
    post_events,
    rework_event,
    unique,
)

pytestmark = pytest.mark.integration

LOGIN, PASSWORD = "goalwatch", "smtp-secret-123"
SENDER = "alerts@goalwatch.test"


@dataclass(frozen=True)
class Mail:
    """One message the server accepted, and how it came."""

    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command."""
    cert, key = directory / "smtp.crt", directory / "smtp.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class MailServer:
    """aiosmtpd on a free port: STARTTLS required, AUTH required; tests wait on what arrives."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.accepted: list[Mail] = []
        self.answered: list[tuple[str, str]] = []  # (Message-ID, reply) of every DATA
        self._greylisted: set[str] = set()
        self._changed = threading.Condition()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.port = free_port()
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            authenticator=self._authenticate,
            auth_required=True,
            auth_require_tls=True,
        )
        self._controller.start()

    @staticmethod
    def _authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (
            LOGIN.encode(),
            PASSWORD.encode(),
        )
        return AuthResult(success=ok, auth_data=auth_data)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("refuse-"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        message_id = str(message["Message-ID"])
        greylist = any(a.startswith("greylist-") for a in envelope.rcpt_tos)
        with self._changed:
            if greylist and message_id not in self._greylisted:
                self._greylisted.add(message_id)
                reply = "451 4.7.1 Greylisted, please try again later"
            else:
                reply = "250 Message accepted for delivery"
                auth = session.auth_data if session.authenticated else None
                self.accepted.append(
                    Mail(
                        envelope_from=str(envelope.mail_from),
                        envelope_to=list(envelope.rcpt_tos),
                        message=message,
                        tls=session.ssl is not None,
                        login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
                    )
                )
            self.answered.append((message_id, reply))
            self._changed.notify_all()
        return reply

    def wait_for(
        self, predicate: Callable[[list[Mail]], bool], timeout: float = 30.0
    ) -> list[Mail]:
        """Block until ``predicate(accepted)`` holds; fail the test after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.accepted), timeout=timeout):
                raise AssertionError(
                    f"smtp: expected mail did not arrive in {timeout} s; got "
                    f"{[(m.envelope_to, m.message['Subject']) for m in self.accepted]}"
                )
            return list(self.accepted)

    def to(self, address: str) -> list[Mail]:
        """Mail accepted for ``address`` so far, in arrival order."""
        with self._changed:
            return [m for m in self.accepted if address in m.envelope_to]

    def close(self) -> None:
        self._controller.stop()


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MailServer, Path]]:
    cert, key = self_signed(tmp_path_factory.mktemp("smtp-tls"))
    server = MailServer(cert, key)
    yield server, cert
    server.close()


@pytest.fixture(scope="module")
def mail_stack(
    tmp_path_factory: pytest.TempPathFactory,
    webhook: WebhookReceiver,
    smtp: tuple[MailServer, Path],
) -> Iterator[Stack]:
    server, cert = smtp
    env = {
        "GOALWATCH_SMTP_HOST": "127.0.0.1",
        "GOALWATCH_SMTP_PORT": str(server.port),
        "GOALWATCH_SMTP_SECURITY": "starttls",
        "GOALWATCH_SMTP_USERNAME": LOGIN,
        "GOALWATCH_SMTP_PASSWORD": PASSWORD,
        "GOALWATCH_SMTP_FROM": f"Goalwatch <{SENDER}>",
        "GOALWATCH_SMTP_CA_FILE": str(cert),
        "GOALWATCH_SMTP_LANGUAGE": "zh",
        # Retries as in production, only faster.
        "GOALWATCH_SMTP_MAX_ATTEMPTS": "3",
        "GOALWATCH_SMTP_BACKOFF": "0.05",
    }
    with stack_of_its_own(tmp_path_factory, webhook, name="email", env=env) as running:
        yield running


def add_people(http: httpx.Client, goals_url: str, *, head_email: str) -> tuple[str, str]:
    """A doctor without an address and their head with ``head_email``: (doctor, head)."""
    head, doctor = unique("head"), unique("doctor")
    people = [
        {"id": head, "name": f"Head {head}", "email": head_email},
        {"id": doctor, "name": f"Dr {doctor}", "manager_id": head, "department": "radiology"},
    ]
    response = http.post(f"{goals_url}/v1/people", json=people)
    assert response.status_code == 200, response.text
    return doctor, head


async def _first(
    nats_url: str, subject: str, stream: str, match: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first message on ``subject`` for which ``match`` holds."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(
            subject, stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        while True:
            msg = await sub.next_msg(timeout=30)
            doc: dict[str, Any] = json.loads(msg.data)
            if match(doc):
                return doc
    finally:
        await nc.close()


def email_outcome(stack: Stack, subject_id: str) -> dict[str, Any]:
    """The notifier's record of the e-mail delivery of the alert about ``subject_id``."""
    return asyncio.run(
        _first(
            stack.settings.nats_url,
            subjects.NOTIFICATIONS_SENT,
            subjects.STREAM_NOTIFICATIONS,
            lambda n: (
                n["channel"] == "email" and any(r["id"] == subject_id for r in n["recipients"])
            ),
        )
    )


def body(mail: Mail, subtype: str) -> str:
    part = mail.message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def test_an_alert_and_its_resolution_arrive_by_mail_over_starttls(
    mail_stack: Stack, smtp: tuple[MailServer, Path]
) -> None:
    server, _ = smtp
    with mail_stack.client(timeout=10.0) as http:
        doctor, head = add_doctor(http, mail_stack.settings.url("goals"))
        address = f"{head}@example.org"
        events = [rework_event(doctor, d, v) for d, v in ((1, 0.09), (2, 0.11), (3, 0.12))]
        post_events(http, mail_stack.settings.url("ingestion"), events)
        server.wait_for(lambda mails: any(address in m.envelope_to for m in mails))

        (fired,) = server.to(address)
        # Only the head has an address; the doctor is skipped, not refused.
        assert fired.envelope_to == [address]
        assert fired.envelope_from == SENDER
        assert (fired.tls, fired.login) == (True, LOGIN)
        message = fired.message
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert message["Subject"] == (
            f"【警告】Report rework rate above 8% on 3 consecutive days — Dr {doctor}"
        )
        assert message["To"] == f"Head {head} <{address}>"
        assert message["Message-ID"].endswith("@goalwatch.test>")
        text, html = body(fired, "plain"), body(fired, "html")
        assert f"Dr {doctor}: report rework rate 12% is above 8% for 3 consecutive days" in text
        assert "近期数值" in text and "2026-11-03 18:00 UTC   0.12" in text
        assert '<td>2026-11-03 18:00 UTC</td><td align="right">0.12</td>' in html

        outcome = email_outcome(mail_stack, doctor)
        assert (outcome["status"], outcome["attempts"]) == ("sent", 1)

        post_events(http, mail_stack.settings.url("ingestion"), [rework_event(doctor, 4, 0.05)])
        server.wait_for(lambda mails: sum(address in m.envelope_to for m in mails) == 2)
        resolved = server.to(address)[1].message
        assert resolved["Subject"].startswith("【已恢复】")
        # Threaded under the firing.
        assert resolved["In-Reply-To"] == message["Message-ID"]
        assert resolved["References"] == message["Message-ID"]
        assert "此告警已结束" in body(server.to(address)[1], "plain")


def test_a_greylisted_mail_is_sent_again_and_arrives_once(
    mail_stack: Stack, smtp: tuple[MailServer, Path]
) -> None:
    server, _ = smtp
    with mail_stack.client(timeout=10.0) as http:
        address = f"greylist-{unique('head')}@example.org"
        doctor, _ = add_people(http, mail_stack.settings.url("goals"), head_email=address)
        post_events(
            http,
            mail_stack.settings.url("ingestion"),
            [rework_event(doctor, d, 0.2) for d in (1, 2, 3)],
        )
        server.wait_for(lambda mails: any(address in m.envelope_to for m in mails))
        await_drained(mail_stack.settings.nats_url)

        (mail,) = server.to(address)
        answers = [reply[:3] for mid, reply in server.answered if mid == mail.message["Message-ID"]]
        # The same Message-ID both times: a receiver could tell the second from a new mail.
        assert answers == ["451", "250"]
        outcome = email_outcome(mail_stack, doctor)
        assert (outcome["status"], outcome["attempts"]) == ("sent", 2)


def test_a_refused_mail_is_dead_lettered(mail_stack: Stack, smtp: tuple[MailServer, Path]) -> None:
    server, _ = smtp
    with mail_stack.client(timeout=10.0) as http:
        address = f"refuse-{unique('head')}@example.org"
        doctor, _ = add_people(http, mail_stack.settings.url("goals"), head_email=address)
        post_events(
            http,
            mail_stack.settings.url("ingestion"),
            [rework_event(doctor, d, 0.2) for d in (1, 2, 3)],
        )
        letter = asyncio.run(
            _first(
                mail_stack.settings.nats_url,
                subjects.DEADLETTER_ALERTS,
                subjects.STREAM_DEADLETTER,
                lambda letter: doctor in letter["payload"],
            )
        )
        assert letter["origin_subject"] == subjects.ALERTS_FIRED
        assert letter["reason"].startswith("email delivery failed after 1 attempt(s)")
        assert f"{address}: 550 5.1.1 No such user here" in letter["reason"]

        outcome = email_outcome(mail_stack, doctor)
        # A 5xx is not retried.
        assert (outcome["status"], outcome["attempts"]) == ("failed", 1)
        assert server.to(address) == []
