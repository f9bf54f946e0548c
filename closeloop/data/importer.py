"""Import CSV, Parquet and JSON Lines files into the canonical tables.

Checks run inside a DuckDB staging connection (typed casts, required values, references); rows that
fail go to the ``quarantine`` table with file, row number, column and reason — nothing vanishes.
Import is idempotent on each table's natural id: importing the same file twice adds nothing, and a
crash part-way is repaired by importing the file again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import duckdb
import ibis
import pyarrow as pa

from closeloop.data import history
from closeloop.data.readers import Reject, TextBatch, read_batches, read_header
from closeloop.data.tables import CANONICAL_TABLES, QUARANTINE, ColumnType, TableSpec
from closeloop.data.warehouse import Warehouse
from closeloop.errors import DataImportError

DEFAULT_BATCH_SIZE = 50_000

_CASTS: dict[ColumnType, str] = {
    ColumnType.STRING: "{v}",
    ColumnType.INTEGER: "TRY_CAST({v} AS BIGINT)",
    ColumnType.FLOAT: "TRY_CAST({v} AS DOUBLE)",
    ColumnType.BOOLEAN: "TRY_CAST({v} AS BOOLEAN)",
    ColumnType.DATE: "TRY_CAST({v} AS DATE)",
    # Text with a zone is converted to UTC; text without one is taken as UTC (the session zone).
    ColumnType.TIMESTAMP: "CAST(TRY_CAST({v} AS TIMESTAMPTZ) AS TIMESTAMP)",
    ColumnType.JSON: "CASE WHEN json_valid({v}) THEN {v} END",
}
_EXPECTED: dict[ColumnType, str] = {
    ColumnType.INTEGER: "a whole number",
    ColumnType.FLOAT: "a number",
    ColumnType.BOOLEAN: "true or false",
    ColumnType.DATE: "a date like 2024-03-31",
    ColumnType.TIMESTAMP: "a timestamp like 2024-03-31T14:05:00Z",
    ColumnType.JSON: "a JSON object",
}


@dataclass(frozen=True)
class ImportResult:
    table: str
    file: str
    rows_read: int
    imported: int  # inserted: ids not stored before
    duplicates: int
    quarantined: int
    updated: int = 0  # stored accounts/people whose values changed (closeloop.data.history)

    @property
    def unchanged(self) -> int:
        """Rows that changed nothing: stored already as they are, or an id repeated in the file."""
        return self.duplicates


ProgressCallback = Callable[[int], None]


def import_file(
    warehouse: Warehouse,
    table: str,
    path: Path,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import ``path`` into canonical table ``table``; return counts of what became of each row."""
    spec = warehouse.spec(table)
    if not path.is_file():
        raise DataImportError(f"{path}: no such file")
    header = read_header(path)
    if header is not None:
        _check_header(spec, header, path)
    warehouse.ensure_tables()
    staging = duckdb.connect()
    staging.execute("SET TimeZone = 'UTC'")
    totals = {"read": 0, "imported": 0, "updated": 0, "duplicates": 0, "quarantined": 0}
    try:
        for batch in read_batches(path, batch_size):
            counts = _import_batch(warehouse, staging, spec, path, batch)
            for key, value in counts.items():
                totals[key] += value
            if progress is not None:
                progress(counts["read"])
    finally:
        staging.close()
    return ImportResult(
        table=table,
        file=str(path),
        rows_read=totals["read"],
        imported=totals["imported"],
        duplicates=totals["duplicates"],
        quarantined=totals["quarantined"],
        updated=totals["updated"],
    )


def _check_header(spec: TableSpec, header: list[str], path: Path) -> None:
    missing = [name for name in spec.required if name not in header]
    if not missing:
        return
    hints = []
    for name in missing:
        close = get_close_matches(name, header, n=1)
        if close:
            hints.append(f"{close[0]!r} → {name!r}?")
    raise DataImportError(
        f"{path}:1: {spec.name} needs column(s) {', '.join(missing)}; the header has "
        f"{', '.join(header)}" + (f" (rename {'; '.join(hints)})" if hints else "")
    )


