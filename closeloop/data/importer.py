"""Import CSV, Parquet and JSON Lines files into the canonical tables.

The file's columns reach the canonical ones by name or by a mapping, and values are normalised
(:mod:`closeloop.data.import_columns`); checks run inside a DuckDB staging connection (typed
casts, required values, references, ids repeated in the file: :mod:`closeloop.data.import_checks`);
rows that fail go to the ``quarantine`` table with file, row number, column and reason — nothing
vanishes, and one bad row never stops the others. Import is idempotent on each table's natural id:
importing the same file twice adds nothing, and a crash part-way is repaired by importing the file
again (the error says how many rows were committed before it).

Rows stay in Arrow and DuckDB from the file to the warehouse: a batch is an Arrow table, checked
and de-duplicated by SQL in the staging database (a file in a temporary folder, under a memory
limit, so the ids a large file has used spill to disk) and, on a DuckDB warehouse, inserted by one
``INSERT … SELECT`` that skips stored ids. Python sees only the rows that fail. Parquet is read a
record batch at a time and a plain CSV file by DuckDB's streaming CSV reader
(:mod:`closeloop.data.readers`), so memory is bounded by the batch size, not the file's.

A Parquet file on a DuckDB warehouse takes the fast path of :mod:`closeloop.data.import_sql`
when it qualifies (DuckDB reads the file itself; one transaction; the same outcome);
``ImportOptions(path="batches")`` keeps the batch path.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import ibis
import pyarrow as pa
import pyarrow.compute as pc

from closeloop.data import history
from closeloop.data.import_checks import FutureRows, InFileIds, check_sql
from closeloop.data.import_columns import ColumnPlan, normalized_value
from closeloop.data.import_sql import FastPathError, FastPlan, fast_import, fast_plan
from closeloop.data.readers import Reject, SourceFile, TextBatch
from closeloop.data.tables import QUARANTINE, TableSpec
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.models import ColumnNormalization
from closeloop.errors import CloseloopError, DataImportError

DEFAULT_BATCH_SIZE = 50_000
"""Rows per batch of JSON Lines and CSV files read row by row in Python."""
COLUMNAR_BATCH_SIZE = 500_000
"""Rows per batch of Parquet and plain CSV files (columnar all the way): large enough that the
queries of a batch cost little beside its rows, small enough that a batch holds a few hundred MB
at most."""
STAGING_MEMORY_LIMIT = "1GB"
"""The staging database's memory; beyond it DuckDB spills to the staging file."""
FUTURE_MARGIN = timedelta(days=1)
"""Rows dated further than this after the import are counted in a warning."""
# Failures of the machine (a database that went away, a full disk), reported with what was
# committed; anything else is a bug and keeps its traceback (with the same note added).
_CONDITION_MODULES = ("duckdb", "_duckdb", "psycopg", "sqlalchemy", "sqlite3", "pyarrow", "ibis")


@dataclass(frozen=True)
class ImportOptions:
    """How to read one file: column mapping, normalisation, format and encoding."""

    columns: Mapping[str, str] = field(default_factory=dict)  # canonical column -> file column
    normalize: Mapping[str, ColumnNormalization] = field(default_factory=dict)
    format: str | None = None  # csv, jsonl or parquet; None detects it
    encoding: str | None = None  # CSV and JSON Lines; None is UTF-8 (a byte-order mark is honoured)
    now: datetime | None = None  # the import time (future rows, history); default the wall clock
    origin: str = "--map"  # where ``columns`` came from, for messages
    # "auto": DuckDB reads the file itself when it can (closeloop.data.import_sql), else
    # batches; "batches": always batches (the path every warehouse and format has).
    path: str = "auto"


@dataclass(frozen=True)
class ImportResult:
    table: str
    file: str
    rows_read: int
    imported: int  # inserted: ids not stored before
    duplicates: int
    quarantined: int
    updated: int = 0  # stored accounts/people whose values changed (closeloop.data.history)
    warnings: tuple[str, ...] = ()  # future-dated rows, a file that is not UTF-8, unused columns
    future_dated: int = 0  # rows dated more than a day after the import (imported all the same)

    @property
    def unchanged(self) -> int:
        """Rows that changed nothing: stored already as they are, or an id repeated in the file."""
        return self.duplicates


@dataclass(frozen=True)
class ImportProgress:
    """How far an import is: rows read so far, and the share of the file read (when known)."""

    rows: int
    fraction: float | None


ProgressCallback = Callable[[ImportProgress], None]


