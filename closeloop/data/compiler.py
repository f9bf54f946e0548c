"""Expressions to Ibis: audiences and goals evaluated inside the warehouse, as of a time T.

Point in time: only events with ``timestamp <= T`` and accounts created by T exist; relative
times ("within last 14 days") count back from T. Missing values never match a comparison (a NULL
``plan`` is neither ``= "pro"`` nor ``!= "pro"``), so ``not (plan = "pro")`` does match it; use
``has no value`` to ask for missing values explicitly. Literals reach SQL only as escaped
literals produced by Ibis/sqlglot, never by string concatenation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir

from closeloop.data.tables import ACCOUNTS, ColumnType
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import (
    And,
    Attribute,
    AttributeType,
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
    WithinLast,
    walk,
)
from closeloop.definitions.expressions.ast import operands

ALIASES = {"signup_date": "created_at"}
_TYPES = {
    ColumnType.STRING: AttributeType.STRING,
    ColumnType.FLOAT: AttributeType.NUMBER,
    ColumnType.INTEGER: AttributeType.NUMBER,
    ColumnType.TIMESTAMP: AttributeType.TIMESTAMP,
    ColumnType.DATE: AttributeType.DATE,
    ColumnType.BOOLEAN: AttributeType.BOOLEAN,
}
# Stands in for "never" when taking the earliest of several times.
_NEVER = datetime(9999, 1, 1)


def account_attributes() -> dict[str, AttributeType]:
    """The account attributes an expression may use: the accounts table's columns and aliases."""
    attributes = {
        column.name: _TYPES[column.type]
        for column in ACCOUNTS.columns
        if column.type in _TYPES and column.name != "properties"
    }
    for alias, column in ALIASES.items():
        attributes[alias] = attributes[column]
    return attributes


def _column_name(attribute: Attribute) -> str:
    return ALIASES.get(attribute.name, attribute.name)


def _literal(literal: Literal) -> ir.Value:
    value = literal.value
    if literal.kind == LiteralKind.TIMESTAMP:
        return ibis.literal(value, type="timestamp")
    if literal.kind == LiteralKind.DATE:
        return ibis.literal(value, type="date")
    if literal.kind == LiteralKind.NUMBER:
        return ibis.literal(value, type="float64")
    if literal.kind == LiteralKind.BOOLEAN:
        return ibis.literal(value, type="boolean")
    return ibis.literal(value, type="string")


@dataclass
class _Plan:
    """The per-account columns an expression needs, computed once each."""

    as_of: datetime
    counts: dict[EventCount, str] = field(default_factory=dict)
    reached: dict[tuple[str, int], str] = field(default_factory=dict)


def _events(warehouse: Warehouse, as_of: datetime) -> ir.Table:
    events = warehouse.table("events")
    return events.filter(events.timestamp <= ibis.literal(as_of, type="timestamp"))


def _count_table(warehouse: Warehouse, count: EventCount, as_of: datetime, name: str) -> ir.Table:
    events = _events(warehouse, as_of)
    events = events.filter(events.name == ibis.literal(count.event, type="string"))
    if count.window_days is not None:
        since = as_of - timedelta(days=count.window_days)
        events = events.filter(events.timestamp > ibis.literal(since, type="timestamp"))
    return events.group_by("account_id").aggregate(**{name: events.count()})


def _kth_event_table(
    warehouse: Warehouse, event: str, k: int, as_of: datetime, name: str
) -> ir.Table:
    """Per account, the time of its k-th (1-based) ``event`` up to ``as_of``."""
    events = _events(warehouse, as_of)
    events = events.filter(events.name == ibis.literal(event, type="string"))
    ranked = events.mutate(
        _rank=ibis.row_number().over(
            group_by=events.account_id, order_by=[events.timestamp, events.event_id]
        )
    )
    kth = ranked.filter(ranked._rank == k - 1)
    return kth.select("account_id", **{name: kth.timestamp})


def _with_columns(base: ir.Table, extra: list[ir.Table]) -> ir.Table:
    """Left-join per-account tables (keyed by account_id) onto ``base``."""
    for table in extra:
        value_columns = [c for c in table.columns if c != "account_id"]
        joined = base.left_join(table, base.account_id == table.account_id)
        base = joined.select(*[joined[c] for c in base.columns], *value_columns)
    return base


