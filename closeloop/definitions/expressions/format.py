"""The canonical text of an expression: parses back to an equal tree."""

from __future__ import annotations

import json
from datetime import datetime

from closeloop.definitions.expressions.ast import (
    And,
    Attribute,
    Comparison,
    Contains,
    Expression,
    HasValue,
    InList,
    Literal,
    LiteralKind,
    Not,
    Operand,
    Or,
    WithinLast,
)


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _literal(literal: Literal) -> str:
    value = literal.value
    if literal.kind == LiteralKind.STRING:
        return json.dumps(value, ensure_ascii=False)
    if literal.kind == LiteralKind.BOOLEAN:
        return "true" if value else "false"
    if literal.kind == LiteralKind.NUMBER:
        assert isinstance(value, float)
        return _number(value)
    if literal.kind == LiteralKind.TIMESTAMP:
        assert isinstance(value, datetime)
        return value.isoformat(timespec="seconds")
    return str(value)


def _operand(operand: Operand) -> str:
    if isinstance(operand, Attribute):
        return operand.name
    if isinstance(operand, Literal):
        return _literal(operand)
    window = (
        f" in last {_number(operand.window_days)} days" if operand.window_days is not None else ""
    )
    return f"count(event {json.dumps(operand.event, ensure_ascii=False)}{window})"


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
    return f"{_operand(node.operand)} more than {_number(node.days)} days ago"
