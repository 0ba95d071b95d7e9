"""Starting a service leaves the streams as goalwatch provisions them."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest

from goalwatch.dev.stack import Stack
from goalwatch.messaging import STREAMS
from goalwatch.serving import registered_services

pytestmark = pytest.mark.integration

Config = tuple[float | None, float | None, list[str]]


async def _configs(nats_url: str) -> dict[str | None, Config]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        found: dict[str | None, Config] = {}
        for wanted in STREAMS:
            assert wanted.name is not None
            config = (await js.stream_info(wanted.name)).config
            found[wanted.name] = (
                config.max_age,
                config.duplicate_window,
                sorted(config.subjects or []),
            )
        return found
    finally:
        await nc.close()


async def _start_each(stack: Stack) -> dict[str, dict[str | None, Config]]:
    after: dict[str, dict[str | None, Config]] = {}
    for name, info in registered_services().items():
        base: Any = (
            info.document_settings() if info.document_settings else info.settings.model_construct()
        )
        settings = base.model_copy(
            update={"nats_url": stack.settings.nats_url, "redis_url": stack.settings.redis_url}
        )
        app = info.create_app(settings)
        async with app.router.lifespan_context(app):
            pass
        after[name] = await _configs(stack.settings.nats_url)
    return after


def test_starting_a_service_does_not_reconfigure_streams(stack: Stack) -> None:
    # A publisher or subscriber naming its stream by a bare string makes FastStream declare it
    # when the broker starts, replacing the provisioned configuration with its defaults (no age
    # limit, a 2-minute duplicate window) right after the service's own ensure_streams.
    provisioned = {
        # nats-server stores an unset duplicate window as its default, 2 minutes.
        config.name: (
            config.max_age,
            config.duplicate_window or 120.0,
            sorted(config.subjects or []),
        )
        for config in STREAMS
    }
    after = asyncio.run(_start_each(stack))
    assert set(after) == {"console", "evaluator", "goals", "ingestion", "notifier"}
    for name, configs in after.items():
        assert configs == provisioned, f"starting {name} changed a stream's configuration"
