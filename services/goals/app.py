"""The goals service: people and their manager chains (goals and alignment come next)."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import Field
from redis.asyncio import Redis

from goalwatch.connections import redis_client
from goalwatch.service import service_app
from goalwatch.serving import ServiceInfo
from goalwatch.settings import Port, ServiceSettings
from services.goals.api import people_router
from services.goals.metrics import REGISTRY
from services.goals.people import PeopleStore


class GoalsSettings(ServiceSettings):
    """Settings of the goals service."""

    goals_port: Port = Field(8002, description="HTTP port (GOALWATCH_GOALS_PORT).")
    goals_max_batch: int = Field(
        1000, ge=1, description="Most people in one POST /v1/people (422 beyond)."
    )


def create_app(settings: GoalsSettings, *, redis: Redis | None = None) -> FastAPI:
    """Build the goals app: an HTTP API over Redis (it opens NATS once it publishes)."""
    redis = redis or redis_client(settings.redis_url)
    store = PeopleStore(redis)

    async def redis_up() -> bool:
        return bool(await redis.ping())

    app = service_app(
        name="goals",
        settings=settings,
        checks={"redis": redis_up},
        registry=REGISTRY,
        close=[redis.aclose],
    )
    app.include_router(
        people_router(
            store, max_batch=settings.goals_max_batch, max_body_bytes=settings.http_max_body_bytes
        )
    )
    return app


SERVICE = ServiceInfo(
    name="goals", settings=GoalsSettings, create_app=create_app, port_field="goals_port"
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
