"""A DuckDB warehouse file looked at without Ibis: where it is, and which tables hold rows.

Connecting through Ibis loads Ibis, its SQL compilers and, to convert DuckDB's answers, pandas:
most of a second. A command that only needs to know whether the warehouse has any data yet
(``closeloop validate`` right after ``closeloop init``) asks DuckDB itself, read-only, and goes
through the warehouse only when there is data to check.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit


def duckdb_file(url: str) -> str | None:
    """The file of a ``duckdb://`` URL as Ibis opens it (None: in memory, or not DuckDB).

    >>> duckdb_file("duckdb:////data/w.duckdb")
    '/data/w.duckdb'
    """
    parts = urlsplit(url)
    if parts.scheme != "duckdb":
        return None
    segments = [part for part in (parts.netloc, parts.path[bool(parts.netloc) :]) if part]
    if not segments or segments == [":memory:"] or segments[0].startswith(("md:", "motherduck:")):
        return None
    text = str(Path(*segments).absolute())
    # duckdb:////abs/file gives //abs/file: the same file on Linux, one spelling for a key.
    return "/" + text.lstrip("/") if text.startswith("//") else text


def tables_with_rows(url: str, names: Iterable[str]) -> dict[str, bool] | None:
    """Of ``names``, those the DuckDB warehouse at ``url`` has as tables or views (where Ibis
    lists them: the default schema), each with whether it holds a row.

    None when only the warehouse can tell: the URL is not a DuckDB file that exists, or the file
    cannot be opened read-only (another process is writing it, it is not a DuckDB database, a
    view cannot be read). The caller then asks through :class:`~closeloop.data.warehouse.Warehouse`,
    which waits for a busy file and says what is wrong.
    """
    path = duckdb_file(url)
    if path is None or not Path(path).is_file():
        return None
    import duckdb  # what this module saves is Ibis, not DuckDB; only callers that look load it

    try:
        with duckdb.connect(path, read_only=True) as connection:
            listed = {
                str(row[0])
                for row in connection.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_catalog = current_database() AND table_schema = current_schema()"
                ).fetchall()
            }
            found = {}
            for name in names:
                if name in listed:
                    quoted = '"' + name.replace('"', '""') + '"'
                    row = connection.execute(f"SELECT EXISTS (SELECT 1 FROM {quoted})").fetchone()
                    found[name] = bool(row and row[0])
            return found
    except duckdb.Error:
        return None
