"""`lower(x)`, the case-insensitive comparison: how it parses, prints back and type-checks."""

from __future__ import annotations

import pytest

from closeloop.data.compiler import account_attributes, person_attributes
from closeloop.definitions.expressions import (
    And,
    Attribute,
    AttributeType,
    Comparator,
    Comparison,
    Contains,
    Entity,
    InList,
    Literal,
    LiteralKind,
    Lower,
    Vocabulary,
    check_expression,
    format_expression,
    mentions_person,
    parse_expression,
    referenced_attributes,
)
from closeloop.errors import ExpressionError

VOCABULARY = Vocabulary(account=account_attributes(), person=person_attributes())


def _check(text: str, scope: Entity = Entity.ACCOUNT) -> None:
    check_expression(parse_expression(text), VOCABULARY, text=text, scope=scope)


def _error(text: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        _check(text)
    return caught.value


def test_lower_wraps_an_operand() -> None:
    assert parse_expression('lower(segment) = "enterprise"') == Comparison(
        Lower(Attribute("segment")), Comparator.EQ, Literal("enterprise", LiteralKind.STRING)
    )
    assert parse_expression('LOWER(account.plan) in ("pro", "starter")') == InList(
        Lower(Attribute("plan", Entity.ACCOUNT)),
        (Literal("pro", LiteralKind.STRING), Literal("starter", LiteralKind.STRING)),
    )
    assert parse_expression('lower(lower(name)) contains "labs"') == Contains(
        Lower(Lower(Attribute("name"))), Literal("labs", LiteralKind.STRING)
    )


def test_lower_is_no_reserved_word() -> None:
    # An attribute may still be called `lower`; only `lower(` is the function.
    parsed = parse_expression('lower = "x" and lower(lower) = "y"')
    assert parsed == And(
        (
            Comparison(Attribute("lower"), Comparator.EQ, Literal("x", LiteralKind.STRING)),
            Comparison(Lower(Attribute("lower")), Comparator.EQ, Literal("y", LiteralKind.STRING)),
        )
    )
    check_expression(
        parsed, {"lower": AttributeType.STRING}, text='lower = "x" and lower(lower) = "y"'
    )


def test_the_span_covers_the_call() -> None:
    comparison = parse_expression('  lower(segment) = "x"')
    assert isinstance(comparison, Comparison) and isinstance(comparison.left, Lower)
    assert (comparison.left.span.column, comparison.left.span.end_column) == (3, 17)


@pytest.mark.parametrize(
    "text",
    [
        'lower(segment) = "enterprise"',
        'lower(person.role) != "admin"',
        'lower(name) contains "labs"',
        'lower(region) not in ("na", "emea")',
        'any person where (lower(role) = "admin")',
    ],
)
def test_formatting_round_trips(text: str) -> None:
    assert format_expression(parse_expression(text)) == text
    assert parse_expression(format_expression(parse_expression(text))) == parse_expression(text)


def test_an_unknown_function_is_located_with_the_one_that_exists() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression('segment = "x" and upper(segment) = "X"', file="jobs.yaml", line=4)
    error = caught.value
    assert error.message == "unknown function 'upper'"
    assert (error.location.file, error.location.line, error.location.column) == ("jobs.yaml", 4, 19)
    assert error.hint.startswith("functions: lower(…)")


def test_an_unclosed_call_is_a_syntax_error() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression('lower(segment = "x"')
    assert caught.value.location is not None and caught.value.location.column == 15
    assert caught.value.hint == 'expected ")"'


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ('lower(arr) = "x"', 1, "lower(…) takes text, but arr is a number"),
        ('lower(signup_date) = "x"', 1, "lower(…) takes text, but signup_date is a timestamp"),
        (
            'lower(count(event "login")) = "1"',
            1,
            'lower(…) takes text, but count(event "login") is a number',
        ),
        ('lower(plan) >= "a"', 1, "`>=` does not apply to string values"),
        ("lower(plan) = 3", 15, "cannot compare lower(plan) (string) with 3.0 (number)"),
        ('lower(plna) = "pro"', 7, "unknown attribute 'plna'"),
    ],
)
def test_type_errors_point_at_the_problem(text: str, column: int, message: str) -> None:
    error = _error(text)
    assert error.message == message
    assert error.location is not None and error.location.column == column


@pytest.mark.parametrize(
    ("text", "column", "shown", "fixed"),
    [
        ('lower(segment) = "Enterprise"', 18, "'Enterprise'", '"enterprise"'),
        ('"Pro" = lower(plan)', 1, "'Pro'", '"pro"'),
        ('lower(region) in ("na", "EMEA")', 25, "'EMEA'", '"emea"'),
        ('lower(name) contains "Labs"', 22, "'Labs'", '"labs"'),
        ('lower(name) != "Ça Va"', 16, "'Ça Va'", '"ça va"'),
    ],
)
def test_text_with_capitals_never_matches_lower(
    text: str, column: int, shown: str, fixed: str
) -> None:
    error = _error(text)
    assert error.message.endswith(f"has no capitals, so it never matches {shown}")
    assert error.location is not None and error.location.column == column
    assert error.hint == f"write it in lower case: {fixed}"


def test_lower_text_and_case_free_text_check() -> None:
    _check('lower(segment) = "enterprise" and lower(name) contains "ça va 2"')
    _check('lower(person.role) = "admin"')
    _check('lower(role) in ("admin", "owner")', Entity.PERSON)


def test_functions_are_looked_through_for_references() -> None:
    expression = parse_expression('lower(person.role) = "admin" and lower(segment) = "smb"')
    assert referenced_attributes(expression) == {"role", "segment"}
    assert isinstance(expression, And)
    assert mentions_person(expression.parts[0])
    assert not mentions_person(expression.parts[1])
    # A person attribute inside lower() in an account expression is about some person.
    _check('lower(person.role) = "admin"')