def _accounts(warehouse: Warehouse, as_of: datetime) -> ir.Table:
    accounts = warehouse.table("accounts")
    return accounts.filter(accounts.created_at <= ibis.literal(as_of, type="timestamp"))


def _prepare(
    expression: Expression, warehouse: Warehouse, as_of: datetime, base: ir.Table, dated: bool
) -> tuple[ir.Table, _Plan]:
    plan = _Plan(as_of)
    extra = []
    for node in walk(expression):
        for operand in operands(node):
            if isinstance(operand, EventCount) and operand not in plan.counts:
                name = f"_count_{len(plan.counts)}"
                plan.counts[operand] = name
                extra.append(_count_table(warehouse, operand, as_of, name))
    for node in _datable(expression) if dated else []:
        threshold = _monotone_threshold(node)
        if threshold is not None and threshold not in plan.reached:
            name = f"_reached_{len(plan.reached)}"
            plan.reached[threshold] = name
            extra.append(_kth_event_table(warehouse, *threshold, as_of, name))
    table = _with_columns(base, extra)
    if not plan.counts:
        return table, plan
    return table.mutate(**{name: table[name].fill_null(0) for name in plan.counts.values()}), plan


def _datable(node: Expression) -> list[Expression]:
    """The nodes ``_reached`` can date: those reached through ``and``/``or`` only.

    Under ``not`` a count threshold says when the goal stopped holding, not when it began, so
    no event time is looked up for it.
    """
    if isinstance(node, And | Or):
        return [node, *(d for part in node.parts for d in _datable(part))]
    return [node]


