"""The evaluator service: metric events in, alerts fired and resolved out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import httpx
from fastapi import FastAPI
from faststream.nats import NatsBroker
from pydantic import Field
from redis.asyncio import Redis

from goalwatch.catalogue import DEFAULT_CATALOGUE, Catalogue, CatalogueLoadError, load_catalogue
from goalwatch.checkpoints import Checkpoint
from goalwatch.connections import nats_access, ready_checks, redis_client
from goalwatch.consumers import Consumers, ConsumerSpec, RedeliveryPolicy
from goalwatch.contracts import GoalStatusChanged, MetricRecorded, TimerFired, subjects
from goalwatch.dead_letter_replay import replay_router
from goalwatch.goals_client import GoalsClient, service_auth
from goalwatch.messaging import new_broker
from goalwatch.partitions import LeasedConsumers, Leases, partition_specs
from goalwatch.rules import (
    LoadedRule,
    RuleLoadError,
    goal_overdue_rules,
    impact_rules,
    load_rules,
    metric_rules,
)
from goalwatch.rules.catalogued import catalogue_problems
from goalwatch.rules.engine import RuleEngine
from goalwatch.service import service_app
from goalwatch.serving import ServiceInfo
from goalwatch.settings import Port, StateCheckSettings
from goalwatch.timers import Timers, fired_subject
from services.evaluator.absences import AbsenceStore
from services.evaluator.api import RuleRefused, rules_router
from services.evaluator.consumer import (
    GoalEventsHandler,
    MetricsHandler,
    PartitionHandler,
    TimersHandler,
)
from services.evaluator.directory import (
    Directory,
    DirectoryChange,
    DirectoryCheckpoint,
    DirectoryHandler,
    DirectoryNames,
    OrgUnitScopes,
    replay_changes,
)
from services.evaluator.directory_store import DirectoryStore
from services.evaluator.evaluation import OWNER, Evaluator
from services.evaluator.fraud_store import FraudStore, PeerGroups
from services.evaluator.goal_overdue import GoalChange, GoalOverdueEvaluator
from services.evaluator.goal_overdue_store import GoalOverdueStore
from services.evaluator.impact_consumer import ImpactEvaluator, ImpactHandler
from services.evaluator.impact_store import ImpactStore
from services.evaluator.live_rules import LiveRules
from services.evaluator.metrics import DEAD_LETTERS, HANDLER_SECONDS, REGISTRY
from services.evaluator.migration import Migration
from services.evaluator.publishing import AlertPublisher
from services.evaluator.rule_changes import RuleChanges
from services.evaluator.rule_checks import rule_checks_router
from services.evaluator.rule_store import RuleStore
from services.evaluator.shipped_tests import shipped_tests_router
from services.evaluator.streaks import StreakStore

logger = logging.getLogger(__name__)

CONSUMER = ConsumerSpec(
    # The consumer of every metric event before the stream was partitioned; each
    # partition's consumer is this one with the partition's subject and name (below).
    name="evaluator",
    stream=subjects.STREAM_METRICS,
    subject=subjects.METRICS_RECORDED,
    # Retries start at 1 s and double up to a minute: Redis, NATS or goals trouble passes.
    policy=RedeliveryPolicy(max_deliver=10, first_delay=1.0, max_delay=60.0),
    ack_wait=30,
    # One batch at a time, so each subject's events are evaluated in stream order.
    batch_size=100,
    # Metric events are what alerts wait on: at 20 ms instead of 50, an alert on an idle
    # pipeline fired 45 ms after its event instead of 74 (p50), and at a steady 400 events/s
    # 89 instead of 143 ms (docs/benchmarks.md); idle, the evaluator and nats-server each
    # took 0.3% more of a core.
    batch_window=0.02,
)

TIMERS_CONSUMER = ConsumerSpec(
    name="evaluator-timers",
    stream=subjects.STREAM_TIMERS,
    subject=fired_subject(OWNER),
    policy=CONSUMER.policy,
    ack_wait=30,
    batch_size=100,
)

GOAL_OVERDUE_CONSUMER = ConsumerSpec(
    name="evaluator-goal-overdue",
    stream=subjects.STREAM_GOALS,
    # Every goal event: each carries the goal as stored (link events are read and skipped).
    subject=subjects.GOALS_ALL,
    policy=RedeliveryPolicy(max_deliver=10, first_delay=1.0, max_delay=60.0),
    ack_wait=30,
    # One batch at a time, on one replica at a time (its lease), so each goal's changes are
    # applied in stream order.
    batch_size=100,
    max_ack_pending=100,
)

IMPACT_CONSUMER = ConsumerSpec(
    name="evaluator-impact",
    stream=subjects.STREAM_GOALS,
    subject=subjects.GOAL_STATUS_CHANGED,
    # As for metrics: goals, Redis or NATS trouble passes within minutes.
    policy=RedeliveryPolicy(max_deliver=10, first_delay=1.0, max_delay=60.0),
    ack_wait=30,
    # One batch at a time, on one replica at a time (its lease), so each goal's changes are
    # applied in stream order.
    batch_size=50,
    max_ack_pending=50,
)


# The lease names of the goal-change consumers (the partitions' are metrics-<partition>).
GOAL_OVERDUE_SLOT = "goal-overdue"
IMPACT_SLOT = "impact"

DIRECTORY_CONSUMER = ConsumerSpec(
    name="evaluator-directory",
    stream=subjects.STREAM_PEOPLE,
    # People and org units: each record is applied over an older version only, so the two
    # kinds need no order between them.
    subject=subjects.DIRECTORY_CHANGED,
    policy=RedeliveryPolicy(max_deliver=10, first_delay=1.0, max_delay=60.0),
    ack_wait=30,
    batch_size=100,
)


class EvaluatorSettings(StateCheckSettings):
    """Settings of the evaluator service."""

    evaluator_port: Port = Field(8003, description="HTTP port (GOALWATCH_EVALUATOR_PORT).")
    rules_dir: Path = Field(
        Path("rules"),
        description="Directory of rule files (*.yaml or *.yml, one rule per file), imported "
        "at start-up into the rules stream, new or changed ones only (docs/rule-changes.md).",
    )
    catalogue_file: Path = Field(
        DEFAULT_CATALOGUE,
        description="The metric catalogue (GOALWATCH_CATALOGUE_FILE): a rule sent over the "
        "API that names a metric or label not in it is refused, as `goalwatch rules lint` "
        "reports it.",
    )
    goals_url: str = Field(
        "http://127.0.0.1:8002",
        description="Goals service, asked for the name of a subject the evaluator's directory "
        "view does not know when an alert fires or resolves, and for a failing goal's impact.",
    )
    subject_name_cache_seconds: float = Field(
        60.0,
        ge=0,
        description="How long the goals service's answer for a subject the directory view "
        "does not know (its name, or that it is no person) is kept before goals is asked "
        "again; 0 asks on every alert. People in the view are named from it regardless.",
    )
    partition_lease_seconds: float = Field(
        10.0,
        gt=0,
        lt=CONSUMER.ack_wait,
        description="How long a replica's lease on a partition (or on the goal-change "
        "consumers) lasts unrenewed: after a replica dies, its partitions move to the others "
        "within this time and a third of it. Renewed every third of it; keep it below the "
        "consumers' ack_wait (30 s) (docs/scaling.md).",
    )


REPLAY_PUBLISH_TIMEOUT = 5.0
"""Seconds JetStream has to store a replayed dead letter's message."""


