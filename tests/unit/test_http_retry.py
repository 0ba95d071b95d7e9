"""One request to another service, tried again while the failure is passing (goalwatch/http_retry.py)."""

from __future__ import annotations

import httpx
import pytest

from goalwatch.http_retry import Transient, send_retrying

REQUEST = httpx.Request("GET", "http://goals.test/v1/people/li-na")


class Answers:
    """Answers (or raises) in turn, counting the tries."""

    def __init__(self, *outcomes: int | Exception) -> None:
        self.outcomes = list(outcomes)
        self.tries = 0

    async def __call__(self) -> httpx.Response:
        self.tries += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return httpx.Response(outcome, request=REQUEST)


async def _no_wait(_: float) -> None:
    return None


async def _send(answers: Answers, attempts: int = 3) -> httpx.Response:
    return await send_retrying(
        answers, what="GET goals", attempts=attempts, backoff=0.01, max_wait=0.1, sleep=_no_wait
    )


async def test_passing_failures_are_tried_again_until_an_answer() -> None:
    answers = Answers(httpx.ConnectError("refused"), 503, 200)
    assert (await _send(answers)).status_code == 200
    assert answers.tries == 3


@pytest.mark.parametrize("status", [200, 403, 404, 422])
async def test_any_other_answer_is_the_callers_at_once(status: int) -> None:
    answers = Answers(status, 200)
    assert (await _send(answers)).status_code == status
    assert answers.tries == 1


async def test_the_last_failure_is_said_after_the_last_try() -> None:
    answers = Answers(429, httpx.ReadTimeout("slow"), 502)
    with pytest.raises(Transient, match="GET goals answered HTTP 502"):
        await _send(answers)
    assert answers.tries == 3
    with pytest.raises(Transient, match=r"timed out \(ReadTimeout\) on GET goals"):
        await _send(Answers(httpx.ReadTimeout("slow")), attempts=1)
