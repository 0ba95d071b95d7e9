"""The evaluator without servers: events in, alerts published, and its HTTP API."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from goalwatch.contracts import AlertFired, AlertResolved, MetricRecorded, subjects
from goalwatch.rules import evaluate, load_rules, metric_rules
from goalwatch.rules.engine import RuleEngine
from goalwatch.rules.runner import MemoryStreaks as KernelStreaks
from goalwatch.rules.spec import RuleSpec
from goalwatch.rules.threshold import Decision, Policy, StreakState, TimerJudge
from goalwatch.rules.transitions import Transition, fingerprint
from services.evaluator.app import EvaluatorSettings, create_app
from services.evaluator.evaluation import Evaluator
from services.evaluator.streaks import Applied, Observation, timer_cause
from tests.unit.signed_in import signed_in

REPO = Path(__file__).resolve().parents[2]
DAY0 = datetime(2026, 11, 1, 18, tzinfo=UTC)


class MemoryStreaks:
    """The StreakStore's contract in memory: the kernel's dict store, plus replays."""

    def __init__(self) -> None:
        self.store = KernelStreaks()
        self.caused: dict[tuple[str, str], Transition | None] = {}
        self.published: set[tuple[str, str]] = set()
        self.confirmations: list[list[tuple[str, str]]] = []

    async def observe(
        self,
        subject: str,
        metric: str,
        observations: Sequence[Observation],
        *,
        labels: Mapping[str, str],
    ) -> list[Applied]:
        return [self._observe(o, labels) for o in observations]

    def _observe(self, o: Observation, labels: Mapping[str, str]) -> Applied:
        return self._apply(
            o.fp,
            o.point.event_id,
            lambda: self.store.observe(o.fp, o.point, o.policy, labels=labels, judge=o.judge),
        )

    async def due(
        self,
        subject: str,
        metric: str,
        fp: str,
        at: datetime,
        policy: Policy,
        *,
        judge: TimerJudge | None = None,
    ) -> Applied:
        return self._apply(fp, timer_cause(at), lambda: self.store.due(fp, at, policy, judge=judge))

    def _apply(self, fp: str, cause: str, decide: Callable[[], Decision]) -> Applied:
        key = (fp, cause)
        state = self.store.states.get(fp, StreakState())
        if key in self.caused:
            earlier = self.caused[key]
            if earlier is None or key in self.published:
                return Applied(None, state.armed, state, cause, fp)
            replay = dataclasses.replace(earlier, replayed=True)
            return Applied(replay, state.armed, state, cause, fp)
        decision = decide()
        self.caused[key] = decision.transition
        return Applied(
            decision.transition, decision.arm, decision.state, cause, fp, decision.revised
        )

    async def mark_published(self, subject: str, metric: str, published: Sequence[Applied]) -> None:
        if published:
            self.confirmations.append([(a.fp, a.cause) for a in published])
        self.published.update((a.fp, a.cause) for a in published)


class Names:
    """Names as the goals service would give them: known for some subjects only."""

    def __init__(self, **names: str) -> None:
        self.names = names

    async def name_of(self, *, subject: str) -> str:
        return self.names.get(subject, subject)


class Published:
    def __init__(self) -> None:
        self.messages: list[tuple[AlertFired | AlertResolved, str, str]] = []
        self.fail_next = False

    async def __call__(self, alert: AlertFired | AlertResolved, subject: str, msg_id: str) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("NATS is down")
        self.messages.append((alert, subject, msg_id))


def rework(day: int, value: float, subject: str = "emp-1042", **labels: str) -> MetricRecorded:
    return MetricRecorded(
        id=f"{subject}-{day}",
        metric="report_rework_rate",
        value=value,
        time=DAY0 + timedelta(days=day),
        subject=subject,
        source="his",
        labels=labels or {"department": "radiology"},
    )


@pytest.fixture
def setup() -> tuple[Evaluator, Published]:
    rules = metric_rules(load_rules(REPO / "rules"))
    published = Published()
    evaluator = Evaluator(
        engine=RuleEngine(rules), streaks=MemoryStreaks(), publish=published, names=Names()
    )
    return evaluator, published


async def test_shipped_rule_fires_once_with_history_then_resolves(
    setup: tuple[Evaluator, Published],
) -> None:
    evaluator, published = setup
    for day, value in enumerate([0.09, 0.10, 0.11, 0.12]):
        await evaluator.handle(rework(day, value))
    [(fired, subject, msg_id)] = published.messages
    fp = fingerprint("report-rework-rate-high", "emp-1042", "report_rework_rate")
    assert subject == subjects.ALERTS_FIRED
    assert isinstance(fired, AlertFired)
    assert msg_id == f"{fp}:fired:{DAY0.isoformat()}"
    assert fired.fingerprint == fp
    assert fired.event_id == "emp-1042-2"
    assert fired.started_at == DAY0
    assert fired.notify == ["subject", "manager"]
    assert fired.severity == "warning"
    assert fired.kind == "threshold"
    assert fired.subject_name == "emp-1042"  # the directory does not know them
    assert [(o.event_id, o.value) for o in fired.history] == [
        ("emp-1042-0", 0.09),
        ("emp-1042-1", 0.10),
        ("emp-1042-2", 0.11),
    ]
    assert fired.message.startswith("emp-1042: report rework rate 11% is above 8% for 3")
    assert fired.message.endswith("for 3 consecutive days")

    await evaluator.handle(rework(4, 0.05))
    resolved, subject, msg_id = published.messages[-1]
    assert isinstance(resolved, AlertResolved)
    assert subject == subjects.ALERTS_RESOLVED
    assert msg_id == f"{fp}:resolved:{DAY0.isoformat()}"
    assert (resolved.fingerprint, resolved.event_id, resolved.value) == (fp, "emp-1042-4", 0.05)
    assert len(published.messages) == 2


async def test_a_backfilled_day_completing_the_streak_reports_the_latest_value(
    setup: tuple[Evaluator, Published],
) -> None:
    evaluator, published = setup
    for day, value in [(2, 0.13), (0, 0.11), (1, 0.12)]:
        await evaluator.handle(rework(day, value))
    [(fired, _, _)] = published.messages
    assert isinstance(fired, AlertFired)
    assert fired.event_id == "emp-1042-1"  # the late day completed the streak ...
    assert fired.value == 0.13  # ... but the alert shows the newest day's figure
    assert fired.message.startswith("emp-1042: report rework rate 13% ")


async def test_messages_name_the_subject_when_goals_knows_them() -> None:
    rules = metric_rules(load_rules(REPO / "rules"))
    published = Published()
    evaluator = Evaluator(
        engine=RuleEngine(rules),
        streaks=MemoryStreaks(),
        publish=published,
        names=Names(**{"emp-1042": "Dr. Li Na"}),
    )
    for day, value in enumerate([0.2, 0.2, 0.2, 0.01]):
        await evaluator.handle(rework(day, value))
    fired, resolved = (alert for alert, _, _ in published.messages)
    assert fired.subject_name == resolved.subject_name == "Dr. Li Na"
    assert fired.message.startswith("Dr. Li Na: report rework rate 20% is above 8%")
    assert resolved.message == "Dr. Li Na: report rework rate back to 1%, within 8%"


async def test_without_a_resolved_message_a_standard_sentence_is_sent() -> None:
    rules = [
        rule.model_copy(update={"resolved_message": None})
        for rule in metric_rules(load_rules(REPO / "rules"))
    ]
    published = Published()
    evaluator = Evaluator(
        engine=RuleEngine(rules), streaks=MemoryStreaks(), publish=published, names=Names()
    )
    for day, value in enumerate([0.2, 0.2, 0.2, 0.01]):
        await evaluator.handle(rework(day, value))
    resolved = published.messages[-1][0]
    assert resolved.message == (
        "Resolved: Report rework rate above 8% on 3 consecutive days — emp-1042: "
        "report_rework_rate is 0.01, no longer > 0.08"
    )


async def test_two_over_one_under_two_over_publishes_nothing(
    setup: tuple[Evaluator, Published],
) -> None:
    evaluator, published = setup
    for day, value in enumerate([0.09, 0.10, 0.02, 0.11, 0.12]):
        await evaluator.handle(rework(day, value))
    assert published.messages == []


class SlowClearStreaks(MemoryStreaks):
    """Like MemoryStreaks, but recording a non-breaching observation is slow."""

    async def observe(
        self,
        subject: str,
        metric: str,
        observations: Sequence[Observation],
        *,
        labels: Mapping[str, str],
    ) -> list[Applied]:
        if not all(o.point.breach for o in observations):
            for _ in range(10):  # let every other task run meanwhile
                await asyncio.sleep(0)
        return await super().observe(subject, metric, observations, labels=labels)


async def test_a_batch_keeps_each_subjects_order_so_two_one_two_does_not_fire() -> None:
    rules = metric_rules(load_rules(REPO / "rules"))
    published = Published()
    evaluator = Evaluator(
        engine=RuleEngine(rules), streaks=SlowClearStreaks(), publish=published, names=Names()
    )
    late = [rework(day, value, subject="b") for day, value in enumerate([0.2, 0.2, 0.02, 0.2, 0.2])]
    other = [rework(day, 0.3, subject="a") for day in range(3)]
    batch = [e for pair in zip(late, other, strict=False) for e in pair] + late[3:]
    await evaluator.handle_batch(batch)
    assert [alert.subject for alert, _, _ in published.messages] == ["a"]


class FailingStreaks(MemoryStreaks):
    """Like MemoryStreaks, but Redis "fails" for one subject's second event."""

    async def observe(
        self,
        subject: str,
        metric: str,
        observations: Sequence[Observation],
        *,
        labels: Mapping[str, str],
    ) -> list[Applied]:
        if any(o.point.event_id == "bad-1" for o in observations):
            raise ConnectionError("Redis timed out")
        return await super().observe(subject, metric, observations, labels=labels)


