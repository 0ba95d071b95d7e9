"""The metric catalogue file: loaded with file:line errors, complete for what ships, looked up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from goalwatch.catalogue import Catalogue, CatalogueLoadError, load_catalogue, parse_catalogue
from goalwatch.contracts import MetricRecorded
from goalwatch.dev.demo import demo_events, demo_visits
from goalwatch.rules import RuleSpec, load_rules

REPO = Path(__file__).resolve().parents[2]
SHIPPED = load_catalogue(REPO / "catalogue" / "metrics.yaml")

GOOD = """\
customer_visits:
  description: Customer visits a rep made that day.
  unit: count
  min: 0
  sources: [crm]
  cadence: 1d
  owner: sales-operations
  labels:
    region: any
    channel: [phone, visit]
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(CatalogueLoadError) as caught:
        parse_catalogue(text, file="metrics.yaml")
    return [str(error) for error in caught.value.errors]


# --- the file -----------------------------------------------------------------------------


def test_an_entry_loads_with_its_defaults_and_any_value_labels() -> None:
    catalogue = parse_catalogue(GOOD, file="metrics.yaml")
    metric = catalogue.get("customer_visits")
    assert metric is not None
    assert (metric.min, metric.max, metric.unit, metric.sources) == (0, None, "count", ["crm"])
    assert metric.labels == {"region": None, "channel": ["phone", "visit"]}
    assert metric.cadence_duration == timedelta(days=1)


def test_every_problem_is_reported_at_its_line() -> None:
    text = GOOD + (
        "report_rework_rate:\n"  # 11
        "  description: Share of reports reworked.\n"
        "  unit: ratio\n"
        "  max: 1\n"
        "  sources: his\n"  # 15
        "  cadence: daily\n"  # 16
        "  ownr: radiology\n"  # 17
        "Customer-Calls:\n"  # 18
        "  description: Calls.\n"
        "customer_visits:\n"  # 20
        "  description: again\n"
    )
    assert errors_of(text) == [
        "metrics.yaml:11: report_rework_rate.owner: required field is missing; add e.g. "
        "owner: radiology-quality",
        "metrics.yaml:15: report_rework_rate.sources: list the systems that send it, e.g. [his]",
        "metrics.yaml:16: report_rework_rate.cadence: 'daily' is not a duration: write a number "
        "with its unit, d (days), h (hours), m (minutes) or s (seconds), e.g. 1d, 7d or 12h",
        "metrics.yaml:17: report_rework_rate.ownr: unknown field 'ownr'; did you mean 'owner'? "
        "allowed: description, unit, min, max, sources, cadence, owner, labels",
        "metrics.yaml:18: Customer-Calls: 'Customer-Calls' is not a metric name: write lower "
        "snake_case (a-z, 0-9, _; dots between parts), e.g. report_rework_rate or "
        "crm.renewal_rate",
        *(
            f"metrics.yaml:18: Customer-Calls.{field}: required field is missing; add e.g. {ex}"
            for field, ex in (
                ("unit", "unit: ratio"),
                ("sources", "sources: [his]"),
                ("cadence", "cadence: 1d"),
                ("owner", "owner: radiology-quality"),
            )
        ),
        "metrics.yaml:20: customer_visits: appears twice (first on line 1)",
        *(
            f"metrics.yaml:20: customer_visits.{field}: required field is missing; add e.g. {ex}"
            for field, ex in (
                ("unit", "unit: ratio"),
                ("sources", "sources: [his]"),
                ("cadence", "cadence: 1d"),
                ("owner", "owner: radiology-quality"),
            )
        ),
    ]


def test_a_range_upside_down_is_reported() -> None:
    assert errors_of(GOOD.replace("min: 0", "min: 5\n  max: 1")) == [
        "metrics.yaml:1: customer_visits: min (5) is above max (1); swap them",
    ]


def test_bad_labels_are_reported() -> None:
    text = GOOD.replace("channel: [phone, visit]", "channel: []\n    Region2: any")
    assert errors_of(text) == [
        "metrics.yaml:10: customer_visits.labels.channel: list the allowed values, e.g. "
        "[daily, weekly], or write any for any value",
        "metrics.yaml:11: customer_visits.labels.Region2: 'Region2' is not a label name: write "
        "lower snake_case, e.g. department",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "metrics.yaml: the file is empty; catalogue a metric: report_rework_rate: {"),
        ("- a\n- b\n", "metrics.yaml:1: expected a mapping of metric names to their definitions"),
        ("a: [\n", "metrics.yaml:2: not valid YAML: expected the node content"),
        ("x: 3\n", "metrics.yaml:1: x: expected the metric's definition: a mapping with"),
        ("x:\n  name: x\n", "metrics.yaml:2: x.name: the metric's name is its key; remove name:"),
    ],
)
def test_a_file_that_is_no_catalogue_says_what_is_expected(text: str, expected: str) -> None:
    assert errors_of(text)[0].startswith(expected)


