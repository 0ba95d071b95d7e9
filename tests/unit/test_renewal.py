"""Renewing on a timer while a block runs: on, off, and through failures."""

from __future__ import annotations

import asyncio

import pytest

from goalwatch.renewal import renewing


class Lease:
    """Counts renewals; fails the first ``failures`` and reports itself gone after ``lives``."""

    def __init__(self, *, failures: int = 0, lives: int = 1_000) -> None:
        self.calls = 0
        self.failures = failures
        self.lives = lives
        self.renewed = asyncio.Condition()

    async def renew(self) -> bool:
        async with self.renewed:
            self.calls += 1
            self.renewed.notify_all()
        if self.calls <= self.failures:
            raise ConnectionError("redis is down")
        return self.calls < self.lives

    async def until(self, calls: int) -> None:
        async with self.renewed:
            await self.renewed.wait_for(lambda: self.calls >= calls)


async def test_renews_while_the_block_runs_and_stops_after_it() -> None:
    lease = Lease()
    async with renewing(lease.renew, every=0.001, what="lease"):
        await lease.until(3)
    stopped_at = lease.calls
    await asyncio.sleep(0.02)  # long enough for many more ticks, were it still running
    assert lease.calls == stopped_at


async def test_a_failed_renewal_is_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    lease = Lease(failures=2)
    async with renewing(lease.renew, every=0.001, what="lease"):
        await lease.until(4)
    assert "renewing lease failed: redis is down" in caplog.text


async def test_a_lapsed_thing_is_no_longer_renewed(caplog: pytest.LogCaptureFixture) -> None:
    lease = Lease(lives=2)
    async with renewing(lease.renew, every=0.001, what="lease"):
        await lease.until(2)
        await asyncio.sleep(0.02)
    assert lease.calls == 2
    assert "lease lapsed while in use" in caplog.text