async def test_one_subjects_failure_does_not_hold_back_the_others() -> None:
    rules = metric_rules(load_rules(REPO / "rules"))
    published = Published()
    evaluator = Evaluator(
        engine=RuleEngine(rules), streaks=FailingStreaks(), publish=published, names=Names()
    )
    bad = [rework(day, 0.3, subject="bad") for day in range(3)]
    good = [rework(day, 0.3, subject="good") for day in range(3)]
    failures = await evaluator.handle_batch(
        [e for pair in zip(bad, good, strict=True) for e in pair]
    )
    assert list(failures) == ["bad"]
    assert failures["bad"].event.id == "bad-1"
    assert isinstance(failures["bad"].error, ConnectionError)
    assert [alert.subject for alert, _, _ in published.messages] == ["good"]


async def test_subjects_have_separate_streaks(setup: tuple[Evaluator, Published]) -> None:
    evaluator, published = setup
    for day in range(3):
        await evaluator.handle(rework(day, 0.2, subject="emp-1"))
        if day < 2:
            await evaluator.handle(rework(day, 0.2, subject="emp-2"))
    assert [m[0].subject for m in published.messages] == ["emp-1"]


async def test_redelivery_after_a_failed_publish_publishes_with_the_same_id(
    setup: tuple[Evaluator, Published],
) -> None:
    evaluator, published = setup
    await evaluator.handle(rework(0, 0.2))
    await evaluator.handle(rework(1, 0.2))
    published.fail_next = True
    with pytest.raises(ConnectionError):
        await evaluator.handle(rework(2, 0.2))
    await evaluator.handle(rework(2, 0.2))  # JetStream redelivers the event: published now
    await evaluator.handle(rework(2, 0.2))  # ... and once more after a lost ack: not again
    assert [type(alert) for alert, _, _ in published.messages] == [AlertFired]


