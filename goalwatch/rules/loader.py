"""Load a directory of rule files, reporting every problem as ``file:line: field: message``.

The YAML is composed into nodes first, so each validation error can be traced back to the line
it came from. All files are read and all errors collected before giving up, so HR sees the whole
list at once instead of fixing one error per restart.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode

from goalwatch.contracts import RuleKind
from goalwatch.file_errors import (
    FileError,
    FileErrors,
    duplicate_keys,
    locate,
    locate_at,
    node_line,
    unprintable,
)
from goalwatch.rules.goal_overdue_spec import (
    BehindPlan,
    GoalCondition,
    GoalFilter,
    GoalOverdueRuleSpec,
    NoCheckIn,
    is_goal_rule,
)
from goalwatch.rules.impact_spec import ImpactRuleSpec, ImpactWhen
from goalwatch.rules.spec import CONDITION_MODELS, RuleSpec

_EXAMPLES: Final[dict[str, str]] = {
    "id": "id: report-rework-rate-high",
    "name": "name: Report rework rate above 8% on 3 consecutive days",
    "kind": "kind: threshold",
    "metric": "metric: report_rework_rate",
    "org_unit": "org_unit: radiology",
    "condition": 'condition: {op: ">", value: 0.08, consecutive: 3}',
    "condition.op": 'op: ">"',
    "condition.value": "value: 0.08",
    "condition.absent_for": "absent_for: 2d",
    "severity": "severity: warning",
    "notify": "notify: [subject, manager]",
    "message": 'message: "{subject}: rework rate {value:.0%}"',
    "when": "when: {status: [invalid, off_track]}",
    "when.status": "status: [invalid, off_track]",
}
# dependency_impact rules have a model of their own; its errors reach _describe by these.
_IMPACT_MODELS: Final[dict[tuple[str, ...], type[BaseModel]]] = {
    (): ImpactRuleSpec,
    ("when",): ImpactWhen,
}
_IMPACT_EXAMPLES: Final[dict[str, str]] = {
    "notify": "notify: [owner, manager]",
    "message": 'message: "{goal_title} is {status}. Your goals resting on it: {affected_goals}"',
}
# Goal-based overdue rules have a model of their own too.
_GOAL_MODELS: Final[dict[tuple[str, ...], type[BaseModel]]] = {
    (): GoalOverdueRuleSpec,
    ("goals",): GoalFilter,
    ("condition",): GoalCondition,
    ("condition", "no_check_in"): NoCheckIn,
    ("condition", "behind_plan"): BehindPlan,
}
_GOAL_EXAMPLES: Final[dict[str, str]] = {
    "condition": "condition: {past_due: true}",
    "condition.behind_plan.points": "points: 10",
    "notify": "notify: [owner, manager]",
    "message": 'message: "{goal_title} was due {due:%Y-%m-%d}"',
    "goals": "goals: {type: key_result}",
}
_SHAPES: Final[dict[str, tuple[dict[tuple[str, ...], type[BaseModel]], dict[str, str], str]]] = {
    "impact": (_IMPACT_MODELS, _IMPACT_EXAMPLES, "[owner, manager]"),
    "goal": (_GOAL_MODELS, _GOAL_EXAMPLES, "[owner, manager]"),
}
# Which model describes the mapping at a location, to list the fields it allows.
_MODELS: Final[dict[tuple[str, ...], type[BaseModel]]] = {
    (): RuleSpec,
    **{("condition", form): model for form, model in CONDITION_MODELS.items()},
}


RuleError = FileError
"""One problem in one rule file."""


class RuleLoadError(FileErrors):
    """The rules could not be loaded; ``errors`` lists every problem found."""


@dataclass(frozen=True)
class LoadedRule:
    """A validated rule and the file it came from."""

    spec: RuleSpec | ImpactRuleSpec | GoalOverdueRuleSpec
    path: Path
    text: str | None = None  # what was read (None: read ``path`` again if needed)

    def source(self) -> str:
        """The rule's text as written."""
        return self.text if self.text is not None else self.path.read_text(encoding="utf-8")


def metric_rules(rules: Iterable[LoadedRule]) -> list[RuleSpec]:
    """The rules judged on metric events (threshold), in order."""
    return [rule.spec for rule in rules if isinstance(rule.spec, RuleSpec)]


def goal_overdue_rules(rules: Iterable[LoadedRule]) -> list[GoalOverdueRuleSpec]:
    """The goal-based overdue rules, judged on goal events and their timers, in order."""
    return [rule.spec for rule in rules if isinstance(rule.spec, GoalOverdueRuleSpec)]


def impact_rules(rules: Iterable[LoadedRule]) -> list[ImpactRuleSpec]:
    """The dependency_impact rules, judged on goal status changes, in order."""
    return [rule.spec for rule in rules if isinstance(rule.spec, ImpactRuleSpec)]


@dataclass(frozen=True)
class _Parsed:
    rule: LoadedRule | None
    rule_id: str | None
    id_line: int | None
    errors: list[RuleError]


