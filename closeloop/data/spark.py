"""Apache Spark as the warehouse: sessions from a URL or from the caller, pinned to UTC.

Two URLs reach Spark (docs/deploy.md):

- ``pyspark://[/warehouse-dir][?master=local[2]&database=NAME&spark.<conf>=VALUE]``: a session in
  this process (local mode, or a cluster master such as ``yarn``); ``database`` is the schema that
  holds closeloop's tables, other ``spark.*`` parameters are Spark settings.
- ``sc://host:port/;token=...[;database=NAME]``: Spark Connect (Databricks Connect uses the same
  URL), which needs ``pyspark[connect]``.

A session the caller built (a Databricks notebook's ``spark``) goes through
:meth:`closeloop.data.warehouse.Warehouse.for_spark`.

Spark reads and writes timestamps in its session time zone, and closeloop's timestamps are UTC
wall-clock values: every session is set to UTC and checked, or refused. Arrow tables are written
through Spark's own Arrow reader, never through pandas, whose float columns turn NULL into NaN
(and Spark orders NaN above every number, so ``arr >= 10000`` would hold for a missing ARR).

Ibis writes a float literal such as ``86400.0`` bare, which Spark SQL reads as a DECIMAL: a BIGINT
divided by it is a decimal of 7 places, so averages of days came out truncated (4.3076923 for
56/13). The backend of :func:`ibis_backend` writes them as doubles. Its ``cache()`` also
registers the in-memory tables (``ibis.memtable``) its query reads, which Ibis' PySpark backend
skips (revenue caches a timeline joined to its periods, an in-memory table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa

from closeloop.errors import ConfigurationError, mask_url, redact

if TYPE_CHECKING:
    from ibis.backends import BaseBackend
    from pyspark.sql import SparkSession

SPARK_SCHEMES = ("pyspark", "sc")
UTC = "UTC"
_LOCAL_DEFAULTS = {
    "spark.sql.session.timeZone": UTC,
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}


@dataclass(frozen=True)
class SparkTarget:
    """What a Spark URL asks for: a local or cluster session, or a Spark Connect server."""

    remote: str | None  # the Spark Connect URL without closeloop's own parameters
    master: str
    warehouse_dir: str | None
    database: str | None
    conf: tuple[tuple[str, str], ...]


def is_spark_url(url: str) -> bool:
    return url.partition("://")[0].lower() in SPARK_SCHEMES


def parse_spark_url(url: str) -> SparkTarget:
    """The session a ``pyspark://`` or ``sc://`` URL describes (nothing is started).

    >>> parse_spark_url("pyspark:///tmp/wh?master=local[2]&database=cs").database
    'cs'
    >>> parse_spark_url("sc://spark.internal:15002/;token=abc;database=cs").remote
    'sc://spark.internal:15002/;token=abc'
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "sc":
        base, *params = url.split(";")
        kept, database = [], None
        for param in params:
            key, _, value = param.partition("=")
            if key == "database":
                database = value or None
            elif param:
                kept.append(param)
        remote = ";".join([base, *kept])
        return SparkTarget(remote, "", None, database, ())
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    master = query.pop("master", "local[*]") or "local[*]"
    database = query.pop("database", None) or None
    unknown = [key for key in query if not key.startswith("spark.")]
    if unknown:
        raise ConfigurationError(
            f"CLOSELOOP_WAREHOUSE_URL: unknown parameter {unknown[0]!r} of a pyspark:// URL "
            "(known: master, database, and spark.* settings)"
        )
    folder = (parts.netloc + parts.path) or None
    return SparkTarget(None, master, folder, database, tuple(sorted(query.items())))


