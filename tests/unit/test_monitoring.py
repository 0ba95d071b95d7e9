"""k8s/monitoring against the services: every metric the dashboard and the alerts read is one
a service exports, every expression parses, every alert has its runbook section."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from goalwatch.serving import registered_services
from tests.unit.k8s import KUBECTL

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "k8s" / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "goalwatch.json"
RULES = MONITORING / "prometheusrule.yaml"
RUNBOOK = REPO / "docs" / "monitoring.md"

# Series Prometheus makes itself for every target, not exported by a service.
PROMETHEUS_OWN = {"up"}
# Labels prometheus-operator puts on every series of a PodMonitor target.
TARGET_LABELS = {"job", "namespace", "pod", "instance", "container", "endpoint"}
# Grafana's variables, replaced by something PromQL parses.
GRAFANA_RANGES = ("$__rate_interval", "$__interval", "$__range")

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


@cache
def exported() -> dict[str, str]:
    """Every series name the services export at ``/metrics``, and the service exporting it.

    Each registered service's app is built as for its OpenAPI document (nothing connects)
    and asked for ``/metrics``: a family is listed there (HELP and TYPE) before it has any
    sample, so what a service would export is known without running it.
    """
    names: dict[str, str] = {}
    for name, info in registered_services().items():
        client = TestClient(info.document_app(), base_url="http://localhost")
        response = client.get("/metrics")
        assert response.status_code == 200, response.text
        for family in text_string_to_metric_families(response.text):
            for suffix in _SUFFIXES.get(family.type, ("",)):
                names.setdefault(family.name + suffix, name)
    return names


@cache
def label_names() -> dict[str, set[str]]:
    """The labels of every series name the services export (from their registries, where a
    labelled family with no sample yet still knows its label names)."""
    exported()  # builds the apps, which add their collectors to the registries
    labels: dict[str, set[str]] = {}
    for service in registered_services():
        registry = importlib.import_module(f"services.{service}.metrics").REGISTRY
        for collector, names in registry._collector_to_names.items():
            own = getattr(collector, "_labelnames", None)
            if own is None:
                families = list(collector.describe()) if hasattr(collector, "describe") else []
                own = {label for f in families for label in getattr(f, "_labelnames", ())}
            for name in names:
                extra = {"le"} if name.endswith("_bucket") else set()
                labels.setdefault(name, set()).update(own, extra)
    return labels


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but the rows, those inside collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        if panel.get("type") == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_expressions() -> list[str]:
    board = dashboard()
    expressions = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", text)
            assert match, f"variable {variable['name']}: {text}"
            expressions.append(match.group(1))
    return expressions


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def parse(expression: str) -> Any:
    for variable in GRAFANA_RANGES:
        expression = expression.replace(variable, "5m")
    return promql_parser.parse(expression)


def selectors(expression: str) -> list[tuple[str, set[str]]]:
    """Each series selector of ``expression``: its metric name and the labels it matches on."""
    found: list[tuple[str, set[str]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers
            name = node.name or next(
                (m.value for m in matchers if m.name == "__name__" and "Equal" in str(m.op)),
                None,
            )
            assert name, f"a selector without a metric name in {expression!r}"
            found.append((name, {m.name for m in matchers if m.name != "__name__"}))

    promql_parser.walk(parse(expression), visit)
    return found


def grouping(expression: str) -> list[tuple[set[str], set[str]]]:
    """Each ``by (...)`` of ``expression``: its labels, and the metric names beneath it."""
    found: list[tuple[set[str], set[str]]] = []

    def visit(node: Any) -> None:
        modifier = getattr(node, "modifier", None)
        if (
            isinstance(node, promql_parser.AggregateExpr)
            and modifier is not None
            and "By" in str(modifier.type)
        ):
            names: set[str] = set()

            def collect(inner: Any) -> None:
                if isinstance(inner, promql_parser.VectorSelector) and inner.name:
                    names.add(inner.name)

            promql_parser.walk(node.expr, collect)
            found.append((set(modifier.labels), names))

    promql_parser.walk(parse(expression), visit)
    return found


def all_expressions() -> list[str]:
    return dashboard_expressions() + [str(rule["expr"]) for rule in rules()]


def test_the_extraction_finds_names_behind_functions_aggregations_and_operators() -> None:
    found = selectors(
        'histogram_quantile(0.9, sum by (le) (rate(a_bucket{job="x"}[$__rate_interval])))'
        ' / on (job) group_left b_total or absent({__name__="c", pod=~"p.*"} == 1)'
    )
    assert found == [("a_bucket", {"job"}), ("b_total", set()), ("c", {"pod"})]


def test_the_services_export_the_families_the_dashboard_is_built_on() -> None:
    names = exported()
    for expected in (
        "goalwatch_consumer_pending_messages",
        "goalwatch_consumer_ack_pending_messages",
        "goalwatch_dead_letters_total",
        "goalwatch_http_requests_total",
        "goalwatch_dependency_up",
        "goalwatch_handler_seconds_bucket",
        "goalwatch_alerts_fired_total",
        "goalwatch_notifications_failed_total",
    ):
        assert expected in names, expected
    assert "goalwatch_handler_seconds" not in names  # a histogram is read through its series


@pytest.mark.parametrize("expression", all_expressions())
def test_every_label_matched_or_grouped_by_is_one_the_metric_has(expression: str) -> None:
    labels = label_names()
    for name, matched in selectors(expression):
        if name in PROMETHEUS_OWN:
            continue
        unknown = matched - labels[name] - TARGET_LABELS
        assert not unknown, f"{name} has no label {sorted(unknown)} (in {expression!r})"
    for by, names in grouping(expression):
        known = set().union(*(labels.get(n, set()) for n in names)) | TARGET_LABELS
        assert by <= known, f"by {sorted(by - known)}: no such label on {sorted(names)}"


def test_the_label_check_sees_a_label_a_metric_lacks() -> None:
    labels = label_names()
    assert "kind" in labels["goalwatch_alerts_fired_total"]
    assert "le" in labels["goalwatch_handler_seconds_bucket"]
    assert "channel" not in labels["goalwatch_alerts_fired_total"]


@pytest.mark.parametrize("expression", all_expressions())
def test_every_metric_in_the_dashboard_and_the_alerts_is_exported(expression: str) -> None:
    names = exported()
    for name, _ in selectors(expression):
        assert name in names or name in PROMETHEUS_OWN, (
            f"{name} (in {expression!r}) is not exported by any service; exported: "
            f"{sorted(n for n in names if n.startswith('goalwatch_'))}"
        )


def test_the_dashboard_and_the_alerts_use_goalwatch_metrics_and_every_new_one() -> None:
    used = {name for expression in all_expressions() for name, _ in selectors(expression)}
    for name in (
        "goalwatch_consumer_pending_messages",
        "goalwatch_dead_letters_total",
        "goalwatch_notifications_failed_total",
        "goalwatch_alerts_fired_total",
        "goalwatch_handler_seconds_bucket",
        "goalwatch_http_requests_total",
        "goalwatch_dependency_up",
    ):
        assert name in used, f"{name} is neither on the dashboard nor in an alert"


def test_every_panel_and_query_reads_the_datasource_variable() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    found = panels(board)
    assert len(found) >= 20
    for panel in found:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}", variable["name"]


def test_panel_ids_are_unique_and_every_panel_is_placed() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24 and place["h"] > 0, panel["title"]


def test_the_dashboard_covers_what_an_operator_watches() -> None:
    titles = " | ".join(p["title"].lower() for p in panels(dashboard()))
    for subject in ("events in", "p99", "backlog", "by rule and kind", "delivery failures"):
        assert subject in titles, subject
    assert "dead letters" in titles and "errors" in titles


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of ``markdown``."""
    found = set()
    for line in markdown.splitlines():
        heading = re.match(r"#+\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def test_every_alert_is_complete_and_has_a_runbook_section() -> None:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    sections = anchors(RUNBOOK.read_text(encoding="utf-8"))
    seen = set()
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        name = rule["alert"]
        assert re.fullmatch(r"Goalwatch[A-Z][A-Za-z]+", name), name
        key = (name, tuple(sorted(rule["labels"].items())))
        assert key not in seen, f"{name} twice with the same labels"
        seen.add(key)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        if "for" in rule:
            assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        url, _, anchor = annotations["runbook_url"].partition("#")
        assert url.endswith("/docs/monitoring.md"), name
        assert anchor == name.lower() and anchor in sections, f"{name}: no section #{anchor}"
        parse(str(rule["expr"]))


def test_every_service_has_an_absent_alert() -> None:
    absent = {
        rule["labels"].get("service")
        for rule in rules()
        if rule["alert"] == "GoalwatchServiceAbsent"
    }
    assert absent == set(registered_services())


def test_the_alerts_cover_the_suite() -> None:
    names = {rule["alert"] for rule in rules()}
    for wanted in (
        "GoalwatchConsumerLagGrowing",
        "GoalwatchDeadLetters",
        "GoalwatchDeliveriesFailing",
        "GoalwatchServiceAbsent",
        "GoalwatchDependencyDown",
        "GoalwatchHandlerLatencyHigh",
    ):
        assert wanted in names, wanted


def test_the_podmonitor_selects_every_service_on_its_http_port() -> None:
    monitor = yaml.safe_load((MONITORING / "podmonitor.yaml").read_text(encoding="utf-8"))
    selector = monitor["spec"]["selector"]
    assert selector["matchLabels"] == {"app.kubernetes.io/part-of": "goalwatch"}
    (names,) = selector["matchExpressions"]
    assert names["key"] == "app.kubernetes.io/component"
    assert set(names["values"]) == set(registered_services())
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    (job,) = endpoint["relabelings"]
    assert job["targetLabel"] == "job" and job["replacement"] == "goalwatch-$1"


def test_the_kustomization_renders_the_dashboard_for_the_grafana_sidecar() -> None:
    rendered = subprocess.run(
        [str(KUBECTL), "kustomize", str(MONITORING)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    documents = {d["kind"]: d for d in yaml.safe_load_all(rendered)}
    assert set(documents) == {"ConfigMap", "PodMonitor", "PrometheusRule"}
    config_map = documents["ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["goalwatch.json"]) == dashboard()


def test_the_consumer_table_of_the_docs_lists_every_durable_consumer() -> None:
    """docs/monitoring.md names every (stream, consumer) whose lag the services export."""
    documented = set(
        re.findall(r"^\| \w+ \| `(GOALWATCH_\w+)` \| (.+) \|$", RUNBOOK.read_text(), re.M)
    )
    table = {
        # `evaluator-p*`: the consumers of the partitions, one row for all of them.
        (stream, name)
        for stream, names in documented
        for name in re.findall(r"`([\w*-]+)`", names)
    }
    specs = set()
    for info in registered_services().values():
        app = info.document_app()
        broker = app.state.broker
        for subscriber in broker.subscribers if broker is not None else ():
            durable = getattr(subscriber.config, "durable_name", None)
            if durable:
                specs.add((subscriber.stream.name, durable))
    assert specs, "no durable consumer found on the services' brokers"
    assert table == specs
