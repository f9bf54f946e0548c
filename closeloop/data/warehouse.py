"""The analytics warehouse: an Ibis backend chosen by one URL, holding the canonical tables.

The default is an embedded DuckDB file in the project folder; the same code runs on PostgreSQL,
Spark (``pyspark://`` in this process, ``sc://`` through Spark Connect or Databricks Connect, or a
session the caller built: :meth:`Warehouse.for_spark`; see ``closeloop.data.spark``) or any Ibis
backend by changing ``CLOSELOOP_WAREHOUSE_URL``. Canonical tables that
closeloop.yaml maps with ``sources:`` are read in place from the warehouse's own tables
(``closeloop.data.sources``); closeloop's own tables (quarantine, enrollments, attribute history)
are always closeloop's.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import ibis
import pyarrow as pa
from ibis.backends import BaseBackend

from closeloop.data import spark
from closeloop.data.sources import (
    SourceProblem,
    data_problems,
    extra_attributes,
    find_source,
    read_in_place,
    structure_problems,
)
from closeloop.data.tables import (
    ATTRIBUTE_HISTORY,
    CANONICAL_TABLES,
    ENROLLMENTS,
    QUARANTINE,
    TableSpec,
)
from closeloop.definitions.expressions import AttributeType
from closeloop.definitions.sources import SourceMapping, unknown_table_message
from closeloop.errors import (
    ConfigurationError,
    DataImportError,
    NotFoundError,
    mask_url,
    redact,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ENROLLMENTS_TABLE = ENROLLMENTS.name
DUCKDB_LOCK_TIMEOUT_SECONDS = 120.0


class Warehouse:
    """A connection to the analytics engine plus the canonical table specs.

    >>> warehouse = Warehouse.connect("duckdb://")
    >>> warehouse.ensure_tables()
    >>> warehouse.table("events").count().execute()
    0
    """

    def __init__(
        self,
        backend: BaseBackend,
        url: str,
        sources: Mapping[str, SourceMapping] | None = None,
        *,
        owns_backend: bool = True,
    ) -> None:
        self.backend = backend
        self.url = url
        # A session the caller (or an earlier connection) started is theirs to stop.
        self.owns_backend = owns_backend
        self.sources = dict(sources or {})
        unknown = [name for name in self.sources if name not in CANONICAL_TABLES]
        if unknown:
            raise ConfigurationError(f"sources: {unknown_table_message(unknown[0])}")
        self._views: dict[str, ibis.Table] = {}  # mapped tables, each looked up once
        # closeloop's own tables have fixed schemas (TableSpec): each is looked up once per
        # connection (a lookup is a catalog query, about a tenth of a tick's time). A table
        # dropped and re-created with its spec's schema compiles to the same SQL.
        self._own: dict[str, ibis.Table] = {}

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        lock_timeout: float = DUCKDB_LOCK_TIMEOUT_SECONDS,
        sources: Mapping[str, SourceMapping] | None = None,
    ) -> Warehouse:
        """Connect by Ibis URL. A DuckDB file admits one process at a time: another closeloop
        process holding it (a tick while a dispatch runs) is waited for, up to ``lock_timeout``
        seconds, then refused with a clear message. ``sources`` (closeloop.yaml's) names the
        canonical tables read in place from the warehouse's own tables. A ``pyspark://`` or
        ``sc://`` URL starts (or joins) a Spark session (``closeloop.data.spark``)."""
        if spark.is_spark_url(url):
            session, started = spark.session_for(url)
            return cls.for_spark(session, url=url, sources=sources, owns_session=started)
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                backend = ibis.connect(url)
                break
            except Exception as error:  # ibis raises many kinds; all mean "cannot connect"
                if _is_lock_conflict(error) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                if _is_lock_conflict(error):
                    raise ConfigurationError(
                        redact(
                            f"the warehouse {mask_url(url)} is in use by another process (a DuckDB "
                            f"file admits one process at a time; waited {lock_timeout:.0f} s): "
                            f"{_first_line(error)}"
                        )
                    ) from None
                raise ConfigurationError(
                    redact(f"cannot connect to the warehouse at {mask_url(url)!r}: {error}")
                ) from error
        if backend.name == "duckdb":
            # Timestamps are UTC by contract; make casts of zoned text agree with it.
            backend.raw_sql("SET TimeZone = 'UTC'")
        return cls(backend, url, sources)

    @classmethod
    def for_spark(
        cls,
        session: SparkSession,
        *,
        url: str = "pyspark://",
        sources: Mapping[str, SourceMapping] | None = None,
        owns_session: bool = False,
    ) -> Warehouse:
        """A warehouse on a Spark session the caller built (local mode, a cluster, Spark
        Connect or Databricks); its time zone is pinned to UTC, and closing the warehouse
        stops the session only when ``owns_session``."""
        spark.pin_utc(session)
        backend = spark.ibis_backend(session)
        return cls(backend, url, sources, owns_backend=owns_session)

    @property
    def dialect(self) -> str:
        return str(self.backend.name)

    def sql(self, query: ibis.Table) -> str:
        """The SQL the warehouse runs for ``query``, in its own dialect (for people to read)."""
        if self.dialect == "pyspark":
            # The backend's own compiler: closeloop's Spark backend changes how it compiles
            # (closeloop.data.spark), which the dialect's stock compiler would not show.
            return str(ibis.to_sql(query))
        return str(ibis.to_sql(query, dialect=self.dialect))

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self.owns_backend:
            return
        disconnect = getattr(self.backend, "disconnect", None)
        if disconnect is not None:
            disconnect()

    def ensure_tables(self) -> None:
        """Create every canonical table (and quarantine, enrollments) that does not exist yet;
        a table read in place (``sources:``) is never created."""
        existing = set(self.backend.list_tables())
        for spec in (*CANONICAL_TABLES.values(), QUARANTINE, ENROLLMENTS, ATTRIBUTE_HISTORY):
            if spec.name in existing or spec.name in self.sources:
                continue
            try:
                self.backend.create_table(spec.name, schema=spec.ibis_schema())
            except Exception:
                # Another process created it between our listing and our create (two commands
                # starting on a new warehouse): that is the table we wanted.
                if spec.name not in self.backend.list_tables():
                    raise

    def spec(self, name: str) -> TableSpec:
        if name == QUARANTINE.name:
            return QUARANTINE
        if name == ENROLLMENTS.name:
            return ENROLLMENTS
        if name == ATTRIBUTE_HISTORY.name:
            return ATTRIBUTE_HISTORY
        try:
            return CANONICAL_TABLES[name]
        except KeyError:
            known = ", ".join(sorted(CANONICAL_TABLES))
            raise NotFoundError(f"unknown table {name!r}; canonical tables are: {known}") from None

    def table(self, name: str) -> ibis.Table:
        """Table ``name``; a mapped canonical table is its source seen through the canonical
        schema (the canonical columns, then the source's other columns as attributes)."""
        mapping = self.sources.get(name)
        if mapping is None:
            if name not in _FIXED_SCHEMAS:
                return self.backend.table(name)
            if name not in self._own:
                self._own[name] = self.backend.table(name)
            return self._own[name]
        if name not in self._views:
            self._views[name] = read_in_place(self.backend, CANONICAL_TABLES[name], mapping)
        return self._views[name]

    def has_table(self, name: str) -> bool:
        return name in self.sources or name in self.backend.list_tables()

    def refuse_if_mapped(self, name: str) -> None:
        """Refuse to write into a table read in place: its rows belong to the source system
        (an importer can call this before reading a file, to refuse it before any work)."""
        mapping = self.sources.get(name)
        if mapping is not None:
            raise DataImportError(
                f"{name} is read in place from {mapping.table} (sources: in closeloop.yaml); "
                "import into the source system instead"
            )

    def extra_attributes(self, name: str) -> dict[str, AttributeType]:
        """The attributes mapped table ``name`` has beyond the canonical columns (its source's
        other columns); none for an imported table or a mapping that cannot be read."""
        if name not in self.sources:
            return {}
        try:
            view = self.table(name)
        except ConfigurationError:
            return {}  # `closeloop validate` reports why
        return extra_attributes(view, CANONICAL_TABLES[name])

    def check_sources(self) -> list[tuple[str, SourceProblem]]:
        """Every problem of every mapping, by canonical table: the source table and each mapped
        column exist and have usable types, text times parse, ids are not repeated."""
        problems: list[tuple[str, SourceProblem]] = []
        existing = set(self.backend.list_tables())
        for name, mapping in self.sources.items():
            spec = CANONICAL_TABLES[name]
            found = find_source(self.backend, mapping)
            if isinstance(found, SourceProblem):
                problems.append((name, found))
                continue
            structure = structure_problems(spec, mapping, found.schema())
            problems += [(name, problem) for problem in structure]
            if not any(problem.severity == "error" for problem in structure):
                view = self.table(name)
                problems += [
                    (name, problem) for problem in data_problems(spec, mapping, found, view)
                ]
            if name in existing and mapping.parts != (name,):
                problems.append(
                    (
                        name,
                        SourceProblem(
                            ("table",),
                            f"the warehouse also holds an imported {name} table; it is ignored "
                            f"while {name} is read from {mapping.table}",
                            severity="warning",
                        ),
                    )
                )
        return problems

    def append(self, name: str, data: pa.Table | ibis.Table) -> None:
        """Append rows (an Arrow table, or an expression on this backend) to a table.

        On DuckDB an Arrow table is scanned in place by the connection and released right after
        the insert; Ibis' in-memory tables stay registered, which held every appended batch in
        memory for the life of the connection (1.9 GB for 10 million events instead of 1 GB).
        A table read in place is refused (:meth:`refuse_if_mapped`).
        """
        self.refuse_if_mapped(name)
        if isinstance(data, pa.Table) and self.dialect == "pyspark":
            columns = list(self.backend.table(name).columns)
            spark.append_arrow(self._spark_session(), name, data, columns)
            return
        if isinstance(data, pa.Table) and self.dialect == "duckdb":
            connection = self.backend.con
            view = f"_closeloop_append_{next(_APPEND_VIEWS)}"
            connection.register(view, data)
            try:
                connection.execute(f"INSERT INTO {_quote(name)} SELECT * FROM {_quote(view)}")
            finally:
                connection.unregister(view)
            return
        self.backend.insert(name, data)

    def replace(self, name: str, data: pa.Table, schema: Any = None) -> None:
        """Create or overwrite a table with ``data`` (for derived facts such as enrollments);
        a table read in place is refused."""
        self.refuse_if_mapped(name)
        if self.dialect == "pyspark":
            if schema is not None:
                data = data.cast(ibis.schema(schema).to_pyarrow())
            spark.replace_with_arrow(self._spark_session(), name, data)
            return
        self.backend.create_table(name, data, schema=schema, overwrite=True)

    def _spark_session(self) -> SparkSession:
        backend: Any = self.backend  # ibis' PySpark backend keeps its session here
        session: SparkSession = backend._session
        return session

    def arrow_for(self, name: str, rows: dict[str, list[Any]]) -> pa.Table:
        """An Arrow table with exactly the canonical columns and types of ``name``."""
        schema = self.spec(name).ibis_schema().to_pyarrow()
        return pa.Table.from_pydict(
            {field.name: rows.get(field.name, [None] * _length(rows)) for field in schema},
            schema=schema,
        )


_APPEND_VIEWS = itertools.count()

_FIXED_SCHEMAS = frozenset(
    (*CANONICAL_TABLES, QUARANTINE.name, ENROLLMENTS.name, ATTRIBUTE_HISTORY.name)
)
"""closeloop's own tables, created with their spec's schema (``ensure_tables``)."""


def _is_lock_conflict(error: Exception) -> bool:
    return "Could not set lock on file" in str(error) or "Conflicting lock" in str(error)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _length(rows: dict[str, list[Any]]) -> int:
    return len(next(iter(rows.values()))) if rows else 0
