"""Notifier settings, channel registration and request validation (no servers needed)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from pydantic import ValidationError

from goalwatch.contracts import subjects
from services.notifier.app import (
    NotifierSettings,
    alert_consumer,
    build_channels,
    create_app,
    order_ttl,
    policy,
)
from services.notifier.webhook import WebhookChannel
from tests.unit.signed_in import signed_in


def test_defaults_leave_the_webhook_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GOALWATCH_NOTIFIER_PORT",
        "GOALWATCH_GOALS_URL",
        "GOALWATCH_WEBHOOK_URL",
        "GOALWATCH_WEBHOOK_SECRET",
        "GOALWATCH_WEBHOOK_MAX_ATTEMPTS",
        "GOALWATCH_WEBHOOK_BACKOFF",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = NotifierSettings()
    assert settings.notifier_port == 8004
    assert settings.goals_url == "http://127.0.0.1:8002"
    assert settings.webhook_url is None
    assert settings.webhook_max_attempts == 10
    assert settings.webhook_backoff == 0.5
    assert build_channels(settings, client=httpx.AsyncClient()) == []


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALWATCH_NOTIFIER_PORT", "28004")
    monkeypatch.setenv("GOALWATCH_GOALS_URL", "http://goals:8002")
    monkeypatch.setenv("GOALWATCH_WEBHOOK_URL", "https://hooks.example.org/goalwatch")
    monkeypatch.setenv("GOALWATCH_WEBHOOK_SECRET", "s3cret")
    monkeypatch.setenv("GOALWATCH_WEBHOOK_MAX_ATTEMPTS", "3")
    settings = NotifierSettings()
    assert settings.notifier_port == 28004
    assert settings.goals_url == "http://goals:8002"
    assert settings.webhook_max_attempts == 3
    assert settings.webhook_secret is not None
    # Never printed in logs or reprs.
    assert "s3cret" not in repr(settings)
    (channel,) = build_channels(settings, client=httpx.AsyncClient())
    assert isinstance(channel, WebhookChannel) and channel.name == "webhook"


def test_webhook_url_without_secret_stops_start_up() -> None:
    with pytest.raises(ValidationError, match="GOALWATCH_WEBHOOK_SECRET is required"):
        NotifierSettings(webhook_url="http://127.0.0.1:28100/hook")


def test_webhook_url_must_be_http() -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        NotifierSettings(webhook_url="ftp://x", webhook_secret="s")


def test_blank_webhook_url_means_off() -> None:
    assert NotifierSettings(webhook_url="  ").webhook_url is None


async def test_unknown_state_filter_is_a_422_naming_the_choices() -> None:
    app = signed_in(create_app(NotifierSettings(redis_url="redis://127.0.0.1:1/0")))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/v1/alerts", params={"state": "open"})
        too_many = await client.get("/v1/alerts", params={"limit": "100000"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] == "Unprocessable Entity"
    (error,) = problem["errors"]
    assert error["loc"] == "query.state"
    assert "'firing' or 'resolved'" in error["msg"]
    assert "query.state" in problem["detail"]
    # The invalid input is not echoed back.
    assert "open" not in response.text.replace("'", "")
    assert too_many.status_code == 422


async def test_a_misspelt_filter_is_a_400_naming_the_filters() -> None:
    app = signed_in(create_app(NotifierSettings(redis_url="redis://127.0.0.1:1/0")))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        response = await client.get("/v1/alerts", params={"manager": "zhang-wei"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("unknown query parameter 'manager'; /v1/alerts takes: ")
    for name in ("cursor", "kind", "limit", "recipient", "rule", "severity", "since", "state"):
        assert name in detail


def test_the_directory_cache_ttl_reads_as_a_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOALWATCH_DIRECTORY_CACHE_TTL", raising=False)
    assert NotifierSettings().directory_cache_ttl == timedelta(minutes=10)
    monkeypatch.setenv("GOALWATCH_DIRECTORY_CACHE_TTL", "90s")
    assert NotifierSettings().directory_cache_ttl == timedelta(seconds=90)
    assert NotifierSettings(directory_cache_ttl="2h").directory_cache_ttl == timedelta(hours=2)
    with pytest.raises(ValidationError, match="directory_cache_ttl"):
        NotifierSettings(directory_cache_ttl="0")


def test_one_consumer_reads_both_alert_subjects_and_takes_over_from_the_two_before_it() -> None:
    spec = alert_consumer(NotifierSettings())
    assert spec.name == "notifier-alerts"
    assert spec.subjects == (subjects.ALERTS_FIRED, subjects.ALERTS_RESOLVED)
    assert spec.replaces == ("notifier-fired", "notifier-resolved")


def test_an_unsettled_firing_is_remembered_longer_than_its_message_is_retried() -> None:
    settings = NotifierSettings(webhook_max_attempts=20, notifier_ack_wait=120)
    retries = policy(settings)
    # Every delivery at the longest delay, each handled until ack_wait ran out.
    span = sum(retries.delay(n) for n in range(1, retries.max_deliver))
    span += retries.max_deliver * settings.notifier_ack_wait
    assert order_ttl(settings).total_seconds() > span
