"""The fast path (DuckDB reads the Parquet or plain CSV file itself, closeloop.data.import_sql)
gives exactly the outcome of the batch path: the same stored rows, quarantined rows, reasons, raw
rows, row numbers and counts, over generated files with planted bad rows, duplicates, zoned
times, quoted newlines and stored ids."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
    """Events with, planted among good rows: padded and blank text, a missing name, unknown
    accounts, NUL characters, a placeholder year, not-finite values, JSON that is not an
    object, exact and conflicting repeats of an id, future-dated rows, zoned times. A CSV file
    (``.csv``) holds them as text, with a quoted newline instead of a NUL character (which
    keeps a file off DuckDB's reader) and times that are not ones."""
    columns = _event_columns(rows, seed)
    names = names or {}
    if path.suffix == ".csv":
        return _csv_events(path, columns, names)
    zoned = pa.timestamp("us", tz="America/New_York")
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


def _csv_events(path: Path, columns: dict[str, list[Any]], names: dict[str, str]) -> Path:
    zone = ZoneInfo("America/New_York")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([names.get(key, key) for key in columns])
        for index, row in enumerate(zip(*columns.values(), strict=True)):
            texts = []
            for value in row:
                if isinstance(value, str):
                    value = value.replace("\x00", "\n")  # a quoted newline
                elif isinstance(value, datetime):
                    value = value.astimezone(zone).isoformat() if value.year > 1 else "0001-01-01"
                    value = (
                        ("01/02/2024", "yesterday", value)[index % 3] if index % 97 == 5 else value
                    )
                texts.append("" if value is None else str(value))
            writer.writerow(texts)
    return path


def _event_columns(rows: int, seed: int) -> dict[str, list[Any]]:
    rng = random.Random(seed)
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
            "properties": rng.choice([None, '{"plan": "pro"}', "  ", '{"n": 1}']),
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
    return columns


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


@pytest.mark.parametrize(("seed", "suffix"), [(1, "parquet"), (2, "parquet"), (1, "csv")])
def test_fast_and_batch_paths_store_and_quarantine_the_same(
    tmp_path: Path, seed: int, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _events(tmp_path / f"first.{suffix}", 700, seed)
    # A second file repeats ids of the first (stored by then) and has its own bad rows.
    second = _events(tmp_path / f"second.{suffix}", 900, seed + 10)
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


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_mapped_and_normalised_columns(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = {"event_id": "id", "account_id": "customer"}
    path = _events(tmp_path / f"mapped.{suffix}", 500, 3, names=names)
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
    plain = tmp_path / "events.csv"
    plain.write_text("event_id,account_id,name,timestamp\ne1,a1,login,2024-03-01\n")
    assert fast_plan(warehouse, ColumnPlan(spec), SourceFile(plain)) is not None
    # A blank line (numbered by the batch path, skipped by DuckDB) keeps the batch path.
    blank = tmp_path / "blank.csv"
    blank.write_text("event_id,account_id,name,timestamp\ne1,a1,login,2024-03-01\n\n")
    assert fast_plan(warehouse, ColumnPlan(spec), SourceFile(blank)) is None
    accounts_plan = ColumnPlan(warehouse.spec("accounts"))
    assert fast_plan(warehouse, accounts_plan, SourceFile(path)) is None  # keeps history
    progress: list[ImportProgress] = []
    result = import_file(warehouse, "events", path, progress=progress.append)
    assert progress[-1] == ImportProgress(result.rows_read, 1.0)
    warehouse.close()


def test_a_csv_file_duckdb_refuses_part_way_is_imported_by_the_batch_path(
    tmp_path: Path,
) -> None:
    """A stray quote and a short row past the first rows: DuckDB's reader stops, nothing of
    the fast path is kept, and the batch path rejects each of those rows alone."""
    path = tmp_path / "broken.csv"
    good = "".join(f"e{n},a{n % 20},login,2024-03-01T10:00:00Z\n" for n in range(300))
    path.write_text(
        "event_id,account_id,name,timestamp\n"
        + good
        + 'e900,a1,"login,2024-03-01\ne901,a2\ne902,a3,export,2024-03-02\n'
    )
    accounts = _accounts(tmp_path)
    fast = _warehouse(tmp_path / "fast.duckdb", accounts)
    batches = _warehouse(tmp_path / "batches.duckdb", accounts)
    assert fast_plan(fast, ColumnPlan(fast.spec("events")), SourceFile(path)) is not None
    quick = import_file(fast, "events", path, options=ImportOptions(now=NOW))
    slow = import_file(batches, "events", path, options=ImportOptions(now=NOW, path="batches"))
    assert quick == slow and quick.quarantined == 2 and quick.imported == 301
    assert _stored(fast) == _stored(batches)
    fast.close()
    batches.close()