def import_file(
    warehouse: Warehouse,
    table: str,
    path: Path,
    *,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    options: ImportOptions | None = None,
) -> ImportResult:
    """Import ``path`` into canonical table ``table``; return counts of what became of each row.

    Each batch (``batch_size`` rows; by default :data:`COLUMNAR_BATCH_SIZE` for Parquet and
    plain CSV, :data:`DEFAULT_BATCH_SIZE` for the rest) is committed on its own. When the import
    stops part-way (the database goes away, the process is interrupted),
    :class:`DataImportError` says how many rows were committed; importing the same file again
    repairs it.
    """
    options = options or ImportOptions()
    spec = warehouse.spec(table)
    warehouse.refuse_if_mapped(table)  # before any work: its rows belong to the source system
    plan = ColumnPlan(spec, options.columns, options.normalize, options.origin)
    source = SourceFile(path, format=options.format, encoding=options.encoding)
    header = source.header()
    warnings = plan.check_columns(path, header) if header is not None else []
    now = (options.now or datetime.now(UTC)).replace(tzinfo=None)
    if options.path not in ("auto", "batches"):
        raise ValueError(f"import path {options.path!r}: auto or batches")
    fast = None
    if options.path == "auto" and batch_size is None and source.format == "parquet":
        warehouse.ensure_tables()
        fast = fast_plan(warehouse, plan, source)
    if fast is not None:
        result = _import_fast(warehouse, plan, fast, path, now, progress, warnings)
        if result is not None:
            return result
    if batch_size is None:
        columnar = source.format == "parquet" or source.plain_csv() is not None
        batch_size = COLUMNAR_BATCH_SIZE if columnar else DEFAULT_BATCH_SIZE
    batches = source.batches(batch_size, columnar=True)
    first = next(batches, TextBatch())
    if header is None and first.rows:
        # JSON Lines declare no header: the keys of the first batch stand for one.
        keys = list(dict.fromkeys(name for row in first.rows for name in row))
        warnings += plan.check_columns(path, keys, where=str(first.row_numbers[0]))
    warehouse.ensure_tables()
    with _staging() as staging:
        repeated = _repeated_ids(source, plan, staging, batch_size)
        run = _Run(warehouse, staging, plan, path, InFileIds(staging, spec, repeated), now)
        try:
            for batch in itertools.chain([first], _read_ahead(batches)):
                run.add(batch)
                if progress is not None:
                    progress(ImportProgress(run.totals["read"], batch.position))
        except (Exception, KeyboardInterrupt) as error:
            stopped = run.stopped(error)
            if isinstance(error, CloseloopError | OSError | MemoryError | KeyboardInterrupt) or (
                type(error).__module__.startswith(_CONDITION_MODULES)
            ):
                raise DataImportError(stopped) from error
            error.add_note(stopped)
            raise
    totals = run.totals
    warnings += run.warnings()
    return ImportResult(
        table=table,
        file=str(path),
        rows_read=totals["read"],
        imported=totals["imported"],
        duplicates=totals["duplicates"],
        quarantined=totals["quarantined"],
        updated=totals["updated"],
        warnings=tuple(warnings),
        future_dated=run.future.count,
    )


def _import_fast(
    warehouse: Warehouse,
    plan: ColumnPlan,
    fast: FastPlan,
    path: Path,
    now: datetime,
    progress: ProgressCallback | None,
    warnings: list[str],
) -> ImportResult | None:
    """Import with :func:`closeloop.data.import_sql.fast_import` (one transaction); None when
    DuckDB cannot import the file as the batch path does (invalid UTF-8, a broken row group, not
    enough memory): nothing was written, and the batch path imports it and says what it meets."""
    future = FutureRows(now + FUTURE_MARGIN)

    def report(rows: int, fraction: float) -> None:
        if progress is not None:
            progress(ImportProgress(rows, fraction))

    try:
        outcome = fast_import(
            warehouse,
            plan,
            fast,
            future,
            lambda rejects: _quarantine(warehouse, plan.spec, path, rejects),
            report,
        )
    except FastPathError:
        return None
    except KeyboardInterrupt as error:
        raise DataImportError(
            f"{path}: the import stopped (interrupted) before committing any row; "
            "import the same file again"
        ) from error
    return ImportResult(
        table=plan.spec.name,
        file=str(path),
        rows_read=outcome.read,
        imported=outcome.imported,
        duplicates=outcome.duplicates,
        quarantined=len(outcome.rejects),
        warnings=tuple(warnings + ([w] if (w := future.warning()) else [])),
        future_dated=future.count,
    )


