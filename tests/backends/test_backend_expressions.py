"""Expression compilation and computed attributes, the same answers on every backend.

Every form of the expression language (docs/expressions.md) against the example dataset, as of
2024-06-01 unless a case says otherwise; the expected accounts are worked out from the dataset
(tests/support.py) and DuckDB must agree with them too.
"""

from __future__ import annotations

from datetime import datetime

import ibis
import ibis.expr.types as ir
import pytest
from backend_support import mark_gap, rows

from closeloop.data.compiler import matching_units
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, check_expression, parse_expression
from closeloop.definitions.project import Catalog
from support import EXAMPLE_AS_OF

T = EXAMPLE_AS_OF

# id, expression, as of, accounts it holds for
# fmt: off
ACCOUNT_CASES: list[tuple[str, str, datetime, list[str]]] = [
    # counts, firsts and lasts of events, in windows and with property filters
    ("count", 'count(event "login") >= 3', T, ["a1", "a2"]),
    ("count_zero", 'count(event "integration_connected") = 0', T, ["a2", "a3", "a4"]),
    ("count_window", 'count(event "login" in last 7 days) >= 2', T, ["a1", "a2"]),
    (
        "count_as_of",
        'count(event "integration_connected") >= 1',
        datetime(2024, 6, 10),
        ["a1", "a3"],
    ),
    ("first", 'first(event "login") < 2024-05-01', T, ["a2"]),
    ("last", 'last(event "login") > 2024-05-27T08:00', datetime(2024, 5, 28), ["a1"]),
    ("last_none", 'last(event "login") has no value', T, ["a4"]),
    ("property_filter", 'count(event "invoice_paid" where method = "card") >= 1', T, ["a2", "a3"]),
    (
        "property_filter_as_of",
        'count(event "invoice_paid" where method = "card") >= 1',
        datetime(2024, 5, 24),
        ["a2"],
    ),
    ("value_filter", 'count(event "invoice_paid" where value > 600) >= 1', T, ["a2"]),
    ("property_absent", 'count(event "report_viewed" where source = "app") >= 1', T, []),
    # stored attributes and comparisons; a missing value matches no comparison
    ("equals", 'plan = "pro"', T, ["a3"]),
    ("not_equals", 'plan != "pro"', T, ["a1", "a2"]),
    ("not", 'not (plan = "pro")', T, ["a1", "a2", "a4"]),
    ("number", "arr >= 10000", T, ["a2", "a3"]),
    ("number_not", "not (arr >= 10000)", T, ["a1", "a4"]),
    ("in_list", 'segment in ("self_serve", "mid_market")', T, ["a1", "a3", "a4"]),
    ("not_in_list", 'plan not in ("pro")', T, ["a1", "a2"]),
    ("contains", 'name contains "Labs"', T, ["a3"]),
    ("contains_quote", 'name contains "\\"Labs\\""', T, ["a3"]),
    ("lower", 'lower(name) contains "acme"', T, ["a1"]),
    ("has_value", "owner has any value", T, ["a2", "a3"]),
    ("has_no_value", "renewal_date has no value", T, ["a1", "a4"]),
    ("percent", "employees >= 50%", T, ["a2", "a3", "a4", "a1"]),
    ("within_last", "signup_date within last 14 days", T, ["a1", "a3"]),
    ("more_than_ago", "signup_date more than 60 days ago", T, ["a2", "a4"]),
    ("within_next", "renewal_date within next 300 days", T, ["a2"]),
    ("date_literal", "renewal_date > 2025-04-01", T, ["a3"]),
    ("and_or", '(plan = "pro" or arr < 5000) and region = "na"', T, ["a1", "a3"]),
    ("point_in_time_units", 'segment = "mid_market"', datetime(2024, 7, 1), ["a3", "a5"]),
    # people roll-ups
    ("people_count", "count(people) >= 2", T, ["a1", "a2"]),
    ("people_count_as_of", "count(people) >= 2", datetime(2024, 5, 25, 12), ["a2"]),
    ("people_where", 'count(people where role = "admin") >= 2', T, ["a2"]),
    ("person_attribute", 'person.role = "member"', T, ["a1", "a3"]),
    ("all_people", 'all people where role = "admin"', T, ["a2"]),
    (
        "any_person",
        'any person where (role = "admin" and count(event "login") >= 2)',
        T,
        ["a1", "a2"],
    ),
    # memberships: cohorts, stages, jobs
    ("cohort", 'in cohort "Active"', T, ["a1", "a2"]),
    ("not_cohort", 'not in cohort "Active"', T, ["a3", "a4"]),
    ("stage", 'in stage "Onboarding"', datetime(2024, 5, 27), ["a1", "a3"]),
    ("completed_stage", 'completed stage "Onboarding"', T, ["a1"]),
    ("in_job", 'in job "Integration nudge"', datetime(2024, 5, 27), ["a1", "a3"]),
    ("entered_job_window", 'entered job "Integration nudge" within last 30 days', T, ["a1", "a3"]),
    ("completed_job", 'completed job "Integration nudge"', T, ["a1"]),
    ("exited_job", 'exited job "Integration nudge"', T, ["a4"]),
    # computed attributes (attributes.yaml of backend_dataset.py)
    ("computed_count_window", "logins_7d >= 2", T, ["a1", "a2"]),
    ("computed_exists", "ever_connected = true", T, ["a1"]),
    ("computed_first", "first_login < 2024-05-22", T, ["a2", "a3"]),
    ("computed_last", "last_login >= 2024-05-30", T, ["a1", "a2"]),
    ("computed_sum_where", "card_revenue >= 100", T, ["a2", "a3"]),
    ("computed_rollup", "admins >= 1", T, ["a1", "a2"]),
    ("computed_rollup_max", "most_person_logins >= 10", T, ["a2"]),
    ("computed_days_since", "days_since_signup < 10", T, ["a1"]),
    ("computed_ratio", "arr_per_employee > 100", T, ["a1"]),
    # a JSON property holding a number, compared with a string
    ("property_type_mismatch", 'count(event "invoice_paid" where amount = "1") >= 1', T, []),
]

