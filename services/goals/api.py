"""The goals HTTP API: ``/v1/people`` (goals and alignment come next)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import BaseModel, Field

from goalwatch.contracts import PersonRead, PersonUpsert
from goalwatch.problems import problem_responses
from services.goals.metrics import HANDLER_SECONDS, PEOPLE_UPSERTED
from services.goals.people import ManagerCycleError, PeopleStore


class PeopleUpserted(BaseModel):
    """Result of a batch upsert."""

    upserted: int = Field(description="How many people were created or replaced.")


def people_router(store: PeopleStore) -> APIRouter:
    """People and their manager chains, kept in ``store``."""
    router = APIRouter(prefix="/v1", tags=["people"])
    timed = HANDLER_SECONDS.labels

    @router.post(
        "/people",
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

    @router.get(
        "/people/{person_id}",
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

    @router.get("/people", summary="People, ordered by id")
    async def list_people(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[PersonRead]:
        return await store.list(limit=limit)

    return router