def create_app(
    settings: EvaluatorSettings,
    *,
    broker: NatsBroker | None = None,
    redis: Redis | None = None,
    http: httpx.AsyncClient | None = None,
) -> FastAPI:
    """Build the evaluator; raises :class:`RuleLoadError` if the rule files do not load, and
    :class:`CatalogueLoadError` if the metric catalogue does not."""
    rules = load_rules(settings.rules_dir)
    catalogue = _catalogue(settings.catalogue_file)
    broker = broker or new_broker(nats_access(settings), name="evaluator")
    redis = redis or redis_client(settings)
    http = http or httpx.AsyncClient(timeout=httpx.Timeout(2.0))
    timers = Timers(lambda: broker.connection)
    goals = GoalsClient(client=http, base_url=settings.goals_url, auth=service_auth(settings))
    directory_store = DirectoryStore(redis)
    directory = Directory(directory_store)
    # Names from the evaluator's own view of the directory; goals only for someone it lacks.
    names = DirectoryNames(directory, goals, cache_seconds=settings.subject_name_cache_seconds)
    publish = AlertPublisher(broker)
    frauds, peers, streaks = FraudStore(redis), PeerGroups(redis), StreakStore(redis)
    absences, goal_store = AbsenceStore(redis), GoalOverdueStore(redis)
    impact_store = ImpactStore(redis)

    def judges(rules: Sequence[LoadedRule]) -> _Judges:
        """What judges ``rules``: one set, swapped whole when the rules change."""
        metric = metric_rules(rules)
        return _Judges(
            metrics=Evaluator(
                engine=RuleEngine(metric),
                streaks=streaks,
                publish=publish,
                names=names,
                rules=metric,
                absences=absences,
                arm=timers.arm,
                scopes=OrgUnitScopes(directory, metric),
                frauds=frauds,
                peers=peers,
            ),
            goals=GoalOverdueEvaluator(
                rules=goal_overdue_rules(rules),
                store=goal_store,
                arm=timers.arm,
                cancel=timers.cancel,
                names=names,
                publish=publish,
            ),
            impact=ImpactEvaluator(
                rules=impact_rules(rules), store=impact_store, impacts=goals, publish=publish
            ),
        )

    first = judges(rules)

    def checkpoint_of(spec: ConsumerSpec) -> Checkpoint:
        return Checkpoint(
            redis=redis,
            connection=lambda: broker.connection,
            stream=spec.stream,
            subject=spec.subject,
            consumer=spec.name,
        )

    timers_checkpoint = checkpoint_of(TIMERS_CONSUMER)
    goals_checkpoint = checkpoint_of(GOAL_OVERDUE_CONSUMER)
    handler = MetricsHandler(
        evaluator=first.metrics,
        policy=CONSUMER.policy,
        timers_checkpoint=timers_checkpoint,
        goals=first.goals,
        goals_checkpoint=goals_checkpoint,
        # The directory first: replayed metric events are then scoped by a whole directory.
        before=[
            (
                DirectoryCheckpoint(
                    redis=redis,
                    connection=lambda: broker.connection,
                    stream=DIRECTORY_CONSUMER.stream,
                    subject=DIRECTORY_CONSUMER.subject,
                    consumer=DIRECTORY_CONSUMER.name,
                ),
                partial(replay_changes, directory_store),
            )
        ],
    )
    consumers = Consumers(
        broker, service="evaluator", seconds=HANDLER_SECONDS, dead_letters=DEAD_LETTERS
    )
    # Partitions and goal changes: each consumer read by one replica at a time, the one
    # holding its lease; the directory and the timers are shared by every replica (their
    # state is changed by compare-and-set, one message at a time, in any order).
    leased = LeasedConsumers(
        leases=Leases(redis, service="evaluator", ttl=settings.partition_lease_seconds),
        broker=broker,
        connection=lambda: broker.connection,
        service="evaluator",
        seconds=HANDLER_SECONDS,
        dead_letters=DEAD_LETTERS,
    )
    for slot, spec in partition_specs(CONSUMER, settings.metrics_partitions):
        partition = PartitionHandler(handler, checkpoint_of(spec))
        leased.add(
            slot,
            spec,
            MetricRecorded,
            partition,
            on_acquire=partition.taken,
            on_release=partition.given_back,
        )
    consumers.describe(
        replace(CONSUMER, name=f"{CONSUMER.name}-p*", subject=subjects.METRICS_RECORDED_PARTITIONS),
        MetricRecorded,
        description="Every stored metric event, against every rule for its metric: one "
        "consumer per partition (`evaluator-p<partition>`), each read by the one replica "
        "holding its lease, so a subject's events are evaluated in their order.",
    )
    consumers.add_batch(
        DIRECTORY_CONSUMER,
        DirectoryChange,
        DirectoryHandler(
            store=directory_store, recovery=handler.recovery, policy=DIRECTORY_CONSUMER.policy
        ),
        description="Every person and org unit change: the evaluator's view of the directory "
        "(names, org units and their parents) for alerts and rules scoped by org unit.",
    )
    consumers.add_batch(
        TIMERS_CONSUMER,
        TimerFired,
        TimersHandler(handler),
        description="The evaluator's durable timers as they fall due: overdue deadlines.",
    )
    goal_overdue_description = (
        "Every goal event, against every goal-based overdue rule: one durable "
        "timer per (rule, goal) armed, moved or cancelled as the goal changes."
    )
    leased.add(GOAL_OVERDUE_SLOT, GOAL_OVERDUE_CONSUMER, GoalChange, GoalEventsHandler(handler))
    consumers.describe(GOAL_OVERDUE_CONSUMER, GoalChange, description=goal_overdue_description)
    impact_handler = ImpactHandler(
        evaluator=first.impact,
        policy=IMPACT_CONSUMER.policy,
        checkpoint=Checkpoint(
            redis=redis,
            connection=lambda: broker.connection,
            stream=IMPACT_CONSUMER.stream,
            subject=IMPACT_CONSUMER.subject,
            consumer=IMPACT_CONSUMER.name,
        ),
    )
    leased.add(IMPACT_SLOT, IMPACT_CONSUMER, GoalStatusChanged, impact_handler)
    consumers.describe(
        IMPACT_CONSUMER,
        GoalStatusChanged,
        description="Every goal status change, against every dependency_impact rule: one "
        "alert per owner of the goals that rest on a failing goal.",
    )
    migration = Migration(
        leased=leased,
        legacy=CONSUMER,
        handler=PartitionHandler(handler, checkpoint_of(CONSUMER)),
        partitions=settings.metrics_partitions,
        connection=lambda: broker.connection,
    )

    async def prepare() -> None:
        # The stream's rules are judged from the first event on: read before consumers start.
        await live.start(store, rules)
        await migration.run()

    def swap(rules: list[LoadedRule]) -> None:
        # Between two awaits: a batch under way finishes with the rules it began with. The
        # old rules' rulesets stay in durable_rules' C engine (a few hundred kB per change):
        # freeing them corrupts the engine's later rulesets (docs/rules-engine.md).
        now = judges(rules)
        handler.use(now.metrics, now.goals)
        impact_handler.use(now.impact)

    live = LiveRules(rules, on_change=swap)
    store = RuleStore(lambda: broker.connection)
    app = service_app(
        name="evaluator",
        settings=settings,
        checks=ready_checks(broker=broker, redis=redis),
        registry=REGISTRY,
        broker=broker,
        consumers=consumers,
        leased=leased,
        prepare=prepare,
        close=[live.stop, redis.aclose, http.aclose],
        on_start=lambda: _announce(rules, settings.rules_dir, catalogue),
        background=[
            lambda: handler.watch(every=settings.state_check_seconds),
            lambda: impact_handler.watch(every=settings.state_check_seconds),
        ],
    )
    app.include_router(rules_router(live, RuleChanges(store, live, catalogue)))
    app.include_router(shipped_tests_router(settings.rules_dir))
    app.include_router(
        rule_checks_router(
            lambda rule_id: None if (entry := live.entry(rule_id)) is None else entry.rule,
            rule_ids=lambda: [entry.rule.spec.id for entry in live.entries()],
            nats=nats_access(settings),
            names=names,
            directory=directory,
        )
    )
    # Only the evaluator publishes alerts: it replays their dead letters (failed deliveries).
    app.include_router(
        replay_router(
            "evaluator",
            connection=lambda: broker.connection,
            redis=redis,
            publish_timeout=REPLAY_PUBLISH_TIMEOUT,
        )
    )
    app.add_exception_handler(RuleRefused, RuleRefused.answer)
    return app


