"""Problems found in a file HR or an operator edits (rule files, the metric catalogue): where
each is, ``file:line[:column]: field: message``, and the exception that carries them all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class FileError:
    """One problem in one file; ``line`` and ``column`` count from 1."""

    file: str
    line: int | None
    field: str | None
    message: str
    column: int | None = None

    def lint_line(self) -> str:
        """``file:line:col: field: message``, as editors and CI annotate from."""
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return self._with(where)

    def __str__(self) -> str:
        return self._with(self.file if self.line is None else f"{self.file}:{self.line}")

    def _with(self, where: str) -> str:
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class FileErrors(Exception):
    """A file could not be loaded; ``errors`` lists every problem found, one a line."""

    def __init__(self, errors: Sequence[FileError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


def unprintable(file: str, text: str, exc: yaml.reader.ReaderError) -> FileError:
    """A character YAML refuses anywhere in ``text`` (a control character, say), located."""
    before = text[: exc.position]
    line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return FileError(
        file,
        line,
        None,
        f"the control character U+{code:04X} is not allowed in YAML; delete it (it often "
        "comes in with text pasted from elsewhere)",
        column,
    )
