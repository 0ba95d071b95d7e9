"""Org units, people and goals from CSV: one row per item, a header naming the fields.

Columns are the fields of the item's JSON form. An empty cell leaves the field out (its
default applies). List fields hold ``;``-separated values: ``depends_on`` as ``a;b``,
``channels`` as ``inbox;email``, ``contributes_to`` as ``parent`` or ``parent:weight``
(``obj-1:3;obj-2``). Every row is validated; errors name the row (1 is the first row after
the header), the line of the file and the column.
"""

from __future__ import annotations

import csv
import io
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

LIST_FIELDS = frozenset({"depends_on", "channels"})


class CsvError(ValueError):
    """Rows that are not valid items: ``errors`` holds each as ``{"loc", "msg"}``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        first = errors[0]
        super().__init__(
            f"{len(errors)} invalid cell{'s' if len(errors) != 1 else ''} in the CSV; "
            f"first: {first['loc']}: {first['msg']}"
        )
        self.errors = errors


def parse_rows(text: str, model: type[M], *, max_rows: int) -> list[M]:
    """The items of CSV ``text`` as ``model``; raises :class:`CsvError` naming every bad cell."""
    reader = csv.DictReader(io.StringIO(text))
    fields = set(model.model_fields)
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in fields]
    if not header or unknown:
        raise CsvError(
            [
                {
                    "loc": "line 1",
                    "msg": f"unknown column(s) {', '.join(unknown)}; columns are the fields: "
                    f"{', '.join(model.model_fields)}"
                    if unknown
                    else "the CSV has no header row naming the fields",
                }
            ]
        )
    items: list[M] = []
    errors: list[dict[str, str]] = []
    for row_number, row in enumerate(reader, start=1):
        if row_number > max_rows:
            errors.append({"loc": f"row {row_number}", "msg": f"more than {max_rows} rows"})
            break
        where = f"row {row_number} (line {reader.line_num})"
        if None in row:  # more cells than the header names
            errors.append({"loc": where, "msg": "more cells than the header has columns"})
            continue
        try:
            items.append(model.model_validate(_item(row)))
        except ValidationError as exc:
            for error in exc.errors(include_input=False, include_url=False):
                column = ".".join(str(p) for p in error["loc"]) or "row"
                errors.append({"loc": f"{where}, column {column}", "msg": error["msg"]})
        except ValueError as exc:
            errors.append({"loc": where, "msg": str(exc)})
    if errors:
        raise CsvError(errors)
    return items


def _item(row: dict[str, str | None]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for name, cell in row.items():
        value = (cell or "").strip()
        if not value:
            continue
        if name == "contributes_to":
            item[name] = [_contribution(part) for part in _split(value)]
        elif name in LIST_FIELDS:
            item[name] = _split(value)
        else:
            item[name] = value
    return item


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def _contribution(part: str) -> dict[str, Any]:
    goal_id, _, weight = part.partition(":")
    if not weight:
        return {"goal_id": goal_id}
    try:
        return {"goal_id": goal_id, "weight": float(weight)}
    except ValueError:
        raise ValueError(
            f"contributes_to: weight {weight!r} of {goal_id!r} is not a number"
        ) from None
