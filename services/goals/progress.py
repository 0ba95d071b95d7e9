"""How far along a goal is, from its own values (pure; shared with the rule tests through
:mod:`goalwatch.goal_graph`).

A parent's progress is rolled up from its contributors by the write script, in the same step
as the write (:data:`services.goals.scripts.UPSERT_GOALS`).
"""

from __future__ import annotations

from goalwatch.goal_graph import own_progress

__all__ = ["own_progress"]
