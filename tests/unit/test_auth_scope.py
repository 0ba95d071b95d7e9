"""Which people a person may see: themselves, their reports at any depth, their HRBP units."""

from __future__ import annotations

import pytest

from goalwatch.auth.scope import Scope
from goalwatch.contracts import OrgUnitRead, PersonRead


class Chart:
    """A small company: qian-yu (CEO) > zhang-wei > li-na > liu-yang; sun-li is the HRBP of
    radiology (and so of its team); ma-lin works elsewhere."""

    def __init__(self) -> None:
        managers = {
            "qian-yu": [],
            "sun-li": ["qian-yu"],
            "zhang-wei": ["qian-yu"],
            "li-na": ["zhang-wei", "qian-yu"],
            "liu-yang": ["li-na", "zhang-wei", "qian-yu"],
            "ma-lin": ["qian-yu"],
        }
        units = {
            "qian-yu": "acme",
            "sun-li": "acme",
            "zhang-wei": "radiology",
            "li-na": "reading",
            "liu-yang": "reading",
            "ma-lin": "supply",
        }
        self.people = {
            pid: PersonRead(
                id=pid,
                name=pid,
                manager_id=chain[0] if chain else None,
                managers=chain,
                org_unit_id=units[pid],
            )
            for pid, chain in managers.items()
        }
        self.units = {
            "acme": OrgUnitRead(id="acme", name="Acme", kind="company"),
            "radiology": OrgUnitRead(
                id="radiology", name="R", kind="department", parent_id="acme", hrbp_id="sun-li"
            ),
            "reading": OrgUnitRead(id="reading", name="RR", kind="team", parent_id="radiology"),
            "supply": OrgUnitRead(id="supply", name="S", kind="department", parent_id="acme"),
        }
        self.lookups = 0

    async def person(self, person_id: str) -> PersonRead | None:
        self.lookups += 1
        return self.people.get(person_id)

    async def org_unit(self, unit_id: str) -> OrgUnitRead | None:
        self.lookups += 1
        return self.units.get(unit_id)


@pytest.mark.parametrize(
    ("viewer", "seen", "hidden"),
    [
        ("zhang-wei", {"zhang-wei", "li-na", "liu-yang"}, {"qian-yu", "ma-lin", "sun-li"}),
        ("li-na", {"li-na", "liu-yang"}, {"zhang-wei", "ma-lin"}),
        ("liu-yang", {"liu-yang"}, {"li-na", "zhang-wei"}),
        ("sun-li", {"sun-li", "zhang-wei", "li-na", "liu-yang"}, {"ma-lin", "qian-yu"}),
        ("qian-yu", set(Chart().people), set()),
    ],
)
async def test_a_person_sees_themselves_their_subtree_and_their_hrbp_units(
    viewer: str, seen: set[str], hidden: set[str]
) -> None:
    scope = Scope(viewer, Chart())
    for person in seen:
        assert await scope.sees_person_id(person), person
    for person in hidden | {"nobody", None}:
        assert not await scope.sees_person_id(person), person


async def test_a_new_manager_sees_their_new_report_and_the_old_one_no_longer() -> None:
    chart = Chart()
    assert not await Scope("ma-lin", chart).sees_person_id("liu-yang")
    chart.people["liu-yang"] = chart.people["liu-yang"].model_copy(
        update={"manager_id": "ma-lin", "managers": ["ma-lin", "qian-yu"]}
    )
    assert await Scope("ma-lin", chart).sees_person_id("liu-yang")
    assert not await Scope("li-na", chart).sees_person_id("liu-yang")


async def test_answers_are_remembered_for_the_scope_and_a_unit_loop_ends() -> None:
    chart = Chart()
    chart.units["acme"] = chart.units["acme"].model_copy(update={"parent_id": "reading"})
    scope = Scope("ma-lin", chart)
    assert not await scope.covers_unit("reading")
    lookups = chart.lookups
    assert not await scope.covers_unit("reading")
    assert not await scope.sees_person_id("liu-yang")
    assert not await scope.sees_person_id("liu-yang")
    assert chart.lookups == lookups + 1


async def test_the_head_of_a_unit_sees_everyone_in_it_and_below_it() -> None:
    chart = Chart()
    chart.units["supply"] = chart.units["supply"].model_copy(update={"head_id": "li-na"})
    scope = Scope("li-na", chart)
    assert await scope.sees_person_id("ma-lin")  # in supply, whose head she is
    assert not await scope.sees_person_id("zhang-wei")