def _monotone_threshold(node: Expression) -> tuple[str, int] | None:
    """``count(event "x") >= k`` (no window): the event and k; the k-th event dates the goal."""
    if not isinstance(node, Comparison):
        return None
    left, op, right = node.left, node.op, node.right
    if isinstance(right, EventCount) and isinstance(left, Literal):
        flipped = {Comparator.LE: Comparator.GE, Comparator.LT: Comparator.GT}
        if op not in flipped:
            return None
        left, op, right = right, flipped[op], left
    if not (isinstance(left, EventCount) and left.window_days is None):
        return None
    if not (isinstance(right, Literal) and right.kind == LiteralKind.NUMBER):
        return None
    assert isinstance(right.value, float)
    if op == Comparator.GE:
        k = int(-(-right.value // 1))  # ceil
    elif op == Comparator.GT:
        k = int(right.value // 1) + 1
    else:
        return None
    return (left.event, k) if k >= 1 else None


def _operand(operand: Operand, table: ir.Table, plan: _Plan) -> ir.Value:
    if isinstance(operand, Attribute):
        return table[_column_name(operand)]
    if isinstance(operand, EventCount):
        return table[plan.counts[operand]]
    return _literal(operand)


def _as_of_for(value: ir.Value, moment: datetime) -> ir.Value:
    """``moment`` in the type of ``value`` (a date column compares with a date)."""
    if value.type().is_date():
        return ibis.literal(moment.date(), type="date")
    return ibis.literal(moment, type="timestamp")


_COMPARATORS: dict[Comparator, Callable[[Any, Any], ir.BooleanValue]] = {
    Comparator.EQ: lambda a, b: a == b,
    Comparator.NE: lambda a, b: a != b,
    Comparator.LT: lambda a, b: a < b,
    Comparator.LE: lambda a, b: a <= b,
    Comparator.GT: lambda a, b: a > b,
    Comparator.GE: lambda a, b: a >= b,
}


def _align(left: ir.Value, right: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Make a date and a timestamp comparable (dates become midnight timestamps)."""
    if left.type().is_date() and right.type().is_timestamp():
        return left.cast("timestamp"), right
    if left.type().is_timestamp() and right.type().is_date():
        return left, right.cast("timestamp")
    return left, right


def _predicate(
    node: Expression, table: ir.Table, plan: _Plan, *, negated: bool = False
) -> ir.BooleanValue:
    """A boolean column where a missing value makes a comparison false.

    Under ``not`` each comparison is made two-valued (NULL -> false) so that ``not`` turns it
    true. Elsewhere NULL already acts as false (a filter drops it; NULL and/or x gives the same
    rows as false and/or x), and leaving it bare lets the database push filters into joins.
    """
    if isinstance(node, And | Or):
        parts = [_predicate(part, table, plan, negated=negated) for part in node.parts]
        result = parts[0]
        for part in parts[1:]:
            result = (result & part) if isinstance(node, And) else (result | part)
        return result
    if isinstance(node, Not):
        return ~_predicate(node.operand, table, plan, negated=True)
    atom = _atom(node, table, plan)
    return atom.fill_null(False) if negated else atom


def _atom(node: Expression, table: ir.Table, plan: _Plan) -> ir.BooleanValue:
    if isinstance(node, Comparison):
        left, right = _align(_operand(node.left, table, plan), _operand(node.right, table, plan))
        return _COMPARATORS[node.op](left, right)
    if isinstance(node, InList):
        value = _operand(node.operand, table, plan)
        options = [_literal(v) for v in node.values]
        return value.notin(options) if node.negated else value.isin(options)
    if isinstance(node, Contains):
        value = _operand(node.operand, table, plan)
        assert isinstance(node.value.value, str)
        return value.contains(ibis.literal(node.value.value, type="string"))
    if isinstance(node, HasValue):
        value = _operand(node.operand, table, plan)
        return value.notnull() if node.present else value.isnull()
    if isinstance(node, WithinLast):
        value = _operand(node.operand, table, plan)
        since = plan.as_of - timedelta(days=node.days)
        start = _as_of_for(value, since)
        end = _as_of_for(value, plan.as_of)
        return (
            (value > start) & (value <= end)
            if not value.type().is_date()
            else ((value >= start) & (value <= end))
        )
    if isinstance(node, MoreThanAgo):
        value = _operand(node.operand, table, plan)
        return value < _as_of_for(value, plan.as_of - timedelta(days=node.days))
    raise TypeError(f"not an expression node: {node!r}")


def matching_accounts(expression: Expression, warehouse: Warehouse, as_of: datetime) -> ir.Table:
    """The accounts (column ``account_id``) for which ``expression`` holds as of ``as_of``."""
    table, plan = _prepare(expression, warehouse, as_of, _accounts(warehouse, as_of), dated=False)
    return table.filter(_predicate(expression, table, plan)).select("account_id").distinct()


def compile_sql(expression: Expression, warehouse: Warehouse, as_of: datetime) -> str:
    """The SQL ``matching_accounts`` runs, in the warehouse's dialect."""
    return str(
        ibis.to_sql(matching_accounts(expression, warehouse, as_of), dialect=warehouse.dialect)
    )


def _reached(node: Expression, table: ir.Table, plan: _Plan) -> ir.TimestampValue:
    """When the (true) ``node`` became true: event time where it can be dated, else ``as_of``."""
    as_of = ibis.literal(plan.as_of, type="timestamp")
    if isinstance(node, And):
        return ibis.greatest(*[_reached(part, table, plan) for part in node.parts])
    if isinstance(node, Or):
        never = ibis.literal(_NEVER, type="timestamp")
        return ibis.least(
            *[
                ibis.ifelse(_predicate(part, table, plan), _reached(part, table, plan), never)
                for part in node.parts
            ]
        )
    threshold = _monotone_threshold(node)
    if threshold is not None:
        return table[plan.reached[threshold]].fill_null(as_of)
    return as_of


def goal_reached_at(
    expression: Expression, warehouse: Warehouse, as_of: datetime, candidates: ir.Table
) -> ir.Table:
    """For candidates (``account_id``, ``entered_at``) whose goal holds as of ``as_of``: when.

    ``reached_at`` is the earliest time the goal held, at event precision where the goal is a
    threshold on an event count (the time of the k-th event), never before ``entered_at``.
    """
    accounts = _accounts(warehouse, as_of)
    base = candidates.select("account_id", "entered_at")
    base = _with_columns(base, [accounts])
    table, plan = _prepare(expression, warehouse, as_of, base, dated=True)
    holds = table.filter(_predicate(expression, table, plan))
    reached = ibis.greatest(_reached(expression, holds, plan), holds.entered_at)
    return holds.select("account_id", reached_at=reached)