def load_rules(directory: Path) -> list[LoadedRule]:
    """Load every ``*.yaml`` and ``*.yml`` file in ``directory`` (one rule per file), by file name.

    Raises :class:`RuleLoadError` listing every error of every file, including rule ids used
    by more than one file.
    """
    if not directory.is_dir():
        raise RuleLoadError(
            [
                RuleError(
                    str(directory),
                    None,
                    None,
                    f"no rules folder at {directory.resolve()}; create it, or point "
                    "GOALWATCH_RULES_DIR at the folder that holds the rule files",
                )
            ]
        )
    return load_rule_files(rule_files(directory))


def rule_files(directory: Path) -> list[Path]:
    """The rule files in ``directory`` (``*.yaml``, ``*.yml``; not its sub-folders), by name."""
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def load_rule_files(paths: Sequence[Path]) -> list[LoadedRule]:
    """Load the rule files ``paths``, in that order; raises :class:`RuleLoadError` listing
    every error of every file, including rule ids used by more than one of them."""
    errors: list[RuleError] = []
    rules: list[LoadedRule] = []
    first_seen: dict[str, tuple[Path, int | None]] = {}
    for path in paths:
        parsed = _parse_file(path)
        errors.extend(parsed.errors)
        # Checked on the raw id too, so a clash shows even while one of the files is invalid.
        rule_id = parsed.rule_id
        if rule_id is not None and rule_id in first_seen:
            other, other_line = first_seen[rule_id]
            errors.append(
                RuleError(
                    str(path),
                    parsed.id_line,
                    "id",
                    f"'{rule_id}' is already the id of {_where(other, other_line)}; "
                    "rule ids must be unique",
                )
            )
            continue
        if rule_id is not None:
            first_seen[rule_id] = (path, parsed.id_line)
        if parsed.rule is not None:
            rules.append(parsed.rule)
    if errors:
        raise RuleLoadError(errors)
    return rules


def load_rule_file(path: Path) -> LoadedRule:
    """Load one rule file; raises :class:`RuleLoadError` with every error in it."""
    parsed = _parse_file(path)
    if parsed.rule is None:
        raise RuleLoadError(parsed.errors)
    return parsed.rule


def _where(path: Path, line: int | None) -> str:
    return str(path) if line is None else f"{path}:{line}"


def parse_rule_text(text: str, *, file: str) -> LoadedRule:
    """A rule written as ``text`` (a draft sent over the API, a stored version), its errors
    named as if it were the file ``file``; raises :class:`RuleLoadError` with every error."""
    parsed = _parse_text(text, Path(file))
    if parsed.rule is None:
        raise RuleLoadError(parsed.errors)
    return parsed.rule


def _parse_file(path: Path) -> _Parsed:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _Parsed(
            None, None, None, [RuleError(str(path), None, None, f"cannot read the file: {exc}")]
        )
    return _parse_text(text, path)


def _parse_text(text: str, path: Path) -> _Parsed:
    file = str(path)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        return _Parsed(None, None, None, [unprintable(file, text, exc)])
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        return _Parsed(None, None, None, [_yaml_error(file, exc)])
    finally:
        loader.dispose()
    if node is None:
        return _Parsed(
            None, None, None, [RuleError(file, None, None, "the file is empty; write a rule")]
        )
    if not isinstance(node, MappingNode) or not isinstance(data, dict):
        return _Parsed(
            None,
            None,
            node_line(node),
            [
                RuleError(
                    file,
                    node_line(node),
                    None,
                    "expected a rule: a mapping of fields such as id:, name:, kind:, metric:",
                )
            ],
        )
    errors = list(duplicate_keys(file, node))
    rule_id = data.get("id") if isinstance(data.get("id"), str) else None
    id_line, _ = locate(node, ("id",))
    shape: str | None = None
    model: type[RuleSpec | ImpactRuleSpec | GoalOverdueRuleSpec] = RuleSpec
    if data.get("kind") == RuleKind.DEPENDENCY_IMPACT.value:
        shape, model = "impact", ImpactRuleSpec
    elif is_goal_rule(data):
        shape, model = "goal", GoalOverdueRuleSpec
    try:
        spec = model.model_validate(data)
    except ValidationError as exc:
        errors.extend(
            _validation_error(file, node, error, shape=shape) for error in _misspelt(exc.errors())
        )
        # In the order of the file, as an editor shows it (pydantic reports by field).
        errors.sort(key=lambda error: error.line or 0)
        return _Parsed(None, rule_id, id_line, errors)
    if errors:
        return _Parsed(None, rule_id, id_line, errors)
    return _Parsed(LoadedRule(spec=spec, path=path, text=text), rule_id, id_line, [])


