"""``GOALWATCH_NATS_STREAM_REPLICAS``: the streams a service owns get that many copies, when
created and when updated at a later start (a 3-node JetStream cluster keeps R3 streams)."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from goalwatch import messaging
from goalwatch.nats_users import owned_streams
from services.goals.app import GoalsSettings


class _JetStream:
    """Records the stream configurations sent; ``existing`` streams are updated."""

    def __init__(self, existing: set[str]) -> None:
        self.existing = existing
        self.sent: dict[str, tuple[str, StreamConfig]] = {}

    async def stream_info(self, name: str) -> object:
        if name not in self.existing:
            raise NotFoundError
        return object()

    async def add_stream(self, config: StreamConfig) -> None:
        self.sent[str(config.name)] = ("created", config)
        self.existing.add(str(config.name))

    async def update_stream(self, config: StreamConfig) -> None:
        self.sent[str(config.name)] = ("updated", config)


class _Connection:
    def __init__(self, js: _JetStream) -> None:
        self.js = js

    def jetstream(self) -> _JetStream:
        return self.js

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("existing", [False, True])
async def test_owned_streams_get_the_replicas(
    monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    owned = set(owned_streams("goals"))
    js = _JetStream(set(owned) if existing else set())

    async def connect(_target: Any, **_options: Any) -> _Connection:
        return _Connection(js)

    monkeypatch.setattr(messaging, "connect_nats", connect)
    await messaging.ensure_streams("nats://unused", owner="goals", replicas=3)
    assert set(js.sent) == owned
    for how, config in js.sent.values():
        assert how == ("updated" if existing else "created")
        assert config.num_replicas == 3


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALWATCH_NATS_STREAM_REPLICAS", "3")
    assert GoalsSettings().nats_stream_replicas == 3
    monkeypatch.setenv("GOALWATCH_NATS_STREAM_REPLICAS", "0")
    with pytest.raises(ValueError, match="nats_stream_replicas"):
        GoalsSettings()
