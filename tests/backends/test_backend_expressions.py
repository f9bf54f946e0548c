"""Expression compilation and computed attributes, the same answers on every backend.

Every form of the expression language (docs/expressions.md) against the example dataset, as of
2024-06-01 unless a case says otherwise; the expected accounts are worked out from the dataset
(tests/support.py) and DuckDB must agree with them too.
"""

from __future__ import annotations

from datetime import datetime

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


def _units(
    warehouse: Warehouse, catalog: Catalog, text: str, as_of: datetime, target: Entity
) -> list[str]:
    expression = parse_expression(text)
    check_expression(expression, catalog.vocabulary, text=text, scope=target)
    key = "account_id" if target == Entity.ACCOUNT else "person_id"
    table = matching_units(expression, warehouse, as_of, catalog, target)
    return sorted(row[key] for row in rows(table, key))


@pytest.mark.parametrize(
    ("case", "text", "as_of", "expected"), ACCOUNT_CASES, ids=[c[0] for c in ACCOUNT_CASES]
)
def test_accounts_matching_an_expression(
    request: pytest.FixtureRequest,
    backend: str,
    warehouse: Warehouse,
    catalog: Catalog,
    case: str,
    text: str,
    as_of: datetime,
    expected: list[str],
) -> None:
    mark_gap(request, case, backend)
    assert _units(warehouse, catalog, text, as_of, Entity.ACCOUNT) == sorted(expected)


@pytest.mark.parametrize(
    ("case", "text", "as_of", "expected"), PERSON_CASES, ids=[c[0] for c in PERSON_CASES]
)
def test_people_matching_an_expression(
    request: pytest.FixtureRequest,
    backend: str,
    warehouse: Warehouse,
    catalog: Catalog,
    case: str,
    text: str,
    as_of: datetime,
    expected: list[str],
) -> None:
    mark_gap(request, case, backend)
    assert _units(warehouse, catalog, text, as_of, Entity.PERSON) == sorted(expected)
