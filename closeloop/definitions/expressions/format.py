"""The canonical text of an expression: parses back to an equal tree."""

from __future__ import annotations

import json
import re
from datetime import datetime

from closeloop.definitions.expressions.ast import (
    And,
    Attribute,
    Comparison,
    Contains,
    EventFilter,
    EventTime,
    Expression,
    HasValue,
    InList,
    Literal,
    LiteralKind,
    Lower,
    Membership,
    MembershipVerb,
    MoreThanAgo,
    Not,
    Operand,
    Or,
    People,
    PeopleCount,
    Quantifier,
    WithinLast,
    WithinNext,
)
from closeloop.definitions.expressions.parser import keywords

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$", re.IGNORECASE)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _literal(literal: Literal) -> str:
    value = literal.value
    if literal.kind == LiteralKind.STRING:
        assert isinstance(value, str)
        return _quote(value)
    if literal.kind == LiteralKind.BOOLEAN:
        return "true" if value else "false"
    if literal.kind == LiteralKind.NUMBER:
        assert isinstance(value, float)
        return _number(value)
    if literal.kind == LiteralKind.TIMESTAMP:
        assert isinstance(value, datetime)
        return value.isoformat(timespec="seconds")
    return str(value)


def _filters(filters: tuple[EventFilter, ...]) -> str:
    if not filters:
        return ""
    conditions = []
    for condition in filters:
        key = condition.key
        if key != "value" and (not _IDENTIFIER.match(key) or key.lower() in keywords()):
            key = _quote(key)
        conditions.append(f"{key} {condition.op} {_literal(condition.value)}")
    return " where " + " and ".join(conditions)


def _operand(operand: Operand) -> str:
    if isinstance(operand, Lower):
        return f"lower({_operand(operand.operand)})"
    if isinstance(operand, Attribute):
        return f"{operand.entity}.{operand.name}" if operand.entity else operand.name
    if isinstance(operand, Literal):
        return _literal(operand)
    if isinstance(operand, EventTime):
        function = "last" if operand.last else "first"
        return f"{function}(event {_quote(operand.event)}{_filters(operand.filters)})"
    if isinstance(operand, PeopleCount):
        where = f" where {_format(operand.condition, 0)}" if operand.condition is not None else ""
        return f"count(people{where})"
    window = (
        f" in last {_number(operand.window_days)} days" if operand.window_days is not None else ""
    )
    return f"count(event {_quote(operand.event)}{_filters(operand.filters)}{window})"


def format_expression(expression: Expression) -> str:
    """One line, minimal parentheses, lower-case keywords."""
    return _format(expression, 0)


_OR, _AND, _NOT = 1, 2, 3


def _format(node: Expression, context: int) -> str:
    if isinstance(node, Or | And):
        precedence = _OR if isinstance(node, Or) else _AND
        word = " or " if isinstance(node, Or) else " and "
        text = word.join(_format(part, precedence + 1) for part in node.parts)
        return f"({text})" if context > precedence else text
    if isinstance(node, Not):
        text = f"not {_format(node.operand, _NOT)}"
        return f"({text})" if context > _NOT else text
    if isinstance(node, People):
        head = "any person" if node.quantifier == Quantifier.ANY else "all people"
        # The condition is always parenthesized: `where` takes one predicate otherwise.
        text = f"{head} where ({_format(node.condition, 0)})"
        return f"({text})" if context > _NOT else text
    if isinstance(node, Comparison):
        return f"{_operand(node.left)} {node.op} {_operand(node.right)}"
    if isinstance(node, InList):
        values = ", ".join(_literal(v) for v in node.values)
        return f"{_operand(node.operand)} {'not in' if node.negated else 'in'} ({values})"
    if isinstance(node, Contains):
        return f"{_operand(node.operand)} contains {_literal(node.value)}"
    if isinstance(node, HasValue):
        return f"{_operand(node.operand)} has {'any' if node.present else 'no'} value"
    if isinstance(node, WithinLast):
        return f"{_operand(node.operand)} within last {_number(node.days)} days"
    if isinstance(node, WithinNext):
        return f"{_operand(node.operand)} within next {_number(node.days)} days"
    if isinstance(node, Membership):
        text = f"{node.verb} {node.kind} {_quote(node.name)}"
        if node.verb != MembershipVerb.IN and node.within_days is not None:
            text += f" within last {_number(node.within_days)} days"
        return text
    assert isinstance(node, MoreThanAgo)
    return f"{_operand(node.operand)} more than {_number(node.days)} days ago"
