"""Two processes of every service against one nats-server and one redis-server: they share the
work, and a replica stopped with SIGTERM (it drains) or killed with kill -9 mid-stream costs no
alert and doubles none, for every kind of alert the workload produces.

The scenario is `goalwatch faults --scenario replicas` (docs/reliability.md), made small.
"""

from __future__ import annotations

import pytest

from goalwatch.dev.faults import Workload, run_scenario, scenarios
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


def test_replicas_stopped_and_killed_mid_stream_deliver_every_alert_exactly_once() -> None:
    [scenario] = [s for s in scenarios() if s.name == "replicas"]
    outcome = run_scenario(
        scenario, Workload(subjects=50, duration=10.0, settle=90.0), rules_dir=REPO / "rules"
    )
    notes = " | ".join(outcome.notes)
    # Both stopped replicas shut down cleanly, the evaluator handing its partitions over;
    # the other evaluator was killed mid-stream.
    assert "both gone after" in notes, outcome.row()
    assert "did not shut down cleanly" not in notes, outcome.row()
    handed = int(notes.split("handing over ")[1].split(" ")[0])
    assert handed >= 1, outcome.row()
    assert any(note.startswith("kill -9 evaluator-2") for note in outcome.notes), outcome.row()
    counts = outcome.counts
    assert counts.expected == 50 + 5 + 5 + 5 + 4 * 2 * 2 * 2, outcome.row()
    assert all(c.received + c.superseded == c.expected for c in outcome.by_kind.values()), (
        outcome.row()
    )
    assert (counts.lost, counts.duplicated, counts.unexpected) == (0, 0, 0), outcome.row()
    assert (outcome.invalid, outcome.dead_letters, outcome.held) == (0, 0, 0), outcome.row()
    assert outcome.problems() == [], outcome.row()
    print(outcome.row())
    assert not any(note.startswith("stopped waiting") for note in outcome.notes), outcome.row()
