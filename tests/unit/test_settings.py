"""Each setting comes from GOALWATCH_<field name>, and each service reads only its own port."""

from __future__ import annotations

from datetime import timedelta

import pytest

from goalwatch.settings import settings_or_exit
from services.evaluator.app import EvaluatorSettings
from services.goals.app import GoalsSettings
from services.ingestion.app import IngestionSettings
from services.notifier.app import NotifierSettings


def test_each_service_reads_its_own_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALWATCH_PORT", "1")  # not a goalwatch variable: ignored
    monkeypatch.setenv("GOALWATCH_GOALS_PORT", "9102")
    monkeypatch.setenv("GOALWATCH_INGESTION_PORT", "9101")
    assert GoalsSettings().goals_port == 9102
    assert IngestionSettings().ingestion_port == 9101
    assert EvaluatorSettings().evaluator_port == 8003
    assert NotifierSettings().notifier_port == 8004


def test_settings_come_from_prefixed_field_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALWATCH_NATS_URL", "nats://10.0.0.5:4222")
    monkeypatch.setenv("GOALWATCH_INGEST_MAX_BATCH", "7")
    monkeypatch.setenv("GOALWATCH_WEBHOOK_MAX_ATTEMPTS", "2")
    assert IngestionSettings().nats_url == "nats://10.0.0.5:4222"
    assert IngestionSettings().ingest_max_batch == 7
    assert NotifierSettings().webhook_max_attempts == 2


def test_a_bad_setting_names_the_variable_and_hides_the_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOALWATCH_NOTIFIER_PORT", "70000")
    monkeypatch.setenv("GOALWATCH_WEBHOOK_URL", "ftp://hook.example/s3cret-token")
    monkeypatch.setenv("GOALWATCH_WEBHOOK_SECRET", "s3cret")
    with pytest.raises(SystemExit) as stopped:
        settings_or_exit(NotifierSettings)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "GOALWATCH_NOTIFIER_PORT: Input should be less than or equal to 65535" in err
    assert "GOALWATCH_WEBHOOK_URL" in err
    assert "s3cret" not in err


def test_metric_events_are_kept_as_long_as_the_retention_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert IngestionSettings().metrics_retention == timedelta(days=30)
    monkeypatch.setenv("GOALWATCH_METRICS_RETENTION", "90d")
    assert EvaluatorSettings().metrics_retention == timedelta(days=90)
    monkeypatch.setenv("GOALWATCH_METRICS_RETENTION", "3600")
    assert GoalsSettings().metrics_retention == timedelta(hours=1)
