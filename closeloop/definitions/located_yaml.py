"""YAML loading that remembers where every value came from, so errors can say file:line:column."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from closeloop.definitions.text_encoding import guess_encoding, not_utf8_message
from closeloop.errors import DefinitionError, SourceLocation

PathKey = tuple[str | int, ...]
MAX_VALUES = 100_000
"""Values a file may hold once its aliases are expanded (closeloop files hold hundreds)."""
MAX_DEPTH = 64
"""Levels of nesting a file may have (closeloop files have fewer than ten)."""


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
    """Parse one YAML file; every problem (syntax, encoding, an alias bomb, nesting too deep, a
    value YAML cannot build) becomes a located :class:`DefinitionError`, never a traceback."""
    text = _decoded(path)
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
    except yaml.reader.ReaderError as error:
        # Characters YAML refuses (NUL and other control characters), by position in the text.
        line, column = _line_column(text, error.position)
        source = lines[line - 1] if 0 < line <= len(lines) else None
        raise DefinitionError(
            f"character {error.character!r} is not allowed in YAML ({error.reason})",
            SourceLocation(line, column, str(path), source),
            hint="remove it, or re-save the file as plain UTF-8 text",
        ) from None
    except RecursionError:
        raise DefinitionError(
            f"nested more than {MAX_DEPTH} levels deep; closeloop files need a few levels",
            SourceLocation(1, 1, str(path), lines[0] if lines else None),
        ) from None
    document = LocatedDocument(data=None, file=str(path), lines=lines)
    if node is None:
        document.data = {}
        return document
    try:
        document.data = _Converter(document).convert(node, (), 0)
    except RecursionError:
        raise DefinitionError(
            f"nested more than {MAX_DEPTH} levels deep; closeloop files need a few levels",
            _mark(node, document),
        ) from None
    return document


def _decoded(path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are a located error naming the likely
    encoding (a byte-order mark is allowed and dropped)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        line_start = before.rfind(b"\n") + 1
        column = len(before[line_start:].decode("utf-8", "replace")) + 1
        guess = guess_encoding(data[error.start : error.start + 64])
        line_end = data.find(b"\n", error.start)
        source = data[line_start : line_end if line_end >= 0 else len(data)]
        raise DefinitionError(
            not_utf8_message("utf-8", guess, repair="re-save the file as UTF-8"),
            SourceLocation(line, column, str(path), source.decode(guess, "replace")),
            hint=f"e.g. iconv -f {guess} -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}",
        ) from None


def _line_column(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


class _Converter:
    """Nodes into Python values with positions. Anchors and aliases are allowed, but bounded: a
    value may not contain itself, and aliases may not expand the file past ``MAX_VALUES`` values
    (a few lines of anchors can otherwise stand for billions, and ``validate`` would hang)."""

    def __init__(self, document: LocatedDocument) -> None:
        self.document = document
        self.values = 0
        self.active: set[int] = set()  # nodes being converted: the path from the root

    def convert(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        document = self.document
        self.values += 1
        if self.values > MAX_VALUES:
            raise DefinitionError(
                f"this file holds more than {MAX_VALUES:,} values once its aliases are expanded "
                "(an alias bomb?)",
                _mark(node, document),
                hint="use fewer nested anchors and aliases (*name)",
            )
        if depth > MAX_DEPTH:
            raise DefinitionError(
                f"nested more than {MAX_DEPTH} levels deep; closeloop files need a few levels",
                _mark(node, document),
            )
        document.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in self.active:
                raise DefinitionError(
                    "a recursive alias: this anchored value contains an alias to itself",
                    _mark(node, document),
                    hint="an alias (*name) may only refer to a value that does not contain it",
                )
            self.active.add(id(node))
            try:
                return self._collection(node, path, depth)
            finally:
                self.active.discard(id(node))
        try:
            # Resolve the scalar the way safe_load would (ints, bools, dates).
            return yaml.SafeLoader("").construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError) as error:
            problem = getattr(error, "problem", None) or str(error)
            raise DefinitionError(
                f"YAML cannot read this value: {problem}", _mark(node, document)
            ) from None

    def _collection(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        document = self.document
        if isinstance(node, yaml.SequenceNode):
            return [
                self.convert(item, (*path, index), depth + 1)
                for index, item in enumerate(node.value)
            ]
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
            document.key_positions.setdefault(
                child, (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            )
            result[key] = self.convert(value_node, child, depth + 1)
        return result


def _mark(node: yaml.Node, document: LocatedDocument) -> SourceLocation:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    source = document.lines[line - 1] if 0 < line <= len(document.lines) else None
    return SourceLocation(line, column, document.file, source)
