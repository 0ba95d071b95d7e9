"""Replaying a dead letter over HTTP, by the service that owns its origin subject.

Only the evaluator may publish alerts and only ingestion validated metric events
(:mod:`goalwatch.nats_users`), so a dead letter is replayed by the service whose NATS user
may publish on its origin subject (:func:`goalwatch.dead_letters.replayer`), as that user:
the permissions stay exactly as strict. Goals lists every dead letter and says which service
replays each (``GET /v1/dead-letters``); goals replays its own at
``POST /v1/dead-letters/{sequence}/replay``, the evaluator and ingestion at
``POST /v1/<service>/dead-letters/{sequence}/replay`` (:func:`replay_router`), a path the
one Ingress host routes to the service by its name.

Every replay, whoever makes it, keeps the guarantees of :mod:`goalwatch.dead_letters` (the
whole body, no ``Nats-Msg-Id``) and is made once: it is claimed in Redis
(:data:`goalwatch.dead_letters.REPLAY_MARKS`) before it is published, unclaimed when it could
not be published, and then recorded with when, by whom and where to. The route is audited.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

import nats.errors
from fastapi import APIRouter, Depends, HTTPException, Path
from nats.aio.client import Client
from pydantic import AwareDatetime, Field, ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from goalwatch import dead_letters
from goalwatch.auth.policies import DEAD_LETTERS_REPLAY
from goalwatch.auth.policy import Caller
from goalwatch.contracts.base import Contract
from goalwatch.nats_users import GOALS
from goalwatch.nats_users import user as nats_user
from goalwatch.problems import problem_responses

# As long as GOALWATCH_DEADLETTER keeps a dead letter (30 days), and a day more.
MARK_TTL: Final = timedelta(days=31)


class ReplayRead(Contract):
    """A dead letter's replay: when, by whom, and the message it made."""

    at: AwareDatetime = Field(description="When it was replayed.")
    by: str = Field(description="Who replayed it: person:<id> or system:<client>.")
    subject: str = Field(description="The subject it was published on (its origin).")
    stream: str = Field(description="The stream that stored the replayed message.")
    sequence: int = Field(description="The replayed message's sequence in that stream.")
    service: str = Field(
        default=GOALS, description="The service that replayed it (whose NATS user published)."
    )


class ReplayedRead(Contract):
    """``POST /v1/<service>/dead-letters/{sequence}/replay`` response."""

    sequence: int = Field(description="The dead letter's sequence in GOALWATCH_DEADLETTER.")
    origin_subject: str = Field(description="The subject its message came from.")
    replayed: ReplayRead = Field(description="The replay just made.")


class ReplayMarks:
    """The Redis marks of replayed dead letters, by sequence.

    ``legacy``: key prefixes of marks from before :data:`~goalwatch.dead_letters.REPLAY_MARKS`
    (goals' own), read as replays too until they expire."""

    def __init__(self, redis: Redis, *, legacy: Sequence[str] = ()) -> None:
        self._redis = redis
        self._prefixes = (dead_letters.REPLAY_MARKS, *legacy)

    @staticmethod
    def key(sequence: int) -> str:
        return f"{dead_letters.REPLAY_MARKS}{sequence}"

    async def read(self, sequences: Sequence[int]) -> dict[int, ReplayRead]:
        """The replays of ``sequences`` that were made (a claim still publishing is not)."""
        if not sequences:
            return {}
        keys = [f"{prefix}{seq}" for prefix in self._prefixes for seq in sequences]
        found = await self._redis.mget(keys)
        marks: dict[int, ReplayRead] = {}
        for index, raw in enumerate(found):
            seq = sequences[index % len(sequences)]
            if raw is not None and seq not in marks:
                with contextlib.suppress(ValidationError):
                    marks[seq] = ReplayRead.model_validate_json(raw)
        return marks

    async def claim(self, sequence: int) -> bool:
        """Claim the replay of ``sequence``; False when it is claimed or was made."""
        for legacy in self._prefixes[1:]:
            if await self._redis.exists(f"{legacy}{sequence}"):
                return False
        claim = json.dumps({"claimed": True})
        return bool(await self._redis.set(self.key(sequence), claim, nx=True, ex=MARK_TTL))

    async def release(self, sequence: int) -> None:
        await self._redis.delete(self.key(sequence))

    async def record(self, sequence: int, replay: ReplayRead) -> None:
        await self._redis.set(self.key(sequence), replay.model_dump_json(), ex=MARK_TTL)