def _yaml_error(file: str, exc: yaml.MarkedYAMLError) -> RuleError:
    mark = exc.problem_mark or exc.context_mark
    line = None if mark is None else int(mark.line) + 1
    column = None if mark is None else int(mark.column) + 1
    problem = exc.problem or exc.context or "cannot be parsed"
    if isinstance(exc, yaml.composer.ComposerError) and "another document" in problem:
        return RuleError(
            file, line, None, "one rule per file: move the rule after --- to its own file"
        )
    message = f"not valid YAML: {problem}"
    if mark is not None and mark.buffer:
        lines = str(mark.buffer).splitlines()
        source_line = lines[mark.line] if mark.line < len(lines) else ""
        if "op:" in source_line or "chomping" in problem:
            # A bare > or >= starts a YAML block scalar; HR meets this on their first rule.
            message += ' — quote comparison operators, e.g. op: ">="'
    return RuleError(file, line, None, message, column)


def _field_name(loc: Sequence[int | str]) -> str | None:
    name = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else part
    return name or None


def _validation_error(
    file: str, root: Node, error: ErrorDetails, *, shape: str | None = None
) -> RuleError:
    loc = tuple(error["loc"])
    if shape is None and len(loc) >= 2 and loc[0] == "condition" and loc[1] in CONDITION_MODELS:
        # The condition's form (threshold or overdue) is part of pydantic's path, not the file's.
        form = str(loc[1])
        loc = (loc[0], *loc[2:])
        error = {**error, "loc": loc}
    else:
        form = "threshold"
    line, column, node = locate_at(root, loc)
    # Quote what the author typed (yes, 042), not what YAML made of it (True, 34).
    written = node.value if isinstance(node, ScalarNode) else repr(error.get("input"))
    message = _describe(error, written, form=form, shape=shape)
    return RuleError(file, line, _field_name(loc), message, column)


def _misspelt(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """``errors`` without a required field's "missing" when a misspelling of it is in the
    file (``conditon:``): the unknown field's error says it, on the line to fix."""
    unknown = [tuple(e["loc"]) for e in errors if e["type"] == "extra_forbidden"]

    def misspelt(loc: tuple[int | str, ...]) -> bool:
        return any(
            other[:-1] == loc[:-1]
            and difflib.get_close_matches(str(other[-1]), [str(loc[-1])], cutoff=0.75)
            for other in unknown
        )

    return [e for e in errors if not (e["type"] == "missing" and misspelt(tuple(e["loc"])))]


def _home_of(
    name: str, parent: tuple[str, ...], models: dict[tuple[str, ...], type[BaseModel]]
) -> str | None:
    """The field below ``parent`` whose mapping allows ``name`` (``condition`` for a
    ``window:`` written at the top of a rule), if one does."""
    for path, model in models.items():
        if len(path) > len(parent) and path[: len(parent)] == parent and name in model.model_fields:
            return path[len(parent)]
    return None


def _describe(
    error: ErrorDetails, written: str, *, form: str = "threshold", shape: str | None = None
) -> str:
    """Pydantic's wording for generic errors, rewritten for someone editing YAML."""
    kind = error["type"]
    loc = tuple(str(part) for part in error["loc"])
    ctx = error.get("ctx") or {}
    examples, models, recipients = _EXAMPLES, _MODELS, "[subject, manager]"
    if shape is not None:
        own_models, own_examples, recipients = _SHAPES[shape]
        examples, models = {**_EXAMPLES, **own_examples}, own_models
    own_shape = shape is not None
    if kind == "missing":
        example = examples.get(".".join(loc))
        return f"required field is missing; add e.g. {example}" if example else "required"
    if kind == "extra_forbidden":
        parent = loc[:-1]
        model = models.get(
            (*parent, form) if parent == ("condition",) and not own_shape else parent
        )
        if model is None:
            return f"unknown field '{loc[-1]}'"
        name, allowed = loc[-1], list(model.model_fields)
        # A high cutoff: a suggestion must look like a misspelling ('window' is not 'kind').
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.75)
        if close:
            return (
                f"unknown field '{name}'; did you mean '{close[0]}'? allowed: {', '.join(allowed)}"
            )
        home = _home_of(name, parent, models)
        if home is not None:
            return f"'{name}' belongs under {home}:, not here; move it there"
        return f"unknown field '{name}'; allowed: {', '.join(allowed)}"
    if kind in ("float_parsing", "float_type"):
        if written.strip().endswith("%"):
            return f"{written} is not a number; write a fraction, e.g. 0.08 for 8%"
        return f"{written} is not a number"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{written} is not a whole number"
    if kind == "string_type":
        return f'expected text, got {written}; quote it: "{written}"'
    if kind in ("dict_type", "model_type"):
        example = examples.get(".".join(loc), "where: {department: radiology}")
        return f"expected a mapping, e.g. {example}"
    if kind == "list_type":
        return f"expected a list, e.g. {recipients}"
    if kind == "too_short":
        return "must not be empty" + (f", e.g. {recipients}" if loc == ("notify",) else "")
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {written}"
    if kind == "greater_than":
        return f"must be more than {ctx.get('gt')}, got {written}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}, got {written}"
    if kind == "string_too_long":
        return f"is too long (at most {ctx.get('max_length')} characters)"
    return str(error["msg"])
