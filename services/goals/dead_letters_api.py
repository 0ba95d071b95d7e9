"""``/v1/dead-letters``: the operator's view of ``GOALWATCH_DEADLETTER``, and replay.

Goals serves the list because it keeps the dead-letter stream (:data:`goalwatch.nats_users.
STREAM_OWNERS`) and so already reads it; each dead letter says which service replays it
(``replayed_by``): the one whose NATS user may publish on its origin subject
(:func:`goalwatch.dead_letters.replayer`). Goals replays what its own user may publish, raw
metric events (``goalwatch.metrics.in.v1``, which ingestion validates again) and goals' own
goal, person and org unit changes, at ``POST /v1/dead-letters/{sequence}/replay``; the
evaluator replays alerts and ingestion validated metric events, each at
``POST /v1/<service>/dead-letters/{sequence}/replay`` (:mod:`goalwatch.dead_letter_replay`).

Each replay is marked in Redis (:data:`goalwatch.dead_letters.REPLAY_MARKS`, shared by the
services that replay, kept as long as the stream keeps dead letters) and in the audit log (the
route is audited). The mark is set before publishing: a second click, or a second operator,
gets 409 instead of a second copy of the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Final

import nats.errors
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from nats.aio.client import Client
from pydantic import Field
from redis.asyncio import Redis

from goalwatch import dead_letters
from goalwatch.auth.policies import DEAD_LETTERS_READ, DEAD_LETTERS_REPLAY
from goalwatch.auth.policy import Caller
from goalwatch.contracts import DeadLetter
from goalwatch.contracts.base import Contract
from goalwatch.dead_letter_replay import REPLAY_RESPONSES, ReplayMarks, ReplayRead, replay_once
from goalwatch.nats_users import GOALS
from goalwatch.problems import problem_responses
from services.goals import keys

DEFAULT_LIMIT: Final = 50
SHOWN_PAYLOAD_CHARS: Final = 8192
"""Most of a payload a listed dead letter shows: a page of fifty near 1 MiB each is no page."""


class DeadLetterRead(DeadLetter):
    """A dead letter as ``GET /v1/dead-letters`` lists it."""

    sequence: int = Field(description="Its sequence in GOALWATCH_DEADLETTER (replay by it).")
    subject: str = Field(
        description="Its dead-letter subject, e.g. goalwatch.deadletter.v1.metrics."
    )
    replayable: bool = Field(
        description="Whether a service replays it over HTTP (`replayed_by`); false: only the "
        "NATS operator can (docs/operations.md)."
    )
    replayed_by: str | None = Field(
        default=None,
        description="The service that replays it, the one whose NATS user publishes its "
        "origin subject: `goals` (POST /v1/dead-letters/{sequence}/replay), `evaluator` or "
        "`ingestion` (POST /v1/<service>/dead-letters/{sequence}/replay); null: none.",
    )
    replayed: ReplayRead | None = Field(
        default=None, description="Its replay over HTTP, by whichever service, if it had one."
    )
    payload_shortened: bool = Field(
        default=False,
        description=f"True when `payload` shows only its first {SHOWN_PAYLOAD_CHARS} "
        "characters here; the dead letter holds more, and a replay sends the whole message.",
    )


class DeadLetterPage(Contract):
    """``GET /v1/dead-letters`` response."""

    dead_letters: list[DeadLetterRead] = Field(description="Dead letters, newest first.")
    next_cursor: str | None = Field(
        default=None, description="Pass as ?cursor= for older ones; null: none are older."
    )


def dead_letters_router(
    *,
    connection: Callable[[], Client],
    redis: Redis,
    publish_timeout: float,
) -> APIRouter:
    """The dead-letter routes, reading and publishing over ``connection``."""
    router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])
    # Marks goals made before the replaying services shared theirs count until they expire.
    marks = ReplayMarks(redis, legacy=[keys.DEAD_LETTER_REPLAYED])

    def shown(stored: dead_letters.Stored, replay: ReplayRead | None) -> DeadLetterRead:
        letter = stored.letter.model_dump()
        owner = dead_letters.replayer(stored.letter.origin_subject)
        payload: str = letter.pop("payload")
        if letter["payload_bytes"] is None:
            letter["payload_bytes"] = len(payload.encode())
        return DeadLetterRead(
            **letter,
            payload=payload[:SHOWN_PAYLOAD_CHARS],
            payload_shortened=len(payload) > SHOWN_PAYLOAD_CHARS,
            sequence=stored.sequence,
            subject=stored.subject,
            replayable=owner is not None,
            replayed_by=owner,
            replayed=replay,
        )

    @router.get(
        "",
        summary="Dead letters, newest first: why each was given up on, and its replay",
        dependencies=[Depends(DEAD_LETTERS_READ)],
        responses=problem_responses({503: "NATS did not answer; retry later."}),
    )
    async def list_dead_letters(
        limit: Annotated[
            int, Query(ge=1, le=dead_letters.MAX_LIMIT, description="Most to return.")
        ] = DEFAULT_LIMIT,
        cursor: Annotated[
            int | None, Query(ge=1, description="A page's next_cursor: older ones.")
        ] = None,
    ) -> DeadLetterPage:
        js = connection().jetstream()
        try:
            found, following = await dead_letters.newest(js, limit=limit, before=cursor)
        except nats.errors.Error as exc:
            raise HTTPException(503, "NATS did not answer; retry later") from exc
        shown_marks = await marks.read([one.sequence for one in found])
        return DeadLetterPage(
            dead_letters=[shown(one, shown_marks.get(one.sequence)) for one in found],
            next_cursor=None if following is None else str(following),
        )

    @router.post(
        "/{sequence}/replay",
        summary="Publish a dead letter's message again on its original subject",
        responses=REPLAY_RESPONSES,
    )
    async def replay(
        sequence: Annotated[int, Path(ge=1, description="The dead letter's sequence.")],
        caller: Annotated[Caller, Depends(DEAD_LETTERS_REPLAY)],
    ) -> DeadLetterRead:
        stored, record = await replay_once(
            service=GOALS,
            connection=connection(),
            marks=marks,
            sequence=sequence,
            who=caller.principal.who,
            publish_timeout=publish_timeout,
        )
        return shown(stored, record)

    return router
