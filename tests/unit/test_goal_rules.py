"""The goals service's pure parts: own progress, the events of a change, CSV rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from goalwatch.contracts.goals import GoalRead
from services.goals.csv_import import CsvError, parse_rows
from services.goals.events import ChangeRecord, events_of
from services.goals.progress import own_progress

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "target", "current", "expected"),
    [
        (0, 100, 25, 25.0),
        (12, 5, 9, 42.8571),  # a rate to bring down
        (0, 10, 15, 100.0),  # clamped
        (0, 10, -3, 0.0),
        (None, 10, 5, 50.0),  # no start: from zero
        (5, 5, 5, 100.0),
        (0, 10, None, None),
    ],
)
def test_own_progress(
    start: float | None, target: float, current: float | None, expected: float | None
) -> None:
    assert own_progress(start=start, target=target, current=current) == expected


def _goal(version: int, **fields: object) -> GoalRead:
    base: dict[str, object] = {"id": "kr", "title": "KR", "type": "key_result",
                               "owner_id": "li-na", "version": version, "updated_at": T0}  # fmt: skip
    return GoalRead.model_validate({**base, **fields})


def test_a_change_becomes_its_events_with_stable_ids() -> None:
    before = _goal(1, contributes_to=[{"goal_id": "obj"}], depends_on=["ops"])
    after = _goal(2, status="invalid", contributes_to=[{"goal_id": "obj", "weight": 2}])
    record = ChangeRecord(goal_id="kr", before=before, after=after)
    events = events_of(record)
    assert [e.event_id for e in events] == [
        "kr:2:updated",
        "kr:2:link_added:contributes_to:obj",
        "kr:2:link_removed:depends_on:ops",
        "kr:2:status_changed",
    ]
    assert events_of(record) == events  # relayed again: the same ids, stored once


def test_csv_rows_are_checked_cell_by_cell() -> None:
    text = "id,title,type,owner_id,contributes_to\nkr,KR,key_result,li-na,obj:x\n"
    with pytest.raises(CsvError) as caught:
        parse_rows(text, GoalRead, max_rows=10)
    assert caught.value.errors[0]["loc"] == "row 1 (line 2)"
    assert "weight 'x'" in caught.value.errors[0]["msg"]
    with pytest.raises(CsvError, match="unknown column"):
        parse_rows("id,colour\n1,red\n", GoalRead, max_rows=10)
