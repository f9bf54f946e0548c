"""The compiler beyond the documented examples: goal times, point in time, literals as data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import ibis
import pyarrow as pa
import pytest

from closeloop.data.compiler import compile_sql, goal_reached_at, matching_accounts
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import parse_expression
from support import EXAMPLE_AS_OF, Backends, load_example_dataset


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    with Warehouse.connect(backends.warehouse_url) as connected:
        load_example_dataset(connected)
        yield connected


def _matching(warehouse: Warehouse, text: str, as_of: datetime = EXAMPLE_AS_OF) -> list[str]:
    table = matching_accounts(parse_expression(text), warehouse, as_of).to_pyarrow()
    return sorted(table.column("account_id").to_pylist())


def _reached(
    warehouse: Warehouse, text: str, entered: dict[str, datetime], as_of: datetime = EXAMPLE_AS_OF
) -> dict[str, datetime]:
    candidates = ibis.memtable(
        pa.table(
            {
                "account_id": pa.array(list(entered), pa.string()),
                "entered_at": pa.array(list(entered.values()), pa.timestamp("us")),
            }
        )
    )
    rows = goal_reached_at(parse_expression(text), warehouse, as_of, candidates).to_pyarrow()
    return {row["account_id"]: row["reached_at"] for row in rows.to_pylist()}


def test_point_in_time_ignores_later_events_and_accounts(warehouse: Warehouse) -> None:
    goal = 'count(event "integration_connected") >= 1'
    assert _matching(warehouse, goal) == ["a1"]
    assert _matching(warehouse, goal, datetime(2024, 6, 10)) == ["a1", "a3"]
    assert _matching(warehouse, goal, datetime(2024, 7, 1)) == ["a1", "a3", "a5"]
    assert _matching(warehouse, goal, datetime(2024, 5, 28, 14, 59)) == []


def test_goal_time_is_the_kth_event_and_never_before_entry(warehouse: Warehouse) -> None:
    entered = {"a1": datetime(2024, 5, 26), "a2": datetime(2024, 5, 1), "a4": datetime(2024, 5, 1)}
    assert _reached(warehouse, 'count(event "integration_connected") >= 1', entered) == {
        "a1": datetime(2024, 5, 28, 15)
    }
    # The 3rd login of a1 is on 5/31; the 11th of a2 is on 5/28 (ten in April first).
    assert _reached(warehouse, 'count(event "login") >= 3', entered) == {
        "a1": datetime(2024, 5, 31, 9),
        "a2": datetime(2024, 5, 1),  # reached in April, before entry: clamped to entry
    }
    assert _reached(warehouse, 'count(event "login") > 10', entered)["a2"] == datetime(
        2024, 5, 28, 12
    )


def test_and_takes_the_latest_or_the_earliest_time(warehouse: Warehouse) -> None:
    entered = {"a1": datetime(2024, 5, 25, 12)}
    both = 'count(event "login") >= 1 and count(event "integration_connected") >= 1'
    either = 'count(event "login") >= 1 or count(event "integration_connected") >= 1'
    assert _reached(warehouse, both, entered) == {"a1": datetime(2024, 5, 28, 15)}
    assert _reached(warehouse, either, entered) == {"a1": datetime(2024, 5, 26, 9)}
    # A condition without an event time is reached when the tick sees it.
    assert _reached(warehouse, 'plan = "starter"', entered) == {"a1": EXAMPLE_AS_OF}


@pytest.mark.parametrize(
    "literal",
    [
        "x'; DROP TABLE accounts; --",
        'Initech \\"Labs\\"',
        "Zürich 東京 🚀",
        "a\\\\b",
        "%",
        "_",
    ],
)
def test_literals_are_data_never_sql(warehouse: Warehouse, literal: str) -> None:
    assert _matching(warehouse, f'name = "{literal}"') == (
        ["a3"] if literal == 'Initech \\"Labs\\"' else []
    )
    assert _matching(warehouse, f'name contains "{literal}"') == (
        ["a3"] if literal == 'Initech \\"Labs\\"' else []
    )
    assert warehouse.table("accounts").count().to_pyarrow().as_py() == 5


def test_compiled_sql_is_readable_for_the_backend(warehouse: Warehouse) -> None:
    sql = compile_sql(
        parse_expression('signup_date within last 14 days and plan = "pro"'),
        warehouse,
        EXAMPLE_AS_OF,
    )
    assert "SELECT" in sql.upper()
    assert "'pro'" in sql
    assert '"created_at"' in sql
    since = EXAMPLE_AS_OF - timedelta(days=14)
    # DuckDB spells the bound MAKE_TIMESTAMP(2024, 5, 18, ...), PostgreSQL as a literal.
    assert f"{since:%Y-%m-%d}" in sql or f"{since.year}, {since.month}, {since.day}" in sql
