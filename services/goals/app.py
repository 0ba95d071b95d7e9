"""The goals service: people and their manager chains (goals and alignment come next)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field
from redis.asyncio import Redis

from goalwatch.connections import redis_client
from goalwatch.contracts import PersonRead, PersonUpsert
from goalwatch.problems import problem_responses
from goalwatch.service import service_app
from goalwatch.serving import ServiceInfo
from goalwatch.settings import Port, ServiceSettings
from services.goals.metrics import HANDLER_SECONDS, PEOPLE_UPSERTED, REGISTRY
from services.goals.people import ManagerCycleError, PeopleStore


class GoalsSettings(ServiceSettings):
    """Settings of the goals service."""

    goals_port: Port = Field(8002, description="HTTP port (GOALWATCH_GOALS_PORT).")


class PeopleUpserted(BaseModel):
    """Result of a batch upsert."""

    upserted: int = Field(description="How many people were created or replaced.")


def create_app(settings: GoalsSettings, *, redis: Redis | None = None) -> FastAPI:
    """Build the goals app: an HTTP API over Redis (it opens NATS once it publishes)."""
    redis = redis or redis_client(settings.redis_url)
    store = PeopleStore(redis)

    async def redis_up() -> bool:
        return bool(await redis.ping())

    app = service_app(
        name="goals", checks={"redis": redis_up}, registry=REGISTRY, close=[redis.aclose]
    )
    timed = HANDLER_SECONDS.labels

    @app.post(
        "/v1/people",
        summary="Create or replace people (one or a batch)",
        responses=problem_responses(
            {422: "The body is not JSON, a person is invalid, or the batch makes a manager cycle."}
        ),
    )
    async def upsert_people(
        people: Annotated[list[PersonUpsert] | PersonUpsert, Body()],
    ) -> PeopleUpserted:
        with timed(service="goals", handler="upsert_people").time():
            batch = people if isinstance(people, list) else [people]
            try:
                count = await store.upsert(people=batch)
            except ManagerCycleError as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from exc
            PEOPLE_UPSERTED.inc(count)
            return PeopleUpserted(upserted=count)

    @app.get(
        "/v1/people/{person_id}",
        summary="One person with their manager chain",
        responses=problem_responses({404: "No person with that id."}),
    )
    async def get_person(person_id: str) -> PersonRead:
        with timed(service="goals", handler="get_person").time():
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

    return app


SERVICE = ServiceInfo(
    name="goals", settings=GoalsSettings, create_app=create_app, port_field="goals_port"
)
"""How the kernel runs this service and renders its OpenAPI document (see pyproject.toml)."""
