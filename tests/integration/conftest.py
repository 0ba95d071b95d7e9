"""The whole installation, for real: nats-server, redis-server and four service processes.

One stack per test session (start-up takes seconds); tests isolate themselves by using
their own subject ids. A real HTTP server in this process stands in for a webhook receiver.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from goalwatch.dev.catalogues import entry, write_catalogue
from goalwatch.dev.stack import Stack, StackSettings
from goalwatch.dev.stack import free_port as free_port  # for the tests that import it here

REPO = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "integration-secret"
# Signs the session stack's acknowledgement links (tests/integration/test_inbox_episodes.py).
LINK_SECRET = "integration-link-secret-of-forty-characters"
# How long services keep goals' answer about an API key, in the session stack.
API_KEY_CACHE_TTL = 1
# The receiver answers 503 to alerts about subjects with this prefix: a receiver that is down.
FAILING_PREFIX = "unreachable-"


@dataclass(frozen=True)
class WebhookCall:
    """One request the webhook receiver got, and the status it answered (or will answer)."""

    headers: dict[str, str]
    body: bytes
    status: int = 200

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def digest(self) -> bool:
        """Whether the body is an AlertDigest (several alerts) rather than one alert."""
        return self.headers.get("x-goalwatch-event") == "digest"

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The alerts the request carries: one, or a digest's."""
        body = self.json
        return list(body["alerts"]) if self.digest else [body]

    @property
    def subjects(self) -> set[str]:
        """The subjects of the alerts it carries."""
        return {str(alert["subject"]["id"]) for alert in self.alerts}


class WebhookReceiver:
    """A real HTTP server recording every POST; tests wait on what arrives.

    It answers 503 to alerts about subjects named with :data:`FAILING_PREFIX`, 500 to those
    whose subject id is in :attr:`failing` (an outage a test ends by removing the id), and
    holds the request of a subject passed to :meth:`hold` unanswered until it is released.
    """

    def __init__(self) -> None:
        self.deliveries: list[WebhookCall] = []
        self.failing: set[str] = set()
        self._held: dict[str, threading.Event] = {}
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    document = json.loads(body)
                    # A digest is answered as its first alert's subject would be.
                    first = document["alerts"][0] if "alerts" in document else document
                    subject = str(first["subject"]["id"])
                except ValueError:  # cut short: the sender was killed while it sent
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._changed:
                    held = receiver._held.get(subject)
                    if held is not None or subject in receiver.failing:
                        status = 500
                    else:
                        status = 503 if subject.startswith(FAILING_PREFIX) else 200
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.deliveries.append(WebhookCall(headers, body, status))
                    receiver._changed.notify_all()
                if held is not None:
                    held.wait(timeout=60)
                try:
                    self.send_response(status)
                    self.end_headers()
                except OSError:  # the sender is gone (killed while it waited)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(
        self, predicate: Callable[[list[WebhookCall]], bool], timeout: float = 30.0
    ) -> list[WebhookCall]:
        """Block until ``predicate(deliveries)`` holds; fail the test after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.deliveries), timeout=timeout):
                raise AssertionError(
                    f"webhook: expected deliveries did not arrive in {timeout} s; got "
                    f"{[d.json for d in self.deliveries]}"
                )
            return list(self.deliveries)

    def hold(self, subject_id: str) -> threading.Event:
        """Leave requests about ``subject_id`` unanswered until the returned event is set
        (they are then answered 500, to a sender that may have gone)."""
        release = threading.Event()
        with self._changed:
            self._held[subject_id] = release
        return release

    def release(self, subject_id: str) -> None:
        """Answer held requests about ``subject_id``; later ones are answered normally."""
        with self._changed:
            release = self._held.pop(subject_id, None)
        if release is not None:
            release.set()

    def about(self, subject_id: str) -> list[WebhookCall]:
        """Requests about one subject so far, in arrival order."""
        with self._changed:
            return [d for d in self.deliveries if subject_id in d.subjects]

    def for_fingerprint(self, fingerprint: str) -> list[dict[str, Any]]:
        """Payloads delivered so far for one alert."""
        with self._changed:
            return [
                alert
                for d in self.deliveries
                for alert in d.alerts
                if alert.get("fingerprint") == fingerprint
            ]

    def close(self) -> None:
        with self._changed:
            held, self._held = list(self._held.values()), {}
        for release in held:
            release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


# An overdue rule whose deadline passes while a test waits: a ward round logged, then
# nothing for a few seconds. Beside the shipped rules in the stack's rules folder.
ABSENCE_METRIC = "ward_round_logged"
ABSENCE_SECONDS = 3
ABSENCE_RULE = f"""\
id: ward-round-missing
name: No ward round logged for {ABSENCE_SECONDS} seconds
kind: overdue
metric: {ABSENCE_METRIC}
condition: {{absent_for: {ABSENCE_SECONDS}s}}
severity: warning
notify: [subject, manager]
message: "{{subject_name}}: no ward round since {{last_seen:%H:%M:%S}}"
"""


# A threshold rule with two thresholds: occupancy outside 60-95% on two readings running.
RANGE_RULE = """\
id: ward-occupancy-off-range
name: Ward occupancy outside 60-95%
kind: threshold
metric: ward_occupancy
condition: {op: outside, value: [0.6, 0.95], consecutive: 2}
severity: warning
notify: [subject]
message: "{subject_name}: occupancy {value:.0%}, outside {low:.0%}-{high:.0%}"
"""


# Threshold rules over time, with durations short enough to wait for: hysteresis with an
# escalation 3 s into the breach, and a condition that must hold 3 s before it fires.
OVER_TIME_RULES = {
    "ward-wait-high.yaml": """\