def _import_batch(
    warehouse: Warehouse,
    staging: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    path: Path,
    batch: TextBatch,
) -> dict[str, int]:
    rejects = list(batch.rejects)
    read = len(batch.rows) + len(batch.rejects)
    imported = duplicates = updated = 0
    if batch.rows:
        staging.register("batch", _text_table(spec, batch))
        _register_known_references(warehouse, staging, spec, batch)
        checked = staging.execute(_check_sql(spec)).fetch_arrow_table()
        staging.unregister("batch")
        problem = checked.column("_problem_reason")
        bad = checked.filter(problem.is_valid())
        for row in bad.select(["_row", "_problem_column", "_problem_reason", "_raw"]).to_pylist():
            rejects.append(
                Reject(row["_row"], row["_problem_reason"], row["_raw"], row["_problem_column"])
            )
        if history.tracks_history(spec.name):
            # Accounts and people: changed rows are updated and their changes recorded.
            upsert = history.upsert(
                warehouse,
                staging,
                spec,
                checked.filter(problem.is_null()),
                given=history.given_columns(spec, {name for row in batch.rows for name in row}),
                source=f"import:{path.name}",
            )
            rejects += [Reject(r.row_number, r.reason, r.raw, r.column) for r in upsert.rejected]
            imported, updated, duplicates = upsert.inserted, upsert.updated, upsert.unchanged
        else:
            good = checked.filter(problem.is_null()).select(list(spec.column_names))
            unique = _first_per_key(good, spec.key)
            duplicates += good.num_rows - unique.num_rows
            new_rows = _not_yet_stored(warehouse, spec, unique)
            duplicates += unique.num_rows - new_rows.num_rows
            if new_rows.num_rows:
                warehouse.append(spec.name, new_rows)
                imported = new_rows.num_rows
    quarantined = _quarantine(warehouse, spec, path, rejects)
    return {
        "read": read,
        "imported": imported,
        "updated": updated,
        "duplicates": duplicates,
        "quarantined": quarantined,
    }


def _text_table(spec: TableSpec, batch: TextBatch) -> pa.Table:
    known = set(spec.column_names)
    columns: dict[str, list[str | None]] = {name: [] for name in spec.column_names}
    raws: list[str] = []
    for row in batch.rows:
        extras = {
            key: value for key, value in row.items() if key not in known and value not in (None, "")
        }
        for name in spec.column_names:
            value = row.get(name)
            columns[name].append(None if value is None or value.strip() == "" else value.strip())
        if extras and "properties" in columns:
            columns["properties"][-1] = _merge_properties(columns["properties"][-1], extras)
        raws.append(json.dumps(row, ensure_ascii=False))
    data: dict[str, list[Any]] = {"_row": list(batch.row_numbers), "_raw": list(raws)}
    data.update(columns)
    return pa.table(
        data,
        schema=pa.schema(
            [("_row", pa.int64()), ("_raw", pa.string())]
            + [(n, pa.string()) for n in spec.column_names]
        ),
    )


def _merge_properties(existing: str | None, extras: Mapping[str, str | None]) -> str:
    merged: dict[str, object] = {}
    if existing:
        try:
            parsed = json.loads(existing)
        except json.JSONDecodeError:
            return (
                existing  # left as is, so the JSON check quarantines the row with its real reason
            )
        if not isinstance(parsed, dict):
            return existing
        merged.update(parsed)
    for key, value in extras.items():
        merged[key] = _structured(value)
    return json.dumps(merged, ensure_ascii=False, sort_keys=True)