def _repeated_ids(
    source: SourceFile, plan: ColumnPlan, staging: duckdb.DuckDBPyConnection, batch_size: int
) -> pa.Array | None:
    """The ids a Parquet or plain CSV file holds more than once (as the batches will hold them:
    text, trimmed, normalised), from one pass over its id column aggregated in the staging
    database (which spills beyond its memory limit); None for other files, or when the column
    cannot be read on its own (the import then remembers every id, and reports what it meets)."""
    key = plan.spec.key
    try:
        values = source.column_values(plan.source(key), batch_size)
    except (pa.ArrowException, OSError, KeyError):
        return None
    if values is None:
        return None
    schema = pa.schema([("id", pa.string())])

    def ids() -> Iterator[pa.RecordBatch]:
        for array in values:
            text, _ = plan.canonical_values(key, array)
            yield pa.RecordBatch.from_arrays([pc.cast(text, pa.string())], schema=schema)

    rule = plan.normalize.get(key)
    value = normalized_value('"id"', rule) if rule is not None else '"id"'
    try:
        staging.register("_file_ids", pa.RecordBatchReader.from_batches(schema, ids()))
        try:
            found = staging.execute(
                f"SELECT id FROM (SELECT {value} AS id FROM _file_ids) WHERE id IS NOT NULL "
                "GROUP BY id HAVING count(*) > 1"
            ).fetch_arrow_table()
        finally:
            staging.unregister("_file_ids")
    except (pa.ArrowException, OSError, KeyError, duckdb.Error):
        return None
    return found.column(0).combine_chunks()


