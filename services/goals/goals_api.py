"""The goals HTTP API for org units and goals: ``/v1/org-units`` and ``/v1/goals``."""

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, Discriminator, Field, Tag

from goalwatch.auth.policies import (
    CHECK_INS_WRITE,
    GOALS_READ,
    GOALS_WRITE,
    ORG_UNITS_READ,
    ORG_UNITS_WRITE,
)
from goalwatch.auth.policy import Caller
from goalwatch.contracts.goals import (
    CheckInCreate,
    CheckInHistory,
    CheckInRead,
    GoalImpact,
    GoalPage,
    GoalRead,
    GoalStatus,
    GoalTree,
    GoalType,
    GoalUpsert,
    OrgUnitRead,
    OrgUnitUpsert,
    UpsertReport,
)
from goalwatch.contracts.metrics import PERSON_ID_MAX_LENGTH, PERSON_ID_PATTERN
from goalwatch.problems import problem, problem_responses
from services.goals.access import Access
from services.goals.goal_store import ConflictError, GoalStore, GraphError
from services.goals.impact import ImpactWalk
from services.goals.metrics import GOALS_UPSERTED, HANDLER_SECONDS
from services.goals.org_units import OrgUnitError, OrgUnitStore

Flush = Callable[[], Awaitable[bool]]

_ID = {"pattern": PERSON_ID_PATTERN, "max_length": PERSON_ID_MAX_LENGTH}
GoalIdPath = Annotated[
    str, Path(description="Goal id: 1-128 of A-Z a-z 0-9 . _ @ -, not starting with a dot.", **_ID)
]
FilterId = Annotated[str | None, Query(**_ID)]


def _shape_of(many: str, one: str) -> Callable[[Any], str]:
    """Tell a batch from a single item, so errors name it: body.goals.3.type, body.goal.type."""

    def shape(body: Any) -> str:
        return many if isinstance(body, list) else one

    return shape