@dataclass(frozen=True)
class _Judges:
    """The evaluators of one set of rules."""

    metrics: Evaluator
    goals: GoalOverdueEvaluator
    impact: ImpactEvaluator


def _catalogue(path: Path) -> Catalogue | None:
    """The metric catalogue drafts are checked against; None (unchecked, said once) when the
    default one is not there."""
    if path == DEFAULT_CATALOGUE and not path.exists():
        logger.warning("no metric catalogue at %s: rule drafts' metrics are not checked", path)
        return None
    return load_catalogue(path)


def _announce(rules: Sequence[LoadedRule], rules_dir: Path, catalogue: Catalogue | None) -> None:
    # Files are reviewed in git and linted in CI, so they load; what the catalogue does not
    # know is said loudly (such a rule never sees an event), where a draft is refused.
    for problem in catalogue_problems(rules, catalogue) if catalogue else ():
        logger.warning("rule file problem: %s", problem.lint_line())
    if rules:
        logger.info("rules loaded from %s: %s", rules_dir, ", ".join(r.spec.id for r in rules))
    else:
        logger.warning(
            "no rule files (*.yaml, *.yml) in %s: events are accepted but nothing can fire; "
            "add rules there and restart the evaluator",
            rules_dir.resolve(),
        )


def _explain_startup_error(exc: Exception, settings: EvaluatorSettings) -> str | None:
    """Invalid rules or an invalid catalogue stop the evaluator with every error listed as
    file:line."""
    if isinstance(exc, CatalogueLoadError):
        count = len(exc.errors)
        return "\n".join(
            [
                f"the evaluator cannot start: {count} error{'s' if count != 1 else ''} in the "
                f"metric catalogue {settings.catalogue_file} (set by GOALWATCH_CATALOGUE_FILE):",
                *(f"  {error}" for error in exc.errors),
            ]
        )
    if not isinstance(exc, RuleLoadError):
        return None
    count = len(exc.errors)
    return "\n".join(
        [
            f"the evaluator cannot start: {count} error{'s' if count != 1 else ''} "
            f"in the rules in {settings.rules_dir} (set by GOALWATCH_RULES_DIR):",
            *(f"  {error}" for error in exc.errors),
        ]
    )


SERVICE = ServiceInfo(
    name="evaluator",
    settings=EvaluatorSettings,
    create_app=create_app,
    port_field="evaluator_port",
    explain_startup_error=_explain_startup_error,
    # The shipped rules, wherever the command runs: the routes do not depend on them.
    document_settings=lambda: EvaluatorSettings.model_construct(
        rules_dir=Path(__file__).resolve().parents[2] / "rules"
    ),
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
