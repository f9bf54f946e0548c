"""The fast path (DuckDB reads the Parquet file itself, closeloop.data.import_sql) gives exactly
the outcome of the batch path: the same stored rows, quarantined rows, reasons, raw rows and
counts, over generated files with planted bad rows, duplicates, zoned times and stored ids."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from closeloop.data import importer
from closeloop.data.import_columns import ColumnPlan
from closeloop.data.import_sql import FastOutcome, fast_import, fast_plan
from closeloop.data.importer import ImportOptions, ImportProgress, ImportResult, import_file
from closeloop.data.readers import SourceFile
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.models import ColumnNormalization

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _warehouse(path: Path, accounts: Path) -> Warehouse:
    warehouse = Warehouse.connect(f"duckdb:///{path}")
    warehouse.ensure_tables()
    import_file(warehouse, "accounts", accounts)
    return warehouse


def _accounts(folder: Path) -> Path:
    path = folder / "accounts.csv"
    path.write_text("account_id,created_at\n" + "".join(f"a{n},2024-01-01\n" for n in range(20)))
    return path


def _events(path: Path, rows: int, seed: int, *, names: dict[str, str] | None = None) -> Path:
    """Events with, planted among good rows: padded, blank and empty text, a missing name, unknown
    accounts, NUL characters, a placeholder year, not-finite values, JSON that is not an
    object, exact and conflicting repeats of an id, future-dated rows, zoned times."""
    rng = random.Random(seed)
    zoned = pa.timestamp("us", tz="America/New_York")
    columns: dict[str, list[Any]] = {
        key: [] for key in ("event_id", "account_id", "name", "timestamp", "value", "properties")
    }
    for index in range(rows):
        row: dict[str, Any] = {
            "event_id": f"e{index}",
            "account_id": f"a{rng.randrange(20)}",
            "name": rng.choice(["login", "export", " invite ", "upgrade"]),
            "timestamp": datetime(2024, 3, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(9999)),
            "value": rng.choice([None, 1.5, 2.0]),
            "properties": rng.choice([None, '{"plan": "pro"}', "  ", "", '{"n": 1}']),
        }
        kind = rng.randrange(40)
        if kind == 0:
            row["name"] = None
        elif kind == 1:
            row["name"] = "   "
        elif kind == 2:
            row["account_id"] = "nobody"
        elif kind == 3:
            row["name"] = "lo\x00gin"
        elif kind == 4:
            row["timestamp"] = datetime(1, 1, 1, tzinfo=UTC)
        elif kind == 5:
            row["value"] = float("nan")
        elif kind == 6:
            row["properties"] = "[1, 2]"
        elif kind == 7 and index:
            row["event_id"] = f"e{rng.randrange(index)}"  # conflicting or exact repeat
        elif kind == 8 and index:
            earlier = rng.randrange(index)
            for key in columns:
                row[key] = columns[key][earlier]
        elif kind == 9:
            row["timestamp"] = NOW + timedelta(days=rng.randrange(2, 30))
        elif kind == 10:
            row["event_id"] = f"  e{index} "
        for key in columns:
            columns[key].append(row[key])
    names = names or {}
    table = pa.table(
        {
            names.get("event_id", "event_id"): pa.array(columns["event_id"], pa.string()),
            names.get("account_id", "account_id"): pa.array(columns["account_id"], pa.string()),
            "name": pa.array(columns["name"], pa.string()),
            "timestamp": pa.array(columns["timestamp"], zoned),
            "value": pa.array(columns["value"], pa.float64()),
            "properties": pa.array(columns["properties"], pa.string()),
        }
    )
    pq.write_table(table, path, row_group_size=max(rows // 3, 1))
    return path


def _stored(warehouse: Warehouse) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    events = warehouse.table("events").order_by("event_id").to_pyarrow().to_pylist()
    quarantine = warehouse.table("quarantine").drop("quarantined_at")
    return events, quarantine.order_by(["file", "row_number"]).to_pyarrow().to_pylist()


def _both(
    tmp_path: Path, files: list[Path], options: ImportOptions, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[ImportResult], list[ImportResult], Warehouse, Warehouse]:
    """The files imported by the fast path into one warehouse (checked to have run it, not
    fallen back to batches), and by the batch path into another."""
    ran: list[FastOutcome] = []

    def spied(*args: Any, **kwargs: Any) -> FastOutcome:
        outcome = fast_import(*args, **kwargs)
        ran.append(outcome)
        return outcome

    monkeypatch.setattr(importer, "fast_import", spied)
    accounts = _accounts(tmp_path)
    fast = _warehouse(tmp_path / "fast.duckdb", accounts)
    batches = _warehouse(tmp_path / "batches.duckdb", accounts)
    plan = ColumnPlan(fast.spec("events"), options.columns, options.normalize)
    assert fast_plan(fast, plan, SourceFile(files[0])) is not None
    slow = ImportOptions(
        columns=options.columns, normalize=options.normalize, now=NOW, path="batches"
    )
    quick = ImportOptions(columns=options.columns, normalize=options.normalize, now=NOW)
    fast_results = [import_file(fast, "events", file, options=quick) for file in files]
    assert len(ran) == len(files)
    batch_results = [
        import_file(batches, "events", file, options=slow, batch_size=97) for file in files
    ]
    return fast_results, batch_results, fast, batches


@pytest.mark.parametrize("seed", [1, 2])
def test_fast_and_batch_paths_store_and_quarantine_the_same(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _events(tmp_path / "first.parquet", 700, seed)
    # A second file repeats ids of the first (stored by then) and has its own bad rows.
    second = _events(tmp_path / "second.parquet", 900, seed + 10)
    fast_results, batch_results, fast, batches = _both(
        tmp_path, [first, second, first], ImportOptions(), monkeypatch
    )
    assert fast_results == batch_results
    assert fast_results[0].quarantined > 20 and fast_results[0].duplicates > 0
    assert fast_results[1].duplicates > 400  # ids stored by the first file
    assert fast_results[0].future_dated > 0 and fast_results[0].warnings
    assert _stored(fast) == _stored(batches)
    fast.close()
    batches.close()


def test_mapped_and_normalised_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = {"event_id": "id", "account_id": "customer"}
    path = _events(tmp_path / "mapped.parquet", 500, 3, names=names)
    options = ImportOptions(
        columns={"event_id": "id", "account_id": "customer"},
        normalize={"name": ColumnNormalization(casefold=True, aliases={"LOGIN": "sign-in"})},
    )
    fast_results, batch_results, fast, batches = _both(tmp_path, [path], options, monkeypatch)
    assert fast_results == batch_results
    assert _stored(fast) == _stored(batches)
    fast.close()
    batches.close()


def test_the_fast_path_is_chosen_only_where_it_gives_the_same(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path)
    warehouse = _warehouse(tmp_path / "w.duckdb", accounts)
    spec = warehouse.spec("events")
    path = _events(tmp_path / "events.parquet", 10, 4)
    assert fast_plan(warehouse, ColumnPlan(spec), SourceFile(path)) is not None
    extra = pq.read_table(path).append_column("plan", pa.array(["pro"] * 10))
    pq.write_table(extra, tmp_path / "extra.parquet")
    assert fast_plan(warehouse, ColumnPlan(spec), SourceFile(tmp_path / "extra.parquet")) is None
    csv = tmp_path / "events.csv"
    csv.write_text("event_id,account_id,name,timestamp\ne1,a1,login,2024-03-01\n")
    assert fast_plan(warehouse, ColumnPlan(spec), SourceFile(csv)) is None
    accounts_plan = ColumnPlan(warehouse.spec("accounts"))
    assert fast_plan(warehouse, accounts_plan, SourceFile(path)) is None  # keeps history
    progress: list[ImportProgress] = []
    result = import_file(warehouse, "events", path, progress=progress.append)
    assert progress[-1] == ImportProgress(result.rows_read, 1.0)
    warehouse.close()
