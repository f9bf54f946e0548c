"""Importing files: typed checks, quarantine with row and reason, idempotent re-import."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from closeloop.data.importer import import_file
from closeloop.data.warehouse import Warehouse
from closeloop.errors import DataImportError
from support import Backends

ACCOUNTS_CSV = """account_id,name,created_at,segment,employees,arr,tier
a1,Acme,2024-01-01T10:00:00Z,enterprise,500,120000,gold
a2,Beta,2024-01-02,self_serve,many,1200,silver
a3,Gamma,,mid_market,50,9000,
a4,Delta,2024-01-03 08:00,mid_market,50,9000,bronze,EXTRA
a5,"Epsilon, Inc.",2024-01-04T00:00:00+02:00,self_serve,3,600,
a1,Acme again,2024-01-01,enterprise,500,120000,gold
"""


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    """A DuckDB file, and a fresh PostgreSQL database."""
    with Warehouse.connect(backends.warehouse_url) as connected:
        connected.ensure_tables()
        yield connected


def _quarantine(warehouse: Warehouse) -> list[dict[str, object]]:
    table = warehouse.table("quarantine").order_by(["table_name", "row_number"])
    return (
        table.select("table_name", "row_number", "column_name", "reason").to_pyarrow().to_pylist()
    )


def test_bad_rows_are_quarantined_with_row_column_and_reason(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text(ACCOUNTS_CSV)
    result = import_file(warehouse, "accounts", path)

    assert (result.rows_read, result.imported, result.duplicates, result.quarantined) == (
        6,
        2,
        0,
        4,
    )
    assert _quarantine(warehouse) == [
        {
            "table_name": "accounts",
            "row_number": 2,
            "column_name": "employees",
            "reason": "not a whole number: many",
        },
        {
            "table_name": "accounts",
            "row_number": 3,
            "column_name": "created_at",
            "reason": "missing required value",
        },
        {
            "table_name": "accounts",
            "row_number": 4,
            "column_name": None,
            "reason": "expected 7 fields, found 8 (line 5)",
        },
        {
            "table_name": "accounts",
            "row_number": 6,
            "column_name": "account_id",
            "reason": "account_id 'a1' is repeated with different values (first at row 1, "
            "which is kept); give each row its own account_id or drop the stale copy",
        },
    ]
    stored = warehouse.table("accounts").order_by("account_id").to_pyarrow().to_pylist()
    assert [row["account_id"] for row in stored] == ["a1", "a5"]
    # The first row with an id wins; zoned timestamps become UTC; extra columns become properties.
    assert stored[0]["name"] == "Acme"
    assert stored[1]["created_at"].isoformat() == "2024-01-03T22:00:00"
    assert json.loads(stored[0]["properties"]) == {"tier": "gold"}


def test_quarantined_rows_keep_the_raw_values(warehouse: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text(ACCOUNTS_CSV)
    import_file(warehouse, "accounts", path)
    raw = (
        warehouse.table("quarantine")
        .filter(lambda q: q.row_number == 2)
        .raw.to_pyarrow()
        .to_pylist()
    )
    assert json.loads(raw[0])["employees"] == "many"


def test_reimport_adds_no_duplicates(warehouse: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text(ACCOUNTS_CSV)
    import_file(warehouse, "accounts", path)
    again = import_file(warehouse, "accounts", path)
    assert (again.imported, again.duplicates, again.quarantined) == (0, 2, 4)
    assert warehouse.table("accounts").count().to_pyarrow().as_py() == 2
    assert warehouse.table("quarantine").count().to_pyarrow().as_py() == 4


def test_events_of_unknown_accounts_are_quarantined(warehouse: Warehouse, tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.csv"
    accounts.write_text(ACCOUNTS_CSV)
    import_file(warehouse, "accounts", accounts)
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"event_id": "e1", "account_id": "a1", "name": "login", '
        '"timestamp": "2024-01-05T10:00:00Z", "plan": {"x": 1}}\n'
        '{"event_id": "e2", "account_id": "nobody", "name": "login", '
        '"timestamp": "2024-01-05T10:00:00Z"}\n'
        "this is not json\n"
        '{"event_id": "e3", "account_id": "a1", "name": "login", "timestamp": "yesterday"}\n'
        '["not", "an", "object"]\n'
    )
    result = import_file(warehouse, "events", events)
    assert (result.imported, result.quarantined) == (1, 4)
    reasons = {
        row["row_number"]: row["reason"]
        for row in _quarantine(warehouse)
        if row["table_name"] == "events"
    }
    assert reasons[2] == "unknown account_id nobody (import accounts first)"
    assert reasons[3].startswith("invalid JSON at column 1")
    assert reasons[4].startswith("not a timestamp")
    assert reasons[5] == "a JSON Lines row must be an object"
    stored = warehouse.table("events").to_pyarrow().to_pylist()
    assert json.loads(stored[0]["properties"]) == {"plan": {"x": 1}}


def test_parquet_import(warehouse: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "accounts.parquet"
    pq.write_table(
        pa.table(
            {
                "account_id": ["p1", "p2", None],
                "created_at": pa.array(
                    [1_704_067_200_000_000, 1_704_153_600_000_000, 0], pa.timestamp("us")
                ),
                "employees": [10, 20, 30],
            }
        ),
        path,
    )
    result = import_file(warehouse, "accounts", path, batch_size=2)
    assert (result.rows_read, result.imported, result.quarantined) == (3, 2, 1)
    assert _quarantine(warehouse)[0]["row_number"] == 3


def test_missing_required_column_is_a_located_error(warehouse: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text("acount_id,created_at\nx,2024-01-01\n")
    with pytest.raises(
        DataImportError,
        match=r"accounts.csv:1: accounts needs column\(s\) account_id.*"
        r"Did you mean account_id = acount_id\? pass --map account_id=acount_id",
    ):
        import_file(warehouse, "accounts", path)


def test_unknown_table_and_format(warehouse: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    with pytest.raises(LookupError, match="unknown table 'nonsense'"):
        import_file(warehouse, "nonsense", path)
    other = tmp_path / "x.xlsx"
    other.write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(DataImportError, match=r"an Excel \.xlsx workbook"):
        import_file(warehouse, "accounts", other)


def test_batches_do_not_change_the_outcome(warehouse: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text(ACCOUNTS_CSV)
    result = import_file(warehouse, "accounts", path, batch_size=1)
    assert (result.rows_read, result.imported, result.duplicates, result.quarantined) == (
        6,
        2,
        0,
        4,
    )
