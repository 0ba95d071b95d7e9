"""``GET /v1/rules/{rule_id}/tests``: the test cases shipped with the rules, for one rule.

Rule tests live beside the rule files (``<GOALWATCH_RULES_DIR>/tests/*.yaml``, run by
``goalwatch rules test`` and ``make test``). The console's rule editor offers a rule's own
cases in its test pane, to run against the text being edited. A test belongs to a rule when
its ``rules:`` names it, or, without ``rules:``, when an alert it expects is the rule's. The
files are read at each request (a few small files): a test added beside the rules is offered
at once, and a deployment that ships no ``tests/`` folder (the Kubernetes ConfigMap holds
only the rules) answers an empty list.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Depends
from pydantic import Field

from goalwatch.auth.policies import RULES_CHECK
from goalwatch.contracts.base import Contract

logger = logging.getLogger(__name__)


class ShippedTest(Contract):
    """One test file that exercises the rule."""

    file: str = Field(description="The test file's name in the rules' tests/ folder.")
    name: str = Field(description="The test's name (its `name:`), or the file's.")
    text: str = Field(description="The file's text, as `POST /v1/rules/{id}/test` takes it.")


def _tests_rule(document: Any, rule_id: str) -> bool:
    if not isinstance(document, dict):
        return False
    named = document.get("rules")
    if isinstance(named, list):
        return rule_id in named
    expected = document.get("expect")
    return isinstance(expected, list) and any(
        isinstance(alert, dict) and alert.get("rule") == rule_id for alert in expected
    )


def shipped_tests(folder: Path, rule_id: str) -> list[ShippedTest]:
    """The test files of ``folder`` that exercise ``rule_id``, by file name; a file that is
    not YAML is left out (``goalwatch rules test`` reports it)."""
    found: list[ShippedTest] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            text = path.read_text(encoding="utf-8")
            document = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            logger.warning("rule test %s not offered: %s", path, exc)
            continue
        if _tests_rule(document, rule_id):
            name = document.get("name")
            found.append(
                ShippedTest(
                    file=path.name, name=name if isinstance(name, str) else path.stem, text=text
                )
            )
    return found


def shipped_tests_router(rules_dir: Path) -> APIRouter:
    """The route over ``<rules_dir>/tests``."""
    router = APIRouter(prefix="/v1", tags=["rules"])

    @router.get(
        "/rules/{rule_id}/tests",
        summary="The test cases shipped beside the rules that exercise this rule",
        description="Files of the rules folder's tests/ whose `rules:` names the rule (or, "
        "without `rules:`, that expect one of its alerts). Empty when none does, or when no "
        "tests/ folder is deployed. Run one with POST /v1/rules/{id}/test.",
        dependencies=[Depends(RULES_CHECK)],
    )
    async def tests_of(rule_id: str) -> list[ShippedTest]:
        return shipped_tests(rules_dir / "tests", rule_id)

    return router