def _read_ahead(batches: Iterator[TextBatch]) -> Iterator[TextBatch]:
    """``batches``, the next one read by a thread while the current one is imported (reading
    Parquet and DuckDB's work both release the GIL, so the two overlap on two cores). What the
    reader raises is raised here, in order; at most two batches are held at once."""
    handoff: queue.Queue[tuple[TextBatch | None, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def read() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        handoff.put((batch, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put((None, None))
        except BaseException as error:  # handed to the importing thread, raised there
            handoff.put((None, error))

    reader = threading.Thread(target=read, name="closeloop-import-reader", daemon=True)
    reader.start()
    try:
        while True:
            batch, error = handoff.get()
            if error is not None:
                raise error
            if batch is None:
                return
            yield batch
    finally:
        stop.set()
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.1)
        reader.join()


@contextmanager
def _staging() -> Iterator[duckdb.DuckDBPyConnection]:
    """The staging database of one import: a DuckDB file in a temporary folder, removed after."""
    with tempfile.TemporaryDirectory(prefix="closeloop-import-") as folder:
        staging = duckdb.connect(str(Path(folder) / "staging.duckdb"))
        try:
            staging.execute("SET TimeZone = 'UTC'")
            staging.execute(f"SET memory_limit = '{STAGING_MEMORY_LIMIT}'")
            yield staging
        finally:
            staging.close()


class _Run:
    """One import under way: its totals, the ids seen so far, what to warn about."""

    def __init__(
        self,
        warehouse: Warehouse,
        staging: duckdb.DuckDBPyConnection,
        plan: ColumnPlan,
        path: Path,
        ids: InFileIds,
        now: datetime,
    ) -> None:
        self.warehouse, self.staging, self.plan, self.path = warehouse, staging, plan, path
        self.ids, self.now = ids, now  # the import time: history's default valid-from
        # A DuckDB table empty when the import began holds only this import's rows, whose ids
        # ``ids`` keeps track of: its inserts need no look-up of stored ids. (A DuckDB file
        # has one writing process, and the server imports under its one-writer lock.)
        self.empty_at_start = (
            _is_duckdb_table(warehouse, plan.spec.name)
            and not history.tracks_history(plan.spec.name)
            and _is_empty(warehouse, plan.spec.name)
        )
        self.future = FutureRows(now + FUTURE_MARGIN)
        self.totals = {"read": 0, "imported": 0, "updated": 0, "duplicates": 0, "quarantined": 0}
        self.not_utf8: list[Reject] = []
        self.not_utf8_count = 0
        self.last_row = 0

    def add(self, batch: TextBatch) -> None:
        counts = _import_batch(self.warehouse, self.staging, self.plan, self.path, batch, self)
        for key, value in counts.items():
            self.totals[key] += value
        self.last_row = max(self.last_row, batch.last_row)
        encoding = [reject for reject in batch.rejects if reject.code == "not_utf8"]
        self.not_utf8_count += len(encoding)
        self.not_utf8 = self.not_utf8 or encoding[:1]

    def warnings(self) -> list[str]:
        found = []
        if self.not_utf8:
            first = self.not_utf8[0]
            location, _, message = first.reason.partition(": ")
            column = location.rpartition("column ")[2]
            count = self.not_utf8_count
            found.append(
                f"{self.path}:{first.line}:{column}: {message} ({count:,} "
                f"row{'s' if count != 1 else ''} quarantined for this)"
            )
        future = self.future.warning()
        if future is not None:
            found.append(future)
        return found

    def stopped(self, error: BaseException) -> str:
        """What to tell when the import stops part-way: what was committed, how to repair."""
        totals = self.totals
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else _first_line(error)
        reason = reason.removeprefix(f"{self.path}: ")
        return (
            f"{self.path}: the import stopped ({reason}) after committing {totals['read']:,} "
            f"rows, up to row {self.last_row:,} ({totals['imported']:,} imported, "
            f"{totals['updated']:,} updated, {totals['duplicates']:,} unchanged, "
            f"{totals['quarantined']:,} quarantined); the rows after them were not imported. "
            "Importing the same file again repairs it: committed rows are not added twice"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _import_batch(
    warehouse: Warehouse,
    staging: duckdb.DuckDBPyConnection,
    plan: ColumnPlan,
    path: Path,
    batch: TextBatch,
    run: _Run,
) -> dict[str, int]:
    spec = plan.spec
    rejects = list(batch.rejects)
    read = batch.size
    imported = duplicates = updated = 0
    if batch.has_rows:
        text, typed = plan.text_table(batch)
        normalizing = plan.normalize_sql("_batch")
        staging.register("_batch", text)
        if normalizing is not None:
            text = staging.execute(normalizing).fetch_arrow_table()
            staging.unregister("_batch")
            staging.register("_batch", text)
        try:
            unknown = _register_unknown_references(warehouse, staging, spec)
            query = check_sql(spec, "_batch", typed, unknown)
            checked = staging.execute(query).fetch_arrow_table()
        finally:
            staging.unregister("_batch")
        del text
        problem = checked.column("_problem_reason")
        failed = problem.null_count < checked.num_rows
        checks: list[Reject] = []
        if failed:
            bad = checked.filter(problem.is_valid())
            for row in bad.select(["_row", "_problem_column", "_problem_reason"]).to_pylist():
                checks.append(
                    Reject(row["_row"], row["_problem_reason"], "", row["_problem_column"])
                )
            checked = checked.filter(problem.is_null())
        good = checked.drop_columns(["_problem_column", "_problem_reason"])
        del checked
        # The first row of each id goes on; a repeat with other values is quarantined.
        good, repeated, conflicts = run.ids.classify(good)
        checks += conflicts
        duplicates += repeated
        run.future.add(spec, good)
        if history.tracks_history(spec.name):
            # Accounts and people: changed rows are updated and their changes recorded.
            numbers = good.column("_row").to_pylist()
            raws = plan.raw_texts(batch, numbers)
            good = good.append_column("_raw", pa.array([raws[n] for n in numbers], pa.string()))
            upsert = history.upsert(
                warehouse,
                staging,
                spec,
                good,
                given=history.given_columns(spec, plan.given(batch)),
                source=f"import:{path.name}",
                now=run.now,
            )
            rejects += [Reject(r.row_number, r.reason, r.raw, r.column) for r in upsert.rejected]
            imported, updated = upsert.inserted, upsert.updated
            duplicates += upsert.unchanged
        else:
            unique = good.select(list(spec.column_names))
            imported = _store_new(warehouse, spec, unique, unstored=run.empty_at_start)
            duplicates += unique.num_rows - imported
        if checks:
            raws = plan.raw_texts(batch, (reject.row_number for reject in checks))
            for reject in checks:
                reject.raw = raws[reject.row_number]
            rejects += checks
    rejects.sort(key=lambda reject: reject.row_number)
    quarantined = _quarantine(warehouse, spec, path, rejects)
    return {
        "read": read,
        "imported": imported,
        "updated": updated,
        "duplicates": duplicates,
        "quarantined": quarantined,
    }


def _register_unknown_references(
    warehouse: Warehouse, staging: duckdb.DuckDBPyConnection, spec: TableSpec
) -> frozenset[str]:
    """``unknown_<column>``: the batch's values of each reference column that the parent table
    lacks (one semi-join in the warehouse per column); the columns that have some."""
    unknown = set()
    for column in spec.columns:
        if column.references is None:
            continue
        name = _quote(column.name)
        wanted = staging.execute(
            f"SELECT DISTINCT CAST({name} AS VARCHAR) AS {name} FROM _batch "
            f"WHERE {name} IS NOT NULL"
        ).fetch_arrow_table()
        target = warehouse.spec(column.references)
        if _is_duckdb_table(warehouse, target.name):
            key = _quote(target.key)
            found = _on_duckdb(
                warehouse,
                wanted,
                f"SELECT DISTINCT {key} FROM {_quote(target.name)} WHERE {key} IN "
                f"(SELECT * FROM {_ROWS})",
            )
        else:
            parent = warehouse.table(target.name)
            keys = ibis.memtable(pa.table({target.key: wanted.column(0)}))
            found = parent.semi_join(keys, target.key).select(target.key).distinct().to_pyarrow()
        missing = wanted.filter(pc.invert(pc.is_in(wanted.column(0), found.column(0))))
        staging.register(f"unknown_{column.name}", pa.table({target.key: missing.column(0)}))
        if missing.num_rows:
            unknown.add(column.name)
    return frozenset(unknown)


def _store_new(
    warehouse: Warehouse, spec: TableSpec, rows: pa.Table, *, unstored: bool = False
) -> int:
    """Append the rows whose id is not stored yet; return how many were appended.
    ``unstored``: the caller knows none of the ids is stored (no look-up is made)."""
    if rows.num_rows == 0:
        return 0
    if _is_duckdb_table(warehouse, spec.name):
        # One statement: the stored ids among the batch's (the batch is the hash join's build
        # side, the table is scanned once), and the insert of the others.
        table, key = _quote(spec.name), _quote(spec.key)
        new_only = (
            ""
            if unstored
            else f" WHERE {key} NOT IN (SELECT {key} FROM {table} WHERE {key} IN "
            f"(SELECT {key} FROM {_ROWS}))"
        )
        inserted = _on_duckdb(
            warehouse, rows, f"INSERT INTO {table} SELECT * FROM {_ROWS}{new_only}"
        )
        return int(inserted.column(0)[0].as_py() or 0)
    new_rows = _not_yet_stored(warehouse, spec, rows)
    if new_rows.num_rows:
        warehouse.append(spec.name, new_rows)
    return int(new_rows.num_rows)


def _is_empty(warehouse: Warehouse, name: str) -> bool:
    found = warehouse.backend.con.execute(f"SELECT 1 FROM {_quote(name)} LIMIT 1").fetchone()
    return found is None


def _is_duckdb_table(warehouse: Warehouse, name: str) -> bool:
    """Whether ``name`` is a table of a DuckDB warehouse (not read in place from a source)."""
    return warehouse.dialect == "duckdb" and name not in warehouse.sources


_VIEWS = itertools.count()
_ROWS = "$rows"
"""Where a query run by :func:`_on_duckdb` names the rows it is given."""


def _on_duckdb(warehouse: Warehouse, rows: pa.Table, query: str) -> pa.Table:
    """Run ``query`` on the DuckDB warehouse with ``rows`` scanned in place where it says
    :data:`_ROWS` (released right after: Ibis memtables stay registered for the connection's
    life, holding every batch in memory)."""
    connection = warehouse.backend.con
    view = f"_closeloop_import_{next(_VIEWS)}"
    connection.register(view, rows)
    try:
        return connection.execute(query.replace(_ROWS, _quote(view))).fetch_arrow_table()
    finally:
        connection.unregister(view)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _not_yet_stored(warehouse: Warehouse, spec: TableSpec, rows: pa.Table) -> pa.Table:
    if rows.num_rows == 0:
        return rows
    stored = warehouse.table(spec.name)
    keys = ibis.memtable(pa.table({spec.key: rows.column(spec.key)}))
    existing = stored.semi_join(keys, spec.key).select(spec.key).to_pyarrow().column(0)
    if len(existing) == 0:
        return rows
    return rows.filter(pc.invert(pc.is_in(rows.column(spec.key), existing)))


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
            "column_name": [_storable(r.column) for r in rejects],
            "reason": [_storable(r.reason) for r in rejects],
            "raw": [_storable(r.raw) for r in rejects],
            "quarantined_at": [now] * len(rejects),
        },
    )
    _store_new(warehouse, QUARANTINE, rows)
    return len(rejects)


def _storable(text: str | None) -> str | None:
    """Text every warehouse can store: PostgreSQL refuses NUL characters, so they are escaped."""
    return None if text is None else text.replace("\x00", "\\u0000")