def _structured(value: str | None) -> object:
    """Nested JSON (an object or array from a JSON Lines row) stays structured in properties."""
    if value is not None and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _register_known_references(
    warehouse: Warehouse, staging: duckdb.DuckDBPyConnection, spec: TableSpec, batch: TextBatch
) -> None:
    for column in spec.columns:
        if column.references is None:
            continue
        wanted = sorted({value.strip() for row in batch.rows if (value := row.get(column.name))})
        target = warehouse.spec(column.references)
        parent = warehouse.table(target.name)
        keys = ibis.memtable(pa.table({target.key: pa.array(wanted, pa.string())}))
        found = parent.semi_join(keys, target.key).select(target.key).distinct().to_pyarrow()
        staging.register(f"known_{column.name}", found)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check_sql(spec: TableSpec) -> str:
    typed = []
    problems = []
    for column in spec.columns:
        value = _quote(column.name)
        cast = _CASTS[column.type].format(v=value)
        typed.append(f"{cast} AS {value}")
        label = column.name.replace("'", "''")
        if column.required:
            problems.append((f"{value} IS NULL", label, "'missing required value'"))
        if column.type is not ColumnType.STRING:
            expected = _EXPECTED[column.type]
            problems.append(
                (
                    f"{value} IS NOT NULL AND ({cast}) IS NULL",
                    label,
                    f"'not {expected}: ' || {value}",
                )
            )
        if column.references is not None:
            problems.append(
                (
                    f"{value} IS NOT NULL AND {value} NOT IN "
                    f"(SELECT {_quote(CANONICAL_TABLES[column.references].key)} "
                    f"FROM known_{column.name})",
                    label,
                    f"'unknown {column.name} ' || {value} || ' (import {column.references} first)'",
                )
            )
    column_case = " ".join(f"WHEN {cond} THEN '{label}'" for cond, label, _ in problems)
    reason_case = " ".join(f"WHEN {cond} THEN {reason}" for cond, _, reason in problems)
    column_expr = f"CASE {column_case} END" if problems else "NULL"
    reason_expr = f"CASE {reason_case} END" if problems else "NULL"
    return (
        f"SELECT _row, _raw, {column_expr} AS _problem_column, {reason_expr} AS _problem_reason, "
        f"{', '.join(typed)} FROM batch ORDER BY _row"
    )


def _first_per_key(table: pa.Table, key: str) -> pa.Table:
    seen: set[str] = set()
    keep = []
    for index, value in enumerate(table.column(key).to_pylist()):
        if value not in seen:
            seen.add(value)
            keep.append(index)
    return table if len(keep) == table.num_rows else table.take(keep)


def _not_yet_stored(warehouse: Warehouse, spec: TableSpec, rows: pa.Table) -> pa.Table:
    if rows.num_rows == 0:
        return rows
    stored = warehouse.table(spec.name)
    keys = ibis.memtable(pa.table({spec.key: rows.column(spec.key)}))
    existing = set(
        stored.semi_join(keys, spec.key).select(spec.key).to_pyarrow().column(0).to_pylist()
    )
    if not existing:
        return rows
    mask = pa.array([value not in existing for value in rows.column(spec.key).to_pylist()])
    return rows.filter(mask)


def _quarantine(warehouse: Warehouse, spec: TableSpec, path: Path, rejects: list[Reject]) -> int:
    """Write rejects to the quarantine table; re-importing a file quarantines nothing twice."""
    if not rejects:
        return 0
    file = str(path.resolve())
    now = datetime.now(UTC).replace(tzinfo=None)
    ids = [
        hashlib.sha256(f"{spec.name}|{file}|{r.row_number}|{r.raw}".encode()).hexdigest()[:24]
        for r in rejects
    ]
    rows = warehouse.arrow_for(
        QUARANTINE.name,
        {
            "quarantine_id": ids,
            "table_name": [spec.name] * len(rejects),
            "file": [file] * len(rejects),
            "row_number": [r.row_number for r in rejects],
            "column_name": [r.column for r in rejects],
            "reason": [r.reason for r in rejects],
            "raw": [r.raw for r in rejects],
            "quarantined_at": [now] * len(rejects),
        },
    )
    new_rows = _not_yet_stored(warehouse, QUARANTINE, rows)
    if new_rows.num_rows:
        warehouse.append(QUARANTINE.name, new_rows)
    return len(rejects)
