"""The expression language of audiences, goals and filters (docs/expressions.md).

``parse_expression`` turns text into a typed tree with source spans, ``check_expression`` checks
it against the attributes the data has, ``format_expression`` prints it back. Compiling a tree to
queries is the data layer's job (``closeloop.data.compiler``).
"""

from closeloop.definitions.expressions.ast import (
    And,
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
    Not,
    Operand,
    Or,
    Span,
    WithinLast,
    referenced_attributes,
    referenced_events,
    walk,
)
from closeloop.definitions.expressions.checker import AttributeType, check_expression
from closeloop.definitions.expressions.format import format_expression
from closeloop.definitions.expressions.parser import parse_expression

__all__ = [
    "And",
    "Attribute",
    "AttributeType",
    "Comparator",
    "Comparison",
    "Contains",
    "EventCount",
    "Expression",
    "HasValue",
    "InList",
    "Literal",
    "LiteralKind",
    "MoreThanAgo",
    "Not",
    "Operand",
    "Or",
    "Span",
    "WithinLast",
    "check_expression",
    "format_expression",
    "parse_expression",
    "referenced_attributes",
    "referenced_events",
    "walk",
]
