"""The warehouse's copy of the enrollments, brought up to date incrementally (engine.publish).

Whatever happened in the store (enrollments entering, completing, exiting; jobs stopped) and
whoever published meanwhile, the warehouse's table equals the store's after a publish, and a
publish copies only what changed since the one before.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.engine import schema
from closeloop.engine.publish import publish
from closeloop.engine.state import StateStore
from support import Backends, embedded_backends

START = datetime(2024, 3, 1)
JOBS = ("Nudge", "Renewal", "Adoption")


def _open(backends: Backends) -> tuple[StateStore, Warehouse]:
    store = StateStore.connect(backends.state_url)
    store.migrate()
    warehouse = Warehouse.connect(backends.warehouse_url)
    warehouse.ensure_tables()
    return store, warehouse


def _add_jobs(store: StateStore) -> None:
    with store.engine.begin() as connection:
        for name in JOBS:
            connection.execute(
                schema.jobs.insert().values(
                    name=name,
                    salt="salt",
                    current_version=1,
                    content_hash="hash",
                    holdout=0.2,
                    launched_at=START,
                )
            )


def _rows(table: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(row.values()) for row in table.to_pylist())


def _store_rows(store: StateStore) -> list[tuple[Any, ...]]:
    return _rows(store.enrollments_table())


def _warehouse_rows(warehouse: Warehouse) -> list[tuple[Any, ...]]:
    return _rows(warehouse.table(ENROLLMENTS_TABLE).to_pyarrow())


class _Writer:
    """Random engine-like changes: enroll, complete, exit, stop a job (exit all its active)."""

    def __init__(self, store: StateStore, seed: int) -> None:
        self.store = store
        self.prefix = f"s{seed}-"
        self.random = random.Random(seed)
        self.count = 0

    def step(self) -> None:
        e = schema.enrollments
        choice = self.random.random()
        at = START + timedelta(hours=self.count)
        active = sa.and_(e.c.completed_at.is_(None), e.c.exited_at.is_(None))
        with self.store.engine.begin() as connection:
            ids = [
                row[0]
                for row in connection.execute(sa.select(e.c.enrollment_id).where(active)).all()
            ]
            if choice < 0.5 or not ids:
                rows = []
                for _ in range(self.random.randint(1, 6)):
                    self.count += 1
                    rows.append(
                        {
                            "enrollment_id": f"{self.prefix}{self.count}",
                            "job_name": self.random.choice(JOBS),
                            "job_version": 1,
                            "account_id": f"{self.prefix}{self.count}",
                            "arm": self.random.choice(("holdout", "treatment")),
                            "entered_at": at,
                        }
                    )
                connection.execute(e.insert(), rows)
            elif choice < 0.75:
                chosen = self.random.sample(ids, min(len(ids), self.random.randint(1, 4)))
                connection.execute(
                    e.update().where(e.c.enrollment_id.in_(chosen)).values(completed_at=at)
                )
            elif choice < 0.95:
                chosen = self.random.sample(ids, min(len(ids), self.random.randint(1, 4)))
                connection.execute(
                    e.update()
                    .where(e.c.enrollment_id.in_(chosen))
                    .values(exited_at=at, exit_reason=self.random.choice(("timeout", "removed")))
                )
            else:
                job = self.random.choice(JOBS)
                connection.execute(
                    e.update()
                    .where(active, e.c.job_name == job)
                    .values(exited_at=at, exit_reason="job_stopped")
                )
            self.count += 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_after_random_changes_the_warehouse_equals_the_store(backends: Backends, seed: int) -> None:
    store, warehouse = _open(backends)
    try:
        _add_jobs(store)
        writer = _Writer(store, seed)
        chooser = random.Random(seed + 100)
        for _ in range(60):
            writer.step()
            if chooser.random() < 0.3:
                publish(store, warehouse)
                assert _warehouse_rows(warehouse) == _store_rows(store)
        publish(store, warehouse)
        assert _warehouse_rows(warehouse) == _store_rows(store)
    finally:
        warehouse.close()
        store.close()


def test_a_publish_copies_only_what_changed(backends: Backends) -> None:
    store, warehouse = _open(backends)
    try:
        _add_jobs(store)
        e = schema.enrollments
        with store.engine.begin() as connection:
            connection.execute(
                e.insert(),
                [
                    {
                        "enrollment_id": f"e{i}",
                        "job_name": JOBS[i % 3],
                        "job_version": 1,
                        "account_id": f"a{i}",
                        "arm": "treatment",
                        "entered_at": START,
                    }
                    for i in range(50)
                ],
            )
        first = publish(store, warehouse)
        assert (first.rows, first.full) == (50, True)
        assert publish(store, warehouse).rows == 0
        with store.engine.begin() as connection:
            connection.execute(
                e.update()
                .where(e.c.enrollment_id.in_(["e3", "e7"]))
                .values(completed_at=START + timedelta(days=1))
            )
        again = publish(store, warehouse)
        assert (again.rows, again.full) == (2, False)
        assert _warehouse_rows(warehouse) == _store_rows(store)
    finally:
        warehouse.close()
        store.close()


def test_a_copy_from_another_store_is_replaced_in_full(tmp_path: Path) -> None:
    backends = embedded_backends(tmp_path)
    other = Backends("other", backends.warehouse_url, f"sqlite:///{tmp_path / 'other.sqlite'}")
    store, warehouse = _open(backends)
    second = StateStore.connect(other.state_url)
    second.migrate()
    try:
        for each in (store, second):
            _add_jobs(each)
        _Writer(store, 7).step()
        publish(store, warehouse)
        writer = _Writer(second, 8)
        for _ in range(5):
            writer.step()
        result = publish(second, warehouse)
        assert result.full
        assert _warehouse_rows(warehouse) == _store_rows(second)
    finally:
        warehouse.close()
        store.close()
        second.close()


def _publisher(backends: Backends, rounds: int, done: Any) -> None:
    for _ in range(rounds):
        store = StateStore.connect(backends.state_url)
        warehouse = Warehouse.connect(backends.warehouse_url)
        try:
            publish(store, warehouse)
        finally:
            warehouse.close()
            store.close()
    done.wait()  # the writer has finished: one last publish sees everything
    store = StateStore.connect(backends.state_url)
    warehouse = Warehouse.connect(backends.warehouse_url)
    try:
        publish(store, warehouse)
    finally:
        warehouse.close()
        store.close()


def _write(backends: Backends, steps: int, done: Any) -> None:
    store = StateStore.connect(backends.state_url)
    try:
        writer = _Writer(store, 42)
        for _ in range(steps):
            writer.step()
    finally:
        store.close()
        done.set()


def test_publishers_in_concurrent_processes_lose_and_duplicate_nothing(
    backends: Backends,
) -> None:
    store, warehouse = _open(backends)
    _add_jobs(store)
    _Writer(store, 41).step()
    warehouse.close()
    store.close()
    context = multiprocessing.get_context("fork")
    done = context.Event()
    processes = [context.Process(target=_write, args=(backends, 80, done))]
    processes += [context.Process(target=_publisher, args=(backends, 6, done)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(180)
        assert process.exitcode == 0
    store, warehouse = _open(backends)
    try:
        rows = _warehouse_rows(warehouse)
        assert len({row[0] for row in rows}) == len(rows)  # no enrollment twice
        assert rows == _store_rows(store)
    finally:
        warehouse.close()
        store.close()


def test_publishers_in_threads_of_one_process_share_a_duckdb_warehouse(tmp_path: Path) -> None:
    """A server publishes from several request threads through one DuckDB connection: each
    publish has a connection of its own and one that finds the mark claimed tries again."""
    backends = embedded_backends(tmp_path)
    store, warehouse = _open(backends)
    try:
        _add_jobs(store)
        writer = _Writer(store, 5)
        errors: list[BaseException] = []

        def publishing() -> None:
            try:
                for _ in range(8):
                    publish(store, warehouse)
            except BaseException as error:  # reported by the assertion below
                errors.append(error)

        threads = [threading.Thread(target=publishing) for _ in range(3)]
        for thread in threads:
            thread.start()
        for _ in range(30):
            writer.step()
        for thread in threads:
            thread.join(120)
        assert errors == []
        publish(store, warehouse)
        rows = _warehouse_rows(warehouse)
        assert len({row[0] for row in rows}) == len(rows)
        assert rows == _store_rows(store)
    finally:
        warehouse.close()
        store.close()
