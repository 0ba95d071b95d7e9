"""The Kubernetes manifests (``k8s/``), rendered as ``kubectl apply -k`` would send them.

Each overlay is rendered, validated against the API schemas of a pinned Kubernetes release
(kubernetes-validate, strict: unknown fields fail), and held to what the services need: every
variable set is one the service's settings know (or one the routing file names), its value
is one the settings accept, each file a setting names is in a mounted ConfigMap and loads,
and every pod runs locked down.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from goalwatch.catalogue import load_catalogue
from goalwatch.routing.loader import parse_routes, unset_references
from goalwatch.rules.loader import load_rules
from goalwatch.serving import registered_services
from goalwatch.settings import ServiceSettings
from tests.unit.k8s import (
    KUBERNETES_VERSION,
    OVERLAYS,
    REPO,
    Container,
    Resource,
    by_name,
    environment,
    mounted_files,
    of_kind,
    rendered,
    service_containers,
)

SERVICES = ("ingestion", "goals", "evaluator", "notifier")
PARTITIONS = ServiceSettings.model_fields["metrics_partitions"].default
# The web console: deployed like the services, but it keeps no state and connects to nothing.
DEPLOYED = (*SERVICES, "console")
# Custom resources have no schema in kubernetes-validate; their API groups are listed here
# (the Prometheus Operator's, for k8s/monitoring) and everything else must validate.
CUSTOM_RESOURCE_GROUPS = ("monitoring.coreos.com/",)
# The settings that name a file or folder the service reads at start-up.
FILE_SETTINGS = {
    "GOALWATCH_RULES_DIR": "folder",
    "GOALWATCH_CATALOGUE_FILE": "file",
    "GOALWATCH_ROUTES_FILE": "file",
}


def known_variables(service: str) -> set[str]:
    """The environment variables the service's settings read."""
    settings = registered_services()[service].settings
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


def routing_references(resources: list[Resource], container: Container) -> set[str]:
    """The ``${VARIABLE}`` names of the routing file the container is given, if any."""
    env = environment(resources, container).values
    path = env.get("GOALWATCH_ROUTES_FILE")
    if path is None:
        return set()
    files = mounted_files(resources, container, path)
    assert files is not None, f"{container.service}: no ConfigMap mounted for {path}"
    return set(parse_routes(files[Path(path).name], file=path).references())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    problems = []
    for resource in rendered(overlay):
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if not str(resource["apiVersion"]).startswith(CUSTOM_RESOURCE_GROUPS):
                problems.append(f"{name}: no schema for {resource['apiVersion']}")
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name}: {exc}")
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_deployment_service_and_disruption_budget(overlay: str) -> None:
    resources = rendered(overlay)
    assert sorted(c.service for c in service_containers(resources)) == sorted(DEPLOYED)
    for service in DEPLOYED:
        name = f"goalwatch-{service}"
        deployment = by_name(resources, "Deployment", name)
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert by_name(resources, "Service", name)["spec"]["selector"] == selector
        if overlay == "prod":
            budget = by_name(resources, "PodDisruptionBudget", name)
            assert budget["spec"]["selector"]["matchLabels"] == selector


def test_prod_autoscales_every_pipeline_service_and_evaluators_roll_over() -> None:
    resources = rendered("prod")
    scaled = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"]
        for h in of_kind(resources, "HorizontalPodAutoscaler")
    }
    assert set(scaled) == {f"goalwatch-{name}" for name in SERVICES}
    # Evaluators share the partitions under leases (docs/scaling.md): two or more, rolled over
    # without a gap, never more than there are partitions to share.
    evaluator = by_name(resources, "Deployment", "goalwatch-evaluator")
    assert evaluator["spec"]["replicas"] >= 2
    assert evaluator["spec"]["strategy"]["type"] == "RollingUpdate"
    assert scaled["goalwatch-evaluator"]["maxReplicas"] <= PARTITIONS
    budget = by_name(resources, "PodDisruptionBudget", "goalwatch-evaluator")
    assert budget["spec"]["minAvailable"] == 1


