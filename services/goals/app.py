"""The goals service: people, org units and the goal graph; every change to a goal published."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from faststream.nats import NatsBroker
from pydantic import Field
from redis.asyncio import Redis

from goalwatch.checkpoints import PublishedCheckpoint, Recovery
from goalwatch.connections import nats_access, ready_checks, redis_client
from goalwatch.contracts import subjects
from goalwatch.messaging import new_broker
from goalwatch.service import service_app
from goalwatch.serving import ServiceInfo
from goalwatch.settings import Port, StateCheckSettings
from services.goals import keys
from services.goals.access import Access, StoreDirectory
from services.goals.api import people_router
from services.goals.api_keys import ApiKeyStore, StoreVerifier
from services.goals.api_keys_api import api_keys_router
from services.goals.audit_api import AuditLog, audit_router
from services.goals.caught_up import CaughtUp, WriteGuard
from services.goals.dead_letters_api import dead_letters_router
from services.goals.directory import Directory
from services.goals.goal_store import GoalStore
from services.goals.goals_api import goals_router
from services.goals.impact import ImpactWalk
from services.goals.import_api import import_router
from services.goals.me_api import me_router
from services.goals.metrics import DIRECTORY_OUTBOX_PENDING, REGISTRY
from services.goals.org_units import OrgUnitStore
from services.goals.outbox import Outbox, directory_publisher, goal_publisher
from services.goals.people import PeopleStore
from services.goals.role_grants import RoleGrantStore, role_grants_router


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
    settings: GoalsSettings,
    *,
    redis: Redis | None = None,
    broker: NatsBroker | None = None,
    caught_up: CaughtUp | None = None,
) -> FastAPI:
    """Build the goals app: an HTTP API over Redis, publishing its changes to JetStream.

    ``caught_up`` replaces the store's recovery from its streams (tests without NATS pass
    one that is always caught up)."""
    redis = redis or redis_client(settings)
    broker = broker or new_broker(nats_access(settings), name="goals")
    # JetStream is the record of goals, people and org units: after a Redis restart that lost
    # writes, the store replays what was published since its last checkpoints before it
    # reads or writes (services/goals/caught_up.py).
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
            ),
            (
                PublishedCheckpoint(
                    redis=redis,
                    connection=lambda: broker.connection,
                    stream=subjects.STREAM_PEOPLE,
                    subject=">",
                    consumer="goals-directory",
                ),
                lambda messages: directory.replay(messages),
            ),
        ],
        what="goal store",
    )
    guard: CaughtUp = caught_up or recovery
    goals = GoalStore(redis, caught_up=guard)
    directory = Directory(redis, caught_up=guard)
    people = PeopleStore(redis, directory=directory)
    units = OrgUnitStore(redis, directory=directory)

    async def store_caught_up() -> None:
        await WriteGuard(guard).catch_up()

    timeout, retry = settings.goals_publish_timeout, settings.goals_relay_retry
    outboxes = [
        Outbox(redis, goal_publisher(broker, timeout=timeout), retry_delay=retry),
        Outbox(
            redis,
            directory_publisher(broker, timeout=timeout),
            key=keys.DIRECTORY_OUTBOX,
            pending=DIRECTORY_OUTBOX_PENDING,
            retry_delay=retry,
        ),
    ]

    async def flush() -> bool:
        """Publish what the write owes (the directory's outbox is empty after a goal write:
        one LRANGE)."""
        return all([await outbox.after_write() for outbox in outboxes])

    api_keys = ApiKeyStore(redis)
    role_grants = RoleGrantStore(redis)
    app = service_app(
        name="goals",
        settings=settings,
        checks=ready_checks(broker=broker, redis=redis),
        registry=REGISTRY,
        broker=broker,
        close=[redis.aclose],
        # Goals owns the keys: it checks them in its own store, where a revocation holds at once.
        api_keys=StoreVerifier(api_keys),
        # And the roles granted in goalwatch: read where they are kept, so a change holds at once.
        grants=role_grants,
        background=[
            *(outbox.relay for outbox in outboxes),
            *(
                [lambda: recovery.watch(every=settings.state_check_seconds, at_once=True)]
                if caught_up is None
                else []
            ),
        ],
    )
    # The audit log is read from its stream, not the store: no need to wait for a catch-up.
    app.include_router(audit_router(AuditLog(lambda: broker.connection)))
    every_route_caught_up = [Depends(store_caught_up)]
    access = Access(StoreDirectory(people, units))
    app.include_router(
        people_router(
            people,
            access=access,
            flush=flush,
            max_batch=settings.goals_max_batch,
            max_body_bytes=settings.http_max_body_bytes,
        ),
        dependencies=every_route_caught_up,
    )
    # Before the JSON routes, so that /v1/goals/import is not read as a goal id.
    app.include_router(
        import_router(
            people=people, units=units, goals=goals, flush=flush, max_batch=settings.goals_max_batch
        ),
        dependencies=every_route_caught_up,
    )
    app.include_router(
        goals_router(
            goals=goals,
            units=units,
            impact=ImpactWalk(redis),
            access=access,
            flush=flush,
            max_batch=settings.goals_max_batch,
        ),
        dependencies=every_route_caught_up,
    )
    # Not behind the goal store's recovery: keys are not in its streams.
    app.include_router(api_keys_router(api_keys))
    app.include_router(role_grants_router(role_grants))
    app.include_router(me_router(people))
    # Goals keeps the dead-letter stream; it replays what its own NATS user may publish.
    app.include_router(
        dead_letters_router(
            connection=lambda: broker.connection, redis=redis, publish_timeout=timeout
        )
    )
    return app


SERVICE = ServiceInfo(
    name="goals", settings=GoalsSettings, create_app=create_app, port_field="goals_port"
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
