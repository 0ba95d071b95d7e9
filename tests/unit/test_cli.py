"""The start banner of `goalwatch up`."""

from __future__ import annotations

import pytest

from goalwatch.cli import _banner, _replica_counts, main
from goalwatch.dev.receiver import describe
from goalwatch.dev.stack import StackSettings


def _webhook_line(settings: StackSettings) -> str:
    return next(line for line in _banner(settings).splitlines() if line.split()[0] == "webhook")


def test_the_banner_says_when_no_webhook_is_configured() -> None:
    line = _webhook_line(StackSettings(webhook_url=None))
    assert "none (set GOALWATCH_WEBHOOK_URL" in line and "docs/channels/" in line
    assert "GOALWATCH_WEBHOOK_URL" in line
    assert _webhook_line(StackSettings(webhook_url="  ")) == line


def test_the_banner_shows_where_the_webhook_is_without_its_secrets() -> None:
    url = "https://bot:p4ss@hooks.example.org:8443/cgi-bin/webhook/send?key=s3cret-token#x"
    line = _webhook_line(StackSettings(webhook_url=url))
    assert "https://hooks.example.org:8443/cgi-bin/webhook/send" in line
    assert "(query not shown)" in line
    for secret in ("s3cret-token", "key=", "p4ss", "bot"):
        assert secret not in line


def test_the_banner_shows_the_demo_receiver() -> None:
    line = _webhook_line(StackSettings(webhook_url="http://127.0.0.1:9000/"))
    assert line.split()[1] == "http://127.0.0.1:9000/"
    assert "not shown" not in line


def test_the_banner_names_the_routing_file_when_there_is_one() -> None:
    banner = _banner(StackSettings(routes_file="examples/routes.yaml", webhook_url="http://x/"))
    [line] = [line for line in banner.splitlines() if line.split()[0] == "routing"]
    assert line.split()[1] == "examples/routes.yaml"
    assert not [line for line in banner.splitlines() if line.split()[0] == "webhook"]


def test_the_demo_receiver_shows_a_wecom_message_as_the_group_reads_it() -> None:
    from goalwatch.dev.receiver import chat_bubble

    bubble = chat_bubble(
        {
            "msgtype": "markdown",
            "markdown": {"content": '<font color="warning">**[Warning] Rework**</font>\nbody'},
        }
    )
    assert bubble.splitlines()[1:4] == [
        "│ [WeCom group: goalwatch robot]",
        "│ **[Warning] Rework**",
        "│ body",
    ]


def test_the_demo_receiver_says_when_an_alert_escalated() -> None:
    payload = {
        "state": "firing",
        "severity": "critical",
        "escalated_from": "warning",
        "rule_id": "report-rework-rate-high",
        "message": "li-na: report rework rate 15%",
        "recipients": [{"name": "Dr. Zhang Wei", "role": "manager"}],
    }
    first_line = describe(payload, check="signature ok").splitlines()[0]
    assert first_line == (
        "[signature ok] FIRING critical (escalated from warning) report-rework-rate-high"
    )
    del payload["escalated_from"]
    assert describe(payload, check="signature ok").startswith("[signature ok] FIRING critical r")


def test_the_demo_receiver_shows_the_acknowledgement_link() -> None:
    payload = {"state": "firing", "ack_url": "http://127.0.0.1:8004/v1/ack/ab.1.x.sig"}
    last = describe(payload, check="signature ok").splitlines()[-1]
    assert last == "  acknowledge: http://127.0.0.1:8004/v1/ack/ab.1.x.sig"
    assert "acknowledge" not in describe({"state": "resolved"}, check="signature ok")


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_the_commands_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    assert "``" not in text
    assert "goalwatch up" in text


def test_up_lists_the_environment_variables_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "up")
    for variable in ("GOALWATCH_STATE_DIR", "GOALWATCH_RULES_DIR", "GOALWATCH_NATS_PORT"):
        assert f"  {variable}\n" in text
    assert "(default .goalwatch)" in text


def test_each_service_lists_its_own_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert "GOALWATCH_INGEST_MAX_BATCH" in _help(capsys, "serve", "ingestion")
    notifier = _help(capsys, "serve", "notifier")
    assert "GOALWATCH_NOTIFIER_PORT" in notifier
    assert "GOALWATCH_INGEST_MAX_BATCH" not in notifier


def test_the_demo_receiver_lists_each_alert_of_a_digest() -> None:
    alert = {
        "state": "firing",
        "severity": "warning",
        "rule_id": "report-rework-rate-high",
        "message": "li-na: report rework rate 15%",
        "recipients": [{"name": "Dr. Zhang Wei", "role": "manager"}],
    }
    payload = {"reason": "group", "group_labels": {"department": "radiology"}, "alerts": [alert]}
    text = describe(payload, check="signature ok")
    assert text.splitlines() == [
        "[signature ok] DIGEST (group) of 1 alert(s) · department=radiology",
        "  [in digest] FIRING warning report-rework-rate-high",
        "    li-na: report rework rate 15%",
        "    to: Dr. Zhang Wei (manager)",
    ]


def test_the_banner_says_where_the_console_is_and_who_can_sign_in() -> None:
    banner = _banner(StackSettings(console_port=8106))
    line = next(line for line in banner.splitlines() if line.split()[0] == "console")
    assert "http://127.0.0.1:8106" in line
    assert {"zhang-wei", "wang-fang", "sun-li", "chen-jie"} <= set(line.replace(",", " ").split())


def test_up_takes_replicas_per_service_and_lists_them() -> None:
    assert _replica_counts(["evaluator=2", "notifier=3"]) == {"evaluator": 2, "notifier": 3}
    for wrong in ("evaluator", "console=2", "evaluator=0", "evaluator=9", "evaluator=two"):
        with pytest.raises(SystemExit, match="write SERVICE=N, N from 1 to 8"):
            _replica_counts([wrong])
    banner = _banner(StackSettings(), [("evaluator-2", "http://127.0.0.1:40001")])
    assert "evaluator-2 http://127.0.0.1:40001   a replica (docs/scaling.md)" in banner