async def test_a_resend_long_after_does_not_announce_an_old_alert_again(
    setup: tuple[Evaluator, Published],
) -> None:
    evaluator, published = setup
    for day in range(3):
        await evaluator.handle(rework(day, 0.2))
    await evaluator.handle(rework(2, 0.2))  # past the stream's de-duplication window
    assert len(published.messages) == 1


async def test_events_no_rule_watches_publish_nothing(setup: tuple[Evaluator, Published]) -> None:
    evaluator, published = setup
    await evaluator.handle(
        MetricRecorded(
            id="x",
            metric="calls_per_hour",
            value=1e6,
            time=DAY0,
            subject="emp-1",
            source="crm",
        )
    )
    assert published.messages == []


async def test_the_service_publishes_what_the_in_memory_evaluate_returns() -> None:
    rules = metric_rules(load_rules(REPO / "rules"))
    published = Published()
    evaluator = Evaluator(
        engine=RuleEngine(rules),
        streaks=MemoryStreaks(),
        publish=published,
        names=Names(**{"b": "Bo"}),
    )
    values = [0.2, 0.2, 0.01, 0.2, 0.2, 0.2, 0.3, 0.01]
    events = [rework(day, v, subject=s) for day, v in enumerate(values) for s in ("a", "b")]
    events.insert(3, rework(9, 0.2, subject="a"))  # a late arrival of a later day
    await evaluator.handle_batch(events)

    def per_subject(alerts: list[AlertFired | AlertResolved]) -> dict[str, list[object]]:
        # Subjects are evaluated concurrently by the service: only each one's order is fixed.
        by_subject: dict[str, list[object]] = {}
        for alert in alerts:
            timeless = alert.model_dump(exclude={"fired_at", "resolved_at"})
            by_subject.setdefault(alert.subject, []).append(timeless)
        return by_subject

    expected = evaluate(rules, events, names={"b": "Bo"})
    assert len(expected) == 6
    assert per_subject([alert for alert, _, _ in published.messages]) == per_subject(expected)


