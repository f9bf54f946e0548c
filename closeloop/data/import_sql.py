"""The fast path of an import: DuckDB reads a Parquet file itself and checks it set-based.

When the warehouse is DuckDB and the file is a Parquet file whose columns are all canonical (of
text or of a type the canonical column takes as it is), the import runs inside the warehouse
connection, in one transaction, without the file's rows ever reaching Python:

1. one scan of the id column of ``read_parquet(path, file_row_number = true)`` finds the
   hashes of ids the file holds more than once;
2. one scan through the same checks as the batch path
   (:func:`closeloop.data.import_checks.check_sql`; unknown references looked up in the parent
   table) returns the rows that fail, with their column and reason, the good rows dated in the
   future, and the good rows whose id may be repeated (all usually few): of those, the first row
   of each id is kept and a later one is a duplicate (same values) or a conflict (other values);
3. one ``INSERT … SELECT`` stores the typed values of the other rows whose id is not stored
   yet: the failed and later rows are left out by number, so the checks do not run again (a
   temporary table of the checked rows, read by both, measured slower: DuckDB inserts from it
   more slowly than from the file); the quarantine gets the failed rows with the reasons, raw
   rows and ids of the batch path (the raw rows picked out of the file by DuckDB).

DuckDB streams each statement; during the import the connection runs under
:data:`MEMORY_LIMIT` with a temporary folder to spill to (both restored after), so memory stays
bounded whatever the file's size. :func:`fast_plan` says whether a file qualifies; everything
else (PostgreSQL warehouses, CSV and JSON Lines, accounts and people, extra columns, odd types)
keeps the batch path of :mod:`closeloop.data.importer`, which gives the same outcome. A CSV file
stays there because it is parsed once there: each pass here would parse it again (or write it
to Parquet first), which measured slower than the batch path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from closeloop.data import history
from closeloop.data.import_checks import MAY_BE_FUTURE, FutureRows, check_sql, quote, typed_sql
from closeloop.data.import_columns import ColumnPlan, normalized_value
from closeloop.data.readers import ROW, Reject, SourceFile, TextBatch, parquet_columns
from closeloop.data.tables import ColumnType, TableSpec
from closeloop.data.warehouse import Warehouse

MEMORY_LIMIT = "1GB"
"""The warehouse connection's memory during a fast import; beyond it DuckDB spills to disk."""
_WHITESPACE = "".join(
    chr(code)
    for code in (
        *range(0x09, 0x0E),
        *range(0x1C, 0x20),
        0x20,
        0x85,
        0xA0,
        0x1680,
        *range(0x2000, 0x200B),
        0x2028,
        0x2029,
        0x202F,
        0x205F,
        0x3000,
    )
)
"""What Arrow's ``utf8_trim_whitespace`` trims (the batch path trims text with it)."""


@dataclass(frozen=True)
class FastPlan:
    """A file the fast path imports: its path, which canonical columns arrive typed."""

    path: Path
    typed: frozenset[str]
    empty_at_start: bool


@dataclass
class FastOutcome:
    read: int
    imported: int
    duplicates: int
    rejects: list[Reject]
    future: FutureRows


def fast_plan(warehouse: Warehouse, plan: ColumnPlan, source: SourceFile) -> FastPlan | None:
    """The fast path's plan for ``source``, or None when the batch path must import it: not a
    DuckDB warehouse, not Parquet, a table that keeps history, a parent table read in place, a
    file column that is not canonical, repeated or renamed by the reader, or of a type the
    batch path would convert to text itself."""
    spec = plan.spec
    if warehouse.dialect != "duckdb" or source.format != "parquet":
        return None
    if history.tracks_history(spec.name) or spec.name in warehouse.sources:
        return None
    if any(c.references in warehouse.sources for c in spec.columns if c.references):
        return None
    try:
        schema = pq.read_schema(source.path)
    except (pa.ArrowException, OSError):
        return None  # the batch path says why it cannot be read
    names = schema.names
    if len(set(names)) != len(names) or any(name != name.strip() or not name for name in names):
        return None
    if set(names) - plan.used:
        return None  # extra columns: the batch path merges them into properties
    typed: set[str] = set()
    for column in spec.columns:
        source_name = plan.source(column.name)
        if source_name not in names:
            continue
        kind = schema.field(source_name).type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            continue
        if pa.types.is_float16(kind):
            return None
        _, is_typed = plan.canonical_values(column.name, pa.nulls(0, kind))
        if not is_typed:
            return None
        typed.add(column.name)
    connection = warehouse.backend.con
    empty = connection.execute(f"SELECT 1 FROM {quote(spec.name)} LIMIT 1").fetchone() is None
    return FastPlan(source.path, frozenset(typed), empty)


