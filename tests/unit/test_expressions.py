"""Parsing, checking and printing expressions: errors located, printing and parsing agree."""

from __future__ import annotations

import string
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop.data.compiler import account_attributes
from closeloop.definitions.expressions import (
    And,
    Attribute,
    AttributeType,
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
    Membership,
    MembershipKind,
    MembershipVerb,
    MoreThanAgo,
    Not,
    Or,
    People,
    PeopleCount,
    Quantifier,
    Vocabulary,
    WithinLast,
    WithinNext,
    check_expression,
    format_expression,
    parse_expression,
    referenced_attributes,
    referenced_events,
)
from closeloop.definitions.expressions.parser import keywords
from closeloop.errors import ExpressionError

ATTRIBUTES = account_attributes()


def _error(text: str, **where: int) -> ExpressionError:
    with pytest.raises(ExpressionError) as raised:
        expression = parse_expression(text, file="jobs.yaml", **where)
        check_expression(expression, ATTRIBUTES, text=text, file="jobs.yaml", **where)
    return raised.value


def test_demo_expressions_parse() -> None:
    audience = parse_expression(
        'signup_date within last 14 days\n  and count(event "integration_connected") = 0'
    )
    assert audience == And(
        (
            WithinLast(Attribute("signup_date"), 14.0),
            Comparison(
                EventCount("integration_connected"),
                Comparator.EQ,
                Literal(0.0, LiteralKind.NUMBER),
            ),
        )
    )
    assert referenced_attributes(audience) == {"signup_date"}
    assert referenced_events(audience) == {"integration_connected"}


def test_precedence_and_case_insensitive_keywords() -> None:
    parsed = parse_expression('plan = "a" OR plan = "b" And Not arr > 5')
    assert isinstance(parsed, Or)
    assert isinstance(parsed.parts[1], And)
    assert isinstance(parsed.parts[1].parts[1], Not)


@pytest.mark.parametrize(
    ("text", "line", "column", "message", "hint"),
    [
        ("plan = 'pro'", 3, 12, "unexpected character", "double quotes"),
        ("plan =", 3, 11, "ends too early", "expected"),
        ("sigup_date within last 3 days", 3, 5, "unknown attribute 'sigup_date'", "signup_date"),
        ('arr > "big"', 3, 11, "cannot compare arr (number)", "number"),
        ("plan within last 3 days", 3, 5, "needs a date or time", "signup_date"),
        ('plan < "x"', 3, 5, "`<` does not apply to string", "= or !="),
        ("and = 1", 3, 5, "reserved word", "expected"),
        ("x = 2024-02-30", 3, 9, "invalid date", ""),
    ],
)
def test_errors_point_at_the_problem(
    text: str, line: int, column: int, message: str, hint: str
) -> None:
    error = _error(text, line=3, column=5)
    assert error.location is not None
    assert (error.location.line, error.location.column) == (line, column)
    assert message in error.message
    assert hint in error.hint
    caret = error.location.caret().splitlines()
    assert caret[1].index("^") == caret[0].index(text[0]) + column - 5


def test_errors_on_later_lines_of_a_block_are_located() -> None:
    text = '      signup_date within last 14 days\n        and count(event "x") = "none"'
    error = _error(text, line=10, column=1)
    assert error.location is not None
    assert (error.location.line, error.location.column) == (11, 32)


def test_parse_errors_list_what_would_be_valid() -> None:
    error = _error("plan = ")
    assert "a quoted string" in error.hint


# -- properties ----------------------------------------------------------------------------------