def goals_router(
    *,
    goals: GoalStore,
    units: OrgUnitStore,
    impact: ImpactWalk,
    access: Access,
    flush: Flush,
    max_batch: int,
) -> APIRouter:
    """Org units and goals over ``goals``/``units``; ``flush`` publishes what a write owes."""
    router = APIRouter(prefix="/v1")
    timed = HANDLER_SECONDS.labels
    many_units = Annotated[list[OrgUnitUpsert], Field(min_length=1, max_length=max_batch)]
    one_or_many_units = Annotated[
        Annotated[many_units, Tag("org_units")] | Annotated[OrgUnitUpsert, Tag("org_unit")],
        Discriminator(_shape_of("org_units", "org_unit")),
    ]
    many_goals = Annotated[list[GoalUpsert], Field(min_length=1, max_length=max_batch)]
    one_or_many_goals = Annotated[
        Annotated[many_goals, Tag("goals")] | Annotated[GoalUpsert, Tag("goal")],
        Discriminator(_shape_of("goals", "goal")),
    ]
    invalid = (
        "An item is invalid (errors name it: body.goals.<index>.<field> in a batch), the batch is "
        f"empty or holds more than {max_batch} items"
    )

    @router.post(
        "/org-units",
        tags=["org units"],
        summary="Create or replace org units (one or a batch)",
        description=f"One org unit (a JSON object) or a batch (an array of 1 to {max_batch}). "
        "A department's parent is a company, a team's a department (in the batch or stored).",
        responses=problem_responses({422: f"{invalid}, or a parent of the wrong level."}),
    )
    async def upsert_org_units(
        body: Annotated[one_or_many_units, Body()],
        _: Annotated[Caller, Depends(ORG_UNITS_WRITE)],
    ) -> UpsertReport:
        with timed(service="goals", handler="upsert_org_units").time():
            batch = body if isinstance(body, list) else [body]
            try:
                written = await units.upsert(units=batch)
            except OrgUnitError as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from exc
            await flush()
            GOALS_UPSERTED.labels(kind="org_unit").inc(written.created + written.replaced)
            return UpsertReport(
                created=written.created, replaced=written.replaced, unchanged=written.unchanged
            )

    @router.get(
        "/org-units",
        tags=["org units"],
        summary="Org units, in id order",
        dependencies=[Depends(ORG_UNITS_READ)],
    )
    async def list_org_units(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[FilterId, Query(description="Last id of the previous page.")] = None,
    ) -> list[OrgUnitRead]:
        return await units.page(limit=limit, cursor=cursor)

    @router.get(
        "/org-units/{unit_id}",
        tags=["org units"],
        summary="One org unit",
        responses=problem_responses({404: "No org unit with that id."}),
        dependencies=[Depends(ORG_UNITS_READ)],
    )
    async def get_org_unit(
        unit_id: Annotated[str, Path(description="Org unit id.", **_ID)],
    ) -> OrgUnitRead:
        unit = await units.get(unit_id)
        if unit is None:
            raise HTTPException(
                404, f"no org unit with id '{unit_id}'; add it with POST /v1/org-units"
            )
        return unit

    @router.post(
        "/goals",
        tags=["goals"],
        summary="Create or replace goals (one or a batch), with their outgoing links",
        description=f"One goal (a JSON object) or a batch (an array of 1 to {max_batch}), "
        "written together or not at all. A goal's contributes_to and depends_on replace the "
        "links it had; a link to a goal not stored yet is kept and counts once it arrives. "
        "Each change is published to GOALWATCH_GOALS.",
        response_model=UpsertReport,
        responses=problem_responses(
            {
                409: "Concurrent writes kept changing the same goals; send the batch again.",
                422: f"{invalid}, or a link would close a cycle (the cycle is spelled out).",
            }
        ),
    )
    async def upsert_goals(
        body: Annotated[one_or_many_goals, Body()],
        _: Annotated[Caller, Depends(GOALS_WRITE)],
    ) -> UpsertReport | JSONResponse:
        with timed(service="goals", handler="upsert_goals").time():
            batch = body if isinstance(body, list) else [body]
            try:
                result = await goals.upsert(goals=batch)
            except GraphError as exc:
                where = "body.goal"
                if isinstance(body, list):
                    where = "body.goals" if exc.item is None else f"body.goals.{exc.item}"
                field = "depends_on" if "depends_on" in str(exc) else "contributes_to"
                return problem(422, str(exc), errors=[{"loc": f"{where}.{field}", "msg": str(exc)}])
            except ConflictError as exc:
                raise HTTPException(status_code=409, detail=str(exc)) from exc
            await flush()
            GOALS_UPSERTED.labels(kind="goal").inc(result.created + result.replaced)
            return UpsertReport(
                created=result.created, replaced=result.replaced, unchanged=result.unchanged
            )

    @router.get(
        "/goals",
        tags=["goals"],
        summary="Goals in id order, filtered and paged",
        description="Every filter given must match. Pages follow each other by cursor.",
    )
    async def list_goals(
        caller: Annotated[Caller, Depends(GOALS_READ)],
        owner_id: FilterId = None,
        org_unit_id: FilterId = None,
        status: GoalStatus | None = None,
        type: GoalType | None = None,
        period: Annotated[str | None, Query(max_length=16)] = None,
        due_before: Annotated[
            AwareDatetime | None, Query(description="Only goals due before this time.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[FilterId, Query(description="next_cursor of the previous page.")] = None,
    ) -> GoalPage:
        given = {
            "owner_id": owner_id,
            "org_unit_id": org_unit_id,
            "status": status.value if status else None,
            "type": type.value if type else None,
            "period": period,
        }
        filters = {field: value for field, value in given.items() if value is not None}
        with timed(service="goals", handler="list_goals").time():
            page, next_cursor = await goals.page(
                limit=limit,
                cursor=cursor,
                filters=filters,
                due_before=due_before,
                visible=access.goals_filter(caller),
            )
        return GoalPage(goals=page, next_cursor=next_cursor)

    async def one_goal(goal_id: str, caller: Caller) -> GoalRead:
        found = await goals.load(ids=[goal_id])
        # Someone else's goal reads as no goal: its existence is not the caller's to learn.
        if goal_id not in found or not await access.sees_goal(caller, found[goal_id]):
            raise HTTPException(404, f"no goal with id '{goal_id}'; add it with POST /v1/goals")
        return (await goals.with_progress([found[goal_id]]))[0]

    @router.get(
        "/goals/{goal_id}",
        tags=["goals"],
        summary="One goal, with its progress rolled up",
        responses=problem_responses({404: "No goal with that id."}),
    )
    async def get_goal(
        goal_id: GoalIdPath, caller: Annotated[Caller, Depends(GOALS_READ)]
    ) -> GoalRead:
        return await one_goal(goal_id, caller)

    @router.post(
        "/goals/{goal_id}/check-ins",
        tags=["goals"],
        status_code=201,
        summary="Check in on a goal: new value, status or confidence, with a note",
        description="Updates the goal's current value, status and confidence, keeps the "
        "check-in in its history and publishes GoalCheckedIn (and GoalStatusChanged if the "
        "status changed). A check-in resent with the same id is recorded once.",
        responses=problem_responses({404: "No goal with that id.", 409: "Concurrent writes."}),
    )
    async def check_in(
        goal_id: GoalIdPath,
        body: CheckInCreate,
        caller: Annotated[Caller, Depends(CHECK_INS_WRITE)],
    ) -> CheckInRead:
        with timed(service="goals", handler="check_in").time():
            goal = await one_goal(goal_id, caller)
            # A person checks in as themselves; an HR admin may enter one for someone (the
            # audit log records who did), as a system relays its users'.
            if not caller.org_wide and body.by != caller.person_id:
                raise HTTPException(
                    403,
                    f"the check-in says it is by '{body.by}', but {caller.who} is signed in: a "
                    "person checks in as themselves (only a system relays others' check-ins)",
                )
            if not await access.may_check_in(caller, goal):
                raise HTTPException(
                    403,
                    f"{caller.who} may not check in on goal '{goal_id}': only its owner, the "
                    "owner's managers and HR admins do",
                )
            try:
                recorded = await goals.check_in(goal_id=goal_id, check_in=body)
            except ConflictError as exc:
                raise HTTPException(status_code=409, detail=str(exc)) from exc
            if recorded is None:
                raise HTTPException(404, f"no goal with id '{goal_id}'; add it with POST /v1/goals")
            await flush()
            return recorded

    @router.get(
        "/goals/{goal_id}/check-ins",
        tags=["goals"],
        summary="A goal's check-ins, newest first",
        responses=problem_responses({404: "No goal with that id."}),
    )
    async def check_in_history(
        goal_id: GoalIdPath,
        caller: Annotated[Caller, Depends(GOALS_READ)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> CheckInHistory:
        await one_goal(goal_id, caller)
        history = await goals.check_ins(goal_id=goal_id, limit=limit, offset=offset)
        return CheckInHistory(goal_id=goal_id, check_ins=history)

    @router.get(
        "/goals/{goal_id}/tree",
        tags=["goals"],
        summary="A goal's alignment tree: ancestors and descendants, and its dependencies",
        responses=problem_responses({404: "No goal with that id."}),
    )
    async def tree(
        goal_id: GoalIdPath,
        caller: Annotated[Caller, Depends(GOALS_READ)],
        depth: Annotated[
            int, Query(ge=1, le=32, description="How many levels down to list descendants.")
        ] = 32,
    ) -> GoalTree:
        with timed(service="goals", handler="tree").time():
            goal = await one_goal(goal_id, caller)
            ancestors = await goals.tree_nodes(await goals.walk(goal_id=goal_id, direction="up"))
            descendants = await goals.tree_nodes(
                await goals.walk(goal_id=goal_id, direction="down", max_depth=depth)
            )
            deps, dependents = await goals.dependencies(goal_id=goal_id)
        return GoalTree(
            goal=goal,
            ancestors=ancestors,
            descendants=descendants,
            depends_on=deps,
            dependents=dependents,
        )

    @router.get(
        "/goals/{goal_id}/impact",
        tags=["goals"],
        summary="Every goal affected if this one fails",
        description="Upward through contributes_to and across through depends_on, at any "
        "depth; each affected goal once, by its shortest path, with the share of it that "
        "rests on this goal, its owner and the owner's manager.",
        responses=problem_responses({404: "No goal with that id."}),
    )
    async def goal_impact(
        goal_id: GoalIdPath, response: Response, caller: Annotated[Caller, Depends(GOALS_READ)]
    ) -> GoalImpact:
        await one_goal(goal_id, caller)
        began = time.perf_counter()
        with timed(service="goals", handler="impact").time():
            answer = await impact.impact(goal_id)
        if answer is None:
            raise HTTPException(404, f"no goal with id '{goal_id}'; add it with POST /v1/goals")
        # The walk and its reads, without the HTTP around them (goalwatch bench reports it).
        response.headers["Server-Timing"] = f"impact;dur={(time.perf_counter() - began) * 1000:.3f}"
        return answer

    return router
