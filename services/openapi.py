"""The OpenAPI documents of the four services' HTTP APIs, for ``contracts/openapi/``.

Built from each service's ``create_app`` with default settings, whatever the environment says
(nothing connects: apps connect only when they start), so the documents are what the running
services serve at ``/openapi.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI

_RULES = Path(__file__).resolve().parents[1] / "rules"


def _apps() -> dict[str, FastAPI]:
    from services.evaluator.app import EvaluatorSettings
    from services.evaluator.app import create_app as evaluator
    from services.goals.app import GoalsSettings
    from services.goals.app import create_app as goals
    from services.ingestion.app import IngestionSettings
    from services.ingestion.app import create_app as ingestion
    from services.notifier.app import NotifierSettings
    from services.notifier.app import create_app as notifier

    return {
        "ingestion": ingestion(IngestionSettings.model_construct()),
        "goals": goals(GoalsSettings.model_construct()),
        "evaluator": evaluator(EvaluatorSettings.model_construct(rules_dir=_RULES)),
        "notifier": notifier(NotifierSettings.model_construct()),
    }


def render_openapi() -> dict[str, str]:
    """``openapi/<service>.json`` → document text, rendered like the other contract files."""
    return {
        f"openapi/{name}.json": json.dumps(
            app.openapi(), indent=2, sort_keys=True, ensure_ascii=False
        )
        + "\n"
        for name, app in _apps().items()
    }
