"""Dead letters as an operator reads and replays them: one place for what docs/operations.md
showed as a snippet, used by goals' ``/v1/dead-letters`` API and by the replay route each
service serves for the subjects it publishes (:mod:`goalwatch.dead_letter_replay`).

A replay keeps the guarantees of the documented procedure:

- the whole original body goes back, read from ``origin_stream`` at ``origin_sequence`` when
  the dead letter kept only its beginning (``payload_truncated``);
- it is published on ``origin_subject`` with the content type ingestion needs to read it,
  and **without** a ``Nats-Msg-Id``: reusing the original one could make the stream drop the
  replay as a duplicate. The consumers recognise what they have already done by the ids
  inside the message (event ids, alert fingerprints and transitions), so a replay is safe;
- the dead letter itself stays in its stream, as the record of what went wrong.

Who replays what is decided by the NATS permissions (:mod:`goalwatch.nats_users`): the
service whose user may publish on a dead letter's origin subject replays it
(:func:`replayer`), so the evaluator replays alerts, ingestion validated metric events and
goals raw metric events and its own changes; nobody gains a right to publish for it. A
subject no service may publish is left to the operator's own NATS user (the snippet in
docs/operations.md).

A replay is marked once in Redis, under a key every replaying service may use
(:data:`REPLAY_MARKS`), so that goals lists what the others replayed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from goalwatch import nats_users
from goalwatch.contracts import DeadLetter, subjects

MAX_LIMIT: Final = 200

REPLAY_MARKS: Final = "goalwatch:dead-letters:replayed:"
"""Redis key per replayed dead letter (its sequence appended): JSON of when, by whom and
where to; set before the replay is published, so a letter is replayed once. Shared by the
services that replay (goalwatch/redis_users.py grants them this prefix and no more)."""


def replayer(subject: str) -> str | None:
    """The service that replays dead letters whose origin is ``subject``: the one whose NATS
    user may publish on it (the first, in :data:`goalwatch.nats_users.SERVICES` order, should
    two ever may); None when no service may, and only the NATS operator can."""
    for service in nats_users.SERVICES:
        if nats_users.user(service).permissions.may_publish(subject):
            return service
    return None


def content_type(payload: str) -> str:
    """The content type ingestion needs to read ``payload`` (dead letters do not keep it)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return "application/json"
    if isinstance(body, dict) and "specversion" in body:
        return "application/cloudevents+json"
    if isinstance(body, list) and body and isinstance(body[0], dict) and "specversion" in body[0]:
        return "application/cloudevents-batch+json"
    return "application/json"


@dataclass(frozen=True)
class Stored:
    """A dead letter and its place in ``GOALWATCH_DEADLETTER``."""

    sequence: int
    subject: str
    letter: DeadLetter


@dataclass(frozen=True)
class Republished:
    """Where a replay went: the stream and sequence its new message got."""

    subject: str
    stream: str
    sequence: int


class NotReplayable(Exception):
    """The dead letter cannot be replayed by this user; the message says what to do."""


async def read(js: JetStreamContext, sequence: int) -> Stored | None:
    """The dead letter at ``sequence``; None when there is none (deleted, expired, never)."""
    try:
        stored = await js.get_msg(subjects.STREAM_DEADLETTER, sequence)
    except NotFoundError:
        return None
    try:
        letter = DeadLetter.model_validate_json(stored.data or b"")
    except ValidationError:
        return None
    return Stored(sequence=sequence, subject=stored.subject or "", letter=letter)


async def newest(
    js: JetStreamContext, *, limit: int, before: int | None = None
) -> tuple[list[Stored], int | None]:
    """Up to ``limit`` dead letters, newest first, at positions below ``before``; and the
    position to go on from (None: none are older)."""
    try:
        state = (await js.stream_info(subjects.STREAM_DEADLETTER)).state
    except NotFoundError:
        return [], None
    high = state.last_seq if before is None else min(before - 1, state.last_seq)
    low = max(state.first_seq, high - limit + 1)
    if high < low or high < 1:
        return [], None
    found = await asyncio.gather(*(read(js, seq) for seq in range(high, low - 1, -1)))
    letters = [one for one in found if one is not None]
    return letters, (low if low > state.first_seq else None)


async def whole_payload(js: JetStreamContext, letter: DeadLetter) -> str:
    """The original body: ``payload``, or read from its origin stream when truncated."""
    if not letter.payload_truncated:
        return letter.payload
    if letter.origin_stream is None or letter.origin_sequence is None:
        raise NotReplayable(
            "only the beginning of the message was kept and its origin is unknown: "
            "it cannot be replayed whole"
        )
    try:
        original = await js.get_msg(letter.origin_stream, letter.origin_sequence)
    except NotFoundError as exc:
        raise NotReplayable(
            f"only the beginning of the message was kept, and {letter.origin_stream} no longer "
            f"holds message {letter.origin_sequence}: it cannot be replayed whole"
        ) from exc
    return (original.data or b"").decode("utf-8", errors="replace")


async def replay(
    js: JetStreamContext,
    letter: DeadLetter,
    *,
    may_publish: Callable[[str], bool],
    publish_timeout: float = 5.0,
) -> Republished:
    """Publish ``letter``'s whole body back onto its origin subject (see the module)."""
    if not may_publish(letter.origin_subject):
        raise NotReplayable(
            f"{letter.origin_subject} is published only by the service that owns it: replay "
            "this dead letter as the NATS operator (docs/operations.md, Replaying a dead letter)"
        )
    payload = await whole_payload(js, letter)
    ack = await js.publish(
        letter.origin_subject,
        payload.encode(),
        headers={"content-type": content_type(payload)},
        timeout=publish_timeout,
    )
    return Republished(subject=letter.origin_subject, stream=ack.stream, sequence=ack.seq)
