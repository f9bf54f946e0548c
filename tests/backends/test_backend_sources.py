"""Sources in place (closeloop/data/sources.py): a canonical table read from the warehouse's own
table in another shape, on every backend.

``crm_accounts`` (backend_dataset.py) has integer ids, sign-up times as ISO text (one with a
+02:00 offset, one without a zone: UTC), other column names and a ``health`` column that becomes
an attribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from backend_support import rows

from closeloop.data.compiler import account_attributes, matching_accounts, person_attributes
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import AttributeType, check_expression, parse_expression
from closeloop.definitions.project import Catalog
from closeloop.definitions.sources import SourceMapping
from closeloop.errors import DataImportError

MAPPING = SourceMapping(
    table="crm_accounts",
    columns={
        "account_id": "id",
        "name": "company",
        "created_at": "signed_up",
        "plan": "tier",
        "employees": "seats",
    },
)
AS_OF = datetime(2024, 6, 1)


def _mapped(warehouse: Warehouse) -> Warehouse:
    """The same connection, with accounts read in place from crm_accounts."""
    return Warehouse(warehouse.backend, warehouse.url, {"accounts": MAPPING}, owns_backend=False)


@pytest.fixture
def mapped(warehouse: Warehouse) -> Iterator[Warehouse]:
    with _mapped(warehouse) as in_place:
        yield in_place


def test_a_mapped_table_reads_as_the_canonical_table(
    mapped: Warehouse, reference: Warehouse
) -> None:
    columns = ["account_id", "name", "created_at", "plan", "employees", "health"]
    got = rows(mapped.table("accounts").select(*columns), "account_id")
    assert got == rows(_mapped(reference).table("accounts").select(*columns), "account_id")
    assert got == [
        {
            "account_id": "1",
            "name": "Acme",
            "created_at": datetime(2024, 5, 25, 10),
            "plan": "starter",
            "employees": 10,
            "health": 0.9,
        },
        {
            "account_id": "2",
            "name": "Globex",
            "created_at": datetime(2024, 3, 1),  # 02:00 at +02:00 is midnight UTC
            "plan": "enterprise",
            "employees": 5000,
            "health": None,
        },
        {
            "account_id": "3",
            "name": "Initech",
            "created_at": datetime(2024, 5, 20, 8),
            "plan": None,
            "employees": None,
            "health": 0.4,
        },
    ]
    # The source's other columns (mapped ones too, under their own names) are attributes.
    assert mapped.extra_attributes("accounts") == {
        "id": AttributeType.NUMBER,
        "company": AttributeType.STRING,
        "signed_up": AttributeType.STRING,
        "tier": AttributeType.STRING,
        "seats": AttributeType.NUMBER,
        "health": AttributeType.NUMBER,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('plan = "starter"', ["1"]),
        ("signup_date within last 14 days", ["1", "3"]),
        ("health >= 0.5", ["1"]),
        ("not (health >= 0.5)", ["2", "3"]),
        ('count(event "login") >= 1', []),  # events still use a1..a5: no account matches
    ],
)
def test_expressions_on_a_mapped_table(mapped: Warehouse, text: str, expected: list[str]) -> None:
    attributes = account_attributes() | mapped.extra_attributes("accounts")
    expression = parse_expression(text)
    check_expression(expression, attributes, text=text)
    catalog = Catalog(attributes, person_attributes())
    found = rows(matching_accounts(expression, mapped, AS_OF, catalog), "account_id")
    assert [row["account_id"] for row in found] == expected


def test_checking_a_mapping_finds_the_same_problems(
    mapped: Warehouse, reference: Warehouse
) -> None:
    problems = [(name, problem.message) for name, problem in mapped.check_sources()]
    assert problems == [
        (name, problem.message) for name, problem in _mapped(reference).check_sources()
    ]
    # The imported accounts table is still there, and ignored while the mapping holds.
    assert [message for _, message in problems] == [
        "the warehouse also holds an imported accounts table; it is ignored while accounts is "
        "read from crm_accounts"
    ]


def test_a_mapped_table_refuses_writes(mapped: Warehouse) -> None:
    with pytest.raises(DataImportError, match="read in place from crm_accounts"):
        mapped.append("accounts", mapped.arrow_for("accounts", {"account_id": ["x"]}))
