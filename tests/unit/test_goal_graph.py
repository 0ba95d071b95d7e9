"""goalwatch.goal_graph: the impact walk over goals in memory, checked against hand-computed
answers (tests/integration/test_goal_graph.py checks it against the goals service's walk)."""

from __future__ import annotations

from typing import Any

from goalwatch.contracts import PersonUpsert
from goalwatch.contracts.goals import GoalUpsert, LinkKind
from goalwatch.goal_graph import goal_impact, impact_steps


def graph(*goals: dict[str, Any]) -> dict[str, GoalUpsert]:
    made = [
        GoalUpsert.model_validate(
            {"title": f"Goal {g['id']}", "type": "key_result", "owner_id": f"o-{g['id']}", **g}
        )
        for g in goals
    ]
    return {g.id: g for g in made}


# A diamond (kr counts towards dept1 and dept2, which both count towards company), a second
# contributor to dept1 carrying 3 of its 4 weight, and a cross link: ops depends on kr, and
# team depends on ops.
DIAMOND = graph(
    {"id": "company", "type": "objective"},
    {"id": "dept1", "contributes_to": [{"goal_id": "company"}]},
    {"id": "dept2", "contributes_to": [{"goal_id": "company"}]},
    {"id": "kr", "contributes_to": [{"goal_id": "dept1"}, {"goal_id": "dept2"}]},
    {"id": "other", "contributes_to": [{"goal_id": "dept1", "weight": 3}]},
    {"id": "ops", "depends_on": ["kr"], "contributes_to": [{"goal_id": "dept3", "weight": 2}]},
    {"id": "team", "owner_id": "o-ops", "depends_on": ["ops"]},
)


def test_the_walk_goes_up_and_across_each_goal_once_by_a_shortest_path() -> None:
    walked = impact_steps(DIAMOND, "kr")
    assert walked is not None
    steps, truncated = walked
    assert not truncated
    assert steps == [
        ("dept1", "kr", LinkKind.CONTRIBUTES_TO, 0.25, 1),  # 1 of 1 + 3
        ("dept2", "kr", LinkKind.CONTRIBUTES_TO, 1.0, 1),
        ("ops", "kr", LinkKind.DEPENDS_ON, 1.0, 1),
        # Reached through dept1 first (kr lists it first); through dept2 it is not again.
        ("company", "dept1", LinkKind.CONTRIBUTES_TO, 0.5, 2),
        # dept3 is not a stored goal: reached all the same, its only contributor carrying all.
        ("dept3", "ops", LinkKind.CONTRIBUTES_TO, 1.0, 2),
        ("team", "ops", LinkKind.DEPENDS_ON, 1.0, 2),
    ]


def test_the_impact_has_paths_weights_owners_and_managers() -> None:
    impact = goal_impact(
        DIAMOND,
        "kr",
        people={"o-ops": PersonUpsert(id="o-ops", name="Ops Owner", manager_id="boss")},
    )
    assert impact is not None
    by_id = {a.goal_id: a for a in impact.affected}
    assert [a.goal_id for a in impact.affected] == [
        "dept1", "dept2", "ops", "company", "dept3", "team"
    ]  # fmt: skip
    assert {g: a.weight for g, a in by_id.items()} == {
        "dept1": 0.25, "dept2": 1.0, "ops": 1.0, "company": 0.125, "dept3": 1.0, "team": 1.0,
    }  # fmt: skip
    company = by_id["company"]
    assert [(s.from_goal, s.to_goal, s.share) for s in company.path] == [
        ("kr", "dept1", 0.25),
        ("dept1", "company", 0.5),
    ]
    assert (company.depth, company.title, company.owner_id) == (2, "Goal company", "o-company")
    assert by_id["dept3"].title is None and by_id["dept3"].owner_id is None
    team = by_id["team"]
    assert (team.owner_id, team.owner_name, team.owner_manager_id) == ("o-ops", "Ops Owner", "boss")
    assert (company.owner_name, company.owner_manager_id) == (None, None)  # not a known person
    assert by_id["dept1"].owner_manager_id is None


def test_ties_between_dependents_go_by_id_and_an_unknown_goal_has_no_impact() -> None:
    tie = graph(
        {"id": "x"},
        {"id": "b", "depends_on": ["x"], "contributes_to": [{"goal_id": "p"}]},
        {"id": "a", "depends_on": ["x"], "contributes_to": [{"goal_id": "p", "weight": 3}]},
        {"id": "p", "type": "objective"},
    )
    walked = impact_steps(tie, "x")
    assert walked is not None
    assert walked[0][-1] == ("p", "a", LinkKind.CONTRIBUTES_TO, 0.75, 2)
    assert impact_steps(tie, "nope") is None
    top = goal_impact(tie, "p", people={})
    assert top is not None and top.affected == []


def test_a_walk_stops_at_the_node_limit() -> None:
    walked = impact_steps(DIAMOND, "kr", max_nodes=2)
    assert walked is not None
    steps, truncated = walked
    assert truncated and [s[0] for s in steps] == ["dept1", "dept2", "ops"]
