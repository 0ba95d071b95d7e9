"""``goalwatch rules run``: the shipped rules over an events file, printed as lines or JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from goalwatch.cli import main
from goalwatch.contracts import AlertFired, AlertResolved
from goalwatch.rules import load_rules, metric_rules

REPO = Path(__file__).resolve().parents[2]


def event(event_id: str, day: int, value: float) -> dict[str, object]:
    return {
        "id": event_id,
        "metric": "report_rework_rate",
        "value": value,
        "time": f"2026-11-{day:02d}T18:00:00+08:00",
        "subject": "zhou-min",
        "source": "his",
    }


EVENTS = [event("a", 18, 0.1), event("b", 19, 0.1), event("d", 21, 0.13), event("c", 20, 0.04)]


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.json"
    path.write_text(json.dumps(EVENTS), encoding="utf-8")
    return path


def run(*args: str) -> int:
    return main(["rules", "run", "--rules", str(REPO / "rules"), *args])


def test_prints_one_line_per_alert_and_a_summary(
    events_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(str(events_file)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "FIRING   2026-11-21T18:00:00+08:00 [warning] report-rework-rate-high: zhou-min: "
        "report rework rate 13% is above 8% for 3 consecutive days",
        "RESOLVED 2026-11-20T18:00:00+08:00 [warning] report-rework-rate-high: zhou-min: "
        "report rework rate back to 4%, within 8%",
    ]
    # Every shipped rule on metrics is run (goal rules need goal events).
    shipped = len(metric_rules(load_rules(REPO / "rules")))
    assert err == f"goalwatch: 4 events, {shipped} rules: 1 fired, 1 resolved\n"


def test_json_lines_from_stdin_are_the_contract_models(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(EVENTS)))
    assert run("--json", "-") == 0
    fired, resolved = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert fired["state"] == "firing" and resolved["state"] == "resolved"
    assert AlertFired.model_validate(fired["alert"]).event_id == "d"
    assert AlertResolved.model_validate(resolved["alert"]).event_id == "c"


def test_invalid_rules_print_file_line_and_exit_2(
    tmp_path: Path, events_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text(
        (REPO / "rules" / "report-rework-rate.yaml")
        .read_text(encoding="utf-8")
        .replace('op: ">"', "op: gt"),
        encoding="utf-8",
    )
    assert main(["rules", "run", "--rules", str(rules), str(events_file)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[0] == f"goalwatch: 1 error in the rules in {rules}:"
    assert f"  {rules}/bad.yaml:" in err
    assert "condition.op: 'gt' is not one of" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (json.dumps([EVENTS[0], {**EVENTS[1], "time": "yesterday"}]), "event [1] time: "),
        (json.dumps({"events": EVENTS}), "expected a JSON array of events"),
        ("[{", "not valid JSON: "),
    ],
)
def test_invalid_events_say_where_and_exit_2(
    tmp_path: Path, text: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.json"
    path.write_text(text, encoding="utf-8")
    assert run(str(path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"  {path}: {expected}" in err


def test_a_missing_events_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(tmp_path / "nope.json")) == 2
    assert "cannot read the events in" in capsys.readouterr().err


def test_rules_test_runs_the_shipped_tests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", "--rules", str(REPO / "rules")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok   ")
    assert err.endswith(" rule tests, 0 failed\n")


def test_rules_test_fails_when_the_alerts_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = (REPO / "rules" / "tests" / "report-rework-rate-missing.yaml").read_text()
    (tmp_path / "wrong.yaml").write_text(shipped.replace("2026-11-04T18:00", "2026-11-04T19:00"))
    assert main(["rules", "test", "--rules", str(REPO / "rules"), str(tmp_path)]) == 1
    out, _ = capsys.readouterr()
    assert out.startswith("FAIL ")
    assert "  firing report-rework-rate-missing zhou-min at 2026-11-04T18:00:00+08:00" in out


LINTED = """\
id: visits-low
name: Visits low
kind: threshold
metric: customer_visits
condition: {op: "<", value: 3, consecutive: 0}
window: 7d
severity: warning
notify: [manager]
message: "{subject_name}: {valeu}"
"""


def test_lint_prints_file_line_column_in_file_order_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "visits.yaml"
    path.write_text(LINTED, encoding="utf-8")
    catalogue = tmp_path / "catalogue" / "metrics.yaml"
    catalogue.parent.mkdir()
    catalogue.write_text(CATALOGUE, encoding="utf-8")  # it knows customer_visits
    assert main(["rules", "lint", str(tmp_path), "--catalogue", str(catalogue)]) == 1
    out, err = capsys.readouterr()
    column = LINTED.splitlines()[4].index("consecutive") + 1
    assert out.splitlines() == [
        f"{path}:5:{column}: condition.consecutive: must be at least 1, got 0",
        f"{path}:6:1: window: 'window' belongs under condition:, not here; move it there",
        f"{path}:9:1: message: unknown field {{valeu}}; did you mean {{value}}? available: "
        "{subject}, {subject_name}, {metric}, {value}, {threshold}, {op}, {consecutive}, "
        "{rule_id}, {rule_name}, {severity}, {labels[<name>]}",
    ]
    assert err == "goalwatch: 3 problems in 1 file\n"


def test_lint_accepts_a_named_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = (REPO / "rules" / "report-rework-rate.yaml").read_text(encoding="utf-8")
    assert "notify: [subject, manager]" in shipped
    grouped = tmp_path / "grouped.yaml"
    grouped.write_text(
        shipped.replace("notify: [subject, manager]", "notify: [subject, group: quality-leads]"),
        encoding="utf-8",
    )
    assert main(["rules", "lint", str(grouped)]) == 0
    assert capsys.readouterr().out == "goalwatch: 1 rule: no problems\n"


def test_lint_checks_ids_across_the_files_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = REPO / "rules" / "report-rework-rate.yaml"
    copy = tmp_path / "copy.yaml"
    copy.write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["rules", "lint", str(shipped)]) == 0
    assert capsys.readouterr().out == "goalwatch: 1 rule: no problems\n"
    assert main(["rules", "lint", str(shipped), str(copy)]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{copy}:")
    assert "is already the id of" in line


def test_lint_of_the_shipped_rules_finds_nothing_and_a_missing_path_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "lint", str(REPO / "rules")]) == 0
    assert main(["rules", "lint", str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_every_shipped_rule_has_a_test_of_its_own() -> None:
    import yaml

    tested: set[str] = set()
    for path in (REPO / "rules" / "tests").glob("*.yaml"):
        tested.update(yaml.safe_load(path.read_text(encoding="utf-8")).get("rules") or [])
    shipped = {rule.spec.id for rule in load_rules(REPO / "rules")}
    assert shipped - tested == set(), "add a test file to rules/tests/ naming these rules"


def test_rules_test_takes_several_files(capsys: pytest.CaptureFixture[str]) -> None:
    tests = REPO / "rules" / "tests"
    given = [str(tests / "report-rework-rate.yaml"), str(tests / "visit-records-burst.yaml")]
    assert main(["rules", "test", "--rules", str(REPO / "rules"), *given]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[1] for line in out.splitlines()] == [f"{path}:" for path in given]
    assert err == "goalwatch: 2 rule tests, 0 failed\n"


CATALOGUE = """\
customer_visits:
  description: Customer visits logged in the CRM.
  unit: count
  min: 0
  sources: [crm]
  cadence: 1d
  owner: sales-ops
  labels:
    region: [north, east]
    channel: any
