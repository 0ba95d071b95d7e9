"""The routing file: loading and its errors, the tree's choice, receivers and deliveries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from goalwatch.contracts import (
    AlertNotification,
    AlertState,
    Recipient,
    RecipientRole,
    Severity,
    SubjectRef,
)
from goalwatch.file_errors import FileErrors
from goalwatch.routing.cli import add_routes_commands
from goalwatch.routing.loader import parse_routes
from goalwatch.routing.tree import match, receivers
from services.notifier.app import NotifierSettings, create_app, explain_startup_error
from services.notifier.receivers import (
    HttpOptions,
    ReceiverError,
    Retries,
    build_receivers,
)
from services.notifier.routing import Routing

ROUTES = """\
receivers:
  - name: people
    per_person: true
    slack: {url: "${SLACK_URL}"}
    wecom: {url: "${WECOM_URL}"}
  - name: room
    wecom: {url: "${WECOM_URL}", language: en}
  - name: audit
    webhook: {url: "https://audit.example.org/hook", secret: "${AUDIT_SECRET}"}
groups:
  quality-leads: [li-na, zhang-wei]
route:
  receiver: people
  routes:
    - matchers: [kind=fraud]
      receiver: audit
      continue: true
    - matchers: ['severity=~"warning|critical"', department=cardiology]
      receiver: room
    - matchers: [severity=critical]
      routes:
        - matchers: [department=oncology]
          receiver: audit
"""
ENVIRON = {
    "SLACK_URL": "https://hooks.slack.test/services/T0/B0/s3cret",
    "WECOM_URL": "https://qyapi.test/cgi-bin/webhook/send?key=k3y",
    "AUDIT_SECRET": "hush",
}


def load(text: str = ROUTES) -> object:
    return parse_routes(text, file="routes.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(FileErrors) as caught:
        parse_routes(text, file="routes.yaml")
    return [error.lint_line() for error in caught.value.errors]


def taken(labels: dict[str, str]) -> list[str]:
    routes = parse_routes(ROUTES, file="routes.yaml")
    return receivers(match(routes.route, labels))


def test_the_root_takes_what_no_route_does() -> None:
    assert taken({"kind": "threshold", "severity": "info"}) == ["people"]


def test_the_first_route_that_matches_wins_unless_it_continues() -> None:
    assert taken({"kind": "fraud", "severity": "warning", "department": "cardiology"}) == [
        "audit",
        "room",
    ]
    assert taken({"kind": "threshold", "severity": "warning", "department": "cardiology"}) == [
        "room"
    ]


def test_a_route_without_receiver_inherits_and_without_a_matching_child_is_taken_itself() -> None:
    routes = parse_routes(ROUTES, file="routes.yaml")
    deep = match(routes.route, {"severity": "critical", "department": "oncology"})
    assert [(m.path, m.receiver) for m in deep] == [("route.routes[2].routes[0]", "audit")]
    assert deep[0].matchers == ("severity=critical", "department=oncology")
    # Critical elsewhere: the route itself, with its parent's receiver.
    shallow = match(routes.route, {"severity": "critical", "department": "surgery"})
    assert [(m.path, m.receiver) for m in shallow] == [("route.routes[2]", "people")]


def test_problems_are_located_and_say_how_to_fix_them() -> None:
    found = problems(
        """\
receivers:
  - name: room
    wecom: {url: "https://qyapi.test/send?key=k3y"}
  - name: audit
    webhook: {url: "https://a.test/hook", secret: hush}
    emial: {}
route:
  receiver: room
"""
    )
    assert found == [
        "routes.yaml:3:13: receivers[0].wecom.url: write the robot URL (it carries the robot's "
        "token) as ${VARIABLE} and set that variable in the notifier's environment (a Kubernetes "
        "Secret): it is a password, and files are kept in git",
        "routes.yaml:5:43: receivers[1].webhook.secret: write the secret as ${VARIABLE} and set "
        "that variable in the notifier's environment (a Kubernetes Secret): it is a password, and "
        "files are kept in git",
        "routes.yaml:6:5: receivers[1].emial: unknown field 'emial'; did you mean 'email'? "
        "allowed: name, per_person, webhook, email, wecom, dingtalk, feishu, slack, alertmanager, "
        "quiet_hours",
    ]


def test_cross_field_problems_point_at_the_line() -> None:
    found = problems(
        """\
