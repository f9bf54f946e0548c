"""Parquet imports stay columnar (Arrow and DuckDB end to end): ids repeated across batches,
typed columns, normalised ids, re-imports and progress give what the row-by-row import gave."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from closeloop.data.importer import ImportOptions, ImportProgress, import_file
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.models import ColumnNormalization
from support import Backends


@pytest.fixture
def warehouse(backends: Backends, tmp_path: Path) -> Iterator[Warehouse]:
    """A DuckDB file, and a fresh PostgreSQL database, holding accounts a0..a4."""
    with Warehouse.connect(backends.warehouse_url) as connected:
        connected.ensure_tables()
        accounts = tmp_path / "accounts.csv"
        accounts.write_text(
            "account_id,created_at\n" + "".join(f"a{n},2024-01-01\n" for n in range(5))
        )
        import_file(connected, "accounts", accounts)
        yield connected


def _events(path: Path, rows: dict[str, list[object]], row_group_size: int = 4) -> Path:
    zoned = pa.timestamp("us", tz="Europe/Paris")
    table = pa.table(
        {
            "event_id": pa.array(rows["event_id"], pa.string()),
            "account_id": pa.array(rows["account_id"], pa.string()),
            "name": pa.array(rows["name"], pa.string()),
            "timestamp": pa.array(rows["timestamp"], zoned),
            "value": pa.array(rows.get("value", [None] * len(rows["event_id"])), pa.float64()),
            "plan": pa.array(rows.get("plan", [None] * len(rows["event_id"])), pa.string()),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def _quarantined(warehouse: Warehouse) -> list[tuple[int, str | None, str]]:
    table = warehouse.table("quarantine").order_by("row_number")
    rows = table.select("row_number", "column_name", "reason").to_pyarrow().to_pylist()
    return [(row["row_number"], row["column_name"], row["reason"]) for row in rows]


def _at(hour: int) -> datetime:
    return datetime(2024, 3, 1, hour, tzinfo=UTC)


ROWS: dict[str, list[object]] = {
    "event_id": ["e1", "e2", " e3 ", "e4", "e1", "e2", "e5", "e3", "e5", "e6"],
    "account_id": ["a1", "a1", "a2", "nobody", "a1", "a1", "a3", "a2", "a3", None],
    "name": ["login", "login", "view", "login", "login", "CHANGED", "x", "view", "x", "x"],
    "timestamp": [_at(h) for h in (0, 1, 2, 3, 0, 5, 6, 7, 6, 9)],
    "value": [1.0, None, float("inf"), None, 1.0, None, None, None, None, None],
    "plan": [None, "pro", None, None, None, "pro", None, None, None, None],
}
# e1 repeated exactly in another batch (row 5); e2 repeated with another name (row 6); e3
# quarantined for its value at row 3, so its repeat at row 8 is its first valid row; e5 repeated
# exactly (row 9).
QUARANTINED = [
    (3, "value", "not a finite number: inf (leave the value empty when there is none)"),
    (4, "account_id", "unknown account_id nobody (import accounts first)"),
    (
        6,
        "event_id",
        "event_id 'e2' is repeated with different values (first at row 2, which is kept); "
        "give each row its own event_id or drop the stale copy",
    ),
    (10, "account_id", "missing required value"),
]


def test_ids_repeated_across_batches_are_duplicates_or_conflicts(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    path = _events(tmp_path / "events.parquet", ROWS)
    progress: list[ImportProgress] = []
    result = import_file(warehouse, "events", path, batch_size=3, progress=progress.append)

    assert (result.rows_read, result.imported, result.duplicates, result.quarantined) == (
        10,
        4,
        2,
        4,
    )
    assert _quarantined(warehouse) == QUARANTINED
    stored = warehouse.table("events").order_by("event_id").to_pyarrow().to_pylist()
    assert [row["event_id"] for row in stored] == ["e1", "e2", "e3", "e5"]
    # Zoned times are stored in UTC; extra columns go to properties.
    assert [row["timestamp"] for row in stored] == [
        _at(h).replace(tzinfo=None) for h in (0, 1, 7, 6)
    ]
    assert json.loads(stored[1]["properties"]) == {"plan": "pro"}
    assert stored[0]["value"] == 1.0
    # Record batches end at row groups (of 4 rows): batches of about 3 rows, progress to the end.
    assert [p.rows for p in progress] == [3, 7, 10]
    assert progress[-1].fraction == 1.0
    raw = warehouse.table("quarantine").filter(lambda q: q.row_number == 3).raw.to_pyarrow()
    assert json.loads(raw[0].as_py())["event_id"] == " e3 "  # the row as read


def test_reimport_counts_stored_rows_as_duplicates(warehouse: Warehouse, tmp_path: Path) -> None:
    path = _events(tmp_path / "events.parquet", ROWS)
    import_file(warehouse, "events", path, batch_size=3)
    again = import_file(warehouse, "events", path)
    assert (again.rows_read, again.imported, again.duplicates, again.quarantined) == (10, 0, 6, 4)
    assert _quarantined(warehouse) == QUARANTINED
    assert warehouse.table("events").count().to_pyarrow().as_py() == 4


def test_stored_ids_are_not_added_again(warehouse: Warehouse, tmp_path: Path) -> None:
    first = _events(
        tmp_path / "first.parquet",
        {"event_id": ["e2"], "account_id": ["a4"], "name": ["older"], "timestamp": [_at(0)]},
    )
    import_file(warehouse, "events", first)
    result = import_file(warehouse, "events", _events(tmp_path / "events.parquet", ROWS))
    assert (result.imported, result.duplicates, result.quarantined) == (3, 3, 4)
    events = warehouse.table("events")
    stored = events.filter(events.event_id == "e2").to_pyarrow().to_pylist()
    assert [row["name"] for row in stored] == ["older"]


def test_a_normalised_id_is_repeated_as_normalised(warehouse: Warehouse, tmp_path: Path) -> None:
    path = _events(
        tmp_path / "events.parquet",
        {
            "event_id": ["E1", "e1", "E2"],
            "account_id": ["a1", "a1", "a1"],
            "name": ["login"] * 3,
            "timestamp": [_at(1)] * 3,
        },
        row_group_size=1,
    )
    options = ImportOptions(normalize={"event_id": ColumnNormalization(casefold=True)})
    result = import_file(warehouse, "events", path, batch_size=1, options=options)
    assert (result.imported, result.duplicates, result.quarantined) == (2, 1, 0)
    ids = warehouse.table("events").order_by("event_id").event_id.to_pyarrow().to_pylist()
    assert ids == ["e1", "e2"]
