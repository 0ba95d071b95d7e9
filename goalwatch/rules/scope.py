"""Rules scoped by org unit: ``org_unit: radiology`` means "subjects in radiology or in any unit
under it".

A subject's org units are the unit they belong to and all its ancestors, nearest first, as
the evaluator's directory view knows them (``services/evaluator/directory.py``); a rule test
gives them in its file. A rule applies to a subject when one of the rule's units is among the
subject's: membership in a subtree becomes membership in a list, which the rules engine can
test (``$iany`` over an array property), so for threshold rules durable_rules decides it
(:func:`engine_terms`, posted with :data:`ORG_UNITS_KEY`). The overdue (absence) kind has no
engine step, so :func:`in_scope` decides it in Python, with the same meaning.

A subject the directory does not know belongs to no unit: a scoped rule does not apply to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

ORG_UNITS_KEY: Final = "org_units"
"""The property of an engine message that holds the subject's org units (a list of ids)."""

MAX_DEPTH: Final = 64
"""Most ancestors followed up from a unit: a deeper chain (or a loop a bad write made) is cut
there rather than followed for ever."""


def in_scope(units: Sequence[str], org_units: Sequence[str]) -> bool:
    """Whether a subject whose org units (own unit and ancestors) are ``org_units`` is inside
    the rule scope ``units``; an unscoped rule (no units) takes everyone."""
    return not units or any(unit in org_units for unit in units)


def engine_terms(units: Sequence[str]) -> list[dict[str, Any]]:
    """The durable_rules terms of a scope: one of ``units`` is an item of the message's
    :data:`ORG_UNITS_KEY` array (none for an unscoped rule). An empty array matches nothing."""
    alternatives = [{"$iany": {ORG_UNITS_KEY: {"$i": unit}}} for unit in units]
    if len(alternatives) <= 1:
        return alternatives
    return [{"$or": alternatives}]


def ancestry(unit: str | None, parents: Mapping[str, str | None]) -> list[str]:
    """``unit`` and its ancestors, nearest first, by ``parents`` (unit id → parent id).

    A unit missing from ``parents`` ends the chain (it is still listed: a person's own unit
    is known from the person even before the unit itself is); a loop ends it at the first
    unit seen twice, and the chain stops after :data:`MAX_DEPTH` units. The evaluator's
    directory script walks the same way inside Redis.
    """
    chain: list[str] = []
    while unit is not None and unit not in chain and len(chain) < MAX_DEPTH:
        chain.append(unit)
        unit = parents.get(unit)
    return chain
