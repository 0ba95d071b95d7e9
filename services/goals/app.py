"""The goals service: people, org units and the goal graph; every change to a goal published."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from faststream.nats import NatsBroker
from pydantic import Field
from redis.asyncio import Redis

from goalwatch.checkpoints import NotCaughtUp, PublishedCheckpoint, Recovery
from goalwatch.connections import ready_checks, redis_client
from goalwatch.contracts import subjects
from goalwatch.messaging import new_broker
from goalwatch.service import service_app
from goalwatch.serving import ServiceInfo
from goalwatch.settings import Port, StateCheckSettings
from services.goals.api import people_router
from services.goals.goal_store import GoalStore
from services.goals.goals_api import goals_router
from services.goals.impact import ImpactWalk
from services.goals.import_api import import_router
from services.goals.metrics import REGISTRY
from services.goals.org_units import OrgUnitStore
from services.goals.outbox import GoalEventPublisher, Outbox
from services.goals.people import PeopleStore


class GoalsSettings(StateCheckSettings):
    """Settings of the goals service."""

    goals_port: Port = Field(8002, description="HTTP port (GOALWATCH_GOALS_PORT).")
    goals_max_batch: int = Field(
        1000,
        ge=1,
        description="Most items in one POST /v1/people, /v1/org-units or /v1/goals (422 beyond).",
    )
    goals_publish_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for JetStream to confirm one goal event."
    )
    goals_relay_retry: float = Field(
        1.0,
        gt=0,
        description="Seconds before the first retry of goal events that could not be "
        "published (doubling up to 30 s).",
    )


def create_app(
    settings: GoalsSettings, *, redis: Redis | None = None, broker: NatsBroker | None = None
) -> FastAPI:
    """Build the goals app: an HTTP API over Redis, publishing goal changes to JetStream."""
    redis = redis or redis_client(settings.redis_url)
    broker = broker or new_broker(settings.nats_url, name="goals")
    people = PeopleStore(redis)
    # JetStream is the record of the goals: after a Redis restart that lost writes, the
    # store replays what was published since its last checkpoint before it reads or writes.
    recovery = Recovery(
        views=[
            (
                PublishedCheckpoint(
                    redis=redis,
                    connection=lambda: broker.connection,
                    stream=subjects.STREAM_GOALS,
                    subject=subjects.GOALS_ALL,
                    consumer="goals-store",
                ),
                lambda messages: goals.replay(messages),
            )
        ],
        what="goal store",
    )
    goals = GoalStore(redis, caught_up=recovery)

    async def caught_up() -> None:
        try:
            await recovery.ready()
        except Exception as exc:  # NATS or Redis trouble: 503, the client retries
            raise NotCaughtUp(f"goal store not caught up with its stream: {exc!r}") from exc

    outbox = Outbox(
        redis,
        GoalEventPublisher(broker, timeout=settings.goals_publish_timeout),
        retry_delay=settings.goals_relay_retry,
    )
    app = service_app(
        name="goals",
        settings=settings,
        checks=ready_checks(broker=broker, redis=redis),
        registry=REGISTRY,
        nats_url=settings.nats_url,
        broker=broker,
        close=[redis.aclose],
        background=[
            outbox.relay,
            lambda: recovery.watch(every=settings.state_check_seconds, at_once=True),
        ],
    )
    app.include_router(
        people_router(
            people, max_batch=settings.goals_max_batch, max_body_bytes=settings.http_max_body_bytes
        )
    )
    units = OrgUnitStore(redis)
    # Before the JSON routes, so that /v1/goals/import is not read as a goal id.
    app.include_router(
        import_router(
            people=people,
            units=units,
            goals=goals,
            flush=outbox.after_write,
            max_batch=settings.goals_max_batch,
        ),
        dependencies=[Depends(caught_up)],
    )
    app.include_router(
        goals_router(
            goals=goals,
            units=units,
            impact=ImpactWalk(redis),
            flush=outbox.after_write,
            max_batch=settings.goals_max_batch,
        ),
        dependencies=[Depends(caught_up)],
    )
    return app


SERVICE = ServiceInfo(
    name="goals", settings=GoalsSettings, create_app=create_app, port_field="goals_port"
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
