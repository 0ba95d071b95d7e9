"""Subject names for alert messages: from goals when it knows them, else the id."""

from __future__ import annotations

import httpx

from services.evaluator.names import GoalsNames


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


async def test_names_come_from_goals_and_fall_back_to_the_id() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        names = GoalsNames(client, goals_url="http://goals.test/")
        assert await names.name_of(subject="li-na") == "Dr. Li Na"
        assert await names.name_of(subject="nobody") == "nobody"
        assert await names.name_of(subject="down") == "down"
        assert await names.name_of(subject="broken") == "broken"
        assert await names.name_of(subject="../people") == "../people"
        assert await names.name_of(subject="garbled") == "garbled"
