"""A rule's revision: a short, stable digest of what decides its verdicts and its state.

Rules can change while the evaluator runs. The state it keeps per alert key (the threshold
kind's observations with their verdicts, a deadline, an open episode) was built under the
rule as it was; a key meets the rule as it is now at its next input. The revision says
whether the two are the same rule *as far as the state is concerned*:

- it covers everything that decides verdicts, deadlines and which inputs count: the kind,
  the metric, ``where``, ``org_unit``, ``by``, the whole ``condition`` (``consecutive``,
  ``for``, ``per``, ``window``, ``aggregate``, ``resolve_at`` ...), and for the goal kinds
  ``goals``, ``when`` and ``min_weight``;
- it leaves out what only changes how an alert is told: ``name``, ``description``,
  ``message``, ``resolved_message``, ``severity``, ``escalate`` and ``notify``, and the
  ``id`` (which names the rule's keys, see :func:`goalwatch.rules.transitions.fingerprint`).
  A rule edited only there keeps its state as it is.

It is the SHA-256 of the canonical JSON of the rule as validated (defaults filled in, keys
sorted), so every process and every replica computes the same revision for the same rule,
whatever the order or the spelling of its YAML. Two ways of writing one meaning that the
model keeps apart (a list of label values in another order) give two revisions; that
costs one re-judgement of the keys' state, which then changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from goalwatch.rules.goal_overdue_spec import GoalOverdueRuleSpec
from goalwatch.rules.impact_spec import ImpactRuleSpec
from goalwatch.rules.spec import RuleSpec

PRESENTATION: Final = frozenset(
    {
        "id",
        "name",
        "description",
        "severity",
        "escalate",
        "notify",
        "message",
        "resolved_message",
    }
)
"""Fields of a rule that do not enter its revision: how its alerts are named, told and
routed, not when they fire."""
LENGTH: Final = 16
"""Hex digits of a revision: 64 bits, as for a fingerprint."""

AnyRuleSpec = RuleSpec | GoalOverdueRuleSpec | ImpactRuleSpec
"""A rule of any kind, as the loader returns it."""


def revision(spec: AnyRuleSpec) -> str:
    """The revision of ``spec``: 16 hex digits, equal for two rules exactly when everything
    but their :data:`PRESENTATION` fields is equal."""
    content = spec.model_dump(
        mode="json", exclude=set(PRESENTATION & type(spec).model_fields.keys())
    )
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]
