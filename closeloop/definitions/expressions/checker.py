"""Type checking: every attribute exists and every operator gets the types it needs."""

from __future__ import annotations

from collections.abc import Mapping
from difflib import get_close_matches
from enum import StrEnum

from closeloop.definitions.expressions.ast import (
    Attribute,
    Comparator,
    Comparison,
    Contains,
    EventCount,
    Expression,
    HasValue,
    InList,
    Literal,
    LiteralKind,
    MoreThanAgo,
    Operand,
    Span,
    WithinLast,
    walk,
)
from closeloop.definitions.expressions.parser import locate
from closeloop.errors import ExpressionError


class AttributeType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    TIMESTAMP = "timestamp"
    DATE = "date"
    BOOLEAN = "boolean"


_LITERAL_TYPES = {
    LiteralKind.STRING: AttributeType.STRING,
    LiteralKind.NUMBER: AttributeType.NUMBER,
    LiteralKind.BOOLEAN: AttributeType.BOOLEAN,
    LiteralKind.DATE: AttributeType.DATE,
    LiteralKind.TIMESTAMP: AttributeType.TIMESTAMP,
}
_TIMES = (AttributeType.TIMESTAMP, AttributeType.DATE)
_EQUALITY = (Comparator.EQ, Comparator.NE)
MAX_DAYS = 36_500  # a century: longer spans overflow date arithmetic and mean nothing


class _Checker:
    def __init__(
        self,
        attributes: Mapping[str, AttributeType],
        text: str,
        file: str | None,
        line: int,
        column: int,
    ) -> None:
        self.attributes = attributes
        self.text, self.file, self.line, self.column = text, file, line, column

    def fail(self, message: str, span: Span, hint: str = "") -> ExpressionError:
        location = locate(
            self.text,
            span.line,
            span.column,
            file=self.file,
            first_line=self.line,
            first_column=self.column,
        )
        return ExpressionError(message, location, hint)

    def type_of(self, operand: Operand) -> AttributeType:
        if isinstance(operand, Literal):
            return _LITERAL_TYPES[operand.kind]
        if isinstance(operand, EventCount):
            if operand.window_days is not None and not 0 < operand.window_days <= MAX_DAYS:
                raise self.fail(
                    f"the window of a count must be between 0 and {MAX_DAYS} days", operand.span
                )
            return AttributeType.NUMBER
        found = self.attributes.get(operand.name)
        if found is None:
            same_but_case = [a for a in self.attributes if a.lower() == operand.name.lower()]
            close = same_but_case or get_close_matches(
                operand.name, list(self.attributes), n=3, cutoff=0.6
            )
            hint = (
                f"did you mean {' or '.join(repr(c) for c in close)}?"
                if close
                else f"known attributes: {', '.join(sorted(self.attributes))}"
            )
            raise self.fail(f"unknown attribute {operand.name!r}", operand.span, hint)
        return found

    def check(self, node: Expression) -> None:
        if isinstance(node, Comparison):
            self.comparison(node)
        elif isinstance(node, InList):
            kind = self.type_of(node.operand)
            for value in node.values:
                if _LITERAL_TYPES[value.kind] != kind and not _compatible(kind, value.kind):
                    raise self.fail(
                        f"{_describe(node.operand)} is a {kind}, but the list holds a {value.kind}",
                        value.span,
                        f"list {kind} values",
                    )
        elif isinstance(node, Contains):
            kind = self.type_of(node.operand)
            if kind != AttributeType.STRING or node.value.kind != LiteralKind.STRING:
                raise self.fail(
                    "`contains` needs text on both sides",
                    node.span,
                    f'e.g. name contains "acme" ({_describe(node.operand)} is a {kind})',
                )
        elif isinstance(node, HasValue):
            if not isinstance(node.operand, Attribute):
                raise self.fail("only attributes can have or lack a value", node.span)
            self.type_of(node.operand)
        elif isinstance(node, WithinLast | MoreThanAgo):
            kind = self.type_of(node.operand)
            if kind not in _TIMES:
                phrase = "within last" if isinstance(node, WithinLast) else "more than … ago"
                raise self.fail(
                    f"`{phrase}` needs a date or time, but {_describe(node.operand)} is a {kind}",
                    node.span,
                    "use it on a date attribute such as signup_date",
                )
            if not 0 < node.days <= MAX_DAYS:
                raise self.fail(f"the number of days must be between 0 and {MAX_DAYS}", node.span)

    def comparison(self, node: Comparison) -> None:
        left, right = self.type_of(node.left), self.type_of(node.right)
        if left != right and not (left in _TIMES and right in _TIMES):
            literal = node.right if isinstance(node.right, Literal) else node.left
            raise self.fail(
                f"cannot compare {_describe(node.left)} ({left}) with {_describe(node.right)} "
                f"({right})",
                literal.span,
                f"compare a {left} with a {left} value" + _example(left),
            )
        if left in (AttributeType.BOOLEAN, AttributeType.STRING) and node.op not in _EQUALITY:
            raise self.fail(
                f"`{node.op}` does not apply to {left} values", node.span, "use = or !="
            )


def _compatible(kind: AttributeType, literal: LiteralKind) -> bool:
    return kind in _TIMES and _LITERAL_TYPES[literal] in _TIMES


def _example(kind: AttributeType) -> str:
    return {
        AttributeType.STRING: ' (e.g. "pro")',
        AttributeType.NUMBER: " (e.g. 10 or 20%)",
        AttributeType.TIMESTAMP: " (e.g. 2024-01-31 or 2024-01-31T09:00)",
        AttributeType.DATE: " (e.g. 2024-01-31)",
        AttributeType.BOOLEAN: " (true or false)",
    }[kind]


def _describe(operand: Operand) -> str:
    if isinstance(operand, Attribute):
        return operand.name
    if isinstance(operand, EventCount):
        return f'count(event "{operand.event}")'
    return repr(operand.value) if operand.kind == LiteralKind.STRING else str(operand.value)


def check_expression(
    expression: Expression,
    attributes: Mapping[str, AttributeType],
    *,
    text: str,
    file: str | None = None,
    line: int = 1,
    column: int = 1,
) -> None:
    """Raise :class:`ExpressionError` at the first node that does not type-check."""
    checker = _Checker(attributes, text, file, line, column)
    for node in walk(expression):
        checker.check(node)