id: ward-wait-high
name: Ward waiting share above 8%
kind: threshold
metric: ward_wait_share
condition: {op: ">", value: 0.08, resolve_at: 0.07}
severity: warning
escalate:
  - {after: 3s, severity: critical}
notify: [subject]
message: "{subject_name}: waiting share {value:.1%} ({severity})"
""",
    "ward-queue-long.yaml": """\
id: ward-queue-long
name: Ward queue longer than 10 for 3 s
kind: threshold
metric: ward_queue_length
condition: {op: ">", value: 10, for: 3s}
severity: warning
notify: [subject]
message: "{subject_name}: {value:g} waiting"
""",
    # Two calendar days in a row (Shanghai days) whose average is below 3.5.
    "ward-satisfaction-low.yaml": """\
id: ward-satisfaction-low
name: Ward satisfaction below 3.5 two days running
kind: threshold
metric: ward_satisfaction
condition: {op: "<", value: 3.5, consecutive: 2, per: day, aggregate: avg,
            time_zone: Asia/Shanghai}
severity: warning
notify: [subject]
message: "{subject_name}: satisfaction {value:.2f}"
""",
    # Admissions down 30% or more, week on week.
    "ward-admissions-down.yaml": """\
id: ward-admissions-down
name: Ward admissions down 30% week on week
kind: threshold
metric: ward_admissions
condition: {op: "<=", value: -0.3, window: 7d, aggregate: sum, compare: previous}
severity: info
notify: [subject]
message: "{subject_name}: admissions {value:+.0%} on the week before"
""",
}


# Fraud rules with a quiet time short enough to wait for its timer.
FRAUD_RULES = {
    "claims-duplicate.yaml": """\
id: claims-duplicate
name: The same claim twice
kind: fraud
metric: claim_filed
condition: {pattern: duplicate, fields: [value, labels.patient], within: 1h, quiet: 2s}
severity: critical
notify: [manager]
message: "{subject_name}: claim of {value:g} filed again ({measure:g} copy)"
""",
    # Working hours on each subject's own clock (the rule has no time zone).
    "records-signed-at-night.yaml": """\
id: records-signed-at-night
name: Records signed outside working hours
kind: fraud
metric: record_signed
condition: {pattern: off_hours, count: 2, within: 1d}
severity: warning
notify: [manager]
message: "{subject_name}: {measure:g} records signed outside working hours"
""",
    "claims-outlier.yaml": """\
