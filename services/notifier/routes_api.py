"""The routing over HTTP: what is in force, where an alert would go, and reloading the file.

``GET /v1/routes`` shows the tree, the receivers (where they point, never a secret) and the
named groups; ``POST /v1/routes/test`` answers, for an alert's labels, which routes take it
and which receivers it reaches; ``POST /v1/routes/reload`` reads the routing file again and
puts it in force when the whole of it loads (else 422 with every problem, file:line, and the
routing in force stays).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import Field

from goalwatch.auth.policies import ROUTES_READ, ROUTES_RELOAD, ROUTES_TEST
from goalwatch.contracts.base import Contract
from goalwatch.file_errors import FileErrors
from goalwatch.problems import problem, problem_responses
from goalwatch.routing.spec import RouteSpec
from goalwatch.routing.tree import match, receivers
from services.notifier.routing import Router, Routing


class TargetRead(Contract):
    """One channel of a receiver."""

    channel: str = Field(
        description="webhook, email, wecom, dingtalk, feishu, slack or alertmanager."
    )
    language: str | None = Field(
        description="Fixed language; null: the recipient's, or the default."
    )
    where: str = Field(description="Where it delivers (scheme and host; never a token).")
    rate_limits: list[str] = Field(
        description="At most this many messages per window (e.g. 20/1m); more are held back "
        "and merged into a digest. Empty: no limit."
    )


class ReceiverRead(Contract):
    """A receiver in force."""

    name: str = Field(description="Its name.")
    per_person: bool = Field(description="One message per recipient, on their preferred channel.")
    channels: list[TargetRead] = Field(description="Its channels, in order.")
    quiet_hours: str | None = Field(
        description="When its messages wait, e.g. 22:00-08:00 Asia/Shanghai (critical: send); "
        "null: never."
    )


class RouteRead(Contract):
    """A node of the routing tree."""

    receiver: str | None = Field(description="Its receiver; null: its parent's.")
    matchers: list[str] = Field(description="Every one must hold.")
    continue_: bool = Field(alias="continue", description="Siblings are tried after it too.")
    routes: list[RouteRead] = Field(description="Its children, in order.")

    @classmethod
    def of(cls, route: RouteSpec) -> RouteRead:
        """The tree under ``route``."""
        return cls.model_validate(
            {
                "receiver": route.receiver,
                "matchers": [str(m) for m in route.matchers],
                "continue": route.continue_,
                "routes": [cls.of(child) for child in route.routes],
            }
        )


class RoutingRead(Contract):
    """The routing in force."""

    source: str | None = Field(
        description="The routing file; null: the per-channel settings route every alert."
    )
    digest: str | None = Field(description="Short SHA-256 of the file as loaded.")
    loaded_at: datetime = Field(description="When it was loaded.")
    route: RouteRead = Field(description="The routing tree.")
    receivers: list[ReceiverRead] = Field(description="The receivers.")
    groups: dict[str, list[str]] = Field(description="Named groups: person ids.")

    @classmethod
    def of(cls, router: Router) -> RoutingRead:
        """What ``router`` holds."""
        return cls(
            source=router.source,
            digest=router.digest,
            loaded_at=router.loaded_at,
            route=RouteRead.of(router.tree),
            receivers=[
                ReceiverRead(
                    name=r.name,
                    per_person=r.per_person,
                    channels=[
                        TargetRead(
                            channel=t.kind,
                            language=t.language,
                            where=t.where,
                            rate_limits=[str(limit) for limit in t.limits],
                        )
                        for t in r.targets
                    ],
                    quiet_hours=None
                    if r.quiet_hours is None
                    else f"{r.quiet_hours.start:%H:%M}-{r.quiet_hours.end:%H:%M} "
                    f"{r.quiet_hours.time_zone} (critical: {r.quiet_hours.critical})",
                )
                for r in router.receivers.values()
            ],
            groups={name: list(people) for name, people in router.groups.items()},
        )


class RouteTest(Contract):
    """An alert's labels, to see where it would go."""

    labels: dict[Annotated[str, Field(max_length=100)], Annotated[str, Field(max_length=500)]] = (
        Field(
            max_length=50,
            description="The labels routes match on: rule, kind, severity, subject, metric, "
            "fingerprint and the alert's own (department, ...).",
            examples=[
                {"rule": "report-rework-rate-high", "kind": "threshold", "severity": "warning"}
            ],
        )
    )


class RouteTaken(Contract):
    """One route that takes the alert."""

    path: str = Field(description="Where it is in the file, e.g. route.routes[1].")
    receiver: str = Field(description="The receiver it sends to.")
    matchers: list[str] = Field(description="Every matcher on the way from the root.")


class RouteTestResult(Contract):
    """Where an alert with those labels goes."""

    routes: list[RouteTaken] = Field(description="The routes that take it, in order.")
    receivers: list[str] = Field(description="The receivers it reaches, once each.")


def routes_router(routing: Routing) -> APIRouter:
    """``/v1/routes``."""
    router = APIRouter(prefix="/v1", tags=["routing"])

    @router.get("/routes", summary="The routing in force", dependencies=[Depends(ROUTES_READ)])
    async def show() -> RoutingRead:
        return RoutingRead.of(routing.current)

    @router.post(
        "/routes/test",
        summary="Which routes and receivers an alert takes",
        dependencies=[Depends(ROUTES_TEST)],
    )
    async def test(asked: Annotated[RouteTest, Body()]) -> RouteTestResult:
        matched = match(routing.current.tree, dict(asked.labels))
        return RouteTestResult(
            routes=[
                RouteTaken(path=m.path, receiver=m.receiver, matchers=list(m.matchers))
                for m in matched
            ],
            receivers=receivers(matched),
        )

    @router.post(
        "/routes/reload",
        summary="Read the routing file again",
        dependencies=[Depends(ROUTES_RELOAD)],
        response_model=RoutingRead,
        responses=problem_responses(
            {
                409: "No routing file is configured: nothing to reload.",
                422: "The file does not load; every problem is named, file:line.",
            }
        ),
    )
    async def reload() -> RoutingRead | JSONResponse:
        if routing.path is None:
            raise HTTPException(
                409,
                "no routing file is configured (GOALWATCH_ROUTES_FILE): the per-channel "
                "settings route every alert, and there is nothing to reload",
            )
        try:
            return RoutingRead.of(routing.reload())
        except FileErrors as exc:
            count = len(exc.errors)
            return problem(
                422,
                f"the routing file has {count} problem{'s' if count != 1 else ''} and was not "
                f"loaded; the routing in force stays. First: {exc.errors[0].lint_line()}",
                problems=[
                    {
                        "file": error.file,
                        "line": error.line,
                        "column": error.column,
                        "field": error.field,
                        "message": error.message,
                        "text": error.lint_line(),
                    }
                    for error in exc.errors
                ],
            )

    return router
