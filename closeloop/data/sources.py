"""Canonical tables read in place (``sources:`` in closeloop.yaml, DESIGN §3).

A mapped canonical table is an Ibis expression over the source table or view: each canonical
column is the mapped source column (or the source column of the same name) cast to the canonical
type, or a typed null when the source has neither; the source's other columns of a usable type
follow under their own names, so they can be used as attributes. Nothing is copied and nothing
runs until a query does, so every reader (compiler, reports, power, stage counts) sees the
canonical schema and the warehouse still does all the work.

Structure is checked whenever a mapped table is read (one schema lookup); the data itself (text
that must parse as times, repeated ids, missing required values) only by ``closeloop validate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from difflib import get_close_matches

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
from ibis.backends import BaseBackend
from ibis.common.exceptions import TableNotFound

from closeloop.data.tables import ColumnType, TableSpec, ibis_type
from closeloop.definitions.expressions import AttributeType
from closeloop.definitions.sources import SourceMapping
from closeloop.errors import ConfigurationError

PathKey = tuple[str, ...]
_UTC = dt.Timestamp(timezone="UTC")

# What a canonical column of each type can be read from, as people read it.
_EXPECTED: dict[ColumnType, str] = {
    ColumnType.STRING: "text (or an integer or UUID id)",
    ColumnType.JSON: "JSON (or text holding JSON)",
    ColumnType.FLOAT: "a number",
    ColumnType.INTEGER: "a number",
    ColumnType.BOOLEAN: "a boolean",
    ColumnType.TIMESTAMP: "a timestamp (or a date, or ISO 8601 text)",
    ColumnType.DATE: "a date (or a timestamp, or ISO 8601 text)",
}


@dataclass(frozen=True)
class SourceProblem:
    """One problem of a mapping, at a path inside its ``sources.<table>`` entry."""

    path: PathKey
    message: str
    hint: str = ""
    severity: str = "error"
    at_key: bool = False  # point at the key (an unknown name) rather than at its value


def _converter(
    column_type: ColumnType, source: dt.DataType
) -> Callable[[ir.Value], ir.Value] | None:
    """How a source column of type ``source`` becomes a canonical column of ``column_type``
    (None: it cannot). Times with a zone, and text, are read as UTC instants and stored
    without a zone, the way the importer stores them."""
    target = ibis_type(column_type)

    def cast(value: ir.Value) -> ir.Value:
        return value if value.type() == target else value.cast(target)

    def instant(value: ir.Value) -> ir.Value:
        if value.type().is_string():
            value = value.cast(_UTC)  # an offset in the text counts; none means UTC
        return value.cast(dt.timestamp)

    if column_type is ColumnType.STRING:
        usable = source.is_string() or source.is_integer() or source.is_uuid()
    elif column_type is ColumnType.JSON:
        usable = source.is_string() or source.is_json()
    elif column_type in (ColumnType.FLOAT, ColumnType.INTEGER):
        usable = source.is_numeric()
    elif column_type is ColumnType.BOOLEAN:
        usable = source.is_boolean()
    elif source.is_string() or _zoned(source):
        return instant if column_type is ColumnType.TIMESTAMP else _date_of(instant)
    else:  # a date or time from a date or a timestamp without a zone
        usable = source.is_date() or source.is_timestamp()
    return cast if usable else None


def _zoned(source: dt.DataType) -> bool:
    return isinstance(source, dt.Timestamp) and source.timezone is not None


def _date_of(instant: Callable[[ir.Value], ir.Value]) -> Callable[[ir.Value], ir.Value]:
    """Text and zoned times become a date the way the importer reads them: text as written,
    a zoned time at its UTC date."""

    def convert(value: ir.Value) -> ir.Value:
        return value.cast(dt.date) if value.type().is_string() else instant(value).cast(dt.date)

    return convert


def _attribute_type(source: dt.DataType) -> tuple[AttributeType, dt.DataType | None] | None:
    """The attribute type an extra source column has, and the type to cast it to (None: keep)."""
    if source.is_string():
        return AttributeType.STRING, None
    if source.is_uuid():
        return AttributeType.STRING, dt.string
    if source.is_decimal():
        return AttributeType.NUMBER, dt.float64  # decimals become floats, as imported numbers
    if source.is_integer() or source.is_floating():
        return AttributeType.NUMBER, None
    if source.is_boolean():
        return AttributeType.BOOLEAN, None
    if source.is_timestamp():
        return AttributeType.TIMESTAMP, dt.timestamp if _zoned(source) else None
    if source.is_date():
        return AttributeType.DATE, None
    return None  # arrays, structs, JSON, binary, intervals: not attributes


def find_source(backend: BaseBackend, mapping: SourceMapping) -> ir.Table | SourceProblem:
    """The source table or view of ``mapping``, or the problem finding it."""
    *namespace, name = mapping.parts
    database: str | tuple[str, str] | None = None
    if len(namespace) == 1:
        database = namespace[0]
    elif len(namespace) == 2:
        database = (namespace[0], namespace[1])
    try:
        return backend.table(name, database=database)
    except TableNotFound:
        return SourceProblem(
            ("table",),
            f"the warehouse has no table or view {mapping.table}",
            _closest_table(backend, name, database),
        )
    except Exception as error:  # drivers raise their own kinds (no rights, a bad catalog)
        return SourceProblem(("table",), f"cannot read {mapping.table}: {_first_line(error)}")


def _closest_table(backend: BaseBackend, name: str, database: str | tuple[str, str] | None) -> str:
    try:
        tables = list(backend.list_tables(database=database))
    except Exception:  # e.g. the schema itself does not exist
        return "check the schema and the spelling (PostgreSQL folds unquoted names to lower case)"
    close = _closest(name, tables)
    return f"did you mean {close!r}?" if close else "check the schema and the spelling"


def _closest(name: str, candidates: list[str]) -> str | None:
    lowered = {candidate.lower(): candidate for candidate in candidates}
    found = get_close_matches(name.lower(), list(lowered), n=1)
    return lowered[found[0]] if found else None


def structure_problems(
    spec: TableSpec, mapping: SourceMapping, schema: ibis.Schema
) -> list[SourceProblem]:
    """Problems a schema alone shows: unknown canonical columns, missing source columns, a
    required column with no source, types that cannot be read as the canonical type."""
    problems = []
    canonical = spec.column_names
    source_columns = list(schema.names)
    for name in mapping.columns:
        if name not in canonical:
            similar = get_close_matches(name, canonical, n=1)
            problems.append(
                SourceProblem(
                    ("columns", name),
                    f"{spec.name} has no column {name!r}",
                    (f"did you mean {similar[0]!r}? " if similar else "")
                    + f"{spec.name} columns: {', '.join(canonical)}",
                    at_key=True,
                )
            )
    for column in spec.columns:
        source = mapping.source_column(column.name)
        mapped = column.name in mapping.columns
        where: PathKey = ("columns", column.name) if mapped else ("table",)
        if source not in schema:
            if mapped:
                close = _closest(source, source_columns)
                problems.append(
                    SourceProblem(
                        where,
                        f"{mapping.table} has no column {source!r}",
                        f"did you mean {close!r}?"
                        if close
                        else f"its columns: {', '.join(source_columns)}",
                    )
                )
            elif column.required:
                close = _closest(column.name, source_columns)
                problems.append(
                    SourceProblem(
                        where,
                        f"{spec.name}.{column.name} is required: {mapping.table} has no column "
                        f"{column.name!r} and columns: does not map it",
                        f"add `{column.name}: {close or '<source column>'}` under columns:",
                    )
                )
            continue
        if _converter(column.type, schema[source]) is None:
            problems.append(
                SourceProblem(
                    where,
                    f"{mapping.table}.{source} is of type {schema[source]}; "
                    f"{spec.name}.{column.name} "
                    f"needs {_EXPECTED[column.type]}",
                    "map another column, or cast it in a view",
                )
            )
    return problems


def canonical_view(spec: TableSpec, mapping: SourceMapping, source: ir.Table) -> ir.Table:
    """``source`` seen as canonical table ``spec`` (structure must be valid): canonical columns
    first, in their order and types, then the source's other usable columns as they are."""
    schema = source.schema()
    columns: dict[str, ir.Value] = {}
    for column in spec.columns:
        name = mapping.source_column(column.name)
        converter = _converter(column.type, schema[name]) if name in schema else None
        if converter is None:
            columns[column.name] = ibis.null(ibis_type(column.type))
        else:
            columns[column.name] = converter(source[name])
    for name in schema.names:
        extra = _attribute_type(schema[name]) if name not in columns else None
        if extra is not None:
            cast_to = extra[1]
            columns[name] = source[name] if cast_to is None else source[name].cast(cast_to)
    return source.select(**columns)


