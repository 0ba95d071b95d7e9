"""The metric catalogue file, loaded with ``file:line`` errors, and the lookups on it.

The file (``catalogue/metrics.yaml`` by default, ``GOALWATCH_CATALOGUE_FILE``) is a YAML
mapping of metric names to their definitions (:class:`~goalwatch.contracts.catalogue.
MetricDefinition` without ``name``). The YAML is composed into nodes first, so every problem can
be reported at the line it is on; every problem of the file is collected before giving up.

The lookups say what is wrong with an event's metric, value or labels in words, with the closest
catalogued name for a misspelling; who asks (ingestion, the rule lint) adds where to look.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode

from goalwatch.contracts.catalogue import MetricCatalogue, MetricDefinition
from goalwatch.file_errors import (
    FileError,
    FileErrors,
    duplicate_keys,
    locate,
    node_line,
    unprintable,
)

DEFAULT_CATALOGUE: Final = Path("catalogue/metrics.yaml")
"""Where the catalogue lives in the repository, relative to the working directory."""

_FIELDS: Final = [name for name in MetricDefinition.model_fields if name != "name"]
_EXAMPLES: Final[dict[str, str]] = {
    "description": "description: Share of a doctor's reports sent back for rework that day",
    "unit": "unit: ratio",
    "sources": "sources: [his]",
    "cadence": "cadence: 1d",
    "owner": "owner: radiology-quality",
}
_ENTRY_EXAMPLE: Final = (
    "report_rework_rate: {description: ..., unit: ratio, min: 0, max: 1, sources: [his], "
    "cadence: 1d, owner: radiology-quality, labels: {department: any}}"
)


CatalogueError = FileError
"""One problem in the catalogue file."""


class CatalogueLoadError(FileErrors):
    """The catalogue could not be loaded; ``errors`` lists every problem found."""


@dataclass(frozen=True)
class LabelProblem:
    """A label an event carries that its metric's catalogue entry does not allow."""

    label: str
    value: str
    message: str
    """What is wrong, in words (without where to look it up)."""
    known_label: bool
    """Whether the label is catalogued for the metric (then its value is not allowed)."""


class Catalogue:
    """The catalogued metrics, looked up by name."""

    def __init__(self, metrics: Iterable[MetricDefinition]) -> None:
        self._metrics = {metric.name: metric for metric in sorted(metrics, key=lambda m: m.name)}

    @property
    def model(self) -> MetricCatalogue:
        """The whole catalogue as its contract, sorted by name."""
        return MetricCatalogue(metrics=list(self._metrics.values()))

    @property
    def names(self) -> list[str]:
        """Every catalogued metric name, sorted."""
        return list(self._metrics)

    def __len__(self) -> int:
        return len(self._metrics)

    def __contains__(self, name: object) -> bool:
        return name in self._metrics

    def get(self, name: str) -> MetricDefinition | None:
        """The definition of ``name``, or None when it is not catalogued."""
        return self._metrics.get(name)

    def closest(self, name: str) -> str | None:
        """The catalogued name ``name`` is most likely a misspelling of, or None.

        A name without a namespace is also compared with the part after the last dot, so
        ``renewal_rate`` finds ``crm.renewal_rate``.
        """
        return closest_name(name, self._metrics)

    def unknown_metric(self, name: str) -> str:
        """``unknown metric 'x'`` with the closest catalogued name, when there is one."""
        close = self.closest(name)
        return f"unknown metric '{name}'" + (f" — did you mean '{close}'?" if close else "")

    def range_problem(self, name: str, value: float) -> str | None:
        """What is wrong with ``value`` for the catalogued metric ``name``, or None."""
        metric = self._metrics[name]
        low, high = metric.min, metric.max
        if (low is None or value >= low) and (high is None or value <= high):
            return None
        if low is not None and high is not None:
            bounds = f"from {low:g} to {high:g}"
        elif low is not None:
            bounds = f"at least {low:g}"
        else:
            bounds = f"at most {high:g}"
        return f"value {value:g} is outside the range of {name}: {bounds} ({metric.unit})"

    def label_problems(self, name: str, labels: Mapping[str, str]) -> list[LabelProblem]:
        """Every label in ``labels`` that the catalogued metric ``name`` does not allow."""
        allowed = self._metrics[name].labels
        problems: list[LabelProblem] = []
        for label, value in labels.items():
            if label not in allowed:
                close = closest_name(label, allowed)
                listed = ", ".join(allowed) if allowed else "none"
                problems.append(
                    LabelProblem(
                        label=label,
                        value=value,
                        message=f"label '{label}' is not catalogued for {name}"
                        + (f" — did you mean '{close}'?" if close else "")
                        + f" (its labels: {listed})",
                        known_label=False,
                    )
                )
                continue
            values = allowed[label]
            if values is not None and value not in values:
                close = closest_name(value, values)
                problems.append(
                    LabelProblem(
                        label=label,
                        value=value,
                        message=f"{label} '{value}' is not an allowed value for {name}"
                        + (f" — did you mean '{close}'?" if close else "")
                        + f" (allowed: {', '.join(values)})",
                        known_label=True,
                    )
                )
        return problems


def closest_name(name: str, known: Iterable[str]) -> str | None:
    """The name in ``known`` closest to ``name`` (difflib's ratio of at least 0.6, or a name
    ``name`` abbreviates), or None."""
    best, best_score = None, 0.0
    for candidate in known:
        tails = [candidate]
        if "." in candidate and "." not in name:
            tails.append(candidate.rsplit(".", 1)[1])
        for text in tails:
            score = difflib.SequenceMatcher(None, name, text).ratio()
            if score < 0.6 and _abbreviates(name, text):
                score = 0.6  # dept for department
            if score > best_score:
                best, best_score = candidate, score
    return best if best_score >= 0.6 else None


