"""Read a routing file, reporting every problem as ``file:line:col: field: message``."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode

from goalwatch.file_errors import FileError, FileErrors, duplicate_keys, locate_at, unprintable
from goalwatch.routing.spec import (
    CHANNELS,
    REFERENCE,
    AlertmanagerTarget,
    EmailTarget,
    ReceiverSpec,
    RobotTarget,
    RoutesFile,
    RouteSpec,
    SignedRobotTarget,
    WebhookTarget,
)

_MODELS: dict[str, type[BaseModel]] = {
    "": RoutesFile,
    "receivers": ReceiverSpec,
    "route": RouteSpec,
    "routes": RouteSpec,
    "webhook": WebhookTarget,
    "email": EmailTarget,
    "wecom": RobotTarget,
    "slack": RobotTarget,
    "dingtalk": SignedRobotTarget,
    "feishu": SignedRobotTarget,
    "alertmanager": AlertmanagerTarget,
}


def load_routes(path: Path) -> RoutesFile:
    """The routing file at ``path``; raises :class:`FileErrors` with every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileErrors(
            [FileError(str(path), None, None, f"cannot read the file: {exc}")]
        ) from None
    return parse_routes(text, file=str(path))


def parse_routes(text: str, *, file: str) -> RoutesFile:
    """A routing file's text, its problems named as in ``file``; raises :class:`FileErrors`."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        raise FileErrors([unprintable(file, text, exc)]) from None
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        raise FileErrors([unprintable(file, text, exc)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise FileErrors(
            [
                FileError(
                    file,
                    None if mark is None else mark.line + 1,
                    None,
                    f"not valid YAML: {exc.problem or exc.context or 'cannot be parsed'}",
                    None if mark is None else mark.column + 1,
                )
            ]
        ) from None
    finally:
        loader.dispose()
    if node is None or not isinstance(node, MappingNode) or not isinstance(data, dict):
        raise FileErrors(
            [
                FileError(
                    file,
                    None if node is None else node.start_mark.line + 1,
                    None,
                    "expected a routing file: a mapping with receivers:, route: and, if you "
                    "name groups, groups:",
                )
            ]
        )
    errors = list(duplicate_keys(file, node))
    try:
        routes = RoutesFile.model_validate(data)
    except ValidationError as exc:
        errors.extend(_located(file, node, error) for error in exc.errors())
        raise FileErrors(sorted(errors, key=lambda e: (e.line or 0, e.column or 0))) from None
    for loc, message in routes.problems():
        line, column, _ = locate_at(node, loc)
        errors.append(FileError(file, line, _field(loc), message, column))
    if errors:
        raise FileErrors(sorted(errors, key=lambda e: (e.line or 0, e.column or 0)))
    return routes


def unset_references(routes: RoutesFile, environ: Mapping[str, str]) -> list[str]:
    """The ``${VARIABLE}`` references of ``routes`` that ``environ`` lacks or has empty."""
    return [name for name in routes.references() if not environ.get(name, "").strip()]


def expand(value: str, environ: Mapping[str, str]) -> str:
    """``value`` with each ``${VARIABLE}`` replaced from ``environ`` (all must be set)."""
    return REFERENCE.sub(lambda found: environ[found.group(1)], value)


def _field(loc: tuple[str | int, ...]) -> str | None:
    name = ""
    for part in loc:
        if part == "[key]":
            continue
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def _located(file: str, root: Node, error: ErrorDetails) -> FileError:
    loc = tuple(error["loc"])
    line, column, node = locate_at(root, loc)
    written = node.value if isinstance(node, ScalarNode) else None
    return FileError(file, line, _field(loc), _describe(error, loc, written), column)


def _describe(error: ErrorDetails, loc: tuple[str | int, ...], written: str | None) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = next((str(p) for p in reversed(loc[:-1]) if isinstance(p, str)), "")
        model = _MODELS.get(parent)
        allowed = [
            field.alias or name
            for name, field in (model.model_fields.items() if model else ())
            if name != "order"
        ]
        name = str(loc[-1])
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.7)
        hint = f"did you mean '{close[0]}'? " if close else ""
        if parent == "receivers" and not close:
            return f"unknown field '{name}'; a receiver has name:, per_person: and channels: " + (
                ", ".join(CHANNELS)
            )
        return f"unknown field '{name}'; {hint}allowed: {', '.join(allowed)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        if "[key]" in loc or loc[-1] == "name" or loc[-1] == "receiver":
            return (
                f"{written!r} is not a name: use lowercase letters, digits, - and _ "
                "(at most 63), e.g. quality-room"
            )
        return f"{written!r} is not a person id (letters, digits, . _ @ -)"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind in ("model_type", "dict_type"):
        return "expected a mapping of fields"
    if kind == "list_type":
        return "expected a list"
    if kind == "too_short":
        if loc == ("receivers",):
            return "must not be empty: define at least one receiver, with a name: and a channel"
        return "must not be empty"
    if kind == "bool_parsing":
        return f"expected true or false, got {written}"
    if kind == "literal_error":
        return f"expected one of {error.get('ctx', {}).get('expected')}, got {written}"
    return str(error["msg"])
