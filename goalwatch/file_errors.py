"""Problems found in a file HR or an operator edits (rule files, the metric catalogue): where
each is, ``file:line[:column]: field: message``, and the exception that carries them all."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


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


def node_line(node: Node) -> int:
    """The line (from 1) ``node`` starts on."""
    return int(node.start_mark.line) + 1


def duplicate_keys(file: str, node: Node, path: str = "") -> Iterable[FileError]:
    """PyYAML keeps the last of two equal keys silently; a rule file must not."""
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, ScalarNode) else "?"
            field = f"{path}.{name}" if path else name
            if name in seen:
                yield FileError(
                    file,
                    node_line(key),
                    field,
                    f"appears twice (first on line {seen[name]})",
                    int(key.start_mark.column) + 1,
                )
            else:
                seen[name] = node_line(key)
            yield from duplicate_keys(file, value, field)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            yield from duplicate_keys(file, item, f"{path}[{index}]")


def locate(node: Node, loc: Sequence[int | str]) -> tuple[int, Node]:
    """The deepest node on ``loc`` that exists and its line (the key's line in a mapping)."""
    line, _, current = locate_at(node, loc)
    return line, current


def locate_at(node: Node, loc: Sequence[int | str]) -> tuple[int, int, Node]:
    """:func:`locate` with the column (from 1) of that key, or of the item in a list."""
    marked, current = node, node
    for part in loc:
        if isinstance(current, MappingNode):
            for key, value in current.value:
                if isinstance(key, ScalarNode) and key.value == str(part):
                    marked, current = key, value
                    break
            else:
                break
        elif isinstance(current, SequenceNode) and isinstance(part, int):
            if part >= len(current.value):
                break
            marked = current = current.value[part]
        else:
            break
    return node_line(marked), int(marked.start_mark.column) + 1, current
