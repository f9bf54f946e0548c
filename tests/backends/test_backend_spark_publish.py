"""Publishing enrollments to a Spark warehouse: publishers at the same moment leave exactly one
copy of every enrollment (engine.publish: a Spark publish is claimed through the state store).

PySpark local mode admits one session per process, so the concurrent publishers are threads of
this process, each with its own state-store connection and its own Warehouse on the session
(a server publishes from request threads in the same way).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.engine import schema
from closeloop.engine.publish import publish
from closeloop.engine.state import StateStore

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = [pytest.mark.slow, pytest.mark.spark]

DATABASE = "closeloop_spark_publish"
START = datetime(2024, 3, 1)
PUBLISHERS = 3


@pytest.fixture
def spark_warehouse(spark_session: SparkSession) -> Iterator[SparkSession]:
    """The session, in a schema of its own that starts without closeloop's tables."""
    current = spark_session.catalog.currentDatabase()
    spark_session.sql(f"DROP SCHEMA IF EXISTS {DATABASE} CASCADE")
    with Warehouse.connect(f"pyspark://?database={DATABASE}") as warehouse:
        warehouse.ensure_tables()
    try:
        yield spark_session
    finally:
        spark_session.sql(f"USE {current}")
        spark_session.sql(f"DROP SCHEMA IF EXISTS {DATABASE} CASCADE")


def _store(path: Path) -> StateStore:
    store = StateStore.connect(f"sqlite:///{path}")
    store.migrate()
    return store


def _enroll(store: StateStore, first: int, count: int) -> None:
    with store.engine.begin() as connection:
        if first == 0:
            connection.execute(
                schema.jobs.insert().values(
                    name="Nudge",
                    salt="salt",
                    current_version=1,
                    content_hash="hash",
                    holdout=0.2,
                    launched_at=START,
                )
            )
        connection.execute(
            schema.enrollments.insert(),
            [
                {
                    "enrollment_id": f"e{index}",
                    "job_name": "Nudge",
                    "job_version": 1,
                    "account_id": f"a{index}",
                    "arm": "holdout" if index % 5 == 0 else "treatment",
                    "entered_at": START + timedelta(hours=index),
                }
                for index in range(first, first + count)
            ],
        )


def _warehouse_ids(session: SparkSession) -> list[str]:
    rows = session.sql(f"SELECT enrollment_id FROM {DATABASE}.{ENROLLMENTS_TABLE}").collect()
    return sorted(str(row[0]) for row in rows)


def _publish_at_once(path: Path, session: SparkSession) -> tuple[list[int], list[BaseException]]:
    """``PUBLISHERS`` publishes released together: the rows each copied, the errors raised."""
    start = threading.Barrier(PUBLISHERS)
    copied: list[int] = []
    errors: list[BaseException] = []

    def publishing() -> None:
        store = _store(path)
        warehouse = Warehouse.for_spark(session, url=f"pyspark://?database={DATABASE}")
        try:
            start.wait(60)
            copied.append(publish(store, warehouse).rows)
        except BaseException as error:  # reported by the caller's assertion
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=publishing) for _ in range(PUBLISHERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return sorted(copied), errors


def test_publishers_at_the_same_moment_leave_exactly_one_copy(
    spark_warehouse: SparkSession, tmp_path: Path
) -> None:
    path = tmp_path / "state.sqlite"
    store = _store(path)
    try:
        for first, count in ((0, 400), (400, 150)):  # a first publish, then one of changes
            _enroll(store, first, count)
            # One publisher copies everything; the others wait, then find it up to date.
            copied, errors = _publish_at_once(path, spark_warehouse)
            assert errors == []
            assert copied == [0] * (PUBLISHERS - 1) + [first + count]
            assert _warehouse_ids(spark_warehouse) == sorted(
                f"e{index}" for index in range(first + count)
            )
    finally:
        store.close()


def test_a_copy_cut_short_is_redone_by_the_next_publish(
    spark_warehouse: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path / "state.sqlite")
    warehouse = Warehouse.for_spark(spark_warehouse, url=f"pyspark://?database={DATABASE}")
    try:
        _enroll(store, 0, 50)
        assert publish(store, warehouse).rows == 50
        assert publish(store, warehouse).rows == 0  # up to date: nothing written
        _enroll(store, 50, 10)
        with monkeypatch.context() as patch:

            def crash(name: str, data: Any, schema: Any = None) -> None:
                spark_warehouse.sql(f"TRUNCATE TABLE {DATABASE}.{name}")  # half-written
                raise OSError("the driver died while writing")

            patch.setattr(warehouse, "replace", crash)
            with pytest.raises(OSError, match="driver died"):
                publish(store, warehouse)
        assert _warehouse_ids(spark_warehouse) == []
        assert publish(store, warehouse).rows == 60  # no store change since: still redone
        assert _warehouse_ids(spark_warehouse) == sorted(f"e{index}" for index in range(60))
    finally:
        store.close()
