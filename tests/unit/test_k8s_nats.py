"""The NATS helm values (``k8s/nats/``): a 3-node JetStream cluster, and goalwatch's users as
``goalwatch/nats_users.py`` defines them."""

from __future__ import annotations

from typing import Any

import yaml

from goalwatch.nats_users import (
    HELM_PASSWORDS_SECRET,
    USERS,
    helm_values,
    password_variable,
    user,
)
from tests.unit.k8s import K8S

NATS = K8S / "nats"


def _load(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((NATS / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_users_yaml_is_generated_from_the_code() -> None:
    # Regenerate with: python -m goalwatch.nats_users helm > k8s/nats/users.yaml
    written = (NATS / "users.yaml").read_text(encoding="utf-8")
    assert written.rstrip("\n") == helm_values().rstrip("\n")


def test_every_user_has_its_permissions_and_a_password_from_the_secret() -> None:
    values = _load("users.yaml")
    entries = {u["user"]: u for u in values["config"]["merge"]["authorization"]["users"]}
    assert sorted(entries) == sorted(u.name for u in USERS)
    env = values["container"]["env"]
    for name, entry in entries.items():
        # The chart writes << ... >> bare: the server reads the variable from its environment.
        assert entry["password"] == f"<< ${password_variable(name)} >>"
        assert entry["permissions"]["publish"]["allow"] == list(user(name).permissions.publish)
        ref = env[password_variable(name)]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": HELM_PASSWORDS_SECRET, "key": name}


def test_values_make_a_three_node_jetstream_cluster_on_files() -> None:
    values = _load("values.yaml")
    config = values["config"]
    assert config["cluster"] == {"enabled": True, "replicas": 3}
    assert config["jetstream"]["enabled"] is True
    assert config["jetstream"]["fileStore"]["enabled"] is True
    assert config["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    assert config["jetstream"]["memoryStore"]["enabled"] is False
    assert values["promExporter"]["enabled"] is True
    # Given after values.yaml, users.yaml adds to these maps instead of replacing them.
    assert "merge" not in config
    assert set(values["container"]["env"]) == {"GOMEMLIMIT"}
