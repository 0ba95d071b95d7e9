"""The kernel's goals client: names for alert messages, and its one failure policy."""

from __future__ import annotations

import httpx
import pytest

from goalwatch.goals_client import GoalsClient, GoalsUnavailable


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/people/li-na":
        return httpx.Response(200, json={"id": "li-na", "name": "Dr. Li Na", "managers": []})
    if request.url.path == "/v1/people/down":
        raise httpx.ConnectError("connection refused", request=request)
    if request.url.path == "/v1/people/broken":
        return httpx.Response(500, text="oops")
    if request.url.raw_path == b"/v1/people/..%2Fpeople":
        return httpx.Response(200, json=[{"id": "a", "name": "A"}])  # what a list would be
    if request.url.path == "/v1/people/garbled":
        return httpx.Response(200, text="<html>")
    return httpx.Response(404, json={"detail": "no person"})


async def no_sleep(_: float) -> None:
    return None


async def test_a_name_comes_from_goals_and_an_unknown_subject_keeps_its_id() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        goals = GoalsClient(client=client, base_url="http://goals.test/", sleep=no_sleep)
        assert await goals.name_of(subject="li-na") == "Dr. Li Na"
        assert await goals.name_of(subject="nobody") == "nobody"


@pytest.mark.parametrize("subject", ["down", "broken", "garbled", "../people"])
async def test_goals_not_answering_properly_raises_instead_of_naming_by_id(subject: str) -> None:
    # The alert waits for the name (its event is retried) rather than going out with the id.
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        goals = GoalsClient(client=client, base_url="http://goals.test/", sleep=no_sleep)
        with pytest.raises(GoalsUnavailable):
            await goals.name_of(subject=subject)


async def test_goals_and_their_impact_are_read_with_the_same_policy() -> None:
    impact = {"goal_id": "kr", "affected": []}

    def goals_handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/goals/kr/impact":
            return httpx.Response(200, json=impact)
        if request.url.path == "/v1/goals/flaky/impact":
            return httpx.Response(503)
        return httpx.Response(404)

    async with httpx.AsyncClient(transport=httpx.MockTransport(goals_handler)) as client:
        goals = GoalsClient(client=client, base_url="http://goals.test", sleep=no_sleep)
        answer = await goals.get_impact("kr")
        assert answer is not None and answer.goal_id == "kr"
        assert await goals.get_goal("nothing") is None
        with pytest.raises(GoalsUnavailable, match="/v1/goals/flaky/impact"):
            await goals.get_impact("flaky")
