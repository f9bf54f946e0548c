"""Attribute history: re-imports that update accounts and people, and values as they were at T.

Write side (:func:`upsert`): a staged batch of valid ``accounts`` or ``people`` rows is compared,
set-based in the importer's staging DuckDB, with the stored rows of the same ids. New ids are
inserted; a stored row whose values differ is updated, and each changed attribute is appended to
``attribute_history`` with its valid-from time: the row's ``valid_from`` or ``updated_at`` (extra
columns of the file), else the import time. The first time an attribute changes, the value it had
is recorded too, valid from the row's ``created_at`` (from the beginning when there is none), so
"as of" a time before the change still answers with it; attributes that never change cost no
history at all. Only columns the file has are compared (a file of ``account_id, created_at, plan``
leaves owners alone). History is written before the table is updated, and a row equal to one already
recorded is not written again, so re-importing the same file adds nothing and a crash between the
two writes is repaired by importing the file again.

Read side (:func:`as_of`, :func:`as_of_each`): each stored attribute reads the latest history
row of (entity, id, name) with ``valid_from <= T``, and the table's value when there is none.
Write-backs (``send: set_attribute``) append to the same table and are read the same way. Both are
Ibis expressions, so they run in the warehouse (DuckDB, PostgreSQL, ...).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import uuid4

import duckdb
import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow as pa

from closeloop.data.import_checks import FIRST_YEAR, LAST_YEAR, OFFSET_PATTERN
from closeloop.data.tables import ACCOUNTS, ATTRIBUTE_HISTORY, PEOPLE, ColumnType, TableSpec
from closeloop.data.warehouse import Warehouse

ENTITIES = {ACCOUNTS.name: "account", PEOPLE.name: "person"}
"""Tables whose re-imports update rows, and the entity their history is recorded under."""

VALID_FROM_COLUMNS = ("valid_from", "updated_at")

# A valid-from time passes the import's own timestamp checks (closeloop.data.import_checks): it
# starts with a digit (not `epoch`, `infinity` or a negative year), its UTC offset is within
# -14:00..+14:00 and its year within FIRST_YEAR..LAST_YEAR; anything else is a rejected row.
_VALID_CAST = "CAST(TRY_CAST(_valid_text AS TIMESTAMPTZ) AS TIMESTAMP)"
_VALID_OFFSET = f"regexp_extract(_valid_text, '{OFFSET_PATTERN}', ['hours', 'minutes'])"
_VALID_AT = (
    "CASE WHEN substr(_valid_text, 1, 1) BETWEEN '0' AND '9' "
    f"AND NOT coalesce(TRY_CAST({_VALID_OFFSET}.hours AS INTEGER) > 14 "
    f"OR TRY_CAST({_VALID_OFFSET}.minutes AS INTEGER) >= 60, FALSE) "
    f"AND year({_VALID_CAST}) BETWEEN {FIRST_YEAR} AND {LAST_YEAR} "
    f"THEN {_VALID_CAST} END"
)
"""Extra columns of a file that say since when a row's values hold (the first one present wins)."""

BASELINE_SOURCE = "stored"
"""The source of a recorded value an attribute had before its first recorded change."""

BEGINNING = datetime(1970, 1, 1)
"""Valid-from of a value recorded before its first change when the row has no ``created_at``."""

# Columns never compared as attributes: the key, and creation (which bounds when a unit exists).
_NOT_ATTRIBUTES = ("created_at",)
_HAS_HISTORY: weakref.WeakSet[Warehouse] = weakref.WeakSet()
# Inside `recorded_names_fixed`: (warehouse, entity) -> the attribute names with history.
_RECORDED: ContextVar[dict[tuple[int, str], frozenset[str]] | None] = ContextVar(
    "closeloop_history_recorded", default=None
)
_DATE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIMESTAMP_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?$"


@dataclass(frozen=True)
class Rejected:
    """A staged row refused here (its valid-from is not a time), located for the quarantine."""

    row_number: int
    column: str
    reason: str
    raw: str


@dataclass(frozen=True)
class Upsert:
    """What became of a batch's valid rows: every row is counted exactly once."""

    inserted: int
    updated: int
    unchanged: int  # stored as they are, or an id repeated in the batch (the first one counts)
    history: int  # attribute_history rows written
    rejected: tuple[Rejected, ...] = ()


