"""`lower(x)` compiled to the warehouse: case-insensitive matches on DuckDB and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from closeloop.data.compiler import (
    account_attributes,
    compile_sql,
    matching_units,
    person_attributes,
)
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, check_expression, parse_expression
from closeloop.definitions.project import Catalog
from support import Backends

AS_OF = datetime(2024, 6, 1)
CATALOG = Catalog(account_attributes(), person_attributes())


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    with Warehouse.connect(backends.warehouse_url) as connected:
        connected.ensure_tables()
        created = datetime(2024, 1, 1)
        accounts = [
            ("a1", "Enterprise", "Acme Labs"),
            ("a2", "ENTERPRISE", "Globex"),
            ("a3", "enterprise", "ÉCOLE Supérieure"),
            ("a4", "Mid Market", "Initech"),
            ("a5", None, "acme holdings"),
        ]
        connected.append(
            "accounts",
            connected.arrow_for(
                "accounts",
                {
                    "account_id": [a[0] for a in accounts],
                    "segment": [a[1] for a in accounts],
                    "name": [a[2] for a in accounts],
                    "created_at": [created] * len(accounts),
                },
            ),
        )
        people = [("p1", "a1", "Admin"), ("p2", "a2", "member"), ("p3", "a4", "ADMIN")]
        connected.append(
            "people",
            connected.arrow_for(
                "people",
                {
                    "person_id": [p[0] for p in people],
                    "account_id": [p[1] for p in people],
                    "role": [p[2] for p in people],
                    "created_at": [created] * len(people),
                },
            ),
        )
        yield connected


def _matching(warehouse: Warehouse, text: str, target: Entity = Entity.ACCOUNT) -> list[str]:
    expression = parse_expression(text)
    check_expression(expression, CATALOG.vocabulary, text=text, scope=target)
    key = "account_id" if target == Entity.ACCOUNT else "person_id"
    table = matching_units(expression, warehouse, AS_OF, CATALOG, target).to_pyarrow()
    return sorted(table.column(key).to_pylist())


def test_exact_text_tells_cases_apart(warehouse: Warehouse) -> None:
    assert _matching(warehouse, 'segment = "enterprise"') == ["a3"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('lower(segment) = "enterprise"', ["a1", "a2", "a3"]),
        ('lower(segment) != "enterprise"', ["a4"]),  # a missing segment matches no comparison
        ('not (lower(segment) = "enterprise")', ["a4", "a5"]),
        ('lower(segment) in ("mid market", "smb")', ["a4"]),
        ('lower(segment) not in ("enterprise")', ["a4"]),
        ('lower(name) contains "acme"', ["a1", "a5"]),
        ('lower(name) contains "école"', ["a3"]),  # beyond ASCII on both engines
        ('lower(segment) = lower("ENTERPRISE") and lower(name) = "globex"', ["a2"]),
        ("segment has no value", ["a5"]),
    ],
)
def test_lower_ignores_case(warehouse: Warehouse, text: str, expected: list[str]) -> None:
    assert _matching(warehouse, text) == expected


def test_lower_on_people(warehouse: Warehouse) -> None:
    assert _matching(warehouse, 'lower(role) = "admin"', Entity.PERSON) == ["p1", "p3"]
    assert _matching(warehouse, 'any person where (lower(role) = "admin")') == ["a1", "a4"]
    assert _matching(warehouse, 'lower(person.role) = "admin"') == ["a1", "a4"]
    assert _matching(warehouse, 'count(people where lower(role) = "admin") = 0') == [
        "a2",
        "a3",
        "a5",
    ]


def test_lower_reaches_sql_as_the_function_and_the_text_as_a_literal(
    warehouse: Warehouse,
) -> None:
    sql = compile_sql(parse_expression('lower(segment) = "o\'brien"'), warehouse, AS_OF, CATALOG)
    assert "LOWER(" in sql.upper()
    assert "'o''brien'" in sql
