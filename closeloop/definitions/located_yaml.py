"""YAML loading that remembers where every value came from, so errors can say file:line:column."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from closeloop.errors import DefinitionError, SourceLocation

PathKey = tuple[str | int, ...]


@dataclass
class LocatedDocument:
    """A parsed YAML document plus the source position of every mapping key and value."""

    data: Any
    file: str
    lines: list[str]
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def location(self, path: PathKey, *, key: bool = False) -> SourceLocation:
        """The location of the value at ``path`` (or its key), else of the nearest parent."""
        table = self.key_positions if key else self.positions
        probe = path
        while probe not in table and probe:
            probe = probe[:-1]
        line, column = table.get(probe, self.positions.get(probe, (1, 1)))
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        return SourceLocation(line=line, column=column, file=self.file, source_line=source)

    def value_start(self, path: PathKey) -> tuple[int, int, bool]:
        """Line, column where the text of a scalar starts, and whether it is a block scalar.

        For a plain or quoted scalar the text starts at the mark (past the opening quote); for a
        block
        scalar (``|`` / ``>``) it starts on the next line, at its indentation.
        """
        line, column = self.positions.get(path, (1, 1))
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        marker = source[column - 1 : column]
        if marker in ("|", ">"):
            next_line = line + 1
            text = self.lines[next_line - 1] if next_line <= len(self.lines) else ""
            return next_line, len(text) - len(text.lstrip()) + 1, True
        if marker in ('"', "'"):
            return line, column + 1, False
        return line, column, False


def load_located_yaml(path: Path) -> LocatedDocument:
    """Parse one YAML file; a syntax error becomes a located :class:`DefinitionError`."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        source = lines[line - 1] if 0 < line <= len(lines) else None
        raise DefinitionError(
            f"YAML syntax error: {error.problem}",
            SourceLocation(line, column, str(path), source),
            hint="check indentation and quoting on this line or the one before",
        ) from None
    document = LocatedDocument(data=None, file=str(path), lines=lines)
    document.data = _convert(node, (), document) if node is not None else {}
    return document


def _convert(node: yaml.Node, path: PathKey, document: LocatedDocument) -> Any:
    document.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                raise DefinitionError(
                    f"duplicate key {key!r}",
                    _mark(key_node, document),
                    hint="each key may appear once in a mapping",
                )
            document.key_positions[child] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            result[key] = _convert(value_node, child, document)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, index), document) for index, item in enumerate(node.value)]
    return yaml.SafeLoader(  # resolve the scalar the way safe_load would (ints, bools, dates)
        ""
    ).construct_object(node)


def _mark(node: yaml.Node, document: LocatedDocument) -> SourceLocation:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    source = document.lines[line - 1] if 0 < line <= len(document.lines) else None
    return SourceLocation(line, column, document.file, source)