def tracks_history(table: str) -> bool:
    """Whether re-imports of ``table`` update changed rows and record attribute history."""
    return table in ENTITIES


def attribute_columns(spec: TableSpec) -> tuple[str, ...]:
    """The columns of ``spec`` whose changes are recorded in history."""
    return tuple(c for c in spec.column_names if c != spec.key and c not in _NOT_ATTRIBUTES)


def given_columns(spec: TableSpec, names: Iterable[str]) -> tuple[str, ...]:
    """The columns of ``spec`` a file with columns ``names`` sets: its canonical columns, and
    ``properties`` when it has one or extra columns (besides its valid-from column)."""
    present = set(names)
    extras = present - set(spec.column_names) - set(VALID_FROM_COLUMNS)
    given = [c for c in spec.column_names if c in present]
    if "properties" in spec.column_names and extras and "properties" not in given:
        given.append("properties")
    return tuple(given)


# -- write side -----------------------------------------------------------------------------------


def upsert(
    warehouse: Warehouse,
    staging: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    rows: pa.Table,
    *,
    given: Sequence[str],
    source: str,
    now: datetime | None = None,
) -> Upsert:
    """Insert new rows of ``spec`` (accounts or people), update changed ones, record history.

    ``rows`` are staged rows that passed every check: the typed columns of ``spec`` plus ``_row``
    (the file's row number) and ``_raw`` (the row as read). ``given`` names the columns the file
    has; others keep their stored values. ``source`` is recorded with each change (e.g.
    ``import:accounts.csv``); ``now`` is the import time (valid-from of rows without one).
    """
    entity = ENTITIES[spec.name]
    recorded = (now or datetime.now(UTC)).replace(tzinfo=None)
    keys = ibis.memtable(pa.table({spec.key: rows.column(spec.key).cast(pa.string())}))
    stored_table = warehouse.table(spec.name)
    stored = stored_table.semi_join(keys, spec.key).select(*spec.column_names).to_pyarrow()
    history = warehouse.table(ATTRIBUTE_HISTORY.name)
    existing = (
        history.filter(history.entity == entity)
        .semi_join(keys.rename(entity_id=spec.key), "entity_id")
        .select("entity_id", "name", "value", "valid_from")
        .to_pyarrow()
    )
    plan = _Plan(spec, given)
    with _registered(staging, incoming=rows, stored=stored, existing=existing):
        try:
            staging.execute(plan.parse_sql())
            rejected = tuple(
                Rejected(
                    row,
                    column,
                    f"not a timestamp like 2024-03-31T14:05:00Z with a UTC offset within ±14:00 "
                    f"and a year from {FIRST_YEAR} to {LAST_YEAR}: {text}",
                    raw,
                )
                for row, column, text, raw in staging.execute(plan.rejects_sql()).fetchall()
            )
            staging.execute(plan.rows_sql(), [recorded])
            staging.execute(plan.history_sql(entity, source), [recorded])
            staging.execute(plan.updates_sql())
            inserts = staging.execute(plan.inserts_sql()).fetch_arrow_table()
            updates = staging.execute("SELECT * FROM _history_updates").fetch_arrow_table()
            written = staging.execute("SELECT * FROM _history_written").fetch_arrow_table()
            repeated, touched = staging.execute(plan.counts_sql()).fetchone() or (0, 0)
        finally:
            for name in ("parsed", "rows", "written", "updates"):
                staging.execute(f"DROP TABLE IF EXISTS _history_{name}")
    if inserts.num_rows:
        warehouse.append(spec.name, inserts.cast(stored.schema))
    # History first: a crash before the update leaves the row changed, and importing the file
    # again updates it without recording the same change twice.
    if written.num_rows:
        schema = ATTRIBUTE_HISTORY.ibis_schema().to_pyarrow()
        warehouse.append(ATTRIBUTE_HISTORY.name, written.select(schema.names).cast(schema))
    if updates.num_rows:
        _update(warehouse, spec, updates.cast(stored.schema))
    stored_rows = rows.num_rows - len(rejected) - inserts.num_rows - int(repeated)
    return Upsert(
        inserted=inserts.num_rows,
        updated=int(touched),
        unchanged=stored_rows - int(touched) + int(repeated),
        history=written.num_rows,
        rejected=rejected,
    )