def elsewhere(service: str, sequence: int, origin_subject: str) -> str:
    """Why ``service`` does not replay a letter from ``origin_subject``, and who does."""
    owner = dead_letters.replayer(origin_subject)
    if owner is None:
        return (
            f"{origin_subject} is published by no service: replay this dead letter as the NATS "
            "operator (docs/operations.md, Replaying a dead letter)"
        )
    route = (
        f"/v1/dead-letters/{sequence}/replay"
        if owner == GOALS
        else f"/v1/{owner}/dead-letters/{sequence}/replay"
    )
    return (
        f"{origin_subject} is published only by {owner}, not {service}: replay this dead "
        f"letter there (POST {route})"
    )


async def replay_once(
    *,
    service: str,
    connection: Client,
    marks: ReplayMarks,
    sequence: int,
    who: str,
    publish_timeout: float,
) -> tuple[dead_letters.Stored, ReplayRead]:
    """Replay the dead letter at ``sequence`` as ``service``'s NATS user, once; HTTP errors
    as the replay routes document them."""
    js = connection.jetstream()
    try:
        stored = await dead_letters.read(js, sequence)
    except nats.errors.Error as exc:
        raise HTTPException(503, "NATS did not answer; nothing was replayed") from exc
    if stored is None:
        raise HTTPException(404, f"no dead letter at sequence {sequence}")
    origin = stored.letter.origin_subject
    may_publish = nats_user(service).permissions.may_publish
    if dead_letters.replayer(origin) != service or not may_publish(origin):
        raise HTTPException(409, elsewhere(service, sequence, origin))
    # Claimed before publishing: two replays of one letter cannot both publish.
    try:
        claimed = await marks.claim(sequence)
        earlier = None if claimed else (await marks.read([sequence])).get(sequence)
    except RedisError as exc:
        raise HTTPException(503, "Redis did not answer; nothing was replayed") from exc
    if not claimed:
        when = f" at {earlier.at.isoformat()}" if earlier else ""
        raise HTTPException(409, f"dead letter {sequence} was already replayed{when}")
    try:
        done = await dead_letters.replay(
            js, stored.letter, may_publish=may_publish, publish_timeout=publish_timeout
        )
    except dead_letters.NotReplayable as exc:
        await marks.release(sequence)
        raise HTTPException(409, str(exc)) from exc
    except (nats.errors.Error, TimeoutError) as exc:
        await marks.release(sequence)
        raise HTTPException(503, "NATS did not store the replay; retry later") from exc
    record = ReplayRead(
        at=datetime.now(UTC),
        by=who,
        subject=done.subject,
        stream=done.stream,
        sequence=done.sequence,
        service=service,
    )
    await marks.record(sequence, record)
    return stored, record


REPLAY_RESPONSES: Final = problem_responses(
    {
        404: "No dead letter at that sequence (never, deleted or expired).",
        409: "Already replayed, or replayed by another service (the detail names it and its "
        "route), or not replayable whole.",
        503: "NATS or Redis did not answer; nothing was replayed, retry later.",
    }
)


def replay_router(
    service: str,
    *,
    connection: Callable[[], Client],
    redis: Redis,
    publish_timeout: float,
) -> APIRouter:
    """``POST /v1/<service>/dead-letters/{sequence}/replay``: replays the dead letters whose
    origin subject ``service``'s NATS user publishes (goals lists them, and says which)."""
    router = APIRouter(tags=["dead letters"])
    marks = ReplayMarks(redis)

    @router.post(
        f"/v1/{service}/dead-letters/{{sequence}}/replay",
        summary=f"Publish a dead letter's message again on its original subject, as {service}",
        responses=REPLAY_RESPONSES,
    )
    async def replay(
        sequence: Annotated[int, Path(ge=1, description="The dead letter's sequence.")],
        caller: Annotated[Caller, Depends(DEAD_LETTERS_REPLAY)],
    ) -> ReplayedRead:
        stored, record = await replay_once(
            service=service,
            connection=connection(),
            marks=marks,
            sequence=sequence,
            who=caller.principal.who,
            publish_timeout=publish_timeout,
        )
        return ReplayedRead(
            sequence=sequence, origin_subject=stored.letter.origin_subject, replayed=record
        )

    return router
