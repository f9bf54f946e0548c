"""The typed checks of an import, as SQL for the staging DuckDB, and the file's repeated ids.

Values arrive as text, or typed when a Parquet column's type is one the canonical column takes as
it is. One SELECT per batch casts each column and names the first problem of each row (column and
reason); everything here is set-based, so a batch of a million rows costs a few queries, never a
Python loop per row. What is refused, beyond "not a number" and friends:

- numbers that are not finite (``NaN``, ``inf``, ``1e400``) and whole numbers with a fraction
  (``12.7`` employees would be rounded silently);
- timestamps and dates that are not ISO 8601 (``01/02/2024`` could be January or February;
  ``epoch``, ``infinity`` and ``now`` are keywords, not times), whose UTC offset is not a real one
  (``+25:00``), or whose year is outside 1900-2199 (``0001-01-01`` and ``9999-12-31`` are
  placeholders for "none");
- text with a NUL character (PostgreSQL cannot store it), JSON that is not an object or holds
  ``NaN``/``Infinity``;
- an id the same file already used with different values (:class:`InFileIds`): the first row
  is kept, the later one quarantined with the row it clashes with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from closeloop.data.readers import SHOWN_CHARACTERS, Reject
from closeloop.data.tables import CANONICAL_TABLES, ColumnType, TableSpec

FIRST_YEAR = 1900
LAST_YEAR = 2199
TIMESTAMP_EXAMPLE = "2024-03-31T14:05:00Z"
DATE_EXAMPLE = "2024-03-31"
MAY_BE_FUTURE = frozenset({"closed_at"})
"""Timestamp columns that may rightly lie ahead (an opportunity's expected close)."""

OFFSET_PATTERN = r"[0-9]:[0-9]{2}(?::[0-9]{2}(?:[.][0-9]+)?)? ?[+-]([0-9]{2}):?([0-9]{2})?$"
_DAY_MONTH = r"[0-9]{1,2}[/.][0-9]{1,2}[/.][0-9]{2,4}.*"
_NAN_TOKEN = r"(^|[:,\[])\s*-?(NaN|Infinity)\s*([,}\]]|$)"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def shown(value: str) -> str:
    """SQL: the value as a reason quotes it (shortened; a NUL written as \\0)."""
    cut = SHOWN_CHARACTERS - 1
    return (
        f"replace(CASE WHEN length({value}) > {SHOWN_CHARACTERS} "
        f"THEN left({value}, {cut}) || '…' ELSE {value} END, chr(0), '\\0')"
    )


@dataclass(frozen=True)
class _Problem:
    condition: str  # over the first stage's columns
    column: str
    reason: str  # SQL text expression, evaluated only for the rows it is the first problem of


@dataclass
class _Checks:
    """One column's checks: helper values computed once per row (first stage), its typed value
    and its problems in order (both over the first stage)."""

    helpers: list[tuple[str, str]]
    typed: str
    problems: list[_Problem]


def _time_checks(value: str, index: int, cast: str, name: str, expected: str) -> _Checks:
    typed = f"__cast_{index}"
    offset = f"__offset_{index}"
    # Only a value with a sign after its date can have an offset; the regex runs for those only.
    signed = f"(contains(substr({value}, 11), '+') OR contains(substr({value}, 11), '-'))"
    extract = f"regexp_extract({value}, {_text(OFFSET_PATTERN)}, ['hours', 'minutes'])"
    bad_offset = (
        f"coalesce(TRY_CAST({offset}.hours AS INTEGER) > 14 "
        f"OR TRY_CAST({offset}.minutes AS INTEGER) >= 60, FALSE)"
    )
    ambiguous = (
        f"CASE WHEN regexp_full_match({value}, {_text(_DAY_MONTH)}) "
        "THEN ' (day and month order is ambiguous; write YYYY-MM-DD)' ELSE '' END"
    )
    not_iso = f"'not {expected}: ' || {shown(value)} || {ambiguous}"
    return _Checks(
        helpers=[(typed, cast), (offset, f"CASE WHEN {signed} THEN {extract} END")],
        typed=typed,
        problems=[
            # Keywords DuckDB would read (epoch, infinity) and negative years start otherwise.
            _Problem(f"NOT (substr({value}, 1, 1) BETWEEN '0' AND '9')", name, not_iso),
            _Problem(
                bad_offset,
                name,
                f"'UTC offset out of range (-14:00 to +14:00): ' || {shown(value)}",
            ),
            _Problem(f"{typed} IS NULL", name, not_iso),
            _Problem(
                f"year({typed}) NOT BETWEEN {FIRST_YEAR} AND {LAST_YEAR}",
                name,
                f"'year ' || year({typed}) || ' is out of range ({FIRST_YEAR} to {LAST_YEAR}): ' "
                f"|| {shown(value)} || "
                "' (a placeholder? leave the value empty when there is none)'",
            ),
        ],
    )


def _typed_checks(spec: TableSpec, index: int) -> _Checks:
    """The checks of the ``index``-th column of ``spec`` when its values arrive typed (a
    Parquet number, boolean, date or time of a type the column takes as it is)."""
    column = spec.columns[index]
    value, name = quote(column.name), column.name
    if column.type is ColumnType.FLOAT:
        typed = f"CAST({value} AS DOUBLE)"
        return _Checks(
            helpers=[],
            typed=typed,
            problems=[
                _Problem(
                    f"NOT isfinite({typed})",
                    name,
                    f"'not a finite number: ' || {shown(f'CAST({value} AS VARCHAR)')} || "
                    "' (leave the value empty when there is none)'",
                )
            ],
        )
    if column.type in (ColumnType.TIMESTAMP, ColumnType.DATE):
        # Zoned times become UTC (the staging session's time zone), as zoned text does.
        kind = "TIMESTAMP" if column.type is ColumnType.TIMESTAMP else "DATE"
        typed = f"CAST({value} AS {kind})"
        text = (
            f"strftime({typed}, '%Y-%m-%dT%H:%M:%S')"
            if kind == "TIMESTAMP"
            else (f"CAST({typed} AS VARCHAR)")
        )
        return _Checks(
            helpers=[],
            typed=typed,
            problems=[
                _Problem(
                    f"year({typed}) NOT BETWEEN {FIRST_YEAR} AND {LAST_YEAR}",
                    name,
                    f"'year ' || year({typed}) || ' is out of range ({FIRST_YEAR} to "
                    f"{LAST_YEAR}): ' || {shown(text)} || "
                    "' (a placeholder? leave the value empty when there is none)'",
                )
            ],
        )
    cast = "BIGINT" if column.type is ColumnType.INTEGER else "BOOLEAN"
    return _Checks(helpers=[], typed=f"CAST({value} AS {cast})", problems=[])


def _column_checks(spec: TableSpec, index: int) -> _Checks:
    """The checks of the ``index``-th column of ``spec`` beyond "missing" and NUL characters."""
    column = spec.columns[index]
    value, name = quote(column.name), column.name
    typed = f"__cast_{index}"
    if column.type is ColumnType.INTEGER:
        number = f"__number_{index}"
        return _Checks(
            helpers=[
                (typed, f"TRY_CAST({value} AS BIGINT)"),
                (number, f"TRY_CAST({value} AS DOUBLE)"),
            ],
            typed=typed,
            problems=[
                # "12.7" would be rounded to 13 by the cast: a whole number must be one.
                _Problem(
                    f"({number} = {typed}) IS NOT TRUE",
                    name,
                    f"'not a whole number: ' || {shown(value)}",
                )
            ],
        )
    if column.type is ColumnType.FLOAT:
        return _Checks(
            helpers=[(typed, f"TRY_CAST({value} AS DOUBLE)")],
            typed=typed,
            problems=[
                _Problem(f"{typed} IS NULL", name, f"'not a number: ' || {shown(value)}"),
                _Problem(
                    f"NOT isfinite({typed})",
                    name,
                    f"'not a finite number: ' || {shown(value)} || "
                    "' (leave the value empty when there is none)'",
                ),
            ],
        )
    if column.type is ColumnType.BOOLEAN:
        return _Checks(
            helpers=[(typed, f"TRY_CAST({value} AS BOOLEAN)")],
            typed=typed,
            problems=[
                _Problem(f"{typed} IS NULL", name, f"'not true or false: ' || {shown(value)}")
            ],
        )
    if column.type is ColumnType.TIMESTAMP:
        cast = f"CAST(TRY_CAST({value} AS TIMESTAMPTZ) AS TIMESTAMP)"
        return _time_checks(value, index, cast, name, f"a timestamp like {TIMESTAMP_EXAMPLE}")
    if column.type is ColumnType.DATE:
        cast = f"TRY_CAST({value} AS DATE)"
        return _time_checks(value, index, cast, name, f"a date like {DATE_EXAMPLE}")
    if column.type is ColumnType.JSON:
        # Valid JSON that starts with "{" is an object; NaN is looked for only where it can be.
        is_object = f"(json_valid({value}) AND starts_with(ltrim({value}), '{{'))"
        has_nan = (
            f"((contains({value}, 'NaN') OR contains({value}, 'Infinity')) "
            f"AND regexp_matches({value}, {_text(_NAN_TOKEN)}))"
        )
        return _Checks(
            helpers=[],
            typed=value,
            problems=[
                _Problem(f"NOT {is_object}", name, f"'not a JSON object: ' || {shown(value)}"),
                _Problem(
                    has_nan,
                    name,
                    f"'NaN and Infinity are not valid JSON numbers: ' || {shown(value)}",
                ),
                _Problem(
                    f"contains({value}, '\\u0000')",
                    name,
                    f"'contains an escaped NUL character (\\u0000): ' || {shown(value)}",
                ),
            ],
        )
    return _Checks(helpers=[], typed=value, problems=[])


def _gathered(
    spec: TableSpec, typed: frozenset[str], unknown: frozenset[str] | None, parents: bool
) -> tuple[list[tuple[str, str]], list[str], list[_Problem]]:
    """Each column's helpers (name, SQL), typed value (``… AS "column"``) and problems."""
    helpers: list[tuple[str, str]] = []
    typed_columns: list[str] = []
    problems: list[_Problem] = []
    for index, column in enumerate(spec.columns):
        value = quote(column.name)
        is_typed = column.name in typed
        checks = _typed_checks(spec, index) if is_typed else _column_checks(spec, index)
        helpers += checks.helpers
        typed_columns.append(f"{checks.typed} AS {value}")
        if not is_typed:
            problems.append(
                _Problem(
                    f"contains({value}, chr(0))",
                    column.name,
                    f"'contains a NUL character at position ' || strpos({value}, chr(0)) || "
                    "' (a binary or corrupted export?)'",
                )
            )
        if column.required:
            problems.append(_Problem(f"{value} IS NULL", column.name, "'missing required value'"))
        problems += [
            _Problem(f"{value} IS NOT NULL AND {p.condition}", p.column, p.reason)
            for p in checks.problems
        ]
        if column.references is not None and (parents or unknown is None or column.name in unknown):
            parent_key = quote(CANONICAL_TABLES[column.references].key)
            lookup = (
                f"NOT IN (SELECT {parent_key} FROM {quote(column.references)})"
                if parents
                else f"IN (SELECT {parent_key} FROM unknown_{column.name})"
            )
            problems.append(
                _Problem(
                    f"{value} {lookup}",
                    column.name,
                    f"'unknown {column.name} ' || {shown(value)} || "
                    f"' (import {column.references} first)'",
                )
            )
    return helpers, typed_columns, problems


def check_sql(
    spec: TableSpec,
    table: str,
    typed: frozenset[str] = frozenset(),
    unknown: frozenset[str] | None = None,
    *,
    parents: bool = False,
    materialized: bool = True,
) -> str:
    """SELECT over ``table`` (columns of ``spec`` plus ``_row``, text but for the ``typed``
    ones): each row's first problem (``_problem_column``, ``_problem_reason``) and its typed
    columns, in the order of ``table``.

    A reference column's values that its parent table lacks are in table ``unknown_<column>``;
    ``unknown`` names the columns that have some (None: every reference column), the others
    need no look-up. ``parents``: look the values up in the parent tables themselves instead
    (the query runs on the warehouse).

    Casts and the like are computed once per row in a first stage; the second finds the first
    problem by its number, and only that problem's reason is built. ``materialized``: the first
    stage is held whole (right for a batch); otherwise it streams (a whole file read by DuckDB,
    where holding it costs more than computing a cast twice).
    """
    helpers, typed_columns, problems = _gathered(spec, typed, unknown, parents)
    which = " ".join(f"WHEN {p.condition} THEN {i}" for i, p in enumerate(problems))
    columns = " ".join(f"WHEN {i} THEN {_text(p.column)}" for i, p in enumerate(problems))
    reasons = " ".join(f"WHEN {i} THEN {p.reason}" for i, p in enumerate(problems))
    # Helpers are computed once per row in a first stage (none: typed values need none).
    computed = ", ".join(f"{sql} AS {name}" for name, sql in helpers)
    held = "MATERIALIZED" if materialized else "NOT MATERIALIZED"
    staged = f"staged AS {held} (SELECT *, {computed} FROM {table}), "
    return (
        f"WITH {staged if helpers else ''}"
        f"numbered AS (SELECT *, CASE {which} END AS _problem "
        f"FROM {'staged' if helpers else table}) "
        f"SELECT _row, CASE _problem {columns} END AS _problem_column, "
        f"CASE _problem {reasons} END AS _problem_reason, {', '.join(typed_columns)} "
        "FROM numbered"
    )


def typed_sql(spec: TableSpec, table: str, typed: frozenset[str] = frozenset()) -> str:
    """SELECT over ``table`` (as for :func:`check_sql`) of ``_row`` and the typed columns
    alone, without the checks: for rows known to pass them, the values :func:`check_sql`
    gives them."""
    helpers, typed_columns, _ = _gathered(spec, typed, None, False)
    # Only the casts a typed value is (a helper that serves a check alone is left out).
    values = {column.rpartition(" AS ")[0] for column in typed_columns}
    needed = [f"{sql} AS {name}" for name, sql in helpers if name in values]
    source = f"(SELECT *, {', '.join(needed)} FROM {table})" if needed else table
    return f"SELECT _row, {', '.join(typed_columns)} FROM {source}"


class InFileIds:
    """The ids a file has used so far (with a hash of each first row's values), so a repeated id
    is told apart: the same values again is a duplicate, different values a conflict.

    The ids live in a table of the staging database, which spills to its file beyond its memory
    limit: memory stays bounded however many rows the file has.
    """

    def __init__(
        self,
        staging: duckdb.DuckDBPyConnection,
        spec: TableSpec,
        repeated: pa.Array | None = None,
    ) -> None:
        self.staging = staging
        self.spec = spec
        # The ids the file holds more than once, when a pass over its id column found them:
        # a row with another id is the only one of its id, so only these need remembering.
        self.repeated = repeated
        # Joined on a hash of the id (numbers join fast), then compared on the id itself.
        staging.execute(
            "CREATE OR REPLACE TABLE _seen_ids "
            "(_id_hash UBIGINT, id VARCHAR, _row BIGINT, _hash UBIGINT)"
        )

    def classify(self, good: pa.Table) -> tuple[pa.Table, int, list[Reject]]:
        """Of rows that passed every check: the first of each id (the rows to store), how many
        repeat an earlier row exactly, and the rejects of ids repeated with other values (their
        ``raw`` left empty for the caller to fill in)."""
        if good.num_rows == 0:
            return good, 0, []
        if self.repeated is not None:
            ids = good.column(self.spec.key).cast(pa.string())
            maybe = pc.is_in(ids, value_set=self.repeated)
            if not pc.any(maybe).as_py():
                return good, 0, []
            candidates = good.filter(maybe)
            firsts, duplicates, rejects = self._classify(candidates)
            kept = pc.is_in(good.column("_row"), value_set=firsts.column("_row"))
            return good.filter(pc.or_(pc.invert(maybe), kept)), duplicates, rejects
        return self._classify(good)

    def _classify(self, good: pa.Table) -> tuple[pa.Table, int, list[Reject]]:
        key = quote(self.spec.key)
        values = ", ".join(quote(name) for name in self.spec.column_names)
        staging = self.staging
        rows = (
            f"(SELECT _row, CAST({key} AS VARCHAR) AS id, hash(CAST({key} AS VARCHAR)) "
            f"AS _id_hash, hash({values}) AS _hash FROM _good_rows)"
        )
        staging.register("_good_rows", good)
        try:
            # Only the rows that are not the first of their id come back: usually none.
            exceptions = staging.execute(
                f"WITH batch AS MATERIALIZED {rows}, "
                "seen AS (SELECT b._row, b.id, b._hash, s._row AS _seen_row, "
                "s._hash AS _seen_hash FROM batch AS b JOIN _seen_ids AS s "
                "ON b._id_hash = s._id_hash AND b.id = s.id), "
                "repeated AS (SELECT * FROM batch WHERE _id_hash IN "
                "(SELECT _id_hash FROM batch GROUP BY _id_hash HAVING count(*) > 1) "
                "AND id NOT IN (SELECT id FROM seen)), "
                "ranked AS (SELECT *, first_value(_row) OVER w AS _first_row, "
                "first_value(_hash) OVER w AS _first_hash FROM repeated "
                "WINDOW w AS (PARTITION BY id ORDER BY _row)) "
                "SELECT _row, id, _hash = _seen_hash AS _same, _seen_row AS _first_row "
                "FROM seen UNION ALL SELECT _row, id, _hash = _first_hash, _first_row "
                "FROM ranked WHERE _row <> _first_row ORDER BY _row"
            ).fetch_arrow_table()
            later = ""
            if exceptions.num_rows:
                staging.register("_exceptions", exceptions)
                later = " WHERE _row NOT IN (SELECT _row FROM _exceptions)"
            staging.execute(
                f"INSERT INTO _seen_ids SELECT _id_hash, id, _row, _hash FROM {rows}{later}"
            )
        finally:
            staging.unregister("_good_rows")
            staging.unregister("_exceptions")
        if exceptions.num_rows:
            later_rows = pc.is_in(good.column("_row"), exceptions.column("_row"))
            good = good.filter(pc.invert(later_rows))
        duplicates = 0
        rejects = []
        name = self.spec.key
        for row in exceptions.to_pylist():
            if row["_same"]:
                duplicates += 1
                continue
            rejects.append(
                Reject(
                    row["_row"],
                    f"{name} {row['id']!r} is repeated with different values (first at row "
                    f"{row['_first_row']}, which is kept); give each row its own {name} or drop "
                    "the stale copy",
                    "",
                    column=name,
                    code="conflicting_id",
                )
            )
        return good, duplicates, rejects


@dataclass
class FutureRows:
    """Rows dated more than a day after the import (kept, and counted for a warning)."""

    cutoff: datetime
    count: int = 0
    latest: datetime | None = None
    latest_row: int | None = None
    latest_column: str | None = None

    def add(self, spec: TableSpec, rows: pa.Table) -> None:
        columns = [
            c.name
            for c in spec.columns
            if c.type is ColumnType.TIMESTAMP and c.name not in MAY_BE_FUTURE
        ]
        if not columns or rows.num_rows == 0:
            return
        cutoff = pa.scalar(self.cutoff, pa.timestamp("us"))
        ahead = None
        for name in columns:
            column = rows.column(name).cast(pa.timestamp("us"))
            later = pc.fill_null(pc.greater(column, cutoff), False)
            ahead = later if ahead is None else pc.or_(ahead, later)
            if pc.any(later).as_py():
                index = pc.index(column, pc.max(column)).as_py()
                value = column[index].as_py()
                if self.latest is None or value > self.latest:
                    self.latest, self.latest_column = value, name
                    self.latest_row = rows.column("_row")[index].as_py()
        if ahead is not None:
            self.count += int(pc.sum(ahead).as_py() or 0)

    def warning(self) -> str | None:
        if not self.count or self.latest is None:
            return None
        return (
            f"{self.count:,} row{'s are' if self.count != 1 else ' is'} dated more than a day "
            f"after now (the latest: {self.latest_column} {self.latest.isoformat()} at row "
            f"{self.latest_row}); they were imported — check the export's clock or time zone"
        )
