"""Make the engine's enrollment facts available to the warehouse, for joins in analysis.

The warehouse keeps a copy of the state store's ``enrollments`` (``closeloop_enrollments``) and,
beside it, the mark it was last brought up to: ``closeloop_enrollments_marks`` (one row: which
store, and the revision below which every enrollment has been copied). The store's database sets
each enrollment's ``revision`` on every insert and update (migration 0011), so a publish copies
only the enrollments whose revision is at or above the mark, as Arrow, and replaces those rows.

Concurrency: a publish is one warehouse transaction that first claims the marks row, then reads the
store, writes and moves the mark. On PostgreSQL a second publisher waits for the row; DuckDB
admits one process per file, and a second publisher in the same process fails its claim and tries
again. So two publishers never both copy from the same mark: no row is lost or duplicated.

The mark: on SQLite writers are serialised and a revision is one more than the largest so far, so
every revision below (largest read + 1) is copied. On PostgreSQL a revision is the writing
transaction's id; the mark is the oldest transaction still running when the store was read
(``txid_snapshot_xmin``, read in the same snapshot), so a transaction that commits after the read
is copied next time, and rows read twice are replaced, not added.

Spark (and other warehouses without such a transaction) gets a full copy, written while the
publisher holds a claim in the state store (:func:`publish_claim`): a second publisher waits, then
finds the mark, kept in the same marks table, up to date and writes nothing. The mark is dropped
before the copy is written and recorded after it, so a copy cut short is redone next time.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from closeloop.data.tables import ENROLLMENTS
from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.engine import schema
from closeloop.engine.state import StateStore, enrollment_arrow_schema
from closeloop.errors import StateError

MARKS_TABLE = "closeloop_enrollments_marks"
STORE_COUNTER = "enrollments_store"
CLAIM_ATTEMPTS = 200
MARKS_LOCK_KEY = 0x636C6570  # "clep": held while a PostgreSQL warehouse creates the marks table
PUBLISH_LOCK_KEY = 0x636C7370  # "clsp": a PostgreSQL state store's claim on a full-copy publish
PUBLISH_WAIT_SECONDS = 600.0
_IN_MEMORY_CLAIM = threading.Lock()  # a store in memory has publishers in this process only
_COLUMNS = ENROLLMENTS.column_names


@dataclass(frozen=True)
class Published:
    """What one publish did: ``rows`` copied (all of them when ``full``), the new ``mark``."""

    rows: int
    full: bool
    mark: int


@dataclass(frozen=True)
class _Changes:
    store_id: int
    mark: int
    table: pa.Table
    full: bool


def publish_enrollments(store: StateStore, warehouse: Warehouse) -> int:
    """Bring the warehouse's copy of the enrollments up to date; return the rows copied."""
    return publish(store, warehouse).rows


def publish(store: StateStore, warehouse: Warehouse) -> Published:
    """Copy the enrollments changed since the last publish into the warehouse (:mod:`module doc
    <closeloop.engine.publish>`); the first publish, or one from another store, copies them all."""
    warehouse.refuse_if_mapped(ENROLLMENTS_TABLE)
    if warehouse.dialect == "duckdb":
        return _publish_duckdb(store, warehouse)
    if warehouse.dialect == "postgres":
        return _publish_postgres(store, warehouse)
    return _publish_full_copy(store, warehouse)


# -- the store's side ----------------------------------------------------------------------------


def read_changes(store: StateStore, published_store: Any = None, mark: Any = None) -> _Changes:
    """The enrollments the warehouse lacks, with the store's id and the mark to record once they
    are copied: those with a revision at or above ``mark`` when the warehouse's copy came from
    this store (``published_store``), else all of them (``full``). Rows without a revision
    (written around the triggers) are always included."""
    e = schema.enrollments
    c = schema.counters
    postgres = store.engine.dialect.name == "postgresql"
    with store.engine.connect() as connection:
        if postgres:
            # One snapshot for the rows and the mark (module doc).
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            store_id = connection.execute(
                sa.select(c.c.value).where(c.c.name == STORE_COUNTER)
            ).scalar()
            if store_id is None:
                raise StateError(
                    f"the state store at {store.url} has no enrollment revisions yet; "
                    "run `closeloop migrate`"
                )
            since = int(mark) if mark is not None and published_store == store_id else None
            query = sa.select(*[e.c[name] for name in _COLUMNS], e.c.revision)
            if since is not None:
                query = query.where(sa.or_(e.c.revision >= since, e.c.revision.is_(None)))
            rows = connection.execute(query).fetchall()
            oldest_running = (
                connection.execute(
                    sa.text("SELECT txid_snapshot_xmin(txid_current_snapshot())")
                ).scalar()
                if postgres
                else None
            )
    columns: list[tuple[Any, ...]] = (
        list(zip(*rows, strict=True)) if rows else [()] * (len(_COLUMNS) + 1)
    )
    # Column by column: no Python object per row on the way to Arrow.
    table = pa.Table.from_arrays(
        [
            pa.array(values, type=field.type)
            for values, field in zip(columns, enrollment_arrow_schema(), strict=False)
        ],
        schema=enrollment_arrow_schema(),
    )
    if postgres:
        new_mark = int(oldest_running or 0)
    else:
        revisions = [value for value in columns[-1] if value is not None]
        new_mark = max(revisions) + 1 if revisions else 0
    if since is not None:
        new_mark = max(new_mark, since)
    return _Changes(int(store_id), new_mark, table, full=since is None)


