"""A batch's turn begins and commits only its own consumer's checkpoint while Redis is the
server every checkpoint was committed to, and catches every view up, in order, otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator

from goalwatch.checkpoints import Recovery, Replay


class FakeCheckpoint:
    """Counts begins and commits; ``server`` is the Redis ``run_id`` it sees."""

    def __init__(self, name: str, log: list[str], server: list[str]) -> None:
        self.name = name
        self._log = log
        self._server = server
        self._confirmed: str | None = None

    @property
    def confirmed(self) -> str | None:
        return self._confirmed

    async def run_id(self) -> str:
        return self._server[0]

    async def begin(self) -> Replay | None:
        self._log.append(f"begin {self.name}")
        return None if self._confirmed == self._server[0] else Replay(first=1, last=1)

    async def commit(self) -> bool:
        self._log.append(f"commit {self.name}")
        self._confirmed = self._server[0]
        return True

    async def messages(self, replay: Replay) -> AsyncIterator[list[tuple[int, bytes]]]:
        self._log.append(f"replay {self.name}")
        yield [(1, b"{}")]


async def apply(batch: list[tuple[int, bytes]]) -> int:
    return len(batch)


async def test_only_the_batchs_checkpoint_while_redis_is_the_same_and_all_after_a_restart() -> None:
    log: list[str] = []
    server = ["run-1"]
    directory, p0, p1 = (FakeCheckpoint(name, log, server) for name in ("dir", "p0", "p1"))
    recovery = Recovery(views=[(directory, apply), (p0, apply), (p1, apply)], what="state")

    async def work() -> str:
        log.append("work")
        return "done"

    # Nothing committed yet: every view catches up first, in order.
    assert await recovery.in_turn(work, only=p1) == "done"
    assert log == [
        "begin dir", "replay dir", "begin p0", "replay p0", "begin p1", "replay p1",
        "work", "commit dir", "commit p0", "commit p1",
    ]  # fmt: skip
    log.clear()
    # Same Redis: one checkpoint begun and committed.
    await recovery.in_turn(work, only=p1)
    assert log == ["begin p1", "work", "commit p1"]
    log.clear()
    # Redis restarted: everything again, whichever partition's batch notices.
    server[0] = "run-2"
    await recovery.in_turn(work, only=p0)
    assert log[:2] == ["begin dir", "replay dir"] and log[-3:] == [
        "commit dir",
        "commit p0",
        "commit p1",
    ]
    log.clear()
    # A partition taken later is followed from its next turn on, in the views' order.
    p2 = FakeCheckpoint("p2", log, server)
    await recovery.use([(directory, apply), (p0, apply), (p1, apply), (p2, apply)])
    await recovery.in_turn(work, only=p2)
    assert "replay p2" in log and log[-1] == "commit p2"
