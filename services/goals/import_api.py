"""CSV import: ``POST /v1/org-units/import``, ``/v1/people/import``, ``/v1/goals/import``.

The same upserts as the JSON routes, from a CSV body (:mod:`services.goals.csv_import`): all
rows are written together or, if any is invalid, none, and the answer names every bad cell
by row, line and column.
"""

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from goalwatch.auth.policies import GOALS_WRITE, ORG_UNITS_WRITE, PEOPLE_WRITE
from goalwatch.contracts import PersonUpsert
from goalwatch.contracts.goals import GoalUpsert, OrgUnitUpsert, UpsertReport
from goalwatch.problems import problem, problem_responses
from services.goals.csv_import import CsvError, parse_rows
from services.goals.goal_store import ConflictError, GoalStore, GraphError
from services.goals.metrics import GOALS_UPSERTED, PEOPLE_UPSERTED
from services.goals.org_units import OrgUnitError, OrgUnitStore
from services.goals.people import ManagerCycleError, PeopleStore

_CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


def import_router(
    *,
    people: PeopleStore,
    units: OrgUnitStore,
    goals: GoalStore,
    flush: Callable[[], Awaitable[bool]],
    max_batch: int,
) -> APIRouter:
    """The three CSV import routes, at most ``max_batch`` rows each."""
    router = APIRouter(prefix="/v1", tags=["import"])
    responses = problem_responses(
        {
            400: "The body is not UTF-8 text.",
            415: "The body is not text/csv.",
            422: f"A row is invalid (each bad cell named by row, line and column), there are "
            f"more than {max_batch} rows, or the rows break a rule of the graph.",
        }
    )

    async def text_of(request: Request) -> str:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "text/csv":
            raise HTTPException(415, f"send the rows as text/csv, not {kind or 'no type'}")
        try:
            return (await request.body()).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise HTTPException(400, "the CSV is not valid UTF-8") from None

    def invalid(exc: CsvError) -> JSONResponse:
        return problem(422, str(exc), errors=exc.errors[:100])

    @router.post(
        "/org-units/import",
        dependencies=[Depends(ORG_UNITS_WRITE)],
        summary="Create or replace org units from CSV",
        response_model=UpsertReport,
        openapi_extra=_CSV_BODY,
        responses=responses,
    )
    async def import_org_units(request: Request) -> UpsertReport | JSONResponse:
        try:
            rows = parse_rows(await text_of(request), OrgUnitUpsert, max_rows=max_batch)
            written = await units.upsert(units=rows)
        except CsvError as exc:
            return invalid(exc)
        except OrgUnitError as exc:
            raise HTTPException(422, str(exc)) from exc
        await flush()
        GOALS_UPSERTED.labels(kind="org_unit").inc(written.created + written.replaced)
        return UpsertReport(
            created=written.created, replaced=written.replaced, unchanged=written.unchanged
        )

    @router.post(
        "/people/import",
        dependencies=[Depends(PEOPLE_WRITE)],
        summary="Create or replace people from CSV",
        response_model=UpsertReport,
        openapi_extra=_CSV_BODY,
        responses=responses,
    )
    async def import_people(request: Request) -> UpsertReport | JSONResponse:
        try:
            rows = parse_rows(await text_of(request), PersonUpsert, max_rows=max_batch)
            written = await people.upsert(people=rows)
        except CsvError as exc:
            return invalid(exc)
        except ManagerCycleError as exc:
            raise HTTPException(422, str(exc)) from exc
        await flush()
        PEOPLE_UPSERTED.inc(written.created + written.replaced)
        return UpsertReport(
            created=written.created, replaced=written.replaced, unchanged=written.unchanged
        )

    @router.post(
        "/goals/import",
        dependencies=[Depends(GOALS_WRITE)],
        summary="Create or replace goals from CSV",
        response_model=UpsertReport,
        openapi_extra=_CSV_BODY,
        responses=responses,
    )
    async def import_goals(request: Request) -> UpsertReport | JSONResponse:
        try:
            rows = parse_rows(await text_of(request), GoalUpsert, max_rows=max_batch)
            result = await goals.upsert(goals=rows)
        except CsvError as exc:
            return invalid(exc)
        except GraphError as exc:
            row = f"row {exc.item + 1}" if exc.item is not None else "rows"
            return problem(422, str(exc), errors=[{"loc": row, "msg": str(exc)}])
        except ConflictError as exc:
            raise HTTPException(409, str(exc)) from exc
        await flush()
        GOALS_UPSERTED.labels(kind="goal").inc(result.created + result.replaced)
        return UpsertReport(
            created=result.created, replaced=result.replaced, unchanged=result.unchanged
        )

    return router
