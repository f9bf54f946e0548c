"""Text to syntax tree, with errors that point at the offending character."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import lark
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from closeloop.definitions.expressions.ast import (
    UNIT_DAYS,
    And,
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
    Not,
    Or,
    People,
    PeopleCount,
    Quantifier,
    Span,
    WithinLast,
    WithinNext,
)
from closeloop.errors import ExpressionError, SourceLocation

# What the parser expected, in words a person would type.
_TOKEN_WORDS = {
    "NAME": "an attribute name",
    "STRING": 'a quoted string like "pro"',
    "NUMBER": "a number",
    "PERCENT": "a percentage like 20%",
    "DATE": "a date like 2024-01-31",
    "TIMESTAMP": "a date-time like 2024-01-31T09:00",
    "COMPARATOR": "a comparison (=, !=, <, <=, >, >=)",
    "_LPAR": '"("',
    "_RPAR": '")"',
    "_COMMA": '","',
    "_DOT": '"."',
    "DAY": '"days"',
    "WEEK": '"weeks"',
    "HOUR": '"hours"',
    "_AND": '"and"',
    "_OR": '"or"',
    "_NOT": '"not"',
    "_IN": '"in"',
    "_CONTAINS": '"contains"',
    "_HAS": '"has"',
    "_ANY": '"any"',
    "_NO": '"no"',
    "_VALUE": '"value"',
    "_WITHIN": '"within"',
    "_LAST": '"last"',
    "_MORE": '"more"',
    "_THAN": '"than"',
    "_AGO": '"ago"',
    "_COUNT": '"count"',
    "_EVENT": '"event"',
    "_NEXT": '"next"',
    "_WHERE": '"where"',
    "_FIRST": '"first"',
    "_PERSON": '"person"',
    "_PEOPLE": '"people"',
    "_ALL": '"all"',
    "_ACCOUNT": '"account"',
    "_COHORT": '"cohort"',
    "_STAGE": '"stage"',
    "_JOB": '"job"',
    "_ENTERED": '"entered"',
    "_COMPLETED": '"completed"',
    "_EXITED": '"exited"',
    "TRUE": '"true"',
    "FALSE": '"false"',
    "$END": "the end of the expression",
}


_UNITS = ("DAY", "WEEK", "HOUR")
# Functions are names followed by "(" (not reserved words: an attribute may be called `lower`).
FUNCTIONS = ("lower",)


@cache
def _parser() -> Lark:
    grammar = (resources.files("closeloop.definitions.expressions") / "grammar.lark").read_text(
        encoding="utf-8"
    )
    return Lark(
        grammar,
        parser="lalr",
        lexer="basic",
        propagate_positions=True,
        maybe_placeholders=False,
        cache=_cache_file(),
    )


def _cache_file() -> str | bool:
    """Where Lark keeps the analysed grammar between processes: building the LALR tables is most
    of the time a short command (``closeloop validate``) spends parsing. The user's own cache
    folder, never a shared temporary one (the file is a pickle); Lark checks that the file was
    made from this grammar, these options and its own version, else rebuilds and rewrites it.
    No cache when the folder cannot be made."""
    try:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "closeloop"
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # no home folder, or one that cannot be written
        return False
    return str(folder / f"expression-grammar-lark-{lark.__version__}.pickle")


@cache
def keywords() -> frozenset[str]:
    """The reserved words of the grammar (no attribute or unquoted property may use one)."""
    words: set[str] = set()
    for terminal in _parser().terminals:
        pattern = terminal.pattern
        if pattern.type == "str" and pattern.value.isalpha():
            words.add(pattern.value.lower())
        elif terminal.name in _UNITS:
            words.update(("day", "days", "week", "weeks", "hour", "hours"))
    return frozenset(words)


def _span(meta: Any) -> Span:
    if getattr(meta, "empty", True):
        return Span(1, 1, 1, 1)
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _token_span(token: Token) -> Span:
    return Span(token.line or 1, token.column or 1, token.end_line or 1, token.end_column or 1)


# Larger values are not meaningful anywhere in the language and would overflow date arithmetic.
MAX_MAGNITUDE = 1e15


def _number(text: str) -> float:
    value = float(text)
    if not abs(value) <= MAX_MAGNITUDE:
        raise ValueError(f"numbers are limited to ±{MAX_MAGNITUDE:.0e}")
    return value


def _text(token: str) -> str:
    value = json.loads(token)
    assert isinstance(value, str)
    for character in value:
        if character == "\x00" or "\ud800" <= character <= "\udfff":
            raise ValueError(f"the character U+{ord(character):04X} cannot be stored as text")
    return value


_LITERAL_HINT = 'check the value; strings escape \\ and " with a backslash'


class _BadLiteralError(ValueError):
    def __init__(self, message: str, span: Span, hint: str = _LITERAL_HINT) -> None:
        super().__init__(message)
        self.span = span
        self.hint = hint


def _convert(token: Token, kind: str, convert: Any) -> Any:
    try:
        return convert(str(token))
    except ValueError as error:
        raise _BadLiteralError(f"invalid {kind} {token!s}: {error}", _token_span(token)) from None


@v_args(meta=True)
class _ToAst(Transformer[Token, Expression]):
    def or_expr(self, meta: Any, parts: list[Expression]) -> Expression:
        return Or(tuple(parts), _span(meta))

    def and_expr(self, meta: Any, parts: list[Expression]) -> Expression:
        return And(tuple(parts), _span(meta))

    def negation(self, meta: Any, items: list[Expression]) -> Expression:
        return Not(items[0], _span(meta))

    def comparison(self, meta: Any, items: list[Any]) -> Expression:
        left, op, right = items
        return Comparison(left, Comparator(str(op)), right, _span(meta))

    def in_list(self, meta: Any, items: list[Any]) -> Expression:
        return InList(items[0], tuple(items[1]), False, _span(meta))

    def not_in_list(self, meta: Any, items: list[Any]) -> Expression:
        return InList(items[0], tuple(items[1]), True, _span(meta))

    def literal_list(self, meta: Any, items: list[Literal]) -> list[Literal]:
        return items

    def contains(self, meta: Any, items: list[Any]) -> Expression:
        return Contains(items[0], items[1], _span(meta))

    def has_value(self, meta: Any, items: list[Any]) -> Expression:
        return HasValue(items[0], True, _span(meta))

    def has_no_value(self, meta: Any, items: list[Any]) -> Expression:
        return HasValue(items[0], False, _span(meta))

    def within_last(self, meta: Any, items: list[Any]) -> Expression:
        return WithinLast(items[0], items[1] * items[2], _span(meta))

    def within_next(self, meta: Any, items: list[Any]) -> Expression:
        return WithinNext(items[0], items[1] * items[2], _span(meta))

    def any_person(self, meta: Any, items: list[Expression]) -> Expression:
        return People(Quantifier.ANY, items[0], _span(meta))

    def all_people(self, meta: Any, items: list[Expression]) -> Expression:
        return People(Quantifier.ALL, items[0], _span(meta))

    def member_of(self, meta: Any, items: list[Any]) -> Expression:
        kind, name = items
        return Membership(
            kind, MembershipVerb.IN, _convert(name, "string", _text), None, _span(meta)
        )

    def member_history(self, meta: Any, items: list[Any]) -> Expression:
        verb, kind, name, *window = items
        return Membership(
            kind, verb, _convert(name, "string", _text), window[0] if window else None, _span(meta)
        )

    def recent(self, meta: Any, items: list[float]) -> float:
        return items[0] * items[1]

    def cohort_kind(self, meta: Any, items: list[Any]) -> MembershipKind:
        return MembershipKind.COHORT

    def stage_kind(self, meta: Any, items: list[Any]) -> MembershipKind:
        return MembershipKind.STAGE

    def job_kind(self, meta: Any, items: list[Any]) -> MembershipKind:
        return MembershipKind.JOB

    def entered_verb(self, meta: Any, items: list[Any]) -> MembershipVerb:
        return MembershipVerb.ENTERED

    def completed_verb(self, meta: Any, items: list[Any]) -> MembershipVerb:
        return MembershipVerb.COMPLETED

    def exited_verb(self, meta: Any, items: list[Any]) -> MembershipVerb:
        return MembershipVerb.EXITED

    def more_than_ago(self, meta: Any, items: list[Any]) -> Expression:
        return MoreThanAgo(items[0], items[1] * items[2], _span(meta))

    def attribute(self, meta: Any, items: list[Token]) -> Attribute:
        return Attribute(str(items[0]), None, _span(meta))

    def account_attribute(self, meta: Any, items: list[Token]) -> Attribute:
        return Attribute(str(items[0]), Entity.ACCOUNT, _span(meta))

    def person_attribute(self, meta: Any, items: list[Token]) -> Attribute:
        return Attribute(str(items[0]), Entity.PERSON, _span(meta))

    def event_count(self, meta: Any, items: list[Any]) -> EventCount:
        name, *rest = items
        filters: tuple[EventFilter, ...] = ()
        window = None
        for item in rest:
            if isinstance(item, tuple):
                filters = item
            else:
                window = item
        return EventCount(_convert(name, "string", _text), window, filters, _span(meta))

    def first_event(self, meta: Any, items: list[Any]) -> EventTime:
        filters = items[1] if len(items) > 1 else ()
        return EventTime(_convert(items[0], "string", _text), False, filters, _span(meta))

    def last_event(self, meta: Any, items: list[Any]) -> EventTime:
        filters = items[1] if len(items) > 1 else ()
        return EventTime(_convert(items[0], "string", _text), True, filters, _span(meta))

    def people_count(self, meta: Any, items: list[Expression]) -> PeopleCount:
        return PeopleCount(items[0] if items else None, _span(meta))

    def function_call(self, meta: Any, items: list[Any]) -> Lower:
        name, operand = items
        if str(name).lower() not in FUNCTIONS:
            raise _BadLiteralError(
                f"unknown function {str(name)!r}",
                _token_span(name),
                f"functions: {', '.join(f'{f}(…)' for f in FUNCTIONS)}, e.g. "
                'lower(segment) = "enterprise" compares without regard to case',
            )
        return Lower(operand, _span(meta))

    def event_filter(self, meta: Any, items: list[EventFilter]) -> tuple[EventFilter, ...]:
        return tuple(items)

    def condition(self, meta: Any, items: list[Any]) -> EventFilter:
        key, op, value = items
        return EventFilter(key, Comparator(str(op)), value, _span(meta))

    def property_name(self, meta: Any, items: list[Token]) -> str:
        return str(items[0])

    def property_string(self, meta: Any, items: list[Token]) -> str:
        return str(_convert(items[0], "string", _text))

    def property_value(self, meta: Any, items: list[Token]) -> str:
        return "value"

    def window(self, meta: Any, items: list[float]) -> float:
        return items[0] * items[1]

    def amount(self, meta: Any, items: list[Token]) -> float:
        return float(_convert(items[0], "number", _number))

    def unit(self, meta: Any, items: list[Token]) -> float:
        return UNIT_DAYS[str(items[0]).lower().rstrip("s")]

    def string(self, meta: Any, items: list[Token]) -> Literal:
        value = _convert(items[0], "string", _text)
        return Literal(value, LiteralKind.STRING, _token_span(items[0]))

    def number(self, meta: Any, items: list[Token]) -> Literal:
        value = _convert(items[0], "number", _number)
        return Literal(value, LiteralKind.NUMBER, _token_span(items[0]))

    def percent(self, meta: Any, items: list[Token]) -> Literal:
        value = _convert(items[0], "percentage", lambda s: _number(s[:-1]) / 100)
        return Literal(value, LiteralKind.NUMBER, _token_span(items[0]))

    def date(self, meta: Any, items: list[Token]) -> Literal:
        value = _convert(items[0], "date", date.fromisoformat)
        return Literal(value, LiteralKind.DATE, _token_span(items[0]))

    def timestamp(self, meta: Any, items: list[Token]) -> Literal:
        value = _convert(
            items[0], "date-time", lambda s: datetime.fromisoformat(s.replace(" ", "T").rstrip("Z"))
        )
        return Literal(value, LiteralKind.TIMESTAMP, _token_span(items[0]))

    def true(self, meta: Any, items: list[Token]) -> Literal:
        return Literal(True, LiteralKind.BOOLEAN, _token_span(items[0]))

    def false(self, meta: Any, items: list[Token]) -> Literal:
        return Literal(False, LiteralKind.BOOLEAN, _token_span(items[0]))


def locate(
    text: str, line: int, column: int, *, file: str | None, first_line: int, first_column: int
) -> SourceLocation:
    """A position in ``text`` as a position in the file the text came from."""
    lines = text.splitlines() or [""]
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    file_column = column + (first_column - 1 if line == 1 else 0)
    if line == 1:
        source = " " * (first_column - 1) + source
    return SourceLocation(first_line + line - 1, file_column, file, source)


def _expected_words(expected: set[str]) -> str:
    words = sorted({_TOKEN_WORDS.get(name, name.lower().strip("_")) for name in expected})
    return ", ".join(words)


def parse_expression(
    text: str, *, file: str | None = None, line: int = 1, column: int = 1
) -> Expression:
    """Parse ``text``; ``line``/``column`` say where it starts in ``file``, for error positions."""
    try:
        tree = _parser().parse(text)
        result: Expression = _ToAst().transform(tree)
    except UnexpectedInput as error:
        raise _syntax_error(error, text, file, line, column) from None
    except VisitError as error:  # a literal shaped right but invalid, e.g. 2024-02-30
        cause = error.orig_exc
        span = cause.span if isinstance(cause, _BadLiteralError) else Span(1, 1, 1, 1)
        raise ExpressionError(
            str(cause),
            locate(text, span.line, span.column, file=file, first_line=line, first_column=column),
            cause.hint if isinstance(cause, _BadLiteralError) else _LITERAL_HINT,
        ) from None
    except RecursionError:
        raise ExpressionError(
            "the expression is nested too deeply",
            locate(text, 1, 1, file=file, first_line=line, first_column=column),
            "split it into simpler conditions",
        ) from None
    return result


def _syntax_error(
    error: UnexpectedInput, text: str, file: str | None, line: int, column: int
) -> ExpressionError:
    at_line = getattr(error, "line", -1)
    at_column = getattr(error, "column", -1)
    at_end = isinstance(error, UnexpectedEOF) or (
        isinstance(error, UnexpectedToken) and error.token.type == "$END"
    )
    if at_end or not isinstance(at_line, int) or at_line < 1:
        # Point just past the last character that is there.
        lines = text.rstrip().split("\n")
        at_line, at_column = len(lines), len(lines[-1]) + 1
    location = locate(text, at_line, at_column, file=file, first_line=line, first_column=column)
    if isinstance(error, UnexpectedCharacters):
        position = error.pos_in_stream or 0
        character = text[position] if position < len(text) else ""
        message = f"unexpected character {character!r}"
        hint = f"expected {_expected_words(set(error.allowed))}" if error.allowed else ""
        if character == "'":
            hint = 'strings use double quotes: "like this"'
        return ExpressionError(message, location, hint)
    if isinstance(error, UnexpectedEOF):
        return ExpressionError(
            "the expression ends too early",
            location,
            f"expected {_expected_words({str(name) for name in error.expected})}",
        )
    assert isinstance(error, UnexpectedToken)
    token = error.token
    if token.type == "$END":
        message = "the expression ends too early"
    else:
        message = f"unexpected {str(token)!r}"
        if (token.type.startswith("_") and token.type[1:].isalpha()) or token.type in _UNITS:
            message += " (a reserved word)"
    return ExpressionError(message, location, f"expected {_expected_words(set(error.expected))}")
