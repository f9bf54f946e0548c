"""The typed syntax tree of an expression. Nodes are frozen; spans do not take part in equality.

Spans are positions in the expression's own text (1-based line and column); the parser's caller
knows where that text sits in its file and shifts them when it reports an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


@dataclass(frozen=True)
class Span:
    line: int
    column: int
    end_line: int
    end_column: int


NO_SPAN = Span(1, 1, 1, 1)


class LiteralKind(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"


LiteralValue = str | float | bool | date | datetime


@dataclass(frozen=True)
class Literal:
    value: LiteralValue
    kind: LiteralKind
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Attribute:
    """An account attribute; ``account.plan`` and ``plan`` name the same one."""

    name: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class EventCount:
    """``count(event "name" [in last N days])``: events of the account up to the evaluation time."""

    event: str
    window_days: float | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Operand = Attribute | Literal | EventCount


class Comparator(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True)
class Comparison:
    left: Operand
    op: Comparator
    right: Operand
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class InList:
    operand: Operand
    values: tuple[Literal, ...]
    negated: bool = False
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Contains:
    operand: Operand
    value: Literal
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class HasValue:
    """``has any value`` (``present``) or ``has no value``."""

    operand: Operand
    present: bool
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class WithinLast:
    """``T within last N days``: T in (as_of - N days, as_of]."""

    operand: Operand
    days: float
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class MoreThanAgo:
    """``T more than N days ago``: T < as_of - N days."""

    operand: Operand
    days: float
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class And:
    parts: tuple[Expression, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Or:
    parts: tuple[Expression, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Not:
    operand: Expression
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Predicate = Comparison | InList | Contains | HasValue | WithinLast | MoreThanAgo
Expression = Predicate | And | Or | Not

UNIT_DAYS = {"day": 1.0, "week": 7.0, "hour": 1 / 24}


def children(node: Expression) -> tuple[Expression, ...]:
    if isinstance(node, And | Or):
        return node.parts
    if isinstance(node, Not):
        return (node.operand,)
    return ()


def operands(node: Expression) -> tuple[Operand, ...]:
    if isinstance(node, Comparison):
        return (node.left, node.right)
    if isinstance(node, InList | Contains | HasValue | WithinLast | MoreThanAgo):
        return (node.operand,)
    return ()


def walk(node: Expression) -> list[Expression]:
    """Every node of the tree, parents before children."""
    nodes = [node]
    for child in children(node):
        nodes.extend(walk(child))
    return nodes


def referenced_attributes(expression: Expression) -> set[str]:
    return {
        operand.name
        for node in walk(expression)
        for operand in operands(node)
        if isinstance(operand, Attribute)
    }


def referenced_events(expression: Expression) -> set[str]:
    return {
        operand.event
        for node in walk(expression)
        for operand in operands(node)
        if isinstance(operand, EventCount)
    }
