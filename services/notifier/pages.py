"""Pages of records listed newest first from a Redis sorted-set index, with a cursor.

An index scores each record's key by a time (Unix seconds); a page walks it from the top, or
from a cursor (the score and member of the last record of the previous page: ties at one
score are ordered by member, as Redis orders them), reads the records, keeps those a filter
accepts, and answers the cursor of the next page only if there is one: it reads one record
more than asked. A record whose key has expired is dropped from the index walked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar, cast

from redis.asyncio import Redis

T = TypeVar("T")

MIN_READ = 50
"""Index entries read at a time, at least: filters may pass few of them."""


class CursorError(ValueError):
    """A cursor that no page gave."""


def cursor_of(score: float, member: str) -> str:
    """The cursor after the record ``member`` at ``score``."""
    return f"{score!r}~{member}"


def position(cursor: str) -> tuple[float, str]:
    """The score and member a cursor stands after; :class:`CursorError` if it is none."""
    score, sep, member = cursor.partition("~")
    try:
        if not sep or not member:
            raise ValueError(cursor)
        return float(score), member
    except ValueError:
        raise CursorError(
            "not a cursor of this list: pass the next_cursor of the previous page as it came"
        ) from None


@dataclass(frozen=True)
class Window:
    """The part of an index a page looks at: at or after ``since``, before ``until``."""

    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Walk(Generic[T]):
    """How to read and filter the records of one index."""

    redis: Redis
    index: str
    key: Callable[[str], str]
    parse: Callable[[str], T]
    match: Callable[[T], bool]
    visible: Callable[[T], Awaitable[bool]] | None = None
    """Whether the reader may see a record (after ``match``); ``None``: every record."""

    async def page(
        self, window: Window, limit: int, cursor: str | None
    ) -> tuple[list[T], str | None]:
        """At most ``limit`` matching records, newest first, after ``cursor``; and the
        cursor of the next page (None: this is the last)."""
        top: float | str = "+inf" if window.until is None else f"({window.until.timestamp()}"
        after: tuple[float, str] | None = None
        if cursor is not None:
            after = position(cursor)
            top = after[0]
        bottom: float | str = "-inf" if window.since is None else window.since.timestamp()
        read = max(limit, MIN_READ)
        # One more than asked: whether there is a next page is known, not guessed.
        found: list[tuple[T, float, str]] = []
        offset = 0
        while len(found) <= limit:
            # decode_responses=True: members come back as str.
            rows = cast(
                list[tuple[str, float]],
                await self.redis.zrevrangebyscore(
                    self.index, top, bottom, start=offset, num=read, withscores=True
                ),
            )
            if not rows:
                break
            offset += len(rows)
            if after is not None:
                # Ties at the cursor's score come in reverse member order: skip to past it.
                rows = [(m, score) for m, score in rows if score < after[0] or m < after[1]]
            if not rows:
                continue
            raws = cast(Sequence[str | None], await self.redis.mget([self.key(m) for m, _ in rows]))
            gone = [member for (member, _), raw in zip(rows, raws, strict=True) if not raw]
            if gone:
                # Expired: out of the index walked, so the next walk is shorter; what
                # follows them moved up by as many places.
                await self.redis.zrem(self.index, *gone)
                offset -= len(gone)
            for (member, score), raw in zip(rows, raws, strict=True):
                if raw:
                    record = self.parse(raw)
                    if self.match(record) and (self.visible is None or await self.visible(record)):
                        found.append((record, score, member))
        records = [record for record, _, _ in found[:limit]]
        if len(found) <= limit:
            return records, None
        _, score, member = found[limit - 1]
        return records, cursor_of(score, member)
