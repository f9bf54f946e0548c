"""Type checking: every name exists and every operator gets the types it needs.

An expression is checked against a :class:`Vocabulary` (the attributes of accounts and people,
and the cohorts, stages and jobs of the project) for a *scope*: the unit it is about. In an
account scope a bare name is an account attribute; in a person scope it is the person's own
attribute if there is one, else the person's account's. ``account.x`` and ``person.x`` say which.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from enum import StrEnum

from closeloop.definitions.expressions.ast import (
    PROPERTY_NAME,
    Attribute,
    Comparator,
    Comparison,
    Contains,
    Entity,
    EventCount,
    EventFilter,
    EventTime,
    Expression,
    HasValue,
    InList,
    Literal,
    LiteralKind,
    Lower,
    Membership,
    MembershipKind,
    MembershipVerb,
    MoreThanAgo,
    Operand,
    People,
    PeopleCount,
    Span,
    WithinLast,
    WithinNext,
    children,
    operands,
)
from closeloop.definitions.expressions.parser import locate
from closeloop.errors import ExpressionError


class AttributeType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    TIMESTAMP = "timestamp"
    DATE = "date"
    BOOLEAN = "boolean"


@dataclass(frozen=True)
class Vocabulary:
    """What expressions may name: attributes by entity, and the project's named definitions.

    ``cohorts`` and ``jobs`` map each name to its target entity; stages are about accounts.
    """

    account: Mapping[str, AttributeType]
    person: Mapping[str, AttributeType] = field(default_factory=dict)
    cohorts: Mapping[str, Entity] = field(default_factory=dict)
    stages: frozenset[str] = frozenset()
    jobs: Mapping[str, Entity] = field(default_factory=dict)

    def attributes(self, entity: Entity) -> Mapping[str, AttributeType]:
        return self.account if entity == Entity.ACCOUNT else self.person

    def resolve(self, attribute: Attribute, scope: Entity) -> tuple[Entity, AttributeType] | None:
        """Whose attribute ``attribute`` is in ``scope``, and its type; None if unknown."""
        if attribute.entity is not None:
            found = self.attributes(attribute.entity).get(attribute.name)
            return (attribute.entity, found) if found is not None else None
        if scope == Entity.PERSON and attribute.name in self.person:
            return Entity.PERSON, self.person[attribute.name]
        if attribute.name in self.account:
            return Entity.ACCOUNT, self.account[attribute.name]
        return None

    def membership_entity(self, node: Membership) -> Entity | None:
        """The entity a cohort/stage/job is about; None when the name is unknown."""
        if node.kind == MembershipKind.COHORT:
            return self.cohorts.get(node.name)
        if node.kind == MembershipKind.JOB:
            return self.jobs.get(node.name)
        return Entity.ACCOUNT if node.name in self.stages else None


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


def mentions_person(node: Expression) -> bool:
    """Whether a predicate names ``person.x`` directly (it is then about one person)."""
    return any(
        isinstance(operand, Attribute) and operand.entity == Entity.PERSON
        for operand in operands(node)
    )


def _suggest(name: str, known: list[str], what: str) -> str:
    same_but_case = [k for k in known if k.lower() == name.lower()]
    close = same_but_case or get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(repr(c) for c in close)}?"
    return f"known {what}: {', '.join(sorted(known))}" if known else f"this project has no {what}"


class _Checker:
    def __init__(
        self, vocabulary: Vocabulary, text: str, file: str | None, line: int, column: int
    ) -> None:
        self.vocabulary = vocabulary
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

    def window(self, days: float | None, span: Span, what: str) -> None:
        if days is not None and not 0 < days <= MAX_DAYS:
            raise self.fail(f"the window of {what} must be between 0 and {MAX_DAYS} days", span)

    def filters(self, filters: tuple[EventFilter, ...]) -> None:
        for condition in filters:
            if not PROPERTY_NAME.match(condition.key):
                raise self.fail(
                    f"the property name {condition.key!r} cannot be looked up on every warehouse",
                    condition.span,
                    "property names use letters, digits, _, - and spaces; rename the property "
                    "when importing",
                )
            kind = _LITERAL_TYPES[condition.value.kind]
            if condition.key == "value" and kind != AttributeType.NUMBER:
                raise self.fail(
                    "an event's value is a number", condition.value.span, "e.g. where value > 100"
                )
            if condition.op not in _EQUALITY and kind != AttributeType.NUMBER:
                raise self.fail(
                    f"`{condition.op}` compares numbers; a property compared with text takes "
                    "= or !=",
                    condition.span,
                )

    def type_of(self, operand: Operand, scope: Entity) -> AttributeType:
        if isinstance(operand, Literal):
            return _LITERAL_TYPES[operand.kind]
        if isinstance(operand, Lower):
            inner = self.type_of(operand.operand, scope)
            if inner != AttributeType.STRING:
                raise self.fail(
                    f"lower(…) takes text, but {_describe(operand.operand)} is a {inner}",
                    operand.span,
                    'use it on a text attribute, e.g. lower(segment) = "enterprise"',
                )
            return AttributeType.STRING
        if isinstance(operand, EventCount):
            self.window(operand.window_days, operand.span, "a count")
            self.filters(operand.filters)
            return AttributeType.NUMBER
        if isinstance(operand, EventTime):
            self.filters(operand.filters)
            return AttributeType.TIMESTAMP
        if isinstance(operand, PeopleCount):
            if scope == Entity.PERSON:
                raise self.fail(
                    "`count(people …)` counts an account's people; here the subject is already "
                    "one person",
                    operand.span,
                )
            if operand.condition is not None:
                self.check(operand.condition, Entity.PERSON)
            return AttributeType.NUMBER
        resolved = self.vocabulary.resolve(operand, scope)
        if resolved is None:
            entity = operand.entity or scope
            known = list(self.vocabulary.attributes(entity))
            if operand.entity is None and scope == Entity.PERSON:
                known += [name for name in self.vocabulary.account if name not in known]
            label = f"{operand.entity}." if operand.entity else ""
            raise self.fail(
                f"unknown attribute '{label}{operand.name}'",
                operand.span,
                _suggest(operand.name, known, f"{entity} attributes"),
            )
        return resolved[1]

    def check(self, node: Expression, scope: Entity) -> None:
        if isinstance(node, People):
            if scope == Entity.PERSON:
                raise self.fail(
                    f"`{node.quantifier} …` ranges over an account's people; here the subject is "
                    "already one person",
                    node.span,
                )
            self.check(node.condition, Entity.PERSON)
            return
        if isinstance(node, Membership):
            self.membership(node, scope)
            return
        if scope == Entity.ACCOUNT and mentions_person(node):
            # `person.role = "admin"` in an account expression: true when any person matches.
            scope = Entity.PERSON
        if isinstance(node, Comparison):
            self.comparison(node, scope)
        elif isinstance(node, InList):
            kind = self.type_of(node.operand, scope)
            for value in node.values:
                if _LITERAL_TYPES[value.kind] != kind and not _compatible(kind, value.kind):
                    raise self.fail(
                        f"{_describe(node.operand)} is a {kind}, but the list holds a {value.kind}",
                        value.span,
                        f"list {kind} values",
                    )
                self.lowered(node.operand, value)
        elif isinstance(node, Contains):
            kind = self.type_of(node.operand, scope)
            if kind != AttributeType.STRING or node.value.kind != LiteralKind.STRING:
                raise self.fail(
                    "`contains` needs text on both sides",
                    node.span,
                    f'e.g. name contains "acme" ({_describe(node.operand)} is a {kind})',
                )
            self.lowered(node.operand, node.value)
        elif isinstance(node, HasValue):
            if not isinstance(node.operand, Attribute | EventTime):
                raise self.fail(
                    "only attributes and first(…)/last(…) can have or lack a value", node.span
                )
            self.type_of(node.operand, scope)
        elif isinstance(node, WithinLast | WithinNext | MoreThanAgo):
            kind = self.type_of(node.operand, scope)
            if kind not in _TIMES:
                phrase = {
                    WithinLast: "within last",
                    WithinNext: "within next",
                    MoreThanAgo: "more than … ago",
                }[type(node)]
                raise self.fail(
                    f"`{phrase}` needs a date or time, but {_describe(node.operand)} is a {kind}",
                    node.span,
                    "use it on a date attribute such as signup_date",
                )
            if not 0 < node.days <= MAX_DAYS:
                raise self.fail(f"the number of days must be between 0 and {MAX_DAYS}", node.span)
        else:
            for child in children(node):
                self.check(child, scope)

    def membership(self, node: Membership, scope: Entity) -> None:
        vocabulary = self.vocabulary
        known: list[str] = {
            MembershipKind.COHORT: list(vocabulary.cohorts),
            MembershipKind.STAGE: sorted(vocabulary.stages),
            MembershipKind.JOB: list(vocabulary.jobs),
        }[node.kind]
        entity = vocabulary.membership_entity(node)
        if entity is None:
            raise self.fail(
                f"unknown {node.kind} {node.name!r}",
                node.span,
                _suggest(node.name, known, f"{node.kind}s"),
            )
        if node.kind == MembershipKind.COHORT and node.verb != MembershipVerb.IN:
            raise self.fail(
                f"a cohort is a filter with no history: `{node.verb} cohort` means nothing",
                node.span,
                f'use `in cohort "{node.name}"`',
            )
        self.window(node.within_days, node.span, "a membership")
        if entity == Entity.PERSON and scope == Entity.ACCOUNT:
            raise self.fail(
                f"{node.kind} {node.name!r} is about people, and this expression about accounts",
                node.span,
                f"say which people: any person where ({node.verb} {node.kind} {node.name!r})"
                if node.verb == MembershipVerb.IN
                else "wrap it in `any person where (…)`",
            )

    def comparison(self, node: Comparison, scope: Entity) -> None:
        left, right = self.type_of(node.left, scope), self.type_of(node.right, scope)
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
        self.lowered(node.left, node.right)
        self.lowered(node.right, node.left)

    def lowered(self, operand: Operand, other: Operand) -> None:
        """``lower(x) = "Pro"`` can never hold: the text compared with lower(…) has capitals."""
        if not (isinstance(operand, Lower) and isinstance(other, Literal)):
            return
        text = other.value
        if isinstance(text, str) and text != text.lower():
            raise self.fail(
                f"{_describe(operand)} has no capitals, so it never matches {text!r}",
                other.span,
                f"write it in lower case: {json.dumps(text.lower(), ensure_ascii=False)}",
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
    if isinstance(operand, Lower):
        return f"lower({_describe(operand.operand)})"
    if isinstance(operand, Attribute):
        return f"{operand.entity}.{operand.name}" if operand.entity else operand.name
    if isinstance(operand, EventCount):
        return f'count(event "{operand.event}")'
    if isinstance(operand, EventTime):
        return f'{"last" if operand.last else "first"}(event "{operand.event}")'
    if isinstance(operand, PeopleCount):
        return "count(people)"
    return repr(operand.value) if operand.kind == LiteralKind.STRING else str(operand.value)


def check_expression(
    expression: Expression,
    vocabulary: Vocabulary | Mapping[str, AttributeType],
    *,
    text: str,
    file: str | None = None,
    line: int = 1,
    column: int = 1,
    scope: Entity = Entity.ACCOUNT,
) -> None:
    """Raise :class:`ExpressionError` at the first node that does not type-check.

    ``vocabulary`` may be a plain mapping of account attributes (no people, cohorts, stages or
    jobs).
    """
    if not isinstance(vocabulary, Vocabulary):
        vocabulary = Vocabulary(account=vocabulary)
    _Checker(vocabulary, text, file, line, column).check(expression, scope)