# -- DuckDB --------------------------------------------------------------------------------------

_MARKS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {MARKS_TABLE} (id INTEGER PRIMARY KEY, store_id BIGINT, "
    "mark BIGINT, publishes BIGINT NOT NULL)"
)
_MARKS_ROW = f"INSERT INTO {MARKS_TABLE} VALUES (1, NULL, NULL, 0) ON CONFLICT DO NOTHING"
_CLAIM = f"UPDATE {MARKS_TABLE} SET publishes = publishes + 1 WHERE id = 1 RETURNING store_id, mark"
_SET_MARK = f"UPDATE {MARKS_TABLE} SET store_id = $1, mark = $2 WHERE id = 1"
_TARGET = '"' + ENROLLMENTS_TABLE + '"'
_COLUMN_LIST = ", ".join(f'"{name}"' for name in _COLUMNS)


_EXISTS = (
    "SELECT count(*) FROM information_schema.tables "
    f"WHERE table_name = '{ENROLLMENTS_TABLE}' AND table_schema = current_schema()"
)


def _ensure_enrollments(warehouse: Warehouse, connection: Any) -> None:
    """Create the warehouse's table of enrollments if it is not there (a workspace creates it
    when it opens; the check goes through our own connection: Ibis' is shared by threads)."""
    connection.execute(_EXISTS)
    if connection.fetchone()[0]:
        return
    if ENROLLMENTS_TABLE not in warehouse.backend.list_tables():
        try:
            warehouse.backend.create_table(ENROLLMENTS_TABLE, schema=ENROLLMENTS.ibis_schema())
        except Exception:
            if ENROLLMENTS_TABLE not in warehouse.backend.list_tables():
                raise


def _publish_duckdb(store: StateStore, warehouse: Warehouse) -> Published:
    import duckdb

    # A connection of its own: its transaction is not the one Ibis' shared connection is in.
    connection = warehouse.backend.con.cursor()
    try:
        _ensure_enrollments(warehouse, connection)
        for attempt in range(CLAIM_ATTEMPTS):
            try:  # two first publishes in one process collide creating the marks
                connection.execute(_MARKS_DDL)
                connection.execute(_MARKS_ROW)
                break
            except (duckdb.TransactionException, duckdb.ConstraintException):
                time.sleep(0.01 * (1 + attempt % 10))
        for attempt in range(CLAIM_ATTEMPTS):
            connection.execute("BEGIN TRANSACTION")
            try:
                store_id, mark = connection.execute(_CLAIM).fetchone() or (None, None)
                changes = read_changes(store, store_id, mark)
                full = changes.full
                connection.register("_closeloop_changed", changes.table)
                if full:
                    connection.execute(f"DELETE FROM {_TARGET}")
                else:
                    connection.execute(
                        f"DELETE FROM {_TARGET} WHERE enrollment_id IN "
                        "(SELECT enrollment_id FROM _closeloop_changed)"
                    )
                connection.execute(
                    f"INSERT INTO {_TARGET} ({_COLUMN_LIST}) "
                    f"SELECT {_COLUMN_LIST} FROM _closeloop_changed"
                )
                connection.unregister("_closeloop_changed")
                connection.execute(_SET_MARK, [changes.store_id, changes.mark])
                connection.execute("COMMIT")
            except (duckdb.TransactionException, duckdb.ConstraintException):
                _rollback(connection)
                time.sleep(0.01 * (1 + attempt % 10))  # another publisher holds the mark
                continue
            except BaseException:
                _rollback(connection)
                raise
            return Published(changes.table.num_rows, full, changes.mark)
    finally:
        connection.close()
    raise StateError(
        f"could not publish enrollments: other publishers held the warehouse's mark "
        f"{CLAIM_ATTEMPTS} times in a row"
    )


def _rollback(connection: Any) -> None:
    """Roll back, if DuckDB has not already (a conflict at commit ends the transaction)."""
    import duckdb

    with contextlib.suppress(duckdb.TransactionException):
        connection.execute("ROLLBACK")


# -- PostgreSQL ----------------------------------------------------------------------------------


