"""Alert message templates: Python ``str.format`` with a fixed set of named fields.

A template is checked when the rule is loaded, by parsing it and rendering every field with
values of the types the evaluator passes, so a typo or a bad format spec is a load error with a
line number instead of an alert that fails to render at three in the morning.

A number that is whole and written without a format spec renders without a fraction: HR writes
``value: 3`` and expects ``{threshold}`` to read ``3``, not Python's ``3.0``.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from goalwatch.contracts import RuleKind

_COMMON: Final[dict[str, Any]] = {
    "subject": "emp-1042",
    "subject_name": "Dr. Li Na",
    "metric": "report_rework_rate",
    "value": 0.11,
}
_RULE: Final[dict[str, Any]] = {
    "rule_id": "report-rework-rate-high",
    "rule_name": "Report rework rate above 8%",
    "severity": "warning",
}
# Field name -> a sample of the type it has when the evaluator renders the message, by kind.
SAMPLES: Final[dict[RuleKind, dict[str, Any]]] = {
    RuleKind.THRESHOLD: {
        **_COMMON,
        "threshold": 0.08,
        "op": ">",
        "consecutive": 3,
        **_RULE,
    },
    # {value} is the last value reported, {last_seen} its event time, {due_at} when the
    # next report was due (last_seen + absent_for).
    RuleKind.OVERDUE: {
        **_COMMON,
        "last_seen": datetime(2026, 11, 18, 18, 0, tzinfo=UTC),
        "absent_for": "2d",
        "due_at": datetime(2026, 11, 20, 18, 0, tzinfo=UTC),
        **_RULE,
    },
}
# {value} is the value of the record behind the finding; {measure} what the pattern
# measured (records in the window, repeats, the step, |z|), {limit} what it allows; {count}
# the findings of the alert so far; {within} and {quiet} as written.
SAMPLES[RuleKind.FRAUD] = {
    **_COMMON,
    "pattern": "burst",
    "measure": 31.0,
    "limit": 30.0,
    "count": 1,
    "within": "2m",
    "quiet": "2m",
    **_RULE,
}
RANGE_SAMPLES: Final[dict[str, Any]] = {
    **{name: v for name, v in SAMPLES[RuleKind.THRESHOLD].items() if name != "threshold"},
    "low": 0.05,
    "high": 0.08,
    "op": "between",
}
"""The fields of a threshold rule whose ``op`` is ``between`` or ``outside``: two bounds."""
_SAMPLES: Final = SAMPLES[RuleKind.THRESHOLD]
FIELDS: Final[tuple[str, ...]] = (*_SAMPLES, "labels")
_FIELD = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<key>[^\[\]]+)\])?$")


def _available(samples: Mapping[str, Any]) -> str:
    return ", ".join("{" + name + "}" for name in samples) + ", {labels[<name>]}"


class TemplateError(ValueError):
    """A message template that cannot be rendered; the text says what to write instead."""


# Below this size a whole float's repr has no exponent, so it can be written as an integer.
_PLAIN_WHOLE: Final = 1e16


class _Formatter(string.Formatter):
    """``str.format`` except that whole floats without a format spec drop the ``.0``."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        if (
            not format_spec
            and isinstance(value, float)
            and value.is_integer()
            and abs(value) < _PLAIN_WHOLE
        ):
            value = int(value)
        return super().format_field(value, format_spec)


_FORMATTER: Final = _Formatter()


class _Labels(dict[str, str]):
    """Labels for rendering: a label the event does not carry renders as ``-``."""

    def __missing__(self, key: str) -> str:
        return "-"


def check_template(
    template: str, *, kind: RuleKind = RuleKind.THRESHOLD, ranged: bool = False
) -> None:
    """Raise :class:`TemplateError` unless ``template`` renders with the fields the evaluator
    passes for a rule of ``kind`` (``ranged``: a threshold rule with ``between`` or
    ``outside``, whose fields are ``{low}`` and ``{high}`` instead of ``{threshold}``)."""
    samples = RANGE_SAMPLES if ranged else SAMPLES[kind]
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
        ) from exc
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        placeholder = "{" + field + (f"!{conversion}" if conversion else "")
        placeholder += (f":{spec}" if spec else "") + "}"
        _check_field(field, spec or "", placeholder, samples=samples, kind=kind)
        try:
            render(placeholder, labels={}, **samples)
        except (ValueError, TypeError) as exc:
            raise TemplateError(f"{placeholder} cannot be rendered: {exc}") from exc


def _check_field(
    field: str, spec: str, placeholder: str, *, samples: Mapping[str, Any], kind: RuleKind
) -> None:
    available = _available(samples)
    if field == "" or field.isdigit():
        raise TemplateError(
            f"{placeholder}: name the field instead of using a position; available: {available}"
        )
    match = _FIELD.match(field)
    if match is None:
        raise TemplateError(
            f"{placeholder}: only plain fields such as {{value}} and labels such as "
            f"{{labels[department]}} are allowed"
        )
    name, key = match["name"], match["key"]
    fields = (*samples, "labels")
    if name not in fields:
        close = difflib.get_close_matches(name, fields, n=1)
        hint = f"did you mean {{{close[0]}}}? " if close else ""
        elsewhere = [k for k in RuleKind if k in SAMPLES and k != kind and name in SAMPLES[k]]
        if elsewhere and not close:
            hint = f"{{{name}}} belongs to {elsewhere[0]} rules; "
        if name == "threshold" and "low" in samples:
            hint = "a between or outside rule has two thresholds, {low} and {high}; "
        if name in ("low", "high") and "threshold" in samples:
            hint = f"{{{name}}} belongs to between and outside rules, this one has {{threshold}}; "
        raise TemplateError(f"unknown field {{{name}}}; {hint}available: {available}")
    if name == "labels" and key is None:
        raise TemplateError("write one label at a time, e.g. {labels[department]}")
    if name != "labels" and key is not None:
        raise TemplateError(f"{placeholder}: only labels can be indexed, e.g. {{labels[{key}]}}")
    if "{" in spec:
        raise TemplateError(f"{placeholder}: nested fields in a format spec are not supported")


def render(template: str, *, labels: Mapping[str, str], **fields: Any) -> str:
    """Render a template checked by :func:`check_template` with its kind's ``fields``."""
    return _FORMATTER.format(template, labels=_Labels(labels), **fields)


def render_fields(template: str, fields: Mapping[str, Any]) -> str:
    """Render ``template`` with ``fields`` as :func:`render` does (whole floats without a
    format spec drop the ``.0``), for rule kinds with fields of their own."""
    return _FORMATTER.format(template, **fields)


def check_template_fields(template: str, samples: Mapping[str, Any]) -> None:
    """Raise :class:`TemplateError` unless ``template`` renders with the fields of
    ``samples`` (name -> a value of the type the evaluator passes), for rule kinds with
    fields of their own."""
    available = ", ".join("{" + name + "}" for name in samples)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
        ) from exc
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        placeholder = "{" + field + (f"!{conversion}" if conversion else "")
        placeholder += (f":{spec}" if spec else "") + "}"
        if field not in samples:
            close = difflib.get_close_matches(field, samples, n=1)
            hint = f"did you mean {{{close[0]}}}? " if close else ""
            raise TemplateError(f"unknown field {{{field}}}; {hint}available: {available}")
        if spec and "{" in spec:
            raise TemplateError(f"{placeholder}: nested fields in a format spec are not supported")
        try:
            render_fields(placeholder, samples)
        except (ValueError, TypeError) as exc:
            raise TemplateError(f"{placeholder} cannot be rendered: {exc}") from exc