_names = st.sampled_from(sorted(ATTRIBUTES))
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\x00"), max_size=12
)
_numbers = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9).map(
    lambda x: float(round(x, 3))
)
_literals = st.one_of(
    _text.map(lambda s: Literal(s, LiteralKind.STRING)),
    _numbers.map(lambda x: Literal(x, LiteralKind.NUMBER)),
    st.booleans().map(lambda b: Literal(b, LiteralKind.BOOLEAN)),
    st.dates(date(1990, 1, 1), date(2100, 1, 1)).map(lambda d: Literal(d, LiteralKind.DATE)),
    st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1)).map(
        lambda d: Literal(d.replace(microsecond=0), LiteralKind.TIMESTAMP)
    ),
)
_days = st.integers(1, 1000).map(float)
_keys = st.one_of(st.sampled_from(["value", "source", "Stage", "count", "a b"]), _text)
_filters = st.lists(
    st.builds(EventFilter, _keys, st.sampled_from(list(Comparator)), _literals), max_size=2
).map(tuple)
_entities = st.sampled_from([None, Entity.ACCOUNT, Entity.PERSON])
_operands = st.one_of(
    st.builds(Attribute, _names, _entities),
    _literals,
    st.builds(EventCount, _text, st.one_of(st.none(), _days), _filters),
    st.builds(EventTime, _text, st.booleans(), _filters),
)
_memberships = st.builds(
    Membership,
    st.sampled_from(list(MembershipKind)),
    st.sampled_from(list(MembershipVerb)),
    _text,
    st.one_of(st.none(), _days),
).map(
    # `in …` takes no window: the printer drops it, so the generator does too.
    lambda m: Membership(m.kind, m.verb, m.name, None) if m.verb == MembershipVerb.IN else m
)
_predicates = st.one_of(
    _memberships,
    st.builds(WithinNext, _operands, _days),
    st.builds(Comparison, _operands, st.sampled_from(list(Comparator)), _operands),
    st.builds(
        InList, _operands, st.lists(_literals, min_size=1, max_size=3).map(tuple), st.booleans()
    ),
    st.builds(Contains, _operands, _text.map(lambda s: Literal(s, LiteralKind.STRING))),
    st.builds(HasValue, _names.map(Attribute), st.booleans()),
    st.builds(WithinLast, _operands, _days),
    st.builds(MoreThanAgo, _operands, _days),
)


_expressions = st.recursive(
    _predicates,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda p: And(tuple(p))),
        st.lists(inner, min_size=2, max_size=3).map(lambda p: Or(tuple(p))),
        inner.map(Not),
        st.builds(People, st.sampled_from(list(Quantifier)), inner),
        st.builds(
            Comparison,
            st.builds(PeopleCount, st.one_of(st.none(), inner)),
            st.sampled_from(list(Comparator)),
            _operands,
        ),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_expressions)
def test_printing_then_parsing_gives_the_same_tree(expression: Expression) -> None:
    text = format_expression(expression)
    assert parse_expression(text) == expression, text


def _parses_or_fails_located(text: str) -> None:
    try:
        parse_expression(text)
    except ExpressionError as error:
        assert error.location is not None
        assert error.location.line >= 1 and error.location.column >= 1


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_fails_with_a_located_error(text: str) -> None:
    _parses_or_fails_located(text)


_tokens = st.sampled_from(
    [
        "plan",
        "=",
        "!=",
        "<",
        "(",
        ")",
        '"x"',
        "1",
        "20%",
        "and",
        "or",
        "not",
        "in",
        "count",
        "event",
        "within",
        "last",
        "days",
        "more",
        "than",
        "ago",
        "has",
        "any",
        "no",
        "value",
        "contains",
        ",",
        "2024-01-01",
        "true",
        "#c\n",
        "\n",
        "where",
        "first(",
        "last(",
        "any person where",
        "all people where",
        "count(people",
        "person.role",
        "in cohort",
        "entered job",
        "completed stage",
        "within next",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_tokens, max_size=12))
def test_token_soup_parses_or_fails_with_a_located_error(tokens: list[str]) -> None:
    _parses_or_fails_located(" ".join(tokens))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    _parses_or_fails_located(data.decode("utf-8", errors="replace"))