# fmt: on

PERSON_CASES: list[tuple[str, str, datetime, list[str]]] = [
    ("person_role", 'role = "admin"', T, ["p1", "p3", "p4"]),
    ("person_events", 'count(event "login") >= 2', T, ["p1", "p3"]),
    ("person_account", 'account.plan = "enterprise"', T, ["p3", "p4"]),
    ("person_cohort", 'in cohort "Admins"', T, ["p1", "p3", "p4"]),
    ("person_job", 'in job "Admin onboarding"', T, ["p1"]),
    ("person_created", "created_at within last 7 days", T, ["p1", "p2"]),
]


_CASES = {case[0]: (case, Entity.ACCOUNT) for case in ACCOUNT_CASES} | {
    case[0]: (case, Entity.PERSON) for case in PERSON_CASES
}


def _compiled(catalog: Catalog, warehouse: Warehouse, name: str) -> ir.Table:
    (_, text, as_of, _), target = _CASES[name]
    expression = parse_expression(text)
    check_expression(expression, catalog.vocabulary, text=text, scope=target)
    key = "account_id" if target == Entity.ACCOUNT else "person_id"
    table = matching_units(expression, warehouse, as_of, catalog, target)
    return table.select(case=ibis.literal(name), unit=table[key])


@pytest.fixture(scope="module")
def answers(warehouse: Warehouse, catalog: Catalog) -> dict[str, list[str]]:
    """Every case's units, from one query per backend (a union of all the cases' queries):
    Spark plans each query for about a second, whatever its size."""
    found: dict[str, list[str]] = {name: [] for name in _CASES}
    union = ibis.union(*(_compiled(catalog, warehouse, name) for name in _CASES))
    for row in rows(union, "case", "unit"):
        found[row["case"]].append(row["unit"])
    return found


def _units(answers: dict[str, list[str]], case: str) -> list[str]:
    return answers[case]


@pytest.mark.parametrize(
    ("case", "expected"), [(c[0], c[3]) for c in ACCOUNT_CASES], ids=[c[0] for c in ACCOUNT_CASES]
)
def test_accounts_matching_an_expression(
    request: pytest.FixtureRequest,
    backend: str,
    answers: dict[str, list[str]],
    case: str,
    expected: list[str],
) -> None:
    mark_gap(request, case, backend)
    assert _units(answers, case) == sorted(expected)


@pytest.mark.parametrize(
    ("case", "expected"), [(c[0], c[3]) for c in PERSON_CASES], ids=[c[0] for c in PERSON_CASES]
)
def test_people_matching_an_expression(
    request: pytest.FixtureRequest,
    backend: str,
    answers: dict[str, list[str]],
    case: str,
    expected: list[str],
) -> None:
    mark_gap(request, case, backend)
    assert _units(answers, case) == sorted(expected)


def test_each_case_alone_gives_the_union_answer(
    warehouse: Warehouse, catalog: Catalog, answers: dict[str, list[str]]
) -> None:
    """The union is only a way to ask once: a case compiled on its own answers the same."""
    for name in ("count_window", "property_filter", "all_people", "person_cohort"):
        alone = rows(_compiled(catalog, warehouse, name), "unit")
        assert [row["unit"] for row in alone] == answers[name], name
