"""The goals service: people and their manager chains (goals and alignment come next)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Body, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from goalwatch import __version__
from goalwatch.connections import ready_checks, redis_client
from goalwatch.contracts import PersonRead, PersonUpsert
from goalwatch.messaging import ensure_streams, new_broker
from goalwatch.serving import ServiceInfo, offline_docs
from goalwatch.settings import Port, ServiceSettings
from goalwatch.telemetry import ops_router
from services.goals.people import ManagerCycleError, PeopleStore


class GoalsSettings(ServiceSettings):
    """Settings of the goals service."""

    goals_port: Port = Field(8002, description="HTTP port (GOALWATCH_GOALS_PORT).")


class PeopleUpserted(BaseModel):
    """Result of a batch upsert."""

    upserted: int = Field(description="How many people were created or replaced.")


def create_app(settings: GoalsSettings) -> FastAPI:
    """Build the goals app: HTTP API over Redis, NATS for the streams it will publish."""
    broker = new_broker(settings.nats_url, name="goals")
    redis = redis_client(settings.redis_url)
    store = PeopleStore(redis)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await ensure_streams(settings.nats_url)
            await broker.start()
            yield
        finally:
            await broker.stop()
            await redis.aclose()

    app = FastAPI(title="goalwatch goals", version=__version__, lifespan=lifespan)
    app.include_router(ops_router(ready_checks(broker=broker, redis=redis)))

    @app.post(
        "/v1/people",
        summary="Create or replace people (one or a batch)",
        responses={
            400: {"description": "The body is not JSON."},
            422: {"description": "A person is invalid, or the batch makes a manager cycle."},
        },
    )
    async def upsert_people(
        people: Annotated[list[PersonUpsert] | PersonUpsert, Body()],
    ) -> PeopleUpserted:
        batch = people if isinstance(people, list) else [people]
        try:
            count = await store.upsert(people=batch)
        except ManagerCycleError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        return PeopleUpserted(upserted=count)

    @app.get(
        "/v1/people/{person_id}",
        summary="One person with their manager chain",
        responses={404: {"description": "No person with that id."}},
    )
    async def get_person(person_id: str) -> PersonRead:
        person = await store.get(person_id=person_id)
        if person is None:
            raise HTTPException(
                status_code=404,
                detail=f"no person with id '{person_id}'; add them with POST /v1/people",
            )
        return person

    @app.get("/v1/people", summary="People, ordered by id")
    async def list_people(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[PersonRead]:
        return await store.list(limit=limit)

    offline_docs(app)
    return app


SERVICE = ServiceInfo(
    name="goals", settings=GoalsSettings, create_app=create_app, port_field="goals_port"
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