def _file_sql(path: Path) -> str:
    text = str(path).replace("'", "''")
    return f"read_parquet('{text}', file_row_number = true)"


def _source_sql(plan: ColumnPlan, fast: FastPlan, only: str | None = None) -> str:
    """SELECT of the file's rows as the batch path stages them: ``_row`` and each canonical
    column (typed as it is, or text trimmed with blank made null, then normalised); ``only``:
    that canonical column alone, without row numbers."""
    schema = pq.read_schema(fast.path)
    selected = [] if only is not None else [f"file_row_number + 1 AS {ROW}"]
    for column in plan.spec.columns:
        if only is not None and column.name != only:
            continue
        name = quote(column.name)
        source = plan.source(column.name)
        if source not in schema.names:
            selected.append(f"CAST(NULL AS VARCHAR) AS {name}")
            continue
        value = quote(source)
        if column.name in fast.typed:
            selected.append(f"{value} AS {name}")
            continue
        text = f"nullif({_trimmed(value)}, '')"
        rule = plan.normalize.get(column.name)
        if rule is not None:
            text = normalized_value(text, rule)
        selected.append(f"{text} AS {name}")
    return f"(SELECT {', '.join(selected)} FROM {_file_sql(fast.path)})"


def _trimmed(value: str) -> str:
    """SQL: ``value`` trimmed as Arrow trims it; the trim of a character set is costly, so it
    runs only for values that start or end with one of its characters (a few; an empty value,
    which every text "contains", is left as it is)."""
    spaces = _WHITESPACE.replace("'", "''")
    return (
        f"CASE WHEN {value} <> '' AND (contains('{spaces}', substring({value}, 1, 1)) "
        f"OR contains('{spaces}', substring({value}, -1, 1))) "
        f"THEN trim({value}, '{spaces}') ELSE {value} END"
    )


def _checked_sql(spec: TableSpec, source: str, typed: frozenset[str]) -> str:
    """The checks of the batch path over ``source``, unknown references looked up in the parent
    table (the batch path gathers them per batch first: the same rows fail)."""
    query = check_sql(spec, source, typed, parents=True, materialized=False)
    return f"({query})"


def _future_columns(spec: TableSpec) -> list[str]:
    return [
        c.name
        for c in spec.columns
        if c.type is ColumnType.TIMESTAMP and c.name not in MAY_BE_FUTURE
    ]


class FastPathError(Exception):
    """DuckDB could not import the file as the batch path would (invalid UTF-8, a broken row
    group, not enough memory): nothing was written, the batch path imports it instead."""