# HTTP API (the app is built but not started: no NATS or Redis needed)


def client(rules_dir: Path) -> TestClient:
    settings = EvaluatorSettings(rules_dir=rules_dir)
    return TestClient(signed_in(create_app(settings)), base_url="http://127.0.0.1")


def test_get_rules_lists_the_loaded_rules() -> None:
    response = client(REPO / "rules").get("/v1/rules")
    assert response.status_code == 200
    body = {rule["id"]: rule for rule in response.json()}
    rule = body["report-rework-rate-high"]
    assert rule["condition"] == {"op": ">", "value": 0.08, "consecutive": 3}
    assert rule["kind"] == "threshold"
    assert rule["metric"] == "report_rework_rate"
    assert rule["where"] == {}
    assert rule["severity"] == "warning"
    assert rule["notify"] == ["subject", "manager"]
    # The file name only: where the rules directory sits on the host is nobody's business.
    assert rule["file"] == "report-rework-rate.yaml"


def test_get_one_rule_and_a_missing_one() -> None:
    api = client(REPO / "rules")
    assert api.get("/v1/rules/report-rework-rate-high").json()["id"] == "report-rework-rate-high"
    missing = api.get("/v1/rules/nope")
    assert missing.status_code == 404
    assert "no rule with id 'nope' (rules: " in missing.json()["detail"]
    assert "report-rework-rate-high" in missing.json()["detail"]


def test_settings_defaults() -> None:
    fields = EvaluatorSettings.model_fields
    assert fields["evaluator_port"].default == 8003
    assert fields["rules_dir"].default == Path("rules")


