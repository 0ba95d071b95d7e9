"""The evaluator service: metric events in, alerts fired and resolved out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, HTTPException
from faststream import AckPolicy, Context
from faststream.nats.message import NatsBatchMessage
from nats.aio.msg import Msg
from pydantic import BaseModel, Field, ValidationError

from goalwatch import __version__
from goalwatch.connections import ready_checks, redis_client
from goalwatch.contracts import (
    AlertFired,
    AlertResolved,
    DeadLetter,
    MetricRecorded,
    Severity,
    subjects,
)
from goalwatch.messaging import Durable, delivery, ensure_streams, new_broker, pull_batch, stream
from goalwatch.rules import LoadedRule, RuleLoadError, load_rules
from goalwatch.serving import ServiceInfo, offline_docs
from goalwatch.settings import Port, ServiceSettings
from goalwatch.telemetry import HANDLER_SECONDS, ops_router
from services.evaluator.engine import RuleEngine
from services.evaluator.evaluation import Evaluator, Failure
from services.evaluator.names import GoalsNames
from services.evaluator.streaks import StreakStore

logger = logging.getLogger(__name__)

# Deliveries of a batch before its events are dead-lettered instead of retried.
MAX_DELIVER = 10
CONSUMER = Durable(
    name="evaluator",
    stream=subjects.STREAM_METRICS,
    subject=subjects.METRICS_RECORDED,
    max_deliver=MAX_DELIVER,
    ack_wait=30,
)
# Longest pause between retries (they start at 1 s and double).
MAX_RETRY_DELAY = 60.0


class EvaluatorSettings(ServiceSettings):
    """Settings of the evaluator service."""

    evaluator_port: Port = Field(8003, description="HTTP port (GOALWATCH_EVALUATOR_PORT).")
    rules_dir: Path = Field(
        Path("rules"),
        description="Directory of rule files (*.yaml or *.yml, one rule per file), read at start-up.",
    )
    goals_url: str = Field(
        "http://127.0.0.1:8002",
        description="Goals service, asked for subjects' names when an alert fires or resolves.",
    )


class RuleRead(BaseModel):
    """A loaded rule, as served by ``GET /v1/rules``."""

    id: str = Field(description="Rule id.")
    name: str = Field(description="Human-readable name.")
    description: str | None = Field(description="What the rule is for.")
    kind: str = Field(description="Rule kind.")
    metric: str = Field(description="Metric the rule watches.")
    where: dict[str, str] = Field(description="Label filters.")
    condition: dict[str, Any] = Field(description="op, value and consecutive.")
    severity: Severity = Field(description="Severity of the alerts it fires.")
    notify: list[str] = Field(description="Who is notified.")
    message: str = Field(description="Message template.")
    resolved_message: str | None = Field(description="Resolved message template, if any.")
    file: str = Field(description="File the rule was loaded from.")

    @classmethod
    def of(cls, rule: LoadedRule) -> RuleRead:
        """The API view of a loaded rule."""
        spec = rule.spec
        return cls(
            id=spec.id,
            name=spec.name,
            description=spec.description,
            kind=spec.kind,
            metric=spec.metric,
            where=dict(spec.where),
            condition=spec.condition.model_dump(),
            severity=spec.severity,
            notify=list(spec.notify),
            message=spec.message,
            resolved_message=spec.resolved_message,
            file=str(rule.path),
        )


def create_app(settings: EvaluatorSettings) -> FastAPI:
    """Build the evaluator; raises :class:`RuleLoadError` if the rules do not load."""
    rules = load_rules(settings.rules_dir)
    rules_by_id = {rule.spec.id: rule for rule in rules}
    broker = new_broker(settings.nats_url, name="evaluator")
    redis = redis_client(settings.redis_url)

    async def publish(alert: AlertFired | AlertResolved, subject: str, msg_id: str) -> None:
        await broker.publish(
            alert, subject, stream=subjects.STREAM_ALERTS, headers={"Nats-Msg-Id": msg_id}
        )

    # A name lookup must not hold up alerting: a short timeout, then the id is used.
    http = httpx.AsyncClient(timeout=httpx.Timeout(2.0))
    evaluator = Evaluator(
        engine=RuleEngine([rule.spec for rule in rules]),
        streaks=StreakStore(redis),
        publish=publish,
        names=GoalsNames(http, goals_url=settings.goals_url),
    )

    @broker.subscriber(
        subjects.METRICS_RECORDED,
        stream=stream(subjects.STREAM_METRICS),
        durable=CONSUMER.name,
        # One batch at a time, so each subject's events are evaluated in stream order.
        pull_sub=pull_batch(100),
        config=CONSUMER.config(),
        ack_policy=AckPolicy.MANUAL,
    )
    async def on_metrics_recorded(msg: Annotated[NatsBatchMessage, Context("message")]) -> None:
        with HANDLER_SECONDS.labels(service="evaluator", handler="metrics_recorded").time():
            received: list[tuple[Msg, MetricRecorded]] = []
            for raw in msg.raw_message:
                try:
                    received.append((raw, MetricRecorded.model_validate_json(raw.data)))
                except ValidationError as exc:
                    await dead_letter(
                        raw,
                        reason="not a valid MetricRecorded event",
                        errors=[
                            {"loc": ".".join(str(p) for p in error["loc"]), "msg": error["msg"]}
                            for error in exc.errors()
                        ],
                    )
                    await raw.ack()
            failures = await evaluator.handle_batch([event for _, event in received])
            stopped: set[str] = set()  # subjects whose remaining events must be retried
            for raw, event in received:
                failure = failures.get(event.subject)
                if failure is not None and (
                    event.id == failure.event.id or event.subject in stopped
                ):
                    stopped.add(event.subject)
                    await retry_or_give_up(raw, event=event, failure=failure)
                else:
                    await raw.ack()

    async def retry_or_give_up(raw: Msg, *, event: MetricRecorded, failure: Failure) -> None:
        # Redis or NATS trouble passes: retry with a growing delay, and only after the last
        # delivery keep the event as a dead letter (replaying it is safe: evaluation is
        # idempotent per event id).
        delivered = delivery(raw).count
        what = (
            f"evaluating {failure.event.subject!r} failed at event {failure.event.id!r}: "
            f"{failure.error!r}"
        )
        extra = {"event_id": event.id}
        if delivered < MAX_DELIVER:
            delay = min(2.0 ** (delivered - 1), MAX_RETRY_DELAY)
            logger.warning(
                "%s (delivery %d of %d), retrying in %.0f s",
                what,
                delivered,
                MAX_DELIVER,
                delay,
                extra=extra,
            )
            await raw.nak(delay=delay)
            return
        logger.error("%s; gave up after %d deliveries, dead-lettered", what, delivered, extra=extra)
        await dead_letter(raw, reason=f"{what}; gave up after {delivered} deliveries", errors=[])
        await raw.ack()

    async def dead_letter(raw: Msg, *, reason: str, errors: list[dict[str, str]]) -> None:
        letter = DeadLetter(
            origin_subject=subjects.METRICS_RECORDED,
            reason=reason,
            errors=errors,
            payload=raw.data.decode("utf-8", errors="replace"),
            at=datetime.now(UTC),
        )
        sequence = delivery(raw).sequence
        headers = {} if sequence is None else {"Nats-Msg-Id": f"evaluator:{sequence}"}
        await broker.publish(
            letter, subjects.DEADLETTER_METRICS, stream=subjects.STREAM_DEADLETTER, headers=headers
        )
        logger.warning("dead-lettered a metric event: %s", reason)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await ensure_streams(settings.nats_url, consumers=[CONSUMER])
            await broker.start()
            if rules_by_id:
                logger.info("rules loaded from %s: %s", settings.rules_dir, ", ".join(rules_by_id))
            else:
                logger.warning(
                    "no rule files (*.yaml, *.yml) in %s: events are accepted but nothing can "
                    "fire; add rules there and restart the evaluator",
                    settings.rules_dir.resolve(),
                )
            yield
        finally:
            await broker.stop()
            await redis.aclose()
            await http.aclose()

    app = FastAPI(title="goalwatch evaluator", version=__version__, lifespan=lifespan)
    app.include_router(ops_router(ready_checks(broker=broker, redis=redis)))

    @app.get("/v1/rules", summary="The rules loaded at start-up, ordered by file name")
    async def list_rules() -> list[RuleRead]:
        return [RuleRead.of(rule) for rule in rules]

    @app.get(
        "/v1/rules/{rule_id}",
        summary="One loaded rule",
        responses={404: {"description": "No rule with that id is loaded."}},
    )
    async def get_rule(rule_id: str) -> RuleRead:
        rule = rules_by_id.get(rule_id)
        if rule is None:
            loaded = ", ".join(rules_by_id) or "none"
            raise HTTPException(
                status_code=404,
                detail=f"no rule with id '{rule_id}' is loaded (loaded: {loaded}); "
                f"rules are read from {settings.rules_dir} at start-up",
            )
        return RuleRead.of(rule)

    offline_docs(app)
    return app


def _explain_startup_error(exc: Exception, settings: EvaluatorSettings) -> str | None:
    """Invalid rules stop the evaluator with every error listed as file:line."""
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