def test_a_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(CatalogueLoadError) as caught:
        load_catalogue(tmp_path / "nowhere.yaml")
    assert "point GOALWATCH_CATALOGUE_FILE at the catalogue file" in str(caught.value)


# --- what ships is catalogued -------------------------------------------------------------


def test_every_metric_and_label_filter_of_the_shipped_rules_is_catalogued() -> None:
    for rule in load_rules(REPO / "rules"):
        metric = getattr(rule.spec, "metric", None)
        if metric is None:  # goal rules and impact rules watch goals, not metrics
            continue
        definition = SHIPPED.get(metric)
        assert definition is not None, f"{rule.path}: {metric} is not catalogued"
        if isinstance(rule.spec, RuleSpec):
            assert set(rule.spec.where) <= set(definition.labels), rule.path


def test_every_event_of_the_rule_tests_and_the_demo_passes_the_catalogue() -> None:
    events = [
        MetricRecorded.model_validate(event)
        for path in sorted((REPO / "rules" / "tests").glob("*.yaml"))
        for event in yaml.safe_load(path.read_text(encoding="utf-8")).get("events", [])
        if "metric" in event  # goal changes and check-ins are not metric events
    ]
    now = datetime.now(UTC)
    events += [MetricRecorded.model_validate(e) for e in demo_events(now) + demo_visits(now)]
    assert len(events) > 50
    for event in events:
        assert event.metric in SHIPPED, event
        assert SHIPPED.range_problem(event.metric, event.value) is None, event
        assert SHIPPED.label_problems(event.metric, event.labels) == [], event


# --- lookups ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("report_rework_rat", "report_rework_rate"),
        ("renewal_rate", "crm.renewal_rate"),  # without its namespace
        ("crm.visits_logged", "crm.visit_logged"),
        ("headcount", None),
    ],
)
def test_the_closest_name_of_a_misspelling(name: str, closest: str | None) -> None:
    assert SHIPPED.closest(name) == closest


def test_unknown_metric_suggests_the_closest() -> None:
    catalogue = parse_catalogue(GOOD, file="metrics.yaml")
    assert catalogue.unknown_metric("customer_visitz") == (
        "unknown metric 'customer_visitz' — did you mean 'customer_visits'?"
    )
    assert catalogue.unknown_metric("headcount") == "unknown metric 'headcount'"


def test_range_check_names_the_bounds_and_the_unit() -> None:
    assert SHIPPED.range_problem("report_rework_rate", 0) is None
    assert SHIPPED.range_problem("report_rework_rate", 1) is None
    assert SHIPPED.range_problem("report_rework_rate", 11) == (
        "value 11 is outside the range of report_rework_rate: from 0 to 1 (ratio)"
    )
    assert SHIPPED.range_problem("report_turnaround_hours", -2) == (
        "value -2 is outside the range of report_turnaround_hours: at least 0 (hours)"
    )
    assert SHIPPED.range_problem("goal.progress", 250) is None  # no range


def test_label_check_names_the_label_and_what_is_allowed() -> None:
    problems = SHIPPED.label_problems(
        "report_rework_rate", {"dept": "radiology", "feed": "daly", "department": "x"}
    )
    assert [(p.label, p.known_label, p.message) for p in problems] == [
        (
            "dept",
            False,
            "label 'dept' is not catalogued for report_rework_rate — did you mean "
            "'department'? (its labels: department, feed)",
        ),
        (
            "feed",
            True,
            "feed 'daly' is not an allowed value for report_rework_rate — did you mean "
            "'daily'? (allowed: daily)",
        ),
    ]
    assert SHIPPED.label_problems("crm.renewal_rate", {"region": "north"})[0].message == (
        "label 'region' is not catalogued for crm.renewal_rate (its labels: none)"
    )


def test_the_contract_lists_the_metrics_by_name() -> None:
    catalogue = Catalogue(reversed(SHIPPED.model.metrics))
    assert [m.name for m in catalogue.model.metrics] == sorted(SHIPPED.names)
    dumped = catalogue.model.model_dump(mode="json")
    rework = next(m for m in dumped["metrics"] if m["name"] == "report_rework_rate")
    assert rework["labels"] == {"department": None, "feed": ["daily"]}