@contextmanager
def _import_settings(connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The connection under :data:`MEMORY_LIMIT`, in UTC, without insertion-order preservation
    (so a large insert spills instead of holding its rows) nor DuckDB's own progress bar, the
    previous settings restored after. A file warehouse spills to its own temporary folder
    (``<file>.tmp``); an in-memory one holds its tables in memory anyway."""
    names = ("memory_limit", "TimeZone", "preserve_insertion_order", "enable_progress_bar")
    before = {
        name: connection.execute(f"SELECT current_setting('{name}')").fetchone() for name in names
    }
    connection.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("SET preserve_insertion_order = false")
    connection.execute("SET enable_progress_bar = false")  # the caller shows progress
    try:
        yield
    finally:
        for name, row in before.items():
            value = "" if row is None or row[0] is None else str(row[0])
            connection.execute(f"SET {name} = '{value.replace(chr(39), chr(39) * 2)}'")


def fast_import(
    warehouse: Warehouse,
    plan: ColumnPlan,
    fast: FastPlan,
    future: FutureRows,
    quarantine: Callable[[list[Reject]], int],
    progress: Callable[[int, float], None],
) -> FastOutcome:
    """Import the file of ``fast`` in one transaction of the warehouse connection (see the
    module's docstring); ``quarantine`` writes the rejects (within the transaction). Raises
    :class:`FastPathError` when DuckDB fails before the commit (all rolled back)."""
    connection = warehouse.backend.con
    with _import_settings(connection):
        connection.execute("BEGIN TRANSACTION")
        try:
            outcome = _run(connection, plan, fast, future, quarantine, progress)
        except BaseException as error:
            connection.execute("ROLLBACK")
            if isinstance(error, duckdb.Error):
                raise FastPathError(str(error)) from error
            raise
        connection.execute("COMMIT")
    return outcome


def _run(
    connection: duckdb.DuckDBPyConnection,
    plan: ColumnPlan,
    fast: FastPlan,
    future: FutureRows,
    quarantine: Callable[[list[Reject]], int],
    progress: Callable[[int, float], None],
) -> FastOutcome:
    spec = plan.spec
    key = quote(spec.key)
    total = pq.ParquetFile(fast.path).metadata.num_rows
    source = _source_sql(plan, fast)
    checked = _checked_sql(spec, source, fast.typed)
    futures = _future_columns(spec)
    cutoff = future.cutoff.isoformat(sep=" ")
    ahead = " OR ".join(f"{quote(name)} > TIMESTAMP '{cutoff}'" for name in futures)
    shown = ", ".join(f"CAST({quote(name)} AS TIMESTAMP) AS {quote(name)}" for name in futures)
    values = ", ".join(quote(name) for name in spec.column_names)
    # 1. Ids the file holds more than once, by hash (over the id column alone: cheap).
    id_hash = f"hash(CAST({key} AS VARCHAR))"
    ids = _source_sql(plan, fast, only=spec.key)
    repeated = connection.execute(
        f"SELECT {id_hash} AS h FROM {ids} GROUP BY h HAVING count(*) > 1"
    ).fetch_arrow_table()
    progress(0, 0.2)
    # 2. One scan through the checks: the rows that fail one, the good rows dated in the
    # future, and the good rows whose id may be repeated (with their id and values' hash).
    candidate = (
        f"(_problem_reason IS NULL AND {id_hash} IN (SELECT h FROM _closeloop_repeated))"
        if repeated.num_rows
        else "FALSE"
    )
    flagged_sql = (
        f"SELECT {ROW}, _problem_column, _problem_reason, "
        f"CASE WHEN {candidate} THEN CAST({key} AS VARCHAR) END AS _id, "
        f"CASE WHEN {candidate} THEN hash({values}) END AS _hash"
        f"{', ' + shown if futures else ''} FROM {checked} "
        f"WHERE _problem_reason IS NOT NULL OR {candidate}{' OR ' + ahead if futures else ''} "
        f"ORDER BY {ROW}"
    )
    connection.register("_closeloop_repeated", repeated)
    try:
        flagged = connection.execute(flagged_sql).fetchall()
    finally:
        connection.unregister("_closeloop_repeated")
    progress(0, 0.5)
    failed = {found[0]: (found[1], found[2]) for found in flagged if found[2] is not None}
    # The first good row of each id is kept; a later one is an exception (same values or not).
    exceptions: list[tuple[int, str, bool, int]] = []
    firsts: dict[str, tuple[int, object]] = {}
    for found in flagged:
        if found[2] is not None or found[3] is None:
            continue
        number, id_text, hashed = int(found[0]), str(found[3]), found[4]
        first = firsts.setdefault(id_text, (number, hashed))
        if first[0] != number:
            exceptions.append((number, id_text, first[1] == hashed, first[0]))
    later_rows = {number for number, _, _, _ in exceptions}
    # 3. The first row of each id, when not stored yet: the rows that failed a check are
    # known by number, so the insert reads the file without running the checks again.
    kept = f"(SELECT * FROM ({typed_sql(spec, source, fast.typed)}) WHERE {ROW} NOT IN "
    kept += "(SELECT n FROM _closeloop_excluded))"
    stored = (
        "" if fast.empty_at_start else f" WHERE {key} NOT IN (SELECT {key} FROM {quote(spec.name)})"
    )
    excluded = sorted(later_rows | set(failed))
    connection.register("_closeloop_excluded", pa.table({"n": pa.array(excluded, pa.int64())}))
    try:
        inserted = connection.execute(
            f"INSERT INTO {quote(spec.name)} SELECT {values} FROM {kept}{stored}"
        ).fetchone()
    finally:
        connection.unregister("_closeloop_excluded")
    imported = int(inserted[0]) if inserted is not None and inserted[0] is not None else 0
    future_rows = [
        (found[0], found[1], found[2], *found[5:])
        for found in flagged
        if found[2] is None and found[0] not in later_rows
    ]
    _count_future(future, futures, future_rows)
    rejects = [Reject(row, reason, "", column) for row, (column, reason) in failed.items()]
    in_file_duplicates = 0
    for row, id_text, same, first_row in exceptions:
        if same:
            in_file_duplicates += 1
            continue
        rejects.append(
            Reject(
                row,
                f"{spec.key} {id_text!r} is repeated with different values (first at row "
                f"{first_row}, which is kept); give each row its own {spec.key} or drop "
                "the stale copy",
                "",
                column=spec.key,
                code="conflicting_id",
            )
        )
    rejects.sort(key=lambda reject: reject.row_number)
    raws = raw_texts(connection, plan, fast.path, [reject.row_number for reject in rejects])
    for reject in rejects:
        reject.raw = raws[reject.row_number]
    quarantine(rejects)
    firsts_count = total - len(rejects) - in_file_duplicates
    progress(total, 1.0)
    return FastOutcome(
        read=total,
        imported=imported,
        duplicates=in_file_duplicates + firsts_count - imported,
        rejects=rejects,
        future=future,
    )


def _count_future(future: FutureRows, columns: list[str], rows: list[tuple[object, ...]]) -> None:
    """What :meth:`FutureRows.add` counts, from the flagged rows (``_row``, column, reason,
    then the future columns' values)."""
    for row in rows:
        later = False
        for index, name in enumerate(columns):
            value = row[3 + index]
            if isinstance(value, datetime) and value > future.cutoff:
                later = True
                if future.latest is None or value > future.latest:
                    future.latest, future.latest_column = value, name
                    future.latest_row = int(row[0])  # type: ignore[call-overload]
        if later:
            future.count += 1


def raw_texts(
    connection: duckdb.DuckDBPyConnection, plan: ColumnPlan, path: Path, row_numbers: list[int]
) -> dict[int, str]:
    """The rows numbered ``row_numbers`` as the batch path reads them, as JSON (the
    quarantine's ``raw``): DuckDB picks them out of the file (by ``file_row_number``), cast back
    to the file's Arrow schema (a zoned time keeps its zone, so it is written as the batch path
    writes it)."""
    if not row_numbers:
        return {}
    schema = pq.read_schema(path)
    wanted = pa.table({"n": pa.array(sorted({n - 1 for n in row_numbers}), pa.int64())})
    connection.register("_closeloop_wanted", wanted)
    try:
        picked = connection.execute(
            f"SELECT * FROM {_file_sql(path)} "
            "WHERE file_row_number IN (SELECT n FROM _closeloop_wanted) ORDER BY file_row_number"
        ).fetch_arrow_table()
    finally:
        connection.unregister("_closeloop_wanted")
    numbers = picked.column("file_row_number").to_pylist()
    rows = picked.drop_columns(["file_row_number"]).cast(schema)
    found: dict[int, str] = {}
    for index, number in enumerate(numbers):
        for record_batch in rows.slice(index, 1).to_batches():
            batch: TextBatch = parquet_columns(record_batch, schema.names, int(number))
            found.update(plan.raw_texts(batch, [int(number) + 1]))
    return found