id: claims-outlier
name: Claims far above the ward's
kind: fraud
metric: claims_per_day
condition: {pattern: outlier, peers: {label: ward}, z: 3, min_group: 4, within: 7d}
severity: warning
notify: [manager]
message: "{subject_name}: {value:g} claims a day, {measure:.1f} deviations from the ward"
""",
}


# A source being onboarded: the session stack accepts its uncatalogued metrics and labels.
ONBOARDING_SOURCE = "onboarding-test"

# The metrics of the test rules above, catalogued beside the shipped ones: the test stacks'
# ingestion enforces the catalogue as any other does.
TEST_METRICS = {
    ABSENCE_METRIC: entry(description="A ward round was logged.", sources=["his"]),
    "ward_occupancy": entry(
        description="Share of a ward's beds in use.", sources=["his"], unit="ratio", low=0, high=1
    ),
    "ward_wait_share": entry(
        description="Share of patients waiting.", sources=["his"], unit="ratio", low=0, high=1
    ),
    "ward_queue_length": entry(description="Patients waiting.", sources=["his"], low=0),
    "ward_satisfaction": entry(
        description="Patient satisfaction score.", sources=["his"], unit="score", low=1, high=5
    ),
    "ward_admissions": entry(description="Admissions that day.", sources=["his"], low=0),
    "claim_filed": entry(
        description="A claim filed, by amount.",
        sources=["crm"],
        unit="currency",
        low=0,
        labels={"patient": None},
    ),
    "record_signed": entry(description="A record signed.", sources=["crm"], low=0),
    # Rules made over the API watch these (tests/integration/test_rules_api.py).
    "ward_noise_level": entry(description="Noise on a ward, in dB.", sources=["his"], low=0),
    "ward_falls": entry(description="Patient falls on a ward in a day.", sources=["his"], low=0),
    "ward_call_bells": entry(description="Call bells unanswered.", sources=["his"], low=0),
    "claims_per_day": entry(
        description="Claims filed in a day.", sources=["crm"], low=0, labels={"ward": None}
    ),
}


def catalogue_with_tests(path: Path) -> Path:
    """The shipped catalogue and :data:`TEST_METRICS`, written to ``path``."""
    return write_catalogue(path, TEST_METRICS, base=REPO / "catalogue" / "metrics.yaml")


def rules_with_absence(directory: Path) -> Path:
    """A rules folder: the shipped rules and the test rules above."""
    directory.mkdir(parents=True, exist_ok=True)
    for rule in (REPO / "rules").glob("*.yaml"):
        (directory / rule.name).write_text(rule.read_text(encoding="utf-8"), encoding="utf-8")
    # The shipped rules' tests beside them, as in the repository (the rule editor offers them).
    shutil.copytree(REPO / "rules" / "tests", directory / "tests", dirs_exist_ok=True)
    (directory / "ward-round-missing.yaml").write_text(ABSENCE_RULE, encoding="utf-8")
    (directory / "ward-occupancy-off-range.yaml").write_text(RANGE_RULE, encoding="utf-8")
    for name, text in {**OVER_TIME_RULES, **FRAUD_RULES}.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


@contextmanager
def stack_of_its_own(
    tmp_path_factory: pytest.TempPathFactory,
    webhook: WebhookReceiver,
    *,
    name: str,
    env: Mapping[str, str] | None = None,
    before_services: Callable[[Stack], None] | None = None,
) -> Iterator[Stack]:
    """A stack for one test module (one that kills processes, or configures channels of its
    own through ``env``), posting to ``webhook``; ``before_services`` is given the stack once
    NATS and Redis run, before any service starts."""
    rules = rules_with_absence(tmp_path_factory.mktemp(f"{name}-rules"))
    catalogue = catalogue_with_tests(tmp_path_factory.mktemp(f"{name}-catalogue") / "metrics.yaml")
    running = Stack(
        settings=StackSettings.on_free_ports(
            tmp_path_factory.mktemp(f"{name}-state"), rules, catalogue
        ),
        env={
            "GOALWATCH_WEBHOOK_URL": webhook.url,
            "GOALWATCH_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GOALWATCH_LOG_LEVEL": "DEBUG",
            # The tests make people of their own and act as them.
            "GOALWATCH_IDP_ANY_PERSON": "true",
            **(env or {}),
        },
    )
    running.start(
        before_services=None if before_services is None else lambda: before_services(running)
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> StackSettings:
    rules = rules_with_absence(tmp_path_factory.mktemp("rules"))
    catalogue = catalogue_with_tests(tmp_path_factory.mktemp("catalogue") / "metrics.yaml")
    return StackSettings.on_free_ports(tmp_path_factory.mktemp("state"), rules, catalogue)


@pytest.fixture(scope="session")
def stack(stack_settings: StackSettings, webhook: WebhookReceiver) -> Iterator[Stack]:
    running = Stack(
        settings=stack_settings,
        env={
            "GOALWATCH_WEBHOOK_URL": webhook.url,
            "GOALWATCH_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GOALWATCH_LOG_LEVEL": "DEBUG",
            # The tests make people of their own and act as them.
            "GOALWATCH_IDP_ANY_PERSON": "true",
            # Retries as in production, only faster: 3 attempts, 50 ms apart at first.
            "GOALWATCH_WEBHOOK_MAX_ATTEMPTS": "3",
            "GOALWATCH_WEBHOOK_BACKOFF": "0.05",
            # A client that stops sending its body is answered 408 after this long.
            "GOALWATCH_HTTP_BODY_TIMEOUT": "2",
            # Only this source's uncatalogued metrics are accepted (tests/integration/test_catalogue.py).
            "GOALWATCH_INGEST_ONBOARDING_SOURCES": ONBOARDING_SOURCE,
            # Every firing message carries an acknowledgement link to this stack's notifier.
            "GOALWATCH_PUBLIC_URL": stack_settings.url("notifier"),
            "GOALWATCH_LINK_SECRET": LINK_SECRET,
            # A revoked API key stops working within this many seconds on the services that
            # ask goals (tests/integration/test_api_keys.py waits for it).
            "GOALWATCH_API_KEY_CACHE_TTL": str(API_KEY_CACHE_TTL),
            # Likewise a role granted or revoked in goalwatch (tests/integration/test_role_grants.py).
            "GOALWATCH_ROLE_GRANT_CACHE_TTL": str(API_KEY_CACHE_TTL),
        },
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()