receivers:
  - name: room
    slack: {url: "${S}"}
  - name: room
    slack: {url: "${S}"}
route:
  receiver: room
  routes:
    - matchers: [kind=fraud]
      receiver: rooom
"""
    )
    assert found == [
        "routes.yaml:4:5: receivers[1].name: 'room' names two receivers; rename one",
        "routes.yaml:10:7: route.routes[0].receiver: 'rooom' is not a receiver; did you mean "
        "'room'? receivers defined: room, room",
    ]


def test_the_root_takes_everything_and_names_a_receiver() -> None:
    found = problems(
        """\
receivers:
  - name: room
    slack: {url: "${S}"}
route:
  matchers: [kind=fraud]
"""
    )
    assert any("the root route needs a receiver" in line for line in found)
    assert any(line.startswith("routes.yaml:5:3: route.matchers:") for line in found)


def test_a_receiver_without_a_channel_and_bad_yaml_are_refused() -> None:
    assert problems("receivers:\n  - name: room\nroute: {receiver: room}\n") == [
        "routes.yaml:2:5: receivers[0]: receiver 'room' has no channel; give it one or more of "
        "webhook, email, wecom, dingtalk, feishu, slack, alertmanager"
    ]
    assert problems("receivers: [\n")[0].startswith("routes.yaml:2:1: not valid YAML")
    assert problems("- just a list\n")[0].startswith("routes.yaml:1: expected a routing file")


def notification(*recipients: Recipient) -> AlertNotification:
    return AlertNotification(
        fingerprint="fp-1",
        rule_id="rework-high",
        rule_name="Rework high",
        kind="threshold",
        state=AlertState.FIRING,
        severity=Severity.WARNING,
        subject=SubjectRef(id="dr-li", name="Dr Li"),
        metric="report_rework_rate",
        value=0.2,
        message="rework 20%",
        started_at=datetime(2026, 11, 3, tzinfo=UTC),
        fired_at=datetime(2026, 11, 3, tzinfo=UTC),
        recipients=list(recipients),
        labels={"department": "cardiology"},
    )


def built(environ: dict[str, str] = ENVIRON) -> dict[str, object]:
    routes = parse_routes(ROUTES, file="routes.yaml")
    options = HttpOptions(
        client=httpx.AsyncClient(), retries=Retries(timeout=1.0, max_attempts=2, backoff=0.1)
    )
    return dict(build_receivers(routes, environ=environ, http=options, email=None))


def test_deliveries_are_named_by_receiver_channel_and_person() -> None:
    receivers = built()
    li = Recipient(id="li-na", name="Li Na", role=RecipientRole.SUBJECT)
    zhang = Recipient(id="zhang-wei", name="Zhang Wei", role=RecipientRole.MANAGER)
    room = receivers["room"].deliveries(notification(li, zhang))  # type: ignore[attr-defined]
    assert [(d.name, d.channel.name, len(d.notification.recipients)) for d in room] == [
        ("room/wecom", "wecom", 2)
    ]
    assert room[0].channel.language == "en"
    people = receivers["people"].deliveries(notification(li, zhang))  # type: ignore[attr-defined]
    # Without preferences each person hears on the receiver's first channel, alone.
    assert [(d.name, [r.id for r in d.notification.recipients]) for d in people] == [
        ("people/slack/li-na", ["li-na"]),
        ("people/slack/zhang-wei", ["zhang-wei"]),
    ]


def test_an_unset_variable_fails_the_build_naming_it_but_no_value() -> None:
    with pytest.raises(ReceiverError) as caught:
        built({k: v for k, v in ENVIRON.items() if k != "SLACK_URL"})
    assert "SLACK_URL" in str(caught.value)
    assert "k3y" not in str(caught.value)


def test_a_variable_that_is_no_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ReceiverError) as caught:
        built({**ENVIRON, "WECOM_URL": "qyapi.test/send?key=k3y"})
    assert "k3y" not in str(caught.value)
    assert "wecom.url must be an http" in str(caught.value)


def test_a_reload_keeps_the_routing_in_force_when_the_file_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES, encoding="utf-8")
    routes = parse_routes(ROUTES, file=str(path))
    options = HttpOptions(
        client=httpx.AsyncClient(), retries=Retries(timeout=1.0, max_attempts=2, backoff=0.1)
    )

    def build(r: object) -> dict[str, object]:
        return dict(build_receivers(routes, environ=ENVIRON, http=options, email=None))

    routing = Routing.from_file(path, build)  # type: ignore[arg-type]
    first = routing.current
    assert dict(first.groups) == {"quality-leads": ["li-na", "zhang-wei"]}
    path.write_text(ROUTES.replace("receiver: room", "receiver: rom"), encoding="utf-8")
    with pytest.raises(FileErrors):
        routing.reload()
    assert routing.current is first
    path.write_text(ROUTES.replace("quality-leads", "leads"), encoding="utf-8")
    assert set(routing.reload().groups) == {"leads"}


def test_a_broken_routing_file_stops_the_notifier_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("receivers: []\nroute: {receiver: nobody}\n", encoding="utf-8")
    settings = NotifierSettings(routes_file=path)
    with pytest.raises(FileErrors) as caught:
        create_app(settings, environ={})
    message = explain_startup_error(caught.value, settings)
    assert message is not None
    assert message.startswith(f"the notifier cannot start: 1 error in the routing file {path}")
    assert f"{path}:1:1: receivers: must not be empty: define at least one receiver" in message


def test_routes_check_lists_the_variables_the_notifier_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES, encoding="utf-8")
    parser = argparse.ArgumentParser()
    add_routes_commands(parser.add_subparsers())
    args = parser.parse_args(["routes", "check", str(path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "3 receiver(s) (people, room, audit), 4 route(s) under the root, 1 group(s)" in out
    assert "must set: SLACK_URL, WECOM_URL, AUDIT_SECRET" in out
    args = parser.parse_args(["routes", "test", str(path), "-l", "kind=fraud"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "receivers: audit"


def test_a_per_person_receiver_follows_each_persons_channels_and_language() -> None:
    from goalwatch.contracts.people import Channel as PersonChannel
    from goalwatch.contracts.people import Language

    receivers = built()
    wecom_first = Recipient(
        id="li-na",
        name="Li Na",
        role=RecipientRole.SUBJECT,
        channels=[PersonChannel.EMAIL, PersonChannel.WECOM],
        language=Language.ZH,
    )
    inbox_only = Recipient(
        id="wang-fang",
        name="Wang Fang",
        role=RecipientRole.MANAGER,
        channels=[PersonChannel.INBOX, PersonChannel.SLACK],
    )
    english = Recipient(
        id="zhang-wei", name="Zhang Wei", role=RecipientRole.EXPLICIT, language=Language.EN
    )
    people = receivers["people"].deliveries(  # type: ignore[attr-defined]
        notification(wecom_first, inbox_only, english)
    )
    # Li Na: e-mail is not this receiver's, WeCom is; Wang Fang reads the inbox only;
    # Zhang Wei has no preference: the receiver's first channel, in English.
    assert [(d.name, d.channel.language) for d in people] == [
        ("people/wecom/li-na", "zh"),
        ("people/slack/zhang-wei", "en"),
    ]


def quiet(text: str) -> object:
    routes = parse_routes(
        "receivers:\n  - name: p\n    per_person: true\n"
        f"    quiet_hours: {text}\n"
        '    slack: {url: "${S}"}\nroute: {receiver: p}\n',
        file="routes.yaml",
    )
    return routes.receivers[0].quiet_hours


def test_quiet_hours_end_in_the_readers_time_zone() -> None:
    hours = quiet("{start: 22:00, end: 08:00, time_zone: Asia/Shanghai}")
    # 23:00 in Shanghai: quiet until 08:00 there, the next morning.
    evening = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)
    assert hours.until(evening, None) == datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # type: ignore[attr-defined]
    # 09:00 in Shanghai: not quiet.
    assert hours.until(datetime(2026, 12, 6, 1, 0, tzinfo=UTC), None) is None  # type: ignore[attr-defined]
    # The reader's own zone wins: 00:30 in Berlin, quiet until 08:00 Berlin time.
    late = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    assert hours.until(late, "Europe/Berlin") == datetime(2026, 12, 7, 7, 0, tzinfo=UTC)  # type: ignore[attr-defined]
    daytime = quiet('{start: "12:00", end: "14:00"}')
    assert daytime.until(datetime(2026, 12, 6, 13, 0, tzinfo=UTC), None) == datetime(  # type: ignore[attr-defined]
        2026, 12, 6, 14, 0, tzinfo=UTC
    )
    assert daytime.until(datetime(2026, 12, 6, 14, 0, tzinfo=UTC), None) is None  # type: ignore[attr-defined]


def test_critical_alerts_are_sent_in_quiet_hours_unless_told_to_wait() -> None:
    from services.notifier.receivers import Delivery

    hours = quiet("{start: 22:00, end: 08:00}")
    night = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    warning = notification()
    critical = warning.model_copy(update={"severity": Severity.CRITICAL})

    def until(n: AlertNotification, h: object) -> datetime | None:
        delivery = Delivery(
            name="p/slack", receiver="p", channel=None, notification=n, quiet_hours=h
        )  # type: ignore[arg-type]
        return delivery.quiet_until(night)

    assert until(warning, hours) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert until(critical, hours) is None
    assert until(critical, quiet("{start: 22:00, end: 08:00, critical: wait}")) is not None


def test_rates_and_quiet_hours_are_checked_in_the_file() -> None:
    from goalwatch.routing.rates import RateLimit, parse_rate

    assert parse_rate("20/1m") == RateLimit(20, 60)
    assert parse_rate("5/s") == RateLimit(5, 1)
    assert str(RateLimit(100, 3600)) == "100/1h"
    found = problems(
        "receivers:\n  - name: p\n"
        "    quiet_hours: {start: 22:00, end: 08:00, time_zone: Mars/Olympus}\n"
        '    wecom: {url: "${W}", rate_limit: lots}\nroute: {receiver: p}\n'
    )
    assert found == [
        "routes.yaml:3:45: receivers[0].quiet_hours.time_zone: 'Mars/Olympus' is not a time "
        "zone: write an IANA name such as Asia/Shanghai or UTC",
        "routes.yaml:4:26: receivers[0].wecom.rate_limit: 'lots' is not a rate: write messages "
        "per window, e.g. 20/1m or 5/1s, or off",
    ]


def test_routes_match_the_subjects_org_unit_and_everything_under_a_unit() -> None:
    from goalwatch.routing.matchers import alert_labels

    routes = parse_routes(
        'receivers:\n  - name: room\n    slack: {url: "${S}"}\n'
        '  - name: radiology\n    slack: {url: "${S}"}\n'
        "route:\n  receiver: room\n  routes:\n"
        "    - matchers: ['org_unit_path=~\"riverside/radiology(/.*)?\"']\n"
        "      receiver: radiology\n",
        file="routes.yaml",
    )
    labels = alert_labels(notification(), ["night-readers", "radiology", "riverside"])
    assert labels["org_unit"] == "night-readers"
    assert labels["org_unit_path"] == "riverside/radiology/night-readers"
    assert receivers(match(routes.route, labels)) == ["radiology"]
    elsewhere = alert_labels(notification(), ["surgery", "riverside"])
    assert receivers(match(routes.route, elsewhere)) == ["room"]
    # A subject the directory does not place has neither label.
    assert "org_unit" not in alert_labels(notification())