@contextmanager
def _registered(staging: duckdb.DuckDBPyConnection, **tables: pa.Table) -> Iterator[None]:
    for name, table in tables.items():
        staging.register(f"_history_{name}", table)
    try:
        yield
    finally:
        for name in tables:
            staging.unregister(f"_history_{name}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _Plan:
    """The staging SQL of one upsert. Stored values of column ``i`` are ``_old_i``, the values
    after the upsert ``_new_i``; ``_last_i``/``_first_i`` bound its recorded history."""

    def __init__(self, spec: TableSpec, given: Sequence[str]) -> None:
        self.spec = spec
        self.key = _quote(spec.key)
        self.columns = [c for c in spec.column_names if c != spec.key]
        self.attributes = attribute_columns(spec)
        self.given = {c for c in self.columns if c in given}
        self.json = {c.name for c in spec.columns if c.type is ColumnType.JSON}
        self.index = {name: i for i, name in enumerate(self.columns)}

    def _json(self, value: str, column: str) -> str:
        """A value as JSON text (the history's ``value``); JSON columns are minified as is."""
        if column in self.json:
            return f"CASE WHEN json_valid({value}) THEN CAST(json({value}) AS VARCHAR) END"
        return f"CAST(to_json({value}) AS VARCHAR)"

    def _differs(self, new: str, old: str, column: str) -> str:
        if column in self.json:
            return f"({self._json(new, column)} IS DISTINCT FROM {self._json(old, column)})"
        return f"({new} IS DISTINCT FROM {old})"

    def parse_sql(self) -> str:
        """Valid-from per row from the file's own column; properties without that column."""
        if "properties" not in self.json:
            return (
                "CREATE OR REPLACE TEMP TABLE _history_parsed AS SELECT *, "
                "NULL::VARCHAR AS _valid_text, NULL::VARCHAR AS _valid_column, "
                "NULL::TIMESTAMP AS _valid_at FROM _history_incoming"
            )
        found = {
            c: f"json_extract_string(properties, {_text('$.' + c)})" for c in VALID_FROM_COLUMNS
        }
        text = f"coalesce({', '.join(found.values())})"
        column = " ".join(f"WHEN {f} IS NOT NULL THEN {_text(c)}" for c, f in found.items())
        # The valid-from says when the values hold; it is not an attribute, so it leaves properties.
        removed = _text(json.dumps(dict.fromkeys(VALID_FROM_COLUMNS)))
        return (
            "CREATE OR REPLACE TEMP TABLE _history_parsed AS "
            "SELECT * EXCLUDE (properties), CASE WHEN _valid_text IS NULL THEN properties ELSE "
            f"nullif(CAST(json_merge_patch(properties, {removed}) AS VARCHAR), '{{}}') "
            "END AS properties, "
            f"{_VALID_AT} AS _valid_at "
            f"FROM (SELECT *, {text} AS _valid_text, CASE {column} END AS _valid_column "
            "FROM _history_incoming)"
        )

    def rejects_sql(self) -> str:
        return (
            "SELECT _row, _valid_column, _valid_text, _raw FROM _history_parsed "
            "WHERE _valid_text IS NOT NULL AND _valid_at IS NULL ORDER BY _row"
        )

    def rows_sql(self) -> str:
        """One row per id (its first in the batch), with stored values and bounds of history."""
        bounds = ", ".join(
            f"max(valid_from) FILTER (WHERE name = {_text(c)}) AS _last_{self.index[c]}, "
            f"min(valid_from) FILTER (WHERE name = {_text(c)}) AS _first_{self.index[c]}"
            for c in self.attributes
        )
        old = ", ".join(f"s.{_quote(c)} AS _old_{i}" for c, i in self.index.items())
        recorded_bounds = ", ".join(
            f"k._last_{self.index[c]}, k._first_{self.index[c]}" for c in self.attributes
        )
        new = []
        for column, i in self.index.items():
            value = f"v.{_quote(column)}"
            if column not in self.given:
                new.append(f"s.{_quote(column)} AS _new_{i}")
                continue
            if column in self.attributes:
                # An older value than one recorded later is history, not the current value.
                newest = f"v._valid_from >= coalesce(k._last_{i}, v._valid_from)"
                value = f"CASE WHEN {newest} THEN {value} ELSE s.{_quote(column)} END"
            inserted = f"v.{_quote(column)}"
            new.append(
                f"CASE WHEN s.{self.key} IS NULL THEN {inserted} ELSE {value} END AS _new_{i}"
            )
        baseline = "s.created_at" if "created_at" in self.index else "NULL"
        return (
            "CREATE OR REPLACE TEMP TABLE _history_rows AS "
            "WITH valid AS ("
            "SELECT *, coalesce(_valid_at, CAST($1 AS TIMESTAMP)) AS _valid_from, "
            f"row_number() OVER (PARTITION BY {self.key} ORDER BY _row) AS _copy "
            "FROM _history_parsed WHERE _valid_text IS NULL OR _valid_at IS NOT NULL), "
            f"known AS (SELECT entity_id, {bounds} FROM _history_existing GROUP BY entity_id) "
            f"SELECT v.*, s.{self.key} IS NOT NULL AS _stored, {old}, {recorded_bounds}, "
            f"coalesce({baseline}, TIMESTAMP '{BEGINNING.isoformat(sep=' ')}') AS _baseline_from, "
            f"{', '.join(new)} "
            f"FROM valid AS v LEFT JOIN _history_stored AS s ON v.{self.key} = s.{self.key} "
            f"LEFT JOIN known AS k ON v.{self.key} = k.entity_id"
        )

    def inserts_sql(self) -> str:
        columns = ", ".join(_quote(c) for c in self.spec.column_names)
        return f"SELECT {columns} FROM _history_rows WHERE _copy = 1 AND NOT _stored ORDER BY _row"

    def _table_changes(self) -> str:
        parts = [
            self._differs(f"_new_{i}", f"_old_{i}", c)
            for c, i in self.index.items()
            if c in self.given
        ]
        return " OR ".join(parts) if parts else "FALSE"

    def updates_sql(self) -> str:
        values = ", ".join(f"_new_{i} AS {_quote(c)}" for c, i in self.index.items())
        return (
            "CREATE OR REPLACE TEMP TABLE _history_updates AS "
            f"SELECT {self.key}, {values} FROM _history_rows "
            f"WHERE _copy = 1 AND _stored AND ({self._table_changes()}) ORDER BY _row"
        )

    def _changes(self) -> str:
        """Per changed attribute of a stored row: the new value and the one before it."""
        selects = [
            f"SELECT {self.key} AS entity_id, {_text(c)} AS name, "
            f"{self._json(_quote(c), c)} AS value, {self._json(f'_old_{i}', c)} AS old_value, "
            f"_valid_from AS valid_from, _baseline_from, _first_{i} AS first_from "
            f"FROM _history_rows WHERE _copy = 1 AND _stored AND "
            f"{self._differs(_quote(c), f'_old_{i}', c)}"
            for c, i in self.index.items()
            if c in self.attributes and c in self.given
        ]
        if not selects:
            return (
                "SELECT NULL::VARCHAR AS entity_id, NULL::VARCHAR AS name, NULL::VARCHAR AS value, "
                "NULL::VARCHAR AS old_value, NULL::TIMESTAMP AS valid_from, "
                "NULL::TIMESTAMP AS _baseline_from, NULL::TIMESTAMP AS first_from WHERE FALSE"
            )
        return " UNION ALL ".join(selects)

    def history_sql(self, entity: str, source: str) -> str:
        """History rows not recorded yet: each change, and the value before an attribute's
        first recorded change. Ids sort by when they were recorded, so of two values recorded
        for the same valid-from the later one wins."""
        return (
            "CREATE OR REPLACE TEMP TABLE _history_written AS "
            f"WITH changes AS ({self._changes()}), candidates AS ("
            f"SELECT entity_id, name, value, valid_from, {_text(source)} AS source FROM changes "
            f"UNION ALL SELECT entity_id, name, old_value, _baseline_from, "
            f"{_text(BASELINE_SOURCE)} FROM changes "
            "WHERE (first_from IS NULL OR first_from > _baseline_from) "
            "AND _baseline_from < valid_from), "
            "fresh AS (SELECT DISTINCT c.* FROM candidates AS c WHERE NOT EXISTS ("
            "SELECT 1 FROM _history_existing AS e WHERE e.entity_id = c.entity_id "
            "AND e.name = c.name AND e.valid_from = c.valid_from "
            "AND e.value IS NOT DISTINCT FROM c.value)) "
            "SELECT strftime(CAST($1 AS TIMESTAMP), '%Y%m%d%H%M%S%f') || '-' || "
            "substr(sha256(concat_ws('|', "
            f"{_text(entity)}, entity_id, name, coalesce(value, ''), CAST(valid_from AS VARCHAR)"
            f")), 1, 24) AS write_id, {_text(entity)} AS entity, entity_id, name, value, "
            "valid_from, source FROM fresh ORDER BY entity_id, name, valid_from"
        )

    def counts_sql(self) -> str:
        """Ids repeated in the batch, and stored rows that changed: in the table, or by a change
        recorded now (an older value than the current one is history only)."""
        return (
            "SELECT (SELECT count(*) FROM _history_rows WHERE _copy > 1), "
            f"(SELECT count(*) FROM (SELECT {self.key} FROM _history_updates UNION "
            f"SELECT entity_id FROM _history_written WHERE source <> {_text(BASELINE_SOURCE)}))"
        )


def _update(warehouse: Warehouse, spec: TableSpec, rows: pa.Table) -> None:
    """Set every column of the stored rows with the ids of ``rows`` to their values (one
    statement, so a crash leaves each row either as it was or updated)."""
    backend = warehouse.backend
    scratch = f"_closeloop_update_{uuid4().hex[:12]}"
    backend.create_table(scratch, rows, temp=True)
    try:
        assignments = ", ".join(
            f"{_quote(c)} = u.{_quote(c)}" for c in spec.column_names if c != spec.key
        )
        statement = (
            f"UPDATE {_quote(spec.name)} SET {assignments} FROM {_quote(scratch)} AS u "
            f"WHERE {_quote(spec.name)}.{_quote(spec.key)} = u.{_quote(spec.key)}"
        )
        cursor = backend.raw_sql(statement)
        # PostgreSQL hands back a cursor to close; DuckDB its connection, which must stay open.
        if cursor is not getattr(backend, "con", None) and hasattr(cursor, "close"):
            cursor.close()
    finally:
        backend.drop_table(scratch, force=True)


# -- read side ------------------------------------------------------------------------------------


def as_of(
    warehouse: Warehouse, entity: str, table: ir.Table, at: datetime, *, key: str
) -> ir.Table:
    """``table`` (rows of ``entity`` keyed by ``key``) with each stored attribute as it was at
    ``at``: the latest history row with ``valid_from <= at``, else the table's value.

    >>> warehouse = Warehouse.connect("duckdb://")
    >>> warehouse.ensure_tables()
    >>> accounts = as_of(warehouse, "account", warehouse.table("accounts"), datetime(2024, 2, 15),
    ...                  key="account_id")
    >>> accounts.columns == warehouse.table("accounts").columns
    True
    """
    names = _overlaid(warehouse, entity, table, key)
    if not names:
        return table
    history = _history(warehouse, entity, names)
    history = history.filter(history.valid_from <= ibis.literal(at, type="timestamp"))
    history = history.mutate(_history_key=history.entity_id)
    return _overlay(table, _latest(history), names, key)


def as_of_each(
    warehouse: Warehouse,
    entity: str,
    table: ir.Table,
    *,
    row_key: str,
    entity_key: str,
    at: str,
    names: Sequence[str],
) -> ir.Table:
    """``table`` with the attributes ``names`` of the entity in column ``entity_key`` as they
    were at each row's own time (column ``at``, e.g. a unit's ``entered_at``); ``row_key`` is
    unique per row. Columns without history keep their values."""
    names = [name for name in names if name in _overlaid(warehouse, entity, table, entity_key)]
    if not names:
        return table
    history = _history(warehouse, entity, names)
    moments = table.select(
        _history_key=table[row_key], _history_entity=table[entity_key], _history_at=table[at]
    )
    joined = moments.inner_join(
        history,
        [
            moments._history_entity == history.entity_id,
            history.valid_from <= moments._history_at,
        ],
    )
    paired = joined.select("_history_key", "name", "value", "valid_from", "write_id")
    return _overlay(table, _latest(paired), names, row_key)


def _overlaid(warehouse: Warehouse, entity: str, table: ir.Table, key: str) -> list[str]:
    """The columns of ``table`` (all but the key and creation) that ``entity`` has history of.

    Asking first keeps the query as small as the history: most projects record changes of a
    few attributes, and none until their first re-import or write-back.
    """
    names = _recorded_names(warehouse, entity)
    return [c for c in table.columns if c in names and c != key and c not in _NOT_ATTRIBUTES]


@contextmanager
def recorded_names_fixed() -> Iterator[None]:
    """Within the block, which attributes have history is asked once per warehouse and entity
    (a tick's jobs build many frames; none of them writes history). Nested blocks share one."""
    if _RECORDED.get() is not None:
        yield
        return
    token = _RECORDED.set({})
    try:
        yield
    finally:
        _RECORDED.reset(token)


def _recorded_names(warehouse: Warehouse, entity: str) -> frozenset[str]:
    known = _RECORDED.get()
    if known is not None and (id(warehouse), entity) in known:
        return known[(id(warehouse), entity)]
    if warehouse not in _HAS_HISTORY and not warehouse.has_table(ATTRIBUTE_HISTORY.name):
        names: frozenset[str] = frozenset()  # a warehouse closeloop has not written to yet
    else:
        _HAS_HISTORY.add(warehouse)  # once there it stays: later frames skip the lookup
        history = warehouse.table(ATTRIBUTE_HISTORY.name)
        recorded = history.filter(history.entity == ibis.literal(entity, type="string"))
        names = frozenset(recorded.select("name").distinct().to_pyarrow().column(0).to_pylist())
    if known is not None:
        known[(id(warehouse), entity)] = names
    return names


def _history(warehouse: Warehouse, entity: str, names: Sequence[str]) -> ir.Table:
    # A view of its own: people as of T join accounts as of T, both read from this table.
    history = warehouse.table(ATTRIBUTE_HISTORY.name).view()
    return history.filter(
        history.entity == ibis.literal(entity, type="string"),
        history.name.isin([ibis.literal(name, type="string") for name in names]),
    )


def _latest(history: ir.Table) -> ir.Table:
    """Per (``_history_key``, name) the row with the latest ``valid_from`` (ties: latest id)."""
    ranked = history.mutate(
        _rank=ibis.row_number().over(
            group_by=[history._history_key, history.name],
            order_by=[history.valid_from.desc(), history.write_id.desc()],
        )
    )
    return ranked.filter(ranked._rank == 0).select("_history_key", "name", "value")


def _overlay(table: ir.Table, latest: ir.Table, names: Sequence[str], key: str) -> ir.Table:
    """Pivot one value per (key, name) onto ``table``'s columns; a flag per column tells a
    recorded null from no history."""
    pivot = latest.group_by("_history_key").aggregate(
        **{
            f"_history_value_{i}": ibis.ifelse(
                latest.name == name, latest.value, ibis.null("string")
            ).max()
            for i, name in enumerate(names)
        },
        **{f"_history_has_{i}": (latest.name == name).any() for i, name in enumerate(names)},
    )
    left = table.mutate(_history_row=table[key])
    joined = left.left_join(pivot, left._history_row == pivot._history_key)
    columns = {}
    for column in table.columns:
        if column in names:
            i = names.index(column)
            recorded = joined[f"_history_has_{i}"].fill_null(False)
            value = _typed(joined[f"_history_value_{i}"], table[column].type())
            columns[column] = ibis.ifelse(recorded, value, joined[column])
        else:
            columns[column] = joined[column]
    overlaid = joined.select(**columns)
    # A plain projection, not the join's: callers join it again (people onto their accounts).
    return overlaid.select(*overlaid.columns)


def _typed(value: ir.StringValue, to: dt.DataType) -> ir.Value:
    """A history value (JSON text) as a column of type ``to``; values that cannot be one
    (a write-back of "soon" to a date) read as missing rather than failing the query."""
    parsed = value.cast("json")
    if to.is_numeric():
        return parsed.unwrap_as("float64").cast(to)
    if to.is_boolean():
        return parsed.unwrap_as("boolean")
    if to.is_date() or to.is_timestamp():
        text = parsed.unwrap_as("string")
        pattern = _DATE_TEXT if to.is_date() else _TIMESTAMP_TEXT
        shaped = ibis.ifelse(text.re_search(pattern), text, ibis.null("string"))
        return (shaped.substr(0, 10) if to.is_date() else shaped).cast(to)
    # Text: a JSON string is its text; other JSON (a number, an object of properties) as written.
    return ibis.coalesce(parsed.unwrap_as("string"), value.nullif("null")).cast(to)