def read_in_place(backend: BaseBackend, spec: TableSpec, mapping: SourceMapping) -> ir.Table:
    """The canonical view of a mapped table; a mapping that cannot work is a one-line
    :class:`ConfigurationError` naming the first problem (``closeloop validate`` lists all)."""
    found = find_source(backend, mapping)
    problems = [found] if isinstance(found, SourceProblem) else []
    if isinstance(found, ir.Table):
        problems = structure_problems(spec, mapping, found.schema())
    if problems:
        first = problems[0]
        where = ".".join(("sources", spec.name, *first.path))
        raise ConfigurationError(
            f"closeloop.yaml {where}: {first.message}"
            + (f" ({first.hint})" if first.hint else "")
            + "; run `closeloop validate` to see every problem"
        )
    assert isinstance(found, ir.Table)
    return canonical_view(spec, mapping, found)


def extra_attributes(view: ir.Table, spec: TableSpec) -> dict[str, AttributeType]:
    """The attributes a canonical view has beyond the canonical columns (and their types)."""
    found = {}
    for name, kind in view.schema().items():
        typed = _attribute_type(kind) if name not in spec.column_names else None
        if typed is not None:
            found[name] = typed[0]
    return found


def data_problems(
    spec: TableSpec, mapping: SourceMapping, source: ir.Table, view: ir.Table
) -> list[SourceProblem]:
    """What only the data shows: text that does not parse as the canonical time type (an error:
    every query would fail), repeated ids and rows without a required value (warnings)."""
    problems = []
    schema = source.schema()
    for column in spec.columns:
        name = mapping.source_column(column.name)
        parsed = column.type in (ColumnType.TIMESTAMP, ColumnType.DATE)
        if not parsed or name not in schema or not schema[name].is_string():
            continue
        try:
            view.select(column.name)[column.name].max().execute()
        except Exception as error:  # the database's own words name the bad value
            where: PathKey = ("columns", column.name) if column.name in mapping.columns else ()
            problems.append(
                SourceProblem(
                    where or ("table",),
                    f"{mapping.table}.{name} cannot be read as {_EXPECTED[column.type]}: "
                    f"{_first_line(error)}",
                    "fix the values or cast them in a view; text like 2024-03-31T14:05:00Z works",
                )
            )
    if problems:
        return problems  # the counts below would fail on the same values
    key = view[spec.key]
    counts = {"rows": view.count(), "keys": key.nunique()}
    required = [column.name for column in spec.columns if column.required]
    counts |= {f"null_{name}": view[name].isnull().sum() for name in required}
    row = view.aggregate(**counts).to_pyarrow().to_pylist()[0]
    repeated = int(row["rows"] or 0) - int(row["keys"] or 0) - int(row[f"null_{spec.key}"] or 0)
    if repeated > 0:
        problems.append(
            SourceProblem(
                _where(mapping, spec.key),
                f"{repeated} rows of {mapping.table} repeat another row's "
                f"{mapping.source_column(spec.key)}; {spec.name} has one row per {spec.key}, "
                "so repeated rows are counted more than once",
                "read from a view that keeps one row per id",
                severity="warning",
            )
        )
    for name in required:
        missing = int(row[f"null_{name}"] or 0)
        if missing:
            problems.append(
                SourceProblem(
                    _where(mapping, name),
                    f"{missing} rows of {mapping.table} have no {name} "
                    f"({mapping.source_column(name)}); they match no expression",
                    severity="warning",
                )
            )
    return problems


def _where(mapping: SourceMapping, canonical: str) -> PathKey:
    return ("columns", canonical) if canonical in mapping.columns else ("table",)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
