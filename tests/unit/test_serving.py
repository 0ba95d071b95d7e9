"""The service registry, the one ``run_service``, and a kernel that never imports ``services``."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import Field

from goalwatch.serving import ServiceInfo, registered_services, run_service
from goalwatch.settings import Port, ServiceSettings

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("console", "evaluator", "goals", "ingestion", "notifier")


def test_every_service_is_registered_with_its_port_variable() -> None:
    services = registered_services()
    assert tuple(services) == SERVICES
    for name, info in services.items():
        assert info.name == name
        assert info.port_field == f"{name}_port"
        assert info.port_field in info.settings.model_fields
        assert info.port_variable == f"GOALWATCH_{name.upper()}_PORT"


def test_every_service_app_builds_for_its_document_without_connecting() -> None:
    for name, info in registered_services().items():
        document = info.document_app().openapi()
        assert document["info"]["title"] == f"goalwatch {name}"


def test_the_kernel_does_not_import_services() -> None:
    importing = re.compile(r"^\s*(from|import)\s+services\b")
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "goalwatch").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if importing.match(line)
    ]
    assert not found, found
    # Nor indirectly: the CLI and the contracts renderer load no service until asked to.
    code = (
        "import sys, goalwatch.cli, goalwatch.contracts.interfaces, goalwatch.dev.bench; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'services'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    # run_service configures the root logger for a service process; give this one it back.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class _ToySettings(ServiceSettings):
    toy_port: Port = Field(8999, description="HTTP port.")


class _Refused(Exception):
    pass


def _refusing(_: _ToySettings) -> FastAPI:
    raise _Refused("not today")


def _explain(exc: Exception, settings: _ToySettings) -> str | None:
    return (
        f"the toy cannot start on {settings.toy_port}: {exc}" if isinstance(exc, _Refused) else None
    )


def test_run_service_prints_an_explained_startup_error_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    info = ServiceInfo(
        name="toy",
        settings=_ToySettings,
        create_app=_refusing,
        port_field="toy_port",
        explain_startup_error=_explain,
    )
    with pytest.raises(SystemExit) as stopped:
        run_service(info)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "goalwatch: the toy cannot start on 8999: not today\n"


def test_run_service_lets_an_unexplained_error_crash() -> None:
    info = ServiceInfo(
        name="toy", settings=_ToySettings, create_app=_refusing, port_field="toy_port"
    )
    with pytest.raises(_Refused):
        run_service(info)


def test_run_service_names_the_port_variable_when_the_port_is_taken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        monkeypatch.setenv("GOALWATCH_TOY_PORT", str(holder.getsockname()[1]))
        info = ServiceInfo(
            name="toy",
            settings=_ToySettings,
            create_app=lambda _: FastAPI(),
            port_field="toy_port",
        )
        with pytest.raises(SystemExit) as stopped:
            run_service(info)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "the toy service cannot listen" in err
    assert "GOALWATCH_TOY_PORT=<port>" in err


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_name_no_other_host_and_their_files_are_served(service: str, page: str) -> None:
    app = registered_services()[service].document_app()
    client = TestClient(
        app, base_url="http://127.0.0.1"
    )  # not entered, so the lifespan does not run: nothing connects
    html = client.get(page)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert not re.search(r"(https?:)?//", html.text), "the page loads from another host"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    assert len(assets) == (3 if page == "/docs" else 2), assets  # script, style (docs), icon
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 1000, asset
    if page == "/docs":  # no validator badge, which would send the document away
        assert '"validatorUrl": null' in html.text
    assert client.get(app.openapi_url or "").status_code == 200
