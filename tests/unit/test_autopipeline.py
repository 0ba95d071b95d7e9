"""Commands issued together share one pipeline; each caller gets its own answer or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from redis.exceptions import ResponseError

from services.evaluator.autopipeline import AutoPipeline


class CountingRedis(FakeAsyncRedis):
    """Counts the pipelines opened on it."""

    pipelines = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        CountingRedis.pipelines += 1
        return super().pipeline(*args, **kwargs)


async def test_concurrent_commands_go_in_one_pipeline_with_their_own_answers() -> None:
    redis = CountingRedis(decode_responses=True)
    CountingRedis.pipelines = 0
    await redis.hset("a", mapping={"v": "1"})
    await redis.hset("b", mapping={"v": "2"})
    auto = AutoPipeline(redis)
    answers = await asyncio.gather(
        *(auto.call(lambda pipe, key=key: pipe.hmget(key, ["v"])) for key in ("a", "b", "c"))
    )
    assert answers == [["1"], ["2"], [None]]
    assert CountingRedis.pipelines == 1


async def test_an_error_answer_reaches_only_its_caller() -> None:
    redis = FakeAsyncRedis(decode_responses=True)
    await redis.set("text", "x")
    auto = AutoPipeline(redis)
    wrong, right = await asyncio.gather(
        auto.call(lambda pipe: pipe.hget("text", "f")),  # WRONGTYPE: a string, not a hash
        auto.call(lambda pipe: pipe.get("text")),
        return_exceptions=True,
    )
    assert isinstance(wrong, ResponseError)
    assert right == "x"


async def test_a_lost_connection_fails_every_caller_of_the_pipeline() -> None:
    server = FakeServer()
    auto = AutoPipeline(FakeAsyncRedis(server=server, decode_responses=True))
    server.connected = False  # fakeredis: every command now fails to connect
    results = await asyncio.gather(
        auto.call(lambda pipe: pipe.get("a")),
        auto.call(lambda pipe: pipe.get("b")),
        return_exceptions=True,
    )
    assert all(isinstance(result, Exception) for result in results)
    with pytest.raises(Exception):  # noqa: B017 - whichever connection error fakeredis raises
        await auto.call(lambda pipe: pipe.get("a"))


async def test_several_commands_of_one_caller_share_the_pipeline_of_their_neighbours() -> None:
    redis = CountingRedis(decode_responses=True)
    CountingRedis.pipelines = 0
    await redis.set("a", "1")
    auto = AutoPipeline(redis)
    several, one = await asyncio.gather(
        auto.call_all([lambda pipe: pipe.get("a"), lambda pipe: pipe.get("b")]),
        auto.call(lambda pipe: pipe.set("c", "3")),
    )
    assert several == ["1", None] and one is True
    assert CountingRedis.pipelines == 1
    assert await auto.call_all([]) == []
    with pytest.raises(ResponseError):
        await auto.call_all([lambda pipe: pipe.get("a"), lambda pipe: pipe.hget("a", "f")])
