"""The Dockerfile: it lints clean, and the commands it and the manifests run are real.

No image can be built here (no container engine), so the checks take the image's entry
point from the Dockerfile and each Deployment's arguments from the rendered manifests, and
run that command line with the project's own ``goalwatch``, as the image installs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from goalwatch.serving import registered_services
from tests.unit.k8s import (
    BIN,
    REPO,
    dockerfile_instruction,
    environment,
    rendered,
    service_containers,
)

HADOLINT = BIN / "hadolint"
INIT = ["/usr/bin/tini", "--"]


def test_the_dockerfile_lints_clean() -> None:
    done = subprocess.run(
        [str(HADOLINT), "--config", str(REPO / ".hadolint.yaml"), str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_runtime_image_runs_as_a_numeric_non_root_user_without_a_compiler() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    build, runtime = text.split("\nFROM ")[1:]
    assert "build-essential" in build
    assert "build-essential" not in runtime and "gcc" not in runtime
    user = [line for line in runtime.splitlines() if line.startswith("USER ")]
    assert user == ["USER 10001:10001"]
    # The Deployments' pods run as that same user.
    for container in service_containers(rendered("prod")):
        assert container.pod["securityContext"]["runAsUser"] == 10001


def _command(args: list[str]) -> list[str]:
    """The image's command line for ``args``, with this environment's ``goalwatch`` (tini,
    the image's PID 1, only passes signals on)."""
    entrypoint = dockerfile_instruction("ENTRYPOINT")
    assert entrypoint[: len(INIT)] == INIT
    [program] = entrypoint[len(INIT) :]
    assert program == "goalwatch"
    return [str(Path(sys.executable).parent / program), *args]


def test_each_deployment_runs_a_service_command_that_knows_its_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    resources = rendered("prod")
    # The `goalwatch` console script is goalwatch.cli:main (pyproject.toml); parsing each
    # Deployment's arguments with it here is what the image does with them.
    [script] = [e for e in entry_points(group="console_scripts") if e.name == "goalwatch"]
    main = script.load()
    served = []
    for container in service_containers(resources):
        assert "command" not in container.spec  # the image's entry point is used
        args = list(container.spec["args"])
        assert args == ["serve", container.service]
        with pytest.raises(SystemExit) as exited:
            main([*args, "--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        # The help lists the variables the service reads: those the manifests set among them.
        env = environment(resources, container)
        settings = sorted(name for name in env.values if name.startswith("GOALWATCH_"))
        missing = [name for name in settings if f"  {name}\n" not in out]
        assert missing == [], f"{container.service}: --help does not list {missing}"
        served.append(container.service)
    assert sorted(served) == sorted(registered_services())


def test_the_entry_point_refuses_bad_settings_naming_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALWATCH_")}
    done = subprocess.run(
        _command(["serve", "ingestion"]),
        env={**env, "GOALWATCH_INGESTION_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "GOALWATCH_INGESTION_PORT" in done.stderr