def test_invalid_rules_stop_start_up_with_exit_2_and_file_line_messages(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        (REPO / "rules" / "report-rework-rate.yaml")
        .read_text(encoding="utf-8")
        .replace('op: ">"', "op: gt"),
        encoding="utf-8",
    )
    env = {**os.environ, "GOALWATCH_RULES_DIR": str(tmp_path), "GOALWATCH_EVALUATOR_PORT": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "services.evaluator"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "the evaluator cannot start: 1 error in the rules" in done.stderr
    assert f"{tmp_path}/bad.yaml:" in done.stderr
    assert "condition.op: 'gt' is not one of >, >=, <, <=, ==, !=" in done.stderr


async def test_a_batch_evaluates_a_bounded_number_of_subjects_at_once() -> None:
    class Counting(MemoryStreaks):
        def __init__(self) -> None:
            super().__init__()
            self.running = self.most = 0

        async def observe(
            self,
            subject: str,
            metric: str,
            observations: Sequence[Observation],
            *,
            labels: Mapping[str, str],
        ) -> list[Applied]:
            self.running += 1
            self.most = max(self.most, self.running)
            await asyncio.sleep(0)  # let every other subject that may run start
            self.running -= 1
            return await super().observe(subject, metric, observations, labels=labels)

    streaks = Counting()
    rules = metric_rules(load_rules(REPO / "rules"))
    evaluator = Evaluator(
        engine=RuleEngine(rules), streaks=streaks, publish=Published(), names=Names(), concurrency=8
    )
    events = [rework(0, 0.09, subject=f"emp-{n}") for n in range(100)]
    assert await evaluator.handle_batch(events) == {}
    assert streaks.most == 8


def _rules_of_one_metric(tmp_path: Path) -> list[RuleSpec]:
    """Three threshold rules of one metric: at once, on 2 days running, and at once per ward."""
    for rule_id, consecutive, by in (
        ("at-once", 1, ""),
        ("two-days", 2, ""),
        ("per-ward", 1, "by: [ward]\n"),
    ):
        (tmp_path / f"{rule_id}.yaml").write_text(
            f"id: {rule_id}\nname: {rule_id}\nkind: threshold\nmetric: report_rework_rate\n"
            f'condition: {{op: ">", value: 0.08, consecutive: {consecutive}}}\n{by}'
            "severity: warning\nnotify: [subject]\nmessage: '{subject_name}: {value}'\n"
        )
    return metric_rules(load_rules(tmp_path))


class FailingAt(Published):
    """Publishes, except that the ``n``-th publish (from 1) fails once."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.calls, self.n = 0, n

    async def __call__(self, alert: AlertFired | AlertResolved, subject: str, msg_id: str) -> None:
        self.calls += 1
        if self.calls == self.n:
            raise ConnectionError("NATS is down")
        await super().__call__(alert, subject, msg_id)


async def test_an_events_rules_are_recorded_together_and_their_alerts_confirmed_together(
    tmp_path: Path,
) -> None:
    class Recording(MemoryStreaks):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, str, list[str]]] = []

        async def observe(
            self,
            subject: str,
            metric: str,
            observations: Sequence[Observation],
            *,
            labels: Mapping[str, str],
        ) -> list[Applied]:
            self.calls.append((subject, metric, [o.fp for o in observations]))
            return await super().observe(subject, metric, observations, labels=labels)

    rules = _rules_of_one_metric(tmp_path)
    streaks, published = Recording(), Published()
    evaluator = Evaluator(
        engine=RuleEngine(rules), streaks=streaks, publish=published, names=Names()
    )
    await evaluator.handle(rework(0, 0.2, ward="icu"))
    fps = {rule.id: rule.fingerprint_of("emp-1042", {"ward": "icu"}) for rule in rules}
    assert streaks.calls == [("emp-1042", "report_rework_rate", list(fps.values()))]
    cause = "emp-1042-0"
    assert streaks.confirmations == [[(fps["at-once"], cause), (fps["per-ward"], cause)]]
    await evaluator.handle(rework(1, 0.2, ward="icu"))
    assert streaks.confirmations[1:] == [[(fps["two-days"], "emp-1042-1")]]
    assert [msg_id.split(":")[0] for _, _, msg_id in published.messages] == [
        fps["at-once"],
        fps["per-ward"],
        fps["two-days"],
    ]


async def test_alerts_published_before_a_failed_publish_are_not_published_again(
    tmp_path: Path,
) -> None:
    rules = _rules_of_one_metric(tmp_path)
    streaks, published = MemoryStreaks(), FailingAt(2)
    evaluator = Evaluator(
        engine=RuleEngine(rules), streaks=streaks, publish=published, names=Names()
    )
    event = rework(0, 0.2, ward="icu")
    with pytest.raises(ConnectionError):
        await evaluator.handle(event)
    fps = {rule.id: rule.fingerprint_of("emp-1042", {"ward": "icu"}) for rule in rules}
    at_once, per_ward = fps["at-once"], fps["per-ward"]
    assert streaks.confirmations == [[(at_once, event.id)]]  # the one that went out
    await evaluator.handle(event)  # redelivered: only the one that failed is published
    assert [msg_id.split(":")[0] for _, _, msg_id in published.messages] == [at_once, per_ward]
