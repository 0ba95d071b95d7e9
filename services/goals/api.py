"""The goals HTTP API: ``/v1/people`` (goals and alignment come next)."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Discriminator, Field, Tag

from goalwatch.auth.policies import PEOPLE_READ, PEOPLE_WRITE
from goalwatch.auth.policy import Caller
from goalwatch.contracts import PersonRead, PersonUpsert
from goalwatch.contracts.metrics import PERSON_ID_MAX_LENGTH, PERSON_ID_PATTERN
from goalwatch.problems import problem_responses
from services.goals.access import Access
from services.goals.goals_api import Flush
from services.goals.metrics import HANDLER_SECONDS, PEOPLE_UPSERTED
from services.goals.people import ManagerCycleError, PeopleStore


class PeopleUpserted(BaseModel):
    """Result of a batch upsert."""

    upserted: int = Field(description="How many people were created or replaced.")
    created: int = Field(description="How many were new.")
    replaced: int = Field(description="How many replaced a stored person (unchanged included).")
    unchanged: int = Field(
        default=0, description="Replaced people identical to what was stored (nothing published)."
    )


def people_router(
    store: PeopleStore, *, access: Access, flush: Flush, max_batch: int, max_body_bytes: int
) -> APIRouter:
    """People and their manager chains, kept in ``store``; at most ``max_batch`` per POST;
    ``flush`` publishes what a write owes."""
    router = APIRouter(prefix="/v1", tags=["people"])
    timed = HANDLER_SECONDS.labels
    batch_of_people = Annotated[list[PersonUpsert], Field(min_length=1, max_length=max_batch)]
    # One branch by the body's shape, so that errors name the person (body.person.email, or
    # body.people.3.email), not "body: should be a valid list" for a single person.
    one_or_many = Annotated[
        Annotated[batch_of_people, Tag("people")] | Annotated[PersonUpsert, Tag("person")],
        Discriminator(_shape),
    ]
    person_id_path = Path(
        pattern=PERSON_ID_PATTERN,
        max_length=PERSON_ID_MAX_LENGTH,
        description="Person id: 1-128 of A-Z a-z 0-9 . _ @ -, not starting with a dot.",
    )

    @router.post(
        "/people",
        summary="Create or replace people (one or a batch)",
        description=f"One person (a JSON object) or a batch (an array of 1 to {max_batch}). "
        f"A body is at most {max_body_bytes} bytes and must arrive within the body timeout. "
        "Ids (and manager ids) use a safe alphabet, so that every person can be looked up.",
        responses=problem_responses(
            {
                400: "The body cannot be read as JSON (e.g. an integer of over 4300 digits).",
                408: "The body did not arrive in full within the body timeout.",
                413: f"The body is larger than {max_body_bytes} bytes.",
                422: "A person is invalid, the batch is empty or holds more than "
                f"{max_batch} people, or it makes a manager cycle.",
            }
        ),
    )
    async def upsert_people(
        people: Annotated[one_or_many, Body()],
        _: Annotated[Caller, Depends(PEOPLE_WRITE)],
    ) -> PeopleUpserted:
        with timed(service="goals", handler="upsert_people").time():
            batch = people if isinstance(people, list) else [people]
            try:
                written = await store.upsert(people=batch)
            except ManagerCycleError as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from exc
            await flush()
            upserted = written.created + written.replaced
            PEOPLE_UPSERTED.inc(upserted)
            return PeopleUpserted(
                upserted=upserted,
                created=written.created,
                replaced=written.replaced,
                unchanged=written.unchanged,
            )

    @router.get(
        "/people/{person_id}",
        summary="One person with their manager chain",
        responses=problem_responses(
            {404: "No person with that id.", 422: "The id is not in the person id alphabet."}
        ),
    )
    async def get_person(
        person_id: Annotated[str, person_id_path],
        caller: Annotated[Caller, Depends(PEOPLE_READ)],
    ) -> PersonRead:
        with timed(service="goals", handler="get_person").time():
            person = await store.get(person_id=person_id)
        await access.check_person(caller, person, person_id)
        assert person is not None
        return person

    @router.get(
        "/people",
        summary="People, ordered by id, with their manager chains",
        description="Read in bulk (one round trip for the page, one per level of the manager "
        "chains). The next page starts after the last id of this one.",
    )
    async def list_people(
        caller: Annotated[Caller, Depends(PEOPLE_READ)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[
            str | None,
            Query(
                pattern=PERSON_ID_PATTERN,
                max_length=PERSON_ID_MAX_LENGTH,
                description="Last id of the previous page.",
            ),
        ] = None,
    ) -> list[PersonRead]:
        with timed(service="goals", handler="list_people").time():
            return await store.list(limit=limit, after=after, visible=access.people_filter(caller))

    return router


def _shape(body: Any) -> str:
    return "people" if isinstance(body, list) else "person"