def _publish_postgres(store: StateStore, warehouse: Warehouse) -> Published:
    backend: Any = warehouse.backend
    with backend.begin() as cursor:
        _ensure_enrollments(warehouse, cursor)
    with backend.begin() as cursor:
        # Two first publishes would both create the table (a unique violation in the catalog).
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [MARKS_LOCK_KEY])
        cursor.execute(_MARKS_DDL)
        cursor.execute(_MARKS_ROW)
    with backend.begin() as cursor:
        # Claiming the row locks it until this transaction ends: other publishers wait here.
        cursor.execute(_CLAIM)
        store_id, mark = cursor.fetchone() or (None, None)
        changes = read_changes(store, store_id, mark)
        full = changes.full
        cursor.execute(
            f"CREATE TEMP TABLE _closeloop_changed ON COMMIT DROP AS "
            f"SELECT {_COLUMN_LIST} FROM {_TARGET} WITH NO DATA"
        )
        if changes.table.num_rows:
            buffer = io.BytesIO()
            pa_csv.write_csv(changes.table, buffer)
            with cursor.copy(
                f"COPY _closeloop_changed ({_COLUMN_LIST}) FROM STDIN WITH (FORMAT csv, HEADER)"
            ) as copy:
                copy.write(buffer.getvalue())
        if full:
            cursor.execute(f"DELETE FROM {_TARGET}")
        else:
            cursor.execute(
                f"DELETE FROM {_TARGET} AS t USING _closeloop_changed AS c "
                "WHERE t.enrollment_id = c.enrollment_id"
            )
        cursor.execute(
            f"INSERT INTO {_TARGET} ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM _closeloop_changed"
        )
        cursor.execute(
            _SET_MARK.replace("$1", "%s").replace("$2", "%s"), [changes.store_id, changes.mark]
        )
    return Published(changes.table.num_rows, full, changes.mark)


# -- Spark and other warehouses: a full copy under a claim in the state store ------------------


def _publish_full_copy(store: StateStore, warehouse: Warehouse) -> Published:
    with publish_claim(store):
        tables = set(warehouse.backend.list_tables())
        store_id = mark = None
        if MARKS_TABLE in tables and ENROLLMENTS_TABLE in tables:
            marks = warehouse.backend.table(MARKS_TABLE).to_pyarrow().to_pylist()
            if len(marks) == 1:
                store_id, mark = marks[0]["store_id"], marks[0]["mark"]
        changes = read_changes(store, store_id, mark)
        if not changes.full and changes.table.num_rows == 0:
            return Published(0, False, changes.mark)
        if not changes.full:
            changes = read_changes(store)
        # No mark while the copy is written: one cut short is not taken for up to date.
        if MARKS_TABLE in tables:
            warehouse.backend.drop_table(MARKS_TABLE, force=True)
        warehouse.replace(ENROLLMENTS_TABLE, changes.table)
        warehouse.replace(
            MARKS_TABLE,
            pa.table(
                {"store_id": [changes.store_id], "mark": [changes.mark]},
                schema=pa.schema([("store_id", pa.int64()), ("mark", pa.int64())]),
            ),
        )
    return Published(changes.table.num_rows, True, changes.mark)


@contextlib.contextmanager
def publish_claim(store: StateStore, wait: float = PUBLISH_WAIT_SECONDS) -> Iterator[None]:
    """Held while one publisher copies the enrollments into a warehouse that cannot claim the
    copy in its own transaction (Spark): others wait here, up to ``wait`` seconds.

    PostgreSQL: a session advisory lock on a connection of its own; SQLite: an exclusive
    ``flock`` on a file next to the database (a lock per open file, so threads of one process
    exclude each other too). The server or the operating system releases either when the
    process ends, however it ends.
    """
    deadline = time.monotonic() + wait
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as connection:
            lock = sa.text("SELECT pg_try_advisory_lock(:key)")
            while not connection.execute(lock, {"key": PUBLISH_LOCK_KEY}).scalar():
                connection.commit()
                _wait_for_claim(store, deadline, wait)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": PUBLISH_LOCK_KEY}
                )
                connection.commit()
        return
    database = store.engine.url.database
    if not database or database == ":memory:":
        if not _IN_MEMORY_CLAIM.acquire(timeout=wait):
            raise _claim_timeout(store, wait)
        try:
            yield
        finally:
            _IN_MEMORY_CLAIM.release()
        return
    with Path(f"{database}.publish.lock").open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                _wait_for_claim(store, deadline, wait)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_for_claim(store: StateStore, deadline: float, wait: float) -> None:
    if time.monotonic() >= deadline:
        raise _claim_timeout(store, wait)
    time.sleep(0.05)


def _claim_timeout(store: StateStore, wait: float) -> StateError:
    return StateError(
        f"could not publish enrollments: another publisher held the claim in the state store "
        f"at {store.url} for {wait:.0f} s"
    )
