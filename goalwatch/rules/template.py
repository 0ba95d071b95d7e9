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
from typing import Any, Final

# Field name -> a sample of the type it has when the evaluator renders the message.
_SAMPLES: Final[dict[str, Any]] = {
    "subject": "emp-1042",
    "subject_name": "Dr. Li Na",
    "metric": "report_rework_rate",
    "value": 0.11,
    "threshold": 0.08,
    "op": ">",
    "consecutive": 3,
    "rule_id": "report-rework-rate-high",
    "rule_name": "Report rework rate above 8%",
    "severity": "warning",
}
FIELDS: Final[tuple[str, ...]] = (*_SAMPLES, "labels")
_FIELD = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<key>[^\[\]]+)\])?$")
_AVAILABLE = ", ".join("{" + name + "}" for name in _SAMPLES) + ", {labels[<name>]}"


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


def check_template(template: str) -> None:
    """Raise :class:`TemplateError` unless ``template`` renders with the evaluator's fields."""
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
        _check_field(field, spec or "", placeholder)
        try:
            render(placeholder, labels={}, **_SAMPLES)
        except (ValueError, TypeError) as exc:
            raise TemplateError(f"{placeholder} cannot be rendered: {exc}") from exc


def _check_field(field: str, spec: str, placeholder: str) -> None:
    if field == "" or field.isdigit():
        raise TemplateError(
            f"{placeholder}: name the field instead of using a position; available: {_AVAILABLE}"
        )
    match = _FIELD.match(field)
    if match is None:
        raise TemplateError(
            f"{placeholder}: only plain fields such as {{value}} and labels such as "
            f"{{labels[department]}} are allowed"
        )
    name, key = match["name"], match["key"]
    if name not in FIELDS:
        close = difflib.get_close_matches(name, FIELDS, n=1)
        hint = f"did you mean {{{close[0]}}}? " if close else ""
        raise TemplateError(f"unknown field {{{name}}}; {hint}available: {_AVAILABLE}")
    if name == "labels" and key is None:
        raise TemplateError("write one label at a time, e.g. {labels[department]}")
    if name != "labels" and key is not None:
        raise TemplateError(f"{placeholder}: only labels can be indexed, e.g. {{labels[{key}]}}")
    if "{" in spec:
        raise TemplateError(f"{placeholder}: nested fields in a format spec are not supported")


def render(
    template: str,
    *,
    subject: str,
    subject_name: str,
    metric: str,
    value: float,
    threshold: float,
    op: str,
    consecutive: int,
    rule_id: str,
    rule_name: str,
    severity: str,
    labels: Mapping[str, str],
) -> str:
    """Render a template checked by :func:`check_template`."""
    return _FORMATTER.format(
        template,
        subject=subject,
        subject_name=subject_name,
        metric=metric,
        value=value,
        threshold=threshold,
        op=op,
        consecutive=consecutive,
        rule_id=rule_id,
        rule_name=rule_name,
        severity=severity,
        labels=_Labels(labels),
    )


def render_fields(template: str, fields: Mapping[str, Any]) -> str:
    """Render ``template`` with ``fields`` as :func:`render` does (whole floats without a
    format spec drop the ``.0``), for rule kinds with fields of their own."""
    return _FORMATTER.format(template, **fields)