def session_for(url: str) -> tuple[SparkSession, bool]:
    """A Spark session for ``url`` and whether closeloop started it (and so stops it).

    A session already running in this process is used as it is (Spark admits one per process);
    its time zone is still pinned to UTC.
    """
    target = parse_spark_url(url)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigurationError(
            "the warehouse URL names Spark but PySpark is not installed: "
            "pip install 'closeloop[spark]'" + (" 'pyspark[connect]'" if target.remote else "")
        ) from None
    existing = SparkSession.getActiveSession()
    if existing is not None and target.remote is None:
        pin_utc(existing)
        use_database(existing, target.database)
        return existing, False
    builder: Any = SparkSession.builder
    try:
        if target.remote is not None:
            session = builder.remote(target.remote).getOrCreate()
        else:
            builder = builder.master(target.master)
            settings = dict(_LOCAL_DEFAULTS) | dict(target.conf)
            if target.warehouse_dir:
                settings["spark.sql.warehouse.dir"] = target.warehouse_dir
            for key, value in settings.items():
                builder = builder.config(key, value)
            session = builder.getOrCreate()
    except Exception as error:  # py4j, gRPC and Spark raise their own kinds
        hint = " (Spark Connect needs pip install 'pyspark[connect]')" if target.remote else ""
        raise ConfigurationError(
            redact(
                f"cannot start a Spark session for {mask_url(url)!r}: {_first_line(error)}{hint}"
            )
        ) from error
    pin_utc(session)
    use_database(session, target.database)
    return session, True


def ibis_backend(session: SparkSession) -> BaseBackend:
    """Ibis' PySpark backend on ``session``, with two fixes (module docstring): float literals
    are doubles, and ``cache()`` registers the in-memory tables its query reads."""
    import ibis
    import ibis.expr.datatypes as dt

    _ = ibis.pyspark  # loading the backend through Ibis registers its options
    from ibis.backends.pyspark import Backend
    from ibis.backends.sql.compilers.pyspark import PySparkCompiler

    class DoubleLiterals(PySparkCompiler):  # type: ignore[misc]
        def visit_NonNullLiteral(  # noqa: N802 (Ibis' name)
            self, op: Any, *, value: Any, dtype: dt.DataType
        ) -> Any:
            result = super().visit_NonNullLiteral(op, value=value, dtype=dtype)
            if dtype.is_floating() and result is not None:
                return self.cast(result, dt.float64)
            return result

    class SparkBackend(Backend):  # type: ignore[misc]
        compiler = DoubleLiterals()

        def _create_cached_table(self, name: str, expr: Any) -> Any:
            self._run_pre_execute_hooks(expr)
            return super()._create_cached_table(name, expr)

    backend: BaseBackend = SparkBackend().connect(session)
    return backend


def pin_utc(session: SparkSession) -> None:
    """Set the session time zone to UTC, and refuse a session that will not keep it."""
    try:
        session.conf.set("spark.sql.session.timeZone", UTC)
    except Exception as error:  # a managed runtime may forbid setting it
        raise ConfigurationError(
            f"cannot set the Spark session time zone to UTC: {_first_line(error)}; set "
            "spark.sql.session.timeZone=UTC in the cluster's Spark configuration"
        ) from error
    zone = session.conf.get("spark.sql.session.timeZone")
    if zone not in (UTC, "Etc/UTC", "Z", "+00:00"):
        raise ConfigurationError(
            f"the Spark session time zone is {zone!r}, not UTC: closeloop's timestamps are UTC, "
            "so every time comparison would be shifted; set spark.sql.session.timeZone=UTC"
        )


def use_database(session: SparkSession, database: str | None) -> None:
    """Make ``database`` (``schema`` or ``catalog.schema``) current, creating the schema."""
    if not database:
        return
    quoted = ".".join(f"`{part.replace('`', '``')}`" for part in database.split("."))
    try:
        session.sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        session.sql(f"USE {quoted}")
    except Exception as error:
        raise ConfigurationError(
            f"cannot use the Spark schema {database!r}: {_first_line(error)} (closeloop needs "
            "CREATE and USE on it, or an existing schema it may write to)"
        ) from error


def append_arrow(session: SparkSession, table: str, data: pa.Table, columns: list[str]) -> None:
    """Insert an Arrow table into an existing Spark table, matching columns by name."""
    frame = session.createDataFrame(data.select(columns))
    frame.write.insertInto(table)


def replace_with_arrow(session: SparkSession, table: str, data: pa.Table) -> None:
    """Create or overwrite a Spark table with the rows and column types of an Arrow table."""
    frame = session.createDataFrame(data)
    frame.write.saveAsTable(table, format="parquet", mode="overwrite")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
