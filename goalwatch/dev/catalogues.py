"""Catalogues for stacks that run rules of their own (tests, benches, the faults harness).

Such a stack's ingestion enforces a catalogue as any other does: the shipped one, with the
metrics of the generated rules added as the catalogue file writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from goalwatch.catalogue import DEFAULT_CATALOGUE, load_catalogue


def entry(
    *,
    description: str,
    sources: Sequence[str],
    unit: str = "count",
    cadence: str = "1d",
    owner: str = "goalwatch-dev",
    low: float | None = None,
    high: float | None = None,
    labels: Mapping[str, Sequence[str] | None] | None = None,
) -> dict[str, Any]:
    """One catalogue entry, as the catalogue file writes it (``None`` label values: any)."""
    written: dict[str, Any] = {"description": description, "unit": unit}
    if low is not None:
        written["min"] = low
    if high is not None:
        written["max"] = high
    written |= {"sources": list(sources), "cadence": cadence, "owner": owner}
    if labels:
        written["labels"] = {
            name: "any" if values is None else list(values) for name, values in labels.items()
        }
    return written


def write_catalogue(
    path: Path, entries: Mapping[str, Mapping[str, Any]], *, base: Path = DEFAULT_CATALOGUE
) -> Path:
    """Write the catalogue ``base`` with ``entries`` (metric name → :func:`entry`) added to
    ``path``, check that it loads, and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    added = yaml.safe_dump(dict(entries), sort_keys=False, allow_unicode=True)
    text = base.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + added
    path.write_text(text, encoding="utf-8")
    load_catalogue(path)
    return path
