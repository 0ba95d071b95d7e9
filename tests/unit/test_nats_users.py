"""The NATS permission table: the issue's rules hold, and every service may do what it does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from goalwatch.contracts import subjects
from goalwatch.contracts.interfaces import service_documents
from goalwatch.messaging import STREAMS
from goalwatch.nats_users import (
    API,
    OPERATOR,
    PUBLISHER,
    SERVICES,
    STREAM_OWNERS,
    USERS,
    documented_tables,
    permissions_table,
    publishers_of,
    user,
)
from goalwatch.timers import TimerKey
from services.evaluator.evaluation import OWNER as EVALUATOR_TIMERS
from services.notifier.groups import OWNER as NOTIFIER_TIMERS


def test_only_the_evaluator_publishes_alerts() -> None:
    for subject in (subjects.ALERTS_FIRED, subjects.ALERTS_RESOLVED):
        assert publishers_of(subject) == ["evaluator", OPERATOR], subject
    assert publishers_of("goalwatch.alerts.forged.v1") == [OPERATOR]


def test_only_ingestion_publishes_validated_metric_events() -> None:
    for partition in (0, 15):
        subject = subjects.metrics_partition_subject(partition)
        assert publishers_of(subject) == ["ingestion", OPERATOR]
    # The bare subject of the versions before partitioning: nothing publishes there now.
    assert publishers_of(subjects.METRICS_RECORDED) == [OPERATOR]
    assert publishers_of("goalwatch.metrics.recorded.v2") == [OPERATOR]


def test_the_publisher_publishes_raw_metric_events_and_nothing_else() -> None:
    publisher = user(PUBLISHER).permissions
    assert publisher.publish == (subjects.METRICS_IN,)
    assert not publisher.may_subscribe("_INBOX.abc")  # others' replies are not its to read
    assert publisher.may_subscribe("_INBOX.publisher.abc.1")


@pytest.mark.parametrize("stream", [config.name for config in STREAMS])
def test_only_a_streams_owner_may_configure_it(stream: str) -> None:
    owner = STREAM_OWNERS[stream]
    for action in ("CREATE", "UPDATE", "DELETE"):
        allowed = publishers_of(f"{API}.STREAM.{action}.{stream}")
        assert allowed == ([owner, OPERATOR] if action != "DELETE" else [OPERATOR]), action


def test_nobody_but_the_operator_creates_a_stream_of_its_own() -> None:
    assert publishers_of(f"{API}.STREAM.CREATE.EVIL") == [OPERATOR]
    assert publishers_of(f"{API}.STREAM.UPDATE.EVIL") == [OPERATOR]


def test_every_stream_has_an_owner_among_the_services() -> None:
    assert {config.name for config in STREAMS} == set(STREAM_OWNERS)
    assert set(STREAM_OWNERS.values()) <= set(SERVICES)


def test_services_are_users_named_for_them() -> None:
    names = [u.name for u in USERS]
    assert len(names) == len(set(names))
    assert set(SERVICES) | {PUBLISHER, OPERATOR} == set(names)


def _subjects_of(subscriber: Any) -> list[str]:
    return list(subscriber.config.filter_subjects or [subscriber.subject.broker_address])


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_may_do_what_its_broker_declares(service: str) -> None:
    """Every consumer a service subscribes and every subject it publishes (as its AsyncAPI
    document lists them) is allowed to its user."""
    broker = service_documents().brokers[service]
    allowed = user(service).permissions
    for subscriber in broker.subscribers:
        stream, durable = subscriber.stream.name, subscriber.config.durable_name
        for api in ("CONSUMER.INFO", "CONSUMER.DELETE", "CONSUMER.MSG.NEXT"):
            assert allowed.may_publish(f"{API}.{api}.{stream}.{durable}"), (api, durable)
        assert allowed.may_publish(f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}")
        assert allowed.may_publish(f"$JS.ACK.{stream}.{durable}.1.20.7.1776.0")
        for subject in _subjects_of(subscriber):
            assert allowed.may_publish(f"{API}.CONSUMER.CREATE.{stream}.{durable}.{subject}")
            assert allowed.may_publish(subjects.dead_letter_subject(subject)), subject
    for publisher in broker.publishers:
        assert allowed.may_publish(publisher.subject.broker_address), publisher.subject
        assert allowed.may_publish(f"{API}.STREAM.INFO.{publisher.stream.name}")
    assert allowed.may_subscribe("_INBOX.Vn8Xq2ZbM0pLk3rTf9sYw1.*")


@pytest.mark.parametrize(
    ("service", "timer_owner"), [("evaluator", EVALUATOR_TIMERS), ("notifier", NOTIFIER_TIMERS)]
)
def test_a_service_arms_and_cancels_only_its_own_timers(service: str, timer_owner: str) -> None:
    allowed = user(service).permissions
    assert allowed.may_publish(TimerKey(owner=timer_owner, name="due", key="k1").subject)
    for stream_api in ("MSG.GET", "MSG.DELETE", "PURGE"):
        assert allowed.may_publish(f"{API}.STREAM.{stream_api}.{subjects.STREAM_TIMERS}")
    others = {EVALUATOR_TIMERS, NOTIFIER_TIMERS} - {timer_owner}
    for other in others:
        assert not allowed.may_publish(TimerKey(owner=other, name="due", key="k1").subject)
    # Nobody publishes a fired timer but the server.
    assert not allowed.may_publish(f"{subjects.TIMERS_FIRED_PREFIX}.{timer_owner}")


def test_the_table_lists_every_user() -> None:
    table = permissions_table()
    for one in USERS:
        assert f"| `{one.name}` |" in table


def test_the_documented_tables_are_the_codes() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "security-nats.md").read_text()
    begin = "<!-- generated: python -m goalwatch.nats_users table -->\n"
    shown = text[text.index(begin) + len(begin) : text.index("<!-- end generated -->")]
    assert shown.strip() == documented_tables(), (
        "docs/security-nats.md is out of date: paste in `python -m goalwatch.nats_users table`"
    )
