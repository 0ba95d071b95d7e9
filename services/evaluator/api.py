"""The loaded rules over HTTP: ``GET /v1/rules`` and ``GET /v1/rules/{rule_id}``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from goalwatch.contracts import RuleKind, Severity
from goalwatch.problems import problem_responses
from goalwatch.rules import GoalOverdueRuleSpec, ImpactRuleSpec, LoadedRule


class RuleRead(BaseModel):
    """A loaded rule, as served by ``GET /v1/rules``."""

    id: str = Field(description="Rule id.")
    name: str = Field(description="Human-readable name.")
    description: str | None = Field(description="What the rule is for.")
    kind: RuleKind = Field(description="Rule kind.")
    metric: str | None = Field(description="Metric the rule watches; null for dependency_impact.")
    where: dict[str, str | list[str] | dict[str, list[str]]] = Field(
        description="Label filters (threshold and absence rules): a value, a list of values, "
        "or {not_in: [...]}."
    )
    condition: dict[str, Any] = Field(
        description="threshold: op, value, consecutive and, when set, resolve_at and for; "
        "dependency_impact: when (status, "
        "type, org_unit) and min_weight."
    )
    severity: Severity = Field(description="Severity of the alerts it fires.")
    by: list[str] = Field(
        default_factory=list,
        description="Threshold and fraud rules: labels whose values keep alerts apart.",
    )
    escalate: list[dict[str, str]] = Field(
        default_factory=list,
        description="Threshold rules: the severities a firing alert rises to, [{after, severity}].",
    )
    notify: list[str] = Field(description="Who is notified.")
    message: str = Field(description="Message template.")
    resolved_message: str | None = Field(description="Resolved message template, if any.")
    file: str = Field(description="Name of the file in the rules directory it was loaded from.")

    @classmethod
    def of(cls, rule: LoadedRule) -> RuleRead:
        """The API view of a loaded rule."""
        spec = rule.spec
        where: dict[str, str | list[str] | dict[str, list[str]]] = {}
        condition: dict[str, object]
        escalate: list[dict[str, str]] = []
        if isinstance(spec, ImpactRuleSpec):
            metric = None
            condition = {"when": spec.when.model_dump(mode="json"), "min_weight": spec.min_weight}
        elif isinstance(spec, GoalOverdueRuleSpec):
            metric = None
            condition = {
                "goals": spec.goals.model_dump(mode="json"),
                **spec.condition.model_dump(mode="json", exclude_none=True),
            }
        else:
            metric = spec.metric
            condition = spec.condition.model_dump(mode="json", by_alias=True, exclude_none=True)
            where = spec.model_dump(mode="json", include={"where"})["where"]
            escalate = [step.model_dump(mode="json") for step in spec.escalate]
        return cls(
            id=spec.id,
            name=spec.name,
            description=spec.description,
            kind=spec.kind,
            metric=metric,
            where=where,
            condition=condition,
            severity=spec.severity,
            by=list(getattr(spec, "by", [])),
            escalate=escalate,
            notify=list(spec.notify),
            message=spec.message,
            resolved_message=spec.resolved_message,
            file=rule.path.name,
        )


def rules_router(rules: Sequence[LoadedRule], *, rules_dir: Path) -> APIRouter:
    """The rules API over the rules loaded from ``rules_dir``."""
    router = APIRouter(prefix="/v1", tags=["rules"])
    by_id = {rule.spec.id: rule for rule in rules}

    @router.get("/rules", summary="The rules loaded at start-up, ordered by file name")
    async def list_rules() -> list[RuleRead]:
        return [RuleRead.of(rule) for rule in rules]

    @router.get(
        "/rules/{rule_id}",
        summary="One loaded rule",
        responses=problem_responses({404: "No rule with that id is loaded."}),
    )
    async def get_rule(rule_id: str) -> RuleRead:
        rule = by_id.get(rule_id)
        if rule is None:
            loaded = ", ".join(by_id) or "none"
            raise HTTPException(
                status_code=404,
                detail=f"no rule with id '{rule_id}' is loaded (loaded: {loaded}); "
                "rules are read from the rules directory at start-up",
            )
        return RuleRead.of(rule)

    return router
