"""One fault on every commit: kill -9 the evaluator inside a batch; nothing lost, nothing doubled,
for the threshold alerts of the stream, those its timers fire and escalate (`for`,
`escalate`), the overdue alerts of its heartbeats (durable timers)
and the dependency-impact alerts of its goal changes (goals' outbox).

The full set of scenarios takes minutes and runs with `make faults` (docs/reliability.md).
"""

from __future__ import annotations

import pytest

from goalwatch.dev.faults import Workload, run_scenario, scenarios
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


def test_the_evaluator_killed_inside_a_batch_loses_and_doubles_nothing() -> None:
    [scenario] = [s for s in scenarios() if s.name == "kill-evaluator-in-batch"]
    outcome = run_scenario(
        scenario, Workload(subjects=50, duration=3.0, settle=90.0), rules_dir=REPO / "rules"
    )
    assert any(note.startswith("kill -9 evaluator") for note in outcome.notes), outcome.row()
    counts = outcome.counts
    # 50 subjects: 50 threshold alerts; from each of the 5 groups a pressure reading, fired
    # by its `for` timer and escalated by the next, and a heartbeat; 4 key results invalid
    # and back twice, each change reaching 2 owners.
    expected = {
        "threshold": 50,
        "threshold_for": 5,
        "escalation": 5,
        "overdue": 5,
        "dependency_impact": 4 * 2 * 2 * 2,
    }
    assert {kind: c.expected for kind, c in outcome.by_kind.items()} == expected, outcome.row()
    # A firing whose resolution or escalation the notifier processed first is not sent
    # (webhook.md).
    assert all(c.received + c.superseded == c.expected for c in outcome.by_kind.values()), (
        outcome.row()
    )
    assert (counts.lost, counts.duplicated, counts.unexpected) == (0, 0, 0), outcome.row()
    assert counts.degraded == 0, outcome.row()
    assert (outcome.invalid, outcome.dead_letters, outcome.held) == (0, 0, 0), outcome.row()
    assert outcome.problems() == [], outcome.row()
    # It ended on "everything arrived and the pipeline is drained", not on the settle time.
    assert not any(note.startswith("stopped waiting") for note in outcome.notes), outcome.row()