def test_printable_noise_is_rejected_with_a_location() -> None:
    for character in string.punctuation.replace('"', "").replace("#", ""):
        text = f"plan = {character}"
        if character in "(-_":  # an opening parenthesis, a minus sign, a name
            continue
        with pytest.raises(ExpressionError):
            parse_expression(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "a\\u0000b"', "U+0000 cannot be stored"),
        ('name = "\\ud800"', "U+D800 cannot be stored"),
        ("arr > 1e400", "numbers are limited"),
        ('count(event "x" in last 99999999 days) > 1', "between 0 and 36500"),
        ("signup_date within last 1e12 days", "between 0 and 36500"),
        ("signup_date more than 99999999 days ago", "between 0 and 36500"),
        ("not " * 2000 + 'plan = "x"', "nested too deeply"),
    ],
)
def test_values_no_database_could_handle_are_refused_up_front(text: str, message: str) -> None:
    assert message in _error(text).message


def test_case_slips_get_a_suggestion() -> None:
    assert "'plan'" in _error('PLAN = "pro"').hint


# -- scopes and names ------------------------------------------------------------------------

VOCABULARY = Vocabulary(
    account={**ATTRIBUTES, "logins_7d": AttributeType.NUMBER},
    person={"role": AttributeType.STRING, "email": AttributeType.STRING},
    cohorts={"Enterprise": Entity.ACCOUNT, "Admins": Entity.PERSON},
    stages=frozenset({"Onboarding"}),
    jobs={"Integration nudge": Entity.ACCOUNT, "Admin onboarding": Entity.PERSON},
)


def _check(text: str, scope: Entity = Entity.ACCOUNT) -> None:
    check_expression(parse_expression(text), VOCABULARY, text=text, scope=scope)


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ('person.role = "admin"', Entity.ACCOUNT),
        ('any person where (role = "admin" and plan = "pro")', Entity.ACCOUNT),
        ('count(people where in cohort "Admins") >= 1', Entity.ACCOUNT),
        ('role = "admin" and in cohort "Enterprise"', Entity.PERSON),
        ('in job "Admin onboarding"', Entity.PERSON),
        ('not entered job "Integration nudge" within last 90 days', Entity.ACCOUNT),
        ('logins_7d >= 2 and first(event "x") has any value', Entity.ACCOUNT),
        ('count(event "x" where value > 3 and source = "email") = 0', Entity.ACCOUNT),
    ],
)
def test_scopes_resolve_names(text: str, scope: Entity) -> None:
    _check(text, scope)


@pytest.mark.parametrize(
    ("text", "scope", "message", "hint"),
    [
        ('in cohort "Enterprse"', Entity.ACCOUNT, "unknown cohort 'Enterprse'", "Enterprise"),
        ('in stage "onboarding"', Entity.ACCOUNT, "unknown stage", "'Onboarding'"),
        ('completed job "Nudge"', Entity.ACCOUNT, "unknown job 'Nudge'", "known jobs"),
        ('in cohort "Admins"', Entity.ACCOUNT, "about people", "any person where"),
        ('entered cohort "Enterprise"', Entity.ACCOUNT, "no history", "in cohort"),
        ('person.rol = "x"', Entity.ACCOUNT, "unknown attribute 'person.rol'", "'role'"),
        ('any person where (any person where role = "a")', Entity.ACCOUNT, "already one", ""),
        ("count(people) > 1", Entity.PERSON, "already one person", ""),
        ('count(event "x" where value = "big") > 1', Entity.ACCOUNT, "value is a number", ""),
        ('count(event "x" where tier > "a") > 1', Entity.ACCOUNT, "compares numbers", ""),
        ('first(event "x") > 3', Entity.ACCOUNT, "cannot compare", ""),
        ("plan within next 3 days", Entity.ACCOUNT, "`within next` needs a date", ""),
    ],
)
def test_scope_and_reference_errors_are_located(
    text: str, scope: Entity, message: str, hint: str
) -> None:
    with pytest.raises(ExpressionError) as raised:
        check_expression(
            parse_expression(text),
            VOCABULARY,
            text=text,
            file="f.yaml",
            line=4,
            column=9,
            scope=scope,
        )
    assert message in raised.value.message
    assert hint in raised.value.hint
    assert raised.value.location is not None and raised.value.location.line == 4
    assert raised.value.location.column >= 9


def test_reserved_words_come_from_the_grammar() -> None:
    assert {"where", "person", "cohort", "within", "next", "first"} <= keywords()
    assert "plan" not in keywords()
