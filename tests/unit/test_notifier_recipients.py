"""Recipient resolution against a fake goals service (httpx.MockTransport)."""

from __future__ import annotations

import logging
from typing import ClassVar

import httpx
import pytest

from goalwatch.contracts import OrgUnitRead, PersonRead
from goalwatch.goals_client import GoalsClient, GoalsUnavailable
from services.notifier.recipients import Audience, resolve_recipients

PEOPLE = {
    "emp-1": PersonRead(
        id="emp-1",
        name="Dr Li",
        email="li@example.org",
        manager_id="mgr-1",
        managers=["mgr-1", "dir-1"],
    ),
    "mgr-1": PersonRead(id="mgr-1", name="Head Wang", manager_id="dir-1", managers=["dir-1"]),
    "dir-1": PersonRead(id="dir-1", name="Director Zhao"),
    "orphan": PersonRead(id="orphan", name="No Manager"),
    "lost": PersonRead(id="lost", name="Manager Unknown", managers=["ghost"]),
    "a/b": PersonRead(id="a/b", name="Slash"),
}


class FakeGoals:
    """Serves ``GET /v1/people/{id}`` from PEOPLE; ``fail_first`` answers start with 503."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.raw_path.decode())
        if self.fail_first > 0:
            self.fail_first -= 1
            return httpx.Response(503)
        prefix = "/v1/people/"
        assert request.url.path.startswith(prefix)
        person = PEOPLE.get(request.url.path.removeprefix(prefix))
        if person is None:
            return httpx.Response(404, json={"detail": "not found"})
        return httpx.Response(200, content=person.model_dump_json())


async def no_sleep(_: float) -> None:
    return None


def client(handler: FakeGoals | httpx.MockTransport) -> GoalsClient:
    transport = (
        handler if isinstance(handler, httpx.MockTransport) else httpx.MockTransport(handler)
    )
    return GoalsClient(
        client=httpx.AsyncClient(transport=transport),
        base_url="http://goals.test/",
        sleep=no_sleep,
    )


async def resolve(subject: str, notify: list[str], goals: FakeGoals | None = None) -> Audience:
    return await resolve_recipients(
        directory=client(goals or FakeGoals()), subject=subject, notify=notify, fingerprint="fp"
    )


async def test_subject_and_nearest_manager() -> None:
    audience = await resolve("emp-1", ["subject", "manager"])
    assert [(r.id, r.name, r.role) for r in audience.recipients] == [
        ("emp-1", "Dr Li", "subject"),
        ("mgr-1", "Head Wang", "manager"),
    ]
    assert audience.recipients[0].email == "li@example.org"


async def test_owner_of_an_impact_alert_is_its_subject_and_manager_theirs() -> None:
    audience = await resolve("emp-1", ["owner", "manager"])
    assert [(r.id, r.role) for r in audience.recipients] == [
        ("emp-1", "subject"),
        ("mgr-1", "manager"),
    ]


async def test_explicit_ids_and_one_entry_per_person() -> None:
    audience = await resolve("emp-1", ["manager", "dir-1", "mgr-1", "subject", "emp-1"])
    assert [(r.id, r.role) for r in audience.recipients] == [
        ("mgr-1", "manager"),
        ("dir-1", "explicit"),
        ("emp-1", "subject"),
    ]


async def test_unknown_subject_is_still_notified_by_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        audience = await resolve("emp-404", ["subject", "manager"])
    assert [(r.id, r.name, r.role) for r in audience.recipients] == [
        ("emp-404", "emp-404", "subject")
    ]
    assert any("not in the goals directory" in r.getMessage() for r in caplog.records)
    assert any("no manager known" in r.getMessage() for r in caplog.records)


async def test_unknown_manager_and_explicit_ids_are_kept() -> None:
    audience = await resolve("lost", ["manager", "nobody"])
    assert [(r.id, r.name, r.role) for r in audience.recipients] == [
        ("ghost", "ghost", "manager"),
        ("nobody", "nobody", "explicit"),
    ]


async def test_person_without_manager_gets_no_manager_recipient() -> None:
    audience = await resolve("orphan", ["subject", "manager"])
    assert [r.id for r in audience.recipients] == ["orphan"]


async def test_ids_are_escaped_in_the_url() -> None:
    goals = FakeGoals()
    audience = await resolve("a/b", ["subject"], goals)
    assert [r.name for r in audience.recipients] == ["Slash"]
    assert goals.paths == ["/v1/people/a%2Fb"]


async def test_transient_errors_are_retried() -> None:
    goals = FakeGoals(fail_first=2)
    audience = await resolve("emp-1", ["subject"], goals)
    assert [r.name for r in audience.recipients] == ["Dr Li"]
    assert len(goals.paths) == 3


async def test_goals_down_raises_after_retries() -> None:
    goals = FakeGoals(fail_first=100)
    with pytest.raises(GoalsUnavailable, match="after 3 attempts"):
        await resolve("emp-1", ["subject"], goals)
    assert len(goals.paths) == 3


async def test_goals_unreachable_raises() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(GoalsUnavailable, match="could not reach"):
        await client(httpx.MockTransport(refuse)).get_person("emp-1")


async def test_malformed_person_raises() -> None:
    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "emp-1"})

    with pytest.raises(GoalsUnavailable, match="not a PersonRead"):
        await client(httpx.MockTransport(garbage)).get_person("emp-1")


class Chart:
    """Serves people and org units: a team under a department under the company."""

    PEOPLE: ClassVar[dict[str, PersonRead]] = {
        "nurse": PersonRead(
            id="nurse", name="Nurse Xu", org_unit_id="ward-3", managers=["sister", "matron"]
        ),
        "sister": PersonRead(id="sister", name="Sister Gao", org_unit_id="ward-3"),
        "matron": PersonRead(id="matron", name="Matron Lin", org_unit_id="nursing"),
        "hr-he": PersonRead(id="hr-he", name="HR He", org_unit_id="hr"),
    }
    UNITS: ClassVar[dict[str, OrgUnitRead]] = {
        # The ward has a head, no HRBP; the department above has the HRBP.
        "ward-3": OrgUnitRead(
            id="ward-3", name="Ward 3", kind="team", parent_id="nursing", head_id="sister"
        ),
        "nursing": OrgUnitRead(
            id="nursing",
            name="Nursing",
            kind="department",
            parent_id="co",
            head_id="matron",
            hrbp_id="hr-he",
        ),
        "co": OrgUnitRead(id="co", name="Hospital", kind="company"),
    }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        kind, _, key = request.url.path.removeprefix("/v1/").partition("/")
        found = (self.PEOPLE if kind == "people" else self.UNITS).get(key)
        if found is None:
            return httpx.Response(404, json={"detail": "not found"})
        return httpx.Response(200, content=found.model_dump_json())


async def test_the_chain_the_unit_head_and_the_hrbp_are_found_up_the_org_chart() -> None:
    goals = client(httpx.MockTransport(Chart()))
    audience = await resolve_recipients(
        directory=goals,
        org_units=goals,
        subject="nurse",
        notify=["manager:2", "unit_head", "hrbp"],
        fingerprint="fp",
    )
    assert [(r.id, r.role.value) for r in audience.recipients] == [
        ("matron", "manager"),
        ("sister", "unit_head"),
        ("hr-he", "hrbp"),  # from the department: the ward has none
    ]
    # The head of a unit alerted about herself: her unit's head is the next one up.
    sister = await resolve_recipients(
        directory=goals, org_units=goals, subject="sister", notify=["unit_head"], fingerprint="fp"
    )
    assert [r.id for r in sister.recipients] == ["matron"]


async def test_a_missing_level_or_unit_role_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    goals = client(httpx.MockTransport(Chart()))
    with caplog.at_level(logging.WARNING):
        audience = await resolve_recipients(
            directory=goals,
            org_units=goals,
            subject="matron",
            notify=["subject", "manager:3", "hrbp", "unit_head"],
            fingerprint="fp",
        )
    # Matron: no chain; the department's HRBP; she heads her unit and the company has none.
    assert [r.id for r in audience.recipients] == ["matron", "hr-he"]
    assert "no manager known for subject 'matron' at level 3" in caplog.text
    assert "no unit_head known for subject 'matron'" in caplog.text


GROUPS = {"quality-leads": ["dir-1", "emp-1", "qa-404"], "empty": []}


async def test_a_group_reaches_each_member_under_its_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        audience = await resolve_recipients(
            directory=client(FakeGoals()),
            subject="emp-1",
            notify=["subject", "group:quality-leads", "group:empty"],
            fingerprint="fp",
            groups=GROUPS,
        )
    assert [(r.id, r.name, r.role.value, r.group) for r in audience.recipients] == [
        # The subject is in the group too: told once, as the subject.
        ("emp-1", "Dr Li", "subject", None),
        ("dir-1", "Director Zhao", "group", "quality-leads"),
        # A member goals does not know is still told, by id.
        ("qa-404", "qa-404", "group", "quality-leads"),
    ]
    assert "member 'qa-404' of group 'quality-leads' is not in the goals directory" in caplog.text


async def test_an_unknown_group_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        audience = await resolve_recipients(
            directory=client(FakeGoals()),
            subject="emp-1",
            notify=["group:night-shift", "manager"],
            fingerprint="fp",
            groups=GROUPS,
        )
    assert [r.id for r in audience.recipients] == ["mgr-1"]
    assert "no group 'night-shift' is defined" in caplog.text


async def test_recipients_carry_the_directorys_preferences() -> None:
    people = {
        "li": PersonRead(
            id="li",
            name="Li Na",
            org_unit_id="radiology",
            channels=["wecom", "email"],
            language="en",
            time_zone="Europe/Berlin",
            managers=["wang"],
        ),
        "wang": PersonRead(id="wang", name="Wang Fang"),
    }

    def serve(request: httpx.Request) -> httpx.Response:
        found = people.get(request.url.path.removeprefix("/v1/people/"))
        if found is None:
            return httpx.Response(404)
        return httpx.Response(200, content=found.model_dump_json())

    audience = await resolve_recipients(
        directory=client(httpx.MockTransport(serve)),
        subject="li",
        notify=["subject", "manager", "nobody"],
        fingerprint="fp",
    )
    li, wang, nobody = audience.recipients
    assert (li.channels, li.language, li.time_zone, li.org_unit_id) == (
        ["wecom", "email"],
        "en",
        "Europe/Berlin",
        "radiology",
    )
    # Known without preferences: the defaults goals keeps (no channels, Chinese, no zone).
    assert (wang.channels, wang.language, wang.time_zone, wang.org_unit_id) == (
        [],
        "zh",
        None,
        None,
    )
    # Unknown to the directory: nothing said about them.
    assert (nobody.channels, nobody.language, nobody.time_zone) == ([], None, None)