def test_dev_runs_one_replica_of_everything() -> None:
    resources = rendered("dev")
    assert of_kind(resources, "HorizontalPodAutoscaler") == []
    assert of_kind(resources, "PodDisruptionBudget") == []
    assert {d["spec"]["replicas"] for d in of_kind(resources, "Deployment")} == {1}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_set_is_one_the_service_reads(overlay: str) -> None:
    resources = rendered(overlay)
    for container in service_containers(resources):
        env = environment(resources, container)
        allowed = (
            known_variables(container.service)
            # Downward-API helpers that other values refer to as $(NAME).
            | env.referenced
            | routing_references(resources, container)
        )
        unknown = sorted(set(env.values) - allowed)
        assert unknown == [], f"{overlay}/{container.service} sets variables nothing reads"
        assert env.unresolved == (), f"{overlay}/{container.service}: $(...) to nothing"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_settings_accept_every_value(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    resources = rendered(overlay)
    for container in service_containers(resources):
        env = environment(resources, container)
        with monkeypatch.context() as patched:
            for name in list(_goalwatch_variables()):
                patched.delenv(name)
            for name, value in env.values.items():
                patched.setenv(name, value)
            settings = registered_services()[container.service].settings()
        port = next(p["containerPort"] for p in container.spec["ports"] if p["name"] == "http")
        assert getattr(settings, f"{container.service}_port") == port
        assert settings.host == "0.0.0.0"
        # Probes arrive at the pod's address; Prometheus scrapes it there too.
        assert "10.1.2.3" in settings.allowed_hosts
        if container.service in SERVICES:
            assert settings.nats_user == container.service


def _goalwatch_variables() -> list[str]:
    return [name for name in os.environ if name.startswith("GOALWATCH_")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_files_the_settings_name_are_mounted_and_load(overlay: str, tmp_path: Path) -> None:
    resources = rendered(overlay)
    for container in service_containers(resources):
        env = environment(resources, container)
        for variable, kind in FILE_SETTINGS.items():
            if variable not in env.values:
                continue
            path = env.values[variable]
            files = mounted_files(resources, container, path)
            assert files, f"{overlay}/{container.service}: nothing mounted at {path}"
            folder = tmp_path / container.service / variable
            folder.mkdir(parents=True)
            for name, text in files.items():
                (folder / name).write_text(text, encoding="utf-8")
            if kind == "file":
                assert Path(path).name in files
            if variable == "GOALWATCH_RULES_DIR":
                assert len(load_rules(folder)) == len(files)
            elif variable == "GOALWATCH_CATALOGUE_FILE":
                assert load_catalogue(folder / Path(path).name).names
            else:
                routes = parse_routes(files[Path(path).name], file=path)
                assert unset_references(routes, env.values) == []


def test_the_rules_configmap_lists_every_rule_file() -> None:
    kustomization = yaml.safe_load((REPO / "rules" / "Kustomization").read_text())
    [generator] = kustomization["configMapGenerator"]
    listed = sorted(generator["files"])
    on_disk = sorted(p.name for p in (REPO / "rules").iterdir() if p.suffix in {".yaml", ".yml"})
    assert listed == on_disk


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_locked_down(overlay: str) -> None:
    resources = rendered(overlay)
    workloads = [*of_kind(resources, "Deployment"), *of_kind(resources, "StatefulSet")]
    assert len(workloads) == len(DEPLOYED) + 1  # and Redis
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        # Service links would put GOALWATCH_GOALS_PORT=tcp://... into every pod.
        assert pod["enableServiceLinks"] is False, name
        for container in _containers(pod):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert {"requests", "limits"} <= set(container["resources"]), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_have_health_probes_and_a_writable_tmp(overlay: str) -> None:
    resources = rendered(overlay)
    for container in service_containers(resources):
        spec = container.spec
        assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert spec["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert spec[probe]["httpGet"]["port"] == "http"
        tmp = next(m for m in spec["volumeMounts"] if m["mountPath"] == "/tmp")
        volumes = {v["name"]: v for v in container.pod["volumes"]}
        assert "emptyDir" in volumes[tmp["name"]]


def test_every_api_path_is_routed_to_its_service_and_nothing_else_is_exposed() -> None:
    [ingress] = of_kind(rendered("prod"), "Ingress")
    routed = {
        path["path"]: path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    expected = {}
    for service in SERVICES:
        document = json.loads((REPO / "contracts" / "openapi" / f"{service}.json").read_text())
        for path in document["paths"]:
            # The route every service with consumers has is under its name: routed exactly.
            if path == f"/v1/{service}/consumers":
                expected[path] = f"goalwatch-{service}"
            # Dead letters replayed by the service publishing their origin: under its name.
            elif path.startswith(f"/v1/{service}/dead-letters/"):
                expected[f"/v1/{service}/dead-letters"] = f"goalwatch-{service}"
            elif path.startswith("/v1/"):
                expected["/".join(path.split("/")[:3])] = f"goalwatch-{service}"
    # The console's page, callback, built files and configuration; not its health or metrics.
    console = json.loads((REPO / "contracts" / "openapi" / "console.json").read_text())
    for path in console["paths"]:
        if path not in ("/healthz", "/readyz"):
            expected[path.split("/{")[0]] = "goalwatch-console"
    assert routed == expected


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _egress(resources: list[Resource], labels: dict[str, str]) -> set[tuple[str, object]]:
    """(what, port) pairs the NetworkPolicies let a pod with ``labels`` reach."""
    reached: set[tuple[str, object]] = set()
    for policy in of_kind(resources, "NetworkPolicy"):
        if not _selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("egress", []):
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    what = peer["ipBlock"]["cidr"]
                else:
                    what = ",".join(
                        f"{k}={v}" for k, v in sorted(peer["podSelector"]["matchLabels"].items())
                    )
                reached |= {(what, port["port"]) for port in rule["ports"]}
    return reached


def test_network_policies_open_only_the_paths_each_service_needs() -> None:
    resources = rendered("prod")
    nats = ("app.kubernetes.io/component=nats,app.kubernetes.io/name=nats", 4222)
    redis = ("app.kubernetes.io/name=redis,app.kubernetes.io/part-of=goalwatch", 6379)
    goals = ("app.kubernetes.io/component=goals,app.kubernetes.io/name=goalwatch", 8002)
    dns = ("k8s-app=kube-dns", 53)
    smtp = ("0.0.0.0/0", 587)
    for service in SERVICES:
        labels = {"app.kubernetes.io/name": "goalwatch", "app.kubernetes.io/component": service}
        reached = _egress(resources, labels)
        assert nats in reached and dns in reached, service
        # Ingestion too, for the marks of the dead letters it replays alone.
        assert redis in reached, service
        assert (goals in reached) == (service != "goals"), service
        assert (smtp in reached) == (service == "notifier"), service
    # Redis takes connections from the services with a Redis user, nobody else.
    [redis_policy] = [
        p
        for p in of_kind(resources, "NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/name") == "redis"
    ]
    [rule] = redis_policy["spec"]["ingress"]
    [peer] = rule["from"]
    assert peer["podSelector"]["matchExpressions"][0]["values"] == [
        "goals",
        "evaluator",
        "notifier",
        "ingestion",
    ]


def test_every_secret_the_manifests_use_is_documented() -> None:
    guide = (REPO / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    used: set[tuple[str, str]] = set()
    for overlay in OVERLAYS:
        resources = rendered(overlay)
        for container in service_containers(resources):
            used |= set(environment(resources, container).secret_keys)
        for workload in of_kind(resources, "StatefulSet"):
            for volume in workload["spec"]["template"]["spec"]["volumes"]:
                if "secret" in volume:
                    used.add((volume["secret"]["secretName"], "*"))
    for secret, key in sorted(used):
        assert f"`{secret}`" in guide, f"docs/kubernetes.md does not name the Secret {secret}"
        if key != "*":
            assert f"`{key}`" in guide, f"docs/kubernetes.md does not name {secret}'s key {key}"
