"""``/v1/dead-letters``: the operator's view of ``GOALWATCH_DEADLETTER``, and replay.

Goals serves it because it keeps the dead-letter stream (:data:`goalwatch.nats_users.
STREAM_OWNERS`) and so already reads it. A replay publishes as goals' NATS user, so it
reaches only the subjects that user may publish on: raw metric events
(``goalwatch.metrics.in.v1``, which ingestion validates again) and goals' own goal, person and
org unit changes. Alerts and validated metric events are published by the evaluator and
ingestion alone; their dead letters are listed with ``replayable`` false and are replayed
as the NATS operator (docs/operations.md). What replays do is :mod:`goalwatch.dead_letters`.

Each replay is remembered in Redis (:data:`services.goals.keys.DEAD_LETTER_REPLAYED`, kept as
long as the stream keeps dead letters) and in the audit log (the route is audited). The mark
is set before publishing: a second click, or a second operator, gets 409 instead of a second
copy of the message.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

import nats.errors
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from nats.aio.client import Client
from pydantic import AwareDatetime, Field, ValidationError
from redis.asyncio import Redis

from goalwatch import dead_letters
from goalwatch.auth.policies import DEAD_LETTERS_READ, DEAD_LETTERS_REPLAY
from goalwatch.auth.policy import Caller
from goalwatch.contracts import DeadLetter
from goalwatch.contracts.base import Contract
from goalwatch.problems import problem_responses
from services.goals import keys

DEFAULT_LIMIT: Final = 50
SHOWN_PAYLOAD_CHARS: Final = 8192
"""Most of a payload a listed dead letter shows: a page of fifty near 1 MiB each is no page."""
# As long as GOALWATCH_DEADLETTER keeps a dead letter (30 days), and a day more.
_REPLAY_MARK_TTL = timedelta(days=31)


class ReplayRead(Contract):
    """A dead letter's replay: when, by whom, and the message it made."""

    at: AwareDatetime = Field(description="When it was replayed.")
    by: str = Field(description="Who replayed it: person:<id> or system:<client>.")
    subject: str = Field(description="The subject it was published on (its origin).")
    stream: str = Field(description="The stream that stored the replayed message.")
    sequence: int = Field(description="The replayed message's sequence in that stream.")


class DeadLetterRead(DeadLetter):
    """A dead letter as ``GET /v1/dead-letters`` lists it."""

    sequence: int = Field(description="Its sequence in GOALWATCH_DEADLETTER (replay by it).")
    subject: str = Field(
        description="Its dead-letter subject, e.g. goalwatch.deadletter.v1.metrics."
    )
    replayable: bool = Field(
        description="Whether this API may replay it: alerts and validated metric events are "
        "replayed as the NATS operator (docs/operations.md)."
    )
    replayed: ReplayRead | None = Field(
        default=None, description="Its replay through this API, if it had one."
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


def _mark(sequence: int) -> str:
    return f"{keys.DEAD_LETTER_REPLAYED}{sequence}"


def dead_letters_router(
    *,
    connection: Callable[[], Client],
    redis: Redis,
    may_publish: Callable[[str], bool],
    publish_timeout: float,
) -> APIRouter:
    """The dead-letter routes, reading and publishing over ``connection``."""
    router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])

    async def replays(sequences: list[int]) -> dict[int, ReplayRead]:
        if not sequences:
            return {}
        found = await redis.mget([_mark(seq) for seq in sequences])
        marks: dict[int, ReplayRead] = {}
        for seq, raw in zip(sequences, found, strict=True):
            if raw is not None:
                # A claim whose replay is still being published is not a replay yet.
                with contextlib.suppress(ValidationError):
                    marks[seq] = ReplayRead.model_validate_json(raw)
        return marks

    def shown(stored: dead_letters.Stored, replay: ReplayRead | None) -> DeadLetterRead:
        letter = stored.letter.model_dump()
        payload: str = letter.pop("payload")
        if letter["payload_bytes"] is None:
            letter["payload_bytes"] = len(payload.encode())
        return DeadLetterRead(
            **letter,
            payload=payload[:SHOWN_PAYLOAD_CHARS],
            payload_shortened=len(payload) > SHOWN_PAYLOAD_CHARS,
            sequence=stored.sequence,
            subject=stored.subject,
            replayable=may_publish(stored.letter.origin_subject),
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
        marks = await replays([one.sequence for one in found])
        return DeadLetterPage(
            dead_letters=[shown(one, marks.get(one.sequence)) for one in found],
            next_cursor=None if following is None else str(following),
        )

    @router.post(
        "/{sequence}/replay",
        summary="Publish a dead letter's message again on its original subject",
        responses=problem_responses(
            {
                404: "No dead letter at that sequence (never, deleted or expired).",
                409: "Already replayed, or not replayable through this API (the detail says "
                "how to replay it).",
                503: "NATS did not answer; nothing was replayed, retry later.",
            }
        ),
    )
    async def replay(
        sequence: Annotated[int, Path(ge=1, description="The dead letter's sequence.")],
        caller: Annotated[Caller, Depends(DEAD_LETTERS_REPLAY)],
    ) -> DeadLetterRead:
        js = connection().jetstream()
        try:
            stored = await dead_letters.read(js, sequence)
        except nats.errors.Error as exc:
            raise HTTPException(503, "NATS did not answer; nothing was replayed") from exc
        if stored is None:
            raise HTTPException(404, f"no dead letter at sequence {sequence}")
        if not may_publish(stored.letter.origin_subject):
            raise HTTPException(
                409,
                f"{stored.letter.origin_subject} is published only by the service that owns "
                "it: replay this dead letter as the NATS operator (docs/operations.md, "
                "Replaying a dead letter)",
            )
        # Claimed before publishing: two replays of one letter cannot both publish.
        claim = json.dumps({"claimed": True})
        if not await redis.set(_mark(sequence), claim, nx=True, ex=_REPLAY_MARK_TTL):
            earlier = (await replays([sequence])).get(sequence)
            when = f" at {earlier.at.isoformat()}" if earlier else ""
            raise HTTPException(409, f"dead letter {sequence} was already replayed{when}")
        try:
            done = await dead_letters.replay(
                js, stored.letter, may_publish=may_publish, publish_timeout=publish_timeout
            )
        except dead_letters.NotReplayable as exc:
            await redis.delete(_mark(sequence))
            raise HTTPException(409, str(exc)) from exc
        except (nats.errors.Error, TimeoutError) as exc:
            await redis.delete(_mark(sequence))
            raise HTTPException(503, "NATS did not store the replay; retry later") from exc
        record = ReplayRead(
            at=datetime.now(UTC),
            by=caller.principal.who,
            subject=done.subject,
            stream=done.stream,
            sequence=done.sequence,
        )
        await redis.set(_mark(sequence), record.model_dump_json(), ex=_REPLAY_MARK_TTL)
        return shown(stored, record)

    return router
