"""The typed syntax tree of an expression. Nodes are frozen; spans do not take part in equality.

Spans are positions in the expression's own text (1-based line and column); the parser's caller
knows where that text sits in its file and shifts them when it reports an error.
"""

from __future__ import annotations

import re
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


class Entity(StrEnum):
    ACCOUNT = "account"
    PERSON = "person"


@dataclass(frozen=True)
class Attribute:
    """An attribute of the account or person being evaluated.

    ``entity`` is what the text said: ``account.plan`` (ACCOUNT), ``person.role`` (PERSON) or a
    bare ``plan`` (None: the unit's own attribute first, then its account's).
    """

    name: str
    entity: Entity | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


class Comparator(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


# Event property names that every backend looks up as a plain key: the warehouses read other
# characters (. : * " ' [ ] $) as JSON-path syntax, so "a.b" would mean a nested key.
PROPERTY_NAME = re.compile(r"^\w[\w \-]*$")


@dataclass(frozen=True)
class EventFilter:
    """``where KEY op VALUE`` inside an event function: ``value`` is the event's value column,
    any other key is a property of the event."""

    key: str
    op: Comparator
    value: Literal
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class EventCount:
    """``count(event "name" [where …] [in last N days])``: the unit's events up to the time."""

    event: str
    window_days: float | None = None
    filters: tuple[EventFilter, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class EventTime:
    """``first(event "name" [where …])`` or ``last(…)``: when it happened; no value if never."""

    event: str
    last: bool = False
    filters: tuple[EventFilter, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class PeopleCount:
    """``count(people [where …])``: how many of the account's people match (a number)."""

    condition: Expression | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Lower:
    """``lower(x)``: text in lower case, for comparing without regard to case.

    Missing stays missing; ``x`` is text (an attribute, a string or another ``lower``).
    """

    operand: Operand
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Operand = Attribute | Literal | EventCount | EventTime | PeopleCount | Lower


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
class WithinNext:
    """``T within next N days``: T in [as_of, as_of + N days) (renewals, target dates)."""

    operand: Operand
    days: float
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class MoreThanAgo:
    """``T more than N days ago``: T < as_of - N days."""

    operand: Operand
    days: float
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


class Quantifier(StrEnum):
    ANY = "any"
    ALL = "all"


@dataclass(frozen=True)
class People:
    """``any person where C`` / ``all people where C``: the account's people, rolled up.

    ``all`` also needs at least one person: an account without people matches neither.
    """

    quantifier: Quantifier
    condition: Expression
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


class MembershipKind(StrEnum):
    COHORT = "cohort"
    STAGE = "stage"
    JOB = "job"


class MembershipVerb(StrEnum):
    IN = "in"  # now a member
    ENTERED = "entered"  # entered at some time up to now (or within the window)
    COMPLETED = "completed"  # reached the goal / every objective
    EXITED = "exited"  # left without completing


@dataclass(frozen=True)
class Membership:
    """``in cohort "X"``, ``in stage "X"``, ``completed job "X" within last 30 days``, …"""

    kind: MembershipKind
    verb: MembershipVerb
    name: str
    within_days: float | None = None
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


Predicate = (
    Comparison | InList | Contains | HasValue | WithinLast | WithinNext | MoreThanAgo | Membership
)
Expression = Predicate | People | And | Or | Not

UNIT_DAYS = {"day": 1.0, "week": 7.0, "hour": 1 / 24}


def children(node: Expression) -> tuple[Expression, ...]:
    """The sub-expressions of ``node``, including those inside ``count(people where …)``."""
    if isinstance(node, And | Or):
        return node.parts
    if isinstance(node, Not):
        return (node.operand,)
    if isinstance(node, People):
        return (node.condition,)
    return tuple(
        operand.condition
        for operand in operands(node)
        if isinstance(operand, PeopleCount) and operand.condition is not None
    )


def operands(node: Expression) -> tuple[Operand, ...]:
    """The operands a predicate compares, looking through functions (``lower(plan)`` is
    ``plan``)."""
    if isinstance(node, Comparison):
        found: tuple[Operand, ...] = (node.left, node.right)
    elif isinstance(node, InList | Contains | HasValue | WithinLast | WithinNext | MoreThanAgo):
        found = (node.operand,)
    else:
        return ()
    return tuple(unwrap(operand) for operand in found)


def unwrap(operand: Operand) -> Operand:
    """The operand a function is applied to (the operand itself when it is no function)."""
    while isinstance(operand, Lower):
        operand = operand.operand
    return operand


def walk(node: Expression) -> list[Expression]:
    """Every node of the tree, parents before children (people conditions included)."""
    nodes = [node]
    for child in children(node):
        nodes.extend(walk(child))
    return nodes


def memberships(expression: Expression) -> set[tuple[MembershipKind, str]]:
    """The cohorts, stages and jobs an expression refers to."""
    return {(node.kind, node.name) for node in walk(expression) if isinstance(node, Membership)}


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
        if isinstance(operand, EventCount | EventTime)
    }
