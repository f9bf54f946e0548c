"""Answers remembered while a DuckDB warehouse's or a SQLite store's file is unwritten
(services.file_marks): a write always changes the stamp, so nothing remembered outlives it."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from closeloop.data.tables import EVENTS
from closeloop.data.warehouse import Warehouse
from closeloop.engine.state import StateStore
from closeloop.services import data as data_service
from closeloop.services import file_marks

RACY = 0.2


@pytest.fixture(autouse=True)
def _short_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_marks, "RACY_SECONDS", RACY)


def _settle() -> None:
    """Wait until the files' last write is outside the racy window (their times cannot be
    set back: that moves their change time)."""
    time.sleep(RACY + 0.05)


def _event(event_id: str, moment: datetime) -> pa.Table:
    row = {"event_id": event_id, "account_id": "a1", "name": "login", "timestamp": moment}
    return pa.Table.from_pylist([{name: row.get(name) for name in EVENTS.column_names}]).cast(
        EVENTS.ibis_schema().to_pyarrow()
    )


def test_newest_event_is_remembered_until_the_warehouse_file_is_written(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    url = f"duckdb:///{path}"
    with Warehouse.connect(url) as warehouse:
        warehouse.ensure_tables()
        warehouse.append("events", _event("e1", datetime(2024, 1, 1)))
    answers = file_marks.Remembered()
    calls: list[int] = []

    def newest() -> datetime | None:
        calls.append(1)
        with Warehouse.connect(url) as warehouse:
            return data_service.newest_event(warehouse)

    def read(warehouse: Warehouse) -> object:
        return file_marks.remembered(
            (file_marks.warehouse_stamp(warehouse),), ("newest",), newest, answers=answers
        )

    _settle()
    with Warehouse.connect(url) as warehouse:
        stamp = file_marks.warehouse_stamp(warehouse)
        assert stamp is not None
        assert read(warehouse) == datetime(2024, 1, 1)
        assert read(warehouse) == datetime(2024, 1, 1) and len(calls) == 1
        warehouse.append("events", _event("e2", datetime(2024, 3, 1)))
        # Just written: no stamp (a second write could share its time stamp), so read again.
        assert file_marks.warehouse_stamp(warehouse) is None
        assert read(warehouse) == datetime(2024, 3, 1) and len(calls) == 2
    _settle()
    with Warehouse.connect(url) as warehouse:
        assert file_marks.warehouse_stamp(warehouse) not in (None, stamp)
        assert read(warehouse) == datetime(2024, 3, 1) and len(calls) == 3
        assert read(warehouse) == datetime(2024, 3, 1) and len(calls) == 3


def test_a_warehouse_in_memory_or_on_a_server_has_no_stamp() -> None:
    with Warehouse.connect("duckdb://") as warehouse:
        assert file_marks.warehouse_stamp(warehouse) is None
    assert file_marks.duckdb_file("postgres://user@host/db") is None
    assert file_marks.duckdb_file("duckdb://") is None
    assert file_marks.duckdb_file("duckdb:////data/w.duckdb") == "/data/w.duckdb"


def test_a_sqlite_store_write_changes_its_stamp(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = StateStore.connect(f"sqlite:///{path}")
    try:
        store.migrate()
        # A server keeps a connection (its write-ahead log stays); the request's read is another.
        with store.engine.connect() as kept:
            kept.execute(sa.text("SELECT 1")).scalar()
            kept.commit()
            _settle()
            before = file_marks.store_stamp(store)
            assert before is not None
            with store.engine.connect() as connection:  # a read writes nothing
                connection.execute(sa.text("SELECT count(*) FROM jobs")).scalar()
            assert file_marks.store_stamp(store) == before
            with store.engine.begin() as connection:
                connection.execute(
                    sa.text(
                        "INSERT INTO audit_log (at, actor, action, subject) "
                        "VALUES ('2024-01-01', 'test', 'test.write', 'x')"
                    )
                )
            assert file_marks.store_stamp(store) is None
            _settle()
            assert file_marks.store_stamp(store) not in (None, before)
    finally:
        store.close()