def _abbreviates(short: str, long: str) -> bool:
    """Whether ``short`` (3 characters or more) is ``long`` with letters left out."""
    if len(short) < 3 or short[0] != long[:1]:
        return False
    rest = iter(long)
    return all(char in rest for char in short)


def load_catalogue(path: Path) -> Catalogue:
    """Load the catalogue file at ``path``; raises :class:`CatalogueLoadError` listing every
    problem in it as ``file:line: field: message``."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogueLoadError(
            [
                CatalogueError(
                    file,
                    None,
                    None,
                    f"no metric catalogue at {path.resolve()}; create it (see docs/catalogue.md), "
                    "or point GOALWATCH_CATALOGUE_FILE at the catalogue file",
                )
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueLoadError(
            [CatalogueError(file, None, None, f"cannot read the file: {exc}")]
        ) from None
    return parse_catalogue(text, file=file)


def parse_catalogue(text: str, *, file: str) -> Catalogue:
    """The catalogue in ``text`` (the file named ``file``, for error messages)."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        raise CatalogueLoadError([unprintable(file, text, exc)]) from None
    try:
        node = loader.get_single_node()
        # Each entry from its own node: of two entries with one name, each is checked.
        entries = (
            [(key, value, loader.construct_object(value, deep=True)) for key, value in node.value]
            if isinstance(node, MappingNode)
            else []
        )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else int(mark.line) + 1
        problem = exc.problem or exc.context or "cannot be parsed"
        raise CatalogueLoadError(
            [CatalogueError(file, line, None, f"not valid YAML: {problem}")]
        ) from None
    finally:
        loader.dispose()
    if node is None or (isinstance(node, ScalarNode) and node.value in ("", "~", "null")):
        raise CatalogueLoadError(
            [
                CatalogueError(
                    file, None, None, f"the file is empty; catalogue a metric: {_ENTRY_EXAMPLE}"
                )
            ]
        )
    if not isinstance(node, MappingNode):
        raise CatalogueLoadError(
            [
                CatalogueError(
                    file,
                    node_line(node),
                    None,
                    "expected a mapping of metric names to their definitions, e.g. "
                    + _ENTRY_EXAMPLE,
                )
            ]
        )
    errors = list(duplicate_keys(file, node))
    metrics: list[MetricDefinition] = []
    for key, value, entry in entries:
        name = key.value if isinstance(key, ScalarNode) else None
        if not isinstance(name, str) or key.tag != "tag:yaml.org,2002:str":
            errors.append(
                CatalogueError(
                    file, node_line(key), None, "a metric name must be text, e.g. unit_sales"
                )
            )
            continue
        if not isinstance(value, MappingNode) or not isinstance(entry, dict):
            errors.append(
                CatalogueError(
                    file,
                    node_line(key),
                    name,
                    "expected the metric's definition: a mapping with description, unit, "
                    "sources, cadence, owner (and min, max, labels)",
                )
            )
            continue
        if "name" in entry:
            line, _ = locate(value, ("name",))
            errors.append(
                CatalogueError(
                    file, line, f"{name}.name", "the metric's name is its key; remove name:"
                )
            )
            continue
        try:
            metrics.append(MetricDefinition.model_validate({"name": name, **entry}))
        except ValidationError as exc:
            errors.extend(_problem(file, name, key, value, error) for error in exc.errors())
    if errors:
        raise CatalogueLoadError(sorted(errors, key=lambda e: e.line or 0))
    return Catalogue(metrics)


def _problem(file: str, name: str, key: Node, entry: Node, error: ErrorDetails) -> CatalogueError:
    loc = tuple(part for part in error["loc"] if part != "[key]")
    if loc == ("name",):
        return CatalogueError(
            file,
            node_line(key),
            name,
            f"'{name}' is not a metric name: write lower snake_case (a-z, 0-9, _; dots between "
            "parts), e.g. report_rework_rate or crm.renewal_rate",
        )
    if error["type"] == "missing" or not loc:
        line, node = node_line(key), entry
    else:
        line, node = locate(entry, loc)
    field = ".".join([name, *(f"[{p}]" if isinstance(p, int) else str(p) for p in loc)])
    field = field.replace(".[", "[")
    written = (
        node.value if isinstance(node, ScalarNode) else json.dumps(error.get("input"), default=str)
    )
    return CatalogueError(file, line, field, _describe(error, loc, written))


def _describe(error: ErrorDetails, loc: tuple[int | str, ...], written: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    last = str(loc[-1]) if loc else ""
    if kind == "missing":
        example = _EXAMPLES.get(last)
        return f"required field is missing; add e.g. {example}" if example else "required"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(last, _FIELDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown field '{last}'; {hint}allowed: {', '.join(_FIELDS)}"
    if kind in ("float_parsing", "float_type"):
        return f"{written} is not a number; write e.g. 0 or 0.5"
    if kind == "string_pattern_mismatch" and loc and loc[0] == "labels":
        return f"'{last}' is not a label name: write lower snake_case, e.g. department"
    if kind in ("list_type", "too_short") and loc and loc[0] == "labels":
        return "list the allowed values, e.g. [daily, weekly], or write any for any value"
    if kind in ("list_type", "too_short") and loc == ("sources",):
        return "list the systems that send it, e.g. [his]"
    if kind == "string_type":
        return f'expected text, got {written}; quote it: "{written}"'
    if kind in ("dict_type", "model_type"):
        return "expected a mapping, e.g. labels: {department: any, feed: [daily]}"
    if kind == "string_pattern_mismatch" and loc == ("cadence",):
        return f"'{written}' is not a duration: write e.g. 1d, 7d or 12h"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"])