"""

CATALOGUED_RULE = """\
id: visits-low
name: Visits low
kind: threshold
metric: {metric}
where: {where}
condition: {{op: "<", value: 3, consecutive: 2}}
severity: warning
by: [{by}]
notify: [manager]
message: "{{subject_name}}: {{value}}"
"""


@pytest.mark.parametrize(
    ("metric", "where", "by", "expected"),
    [
        ("customer_visits", "{region: north}", "channel", []),
        (
            "customer_visitz",
            "{region: north}",
            "channel",
            ["4:1: metric: unknown metric 'customer_visitz' — did you mean 'customer_visits'?"],
        ),
        (
            "customer_visits",
            "{regoin: north}",
            "channel",
            [
                "5:9: where.regoin: label 'regoin' is not catalogued for customer_visits — did "
                "you mean 'region'?"
            ],
        ),
        (
            "customer_visits",
            "{region: [north, nroth]}",
            "channel",
            [
                "5:9: where.region: region 'nroth' is not an allowed value for customer_visits — "
                "did you mean 'north'?"
            ],
        ),
        (
            "customer_visits",
            "{region: north}",
            "chanel",
            [
                "8:1: by: label 'chanel' is not catalogued for customer_visits — did you mean "
                "'channel'?"
            ],
        ),
    ],
)
def test_lint_checks_metrics_and_labels_against_the_catalogue(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    metric: str,
    where: str,
    by: str,
    expected: list[str],
) -> None:
    catalogue = tmp_path / "metrics.yaml"
    catalogue.write_text(CATALOGUE, encoding="utf-8")
    rules = tmp_path / "rules"
    rules.mkdir()
    rule = rules / "visits.yaml"
    rule.write_text(CATALOGUED_RULE.format(metric=metric, where=where, by=by), encoding="utf-8")
    code = main(["rules", "lint", str(rules), "--catalogue", str(catalogue)])
    out = capsys.readouterr().out.splitlines()
    assert code == (1 if expected else 0)
    if expected:
        assert len(out) == len(expected)
        for line, start in zip(out, expected, strict=True):
            assert line.startswith(f"{rule}:{start}")


def test_the_shipped_rules_name_only_catalogued_metrics_and_labels(
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalogue = REPO / "catalogue" / "metrics.yaml"
    rules = REPO / "rules"
    assert main(["rules", "lint", str(rules), "--catalogue", str(catalogue)]) == 0
    assert capsys.readouterr().out.endswith("no problems\n")


def test_a_misspelt_field_does_not_hide_a_misspelt_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = tmp_path / "metrics.yaml"
    catalogue.write_text(CATALOGUE, encoding="utf-8")
    rule = tmp_path / "visits.yaml"
    text = CATALOGUED_RULE.format(metric="customer_visitz", where="{}", by="region")
    rule.write_text(text.replace("severity:", "severty:"), encoding="utf-8")
    assert main(["rules", "lint", str(rule), "--catalogue", str(catalogue)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0:2] for line in out] == [
        [f"{rule}:4:1", "metric"],
        [f"{rule}:7:1", "severty"],
    ]
    assert "did you mean 'customer_visits'?" in out[0]
