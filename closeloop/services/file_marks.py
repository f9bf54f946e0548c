"""Change marks of the databases kept in files, and answers remembered while they hold.

A DuckDB warehouse and a SQLite state store are files. Every write either makes goes through
``write()`` to the database file or its write-ahead log (``.wal``; ``-wal`` or ``-journal``),
which moves that file's modification time. So the *stamp* of a database (device, inode, size and
modification time of the file and its logs) read before a query names the data the
query saw: while the stamp is unchanged, nothing was written since, and an answer computed after
reading it is still the answer. A page that reads many counts (the job page) then pays a few
``stat`` calls instead of the queries while nothing changes.

Time stamps are coarse (a file system tick), so a stamp whose newest time is within
:data:`RACY_SECONDS` of the clock may not move on a write that follows it: such a database has
no stamp, like a database server or a warehouse reading tables in place (``sources:``, which
may be files of their own); every read is then made, as without marks.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import TypeVar

from closeloop.data.duckdb_file import duckdb_file as duckdb_file
from closeloop.data.warehouse import Warehouse
from closeloop.engine.state import StateStore
from closeloop.services.project import Workspace

RACY_SECONDS = 1.0
"""A file written this recently may be written again within the same time stamp."""
KEPT = 256
"""Answers remembered per process."""

FileStamp = tuple[int, int, int, int] | None
Stamp = tuple[str, tuple[FileStamp, ...]]
T = TypeVar("T")


def database_stamp(path: str | Path | None, logs: tuple[str, ...]) -> Stamp | None:
    """The stamp of the database file ``path`` and of its logs (``path`` + each suffix; a log
    that does not exist stamps None); None when there is no file, or it was written too
    recently to tell a later write apart (see the module's docstring)."""
    if path is None:
        return None
    racy = time.time_ns() - int(RACY_SECONDS * 1e9)
    stamps: list[FileStamp] = []
    for suffix in ("", *logs):
        try:
            status = Path(f"{path}{suffix}").stat()
        except FileNotFoundError:
            stamps.append(None)
            continue
        except OSError:
            return None
        # A log's change time moves without a write (SQLite, running as root, chowns the log
        # each connection opens); the file's own catches one copied over it with its old times.
        changed = status.st_mtime_ns if suffix else max(status.st_mtime_ns, status.st_ctime_ns)
        if changed >= racy:
            return None
        stamps.append((status.st_dev, status.st_ino, status.st_size, changed))
    if stamps[0] is None:
        return None
    return (str(path), tuple(stamps))


def warehouse_stamp(warehouse: Warehouse) -> Stamp | None:
    """The DuckDB warehouse file's stamp; None for other warehouses and for one that reads
    tables in place (a view may read files the stamp does not cover)."""
    return url_stamp(warehouse.url, warehouse.sources)


def url_stamp(url: str, sources: Mapping[str, object]) -> Stamp | None:
    """:func:`warehouse_stamp` of the warehouse at ``url`` reading ``sources``, unconnected."""
    if sources:
        return None
    return database_stamp(duckdb_file(url), (".wal",))


def workspace_stamp(workspace: Workspace) -> Stamp | None:
    """:func:`warehouse_stamp` of a workspace's warehouse, without connecting it."""
    return url_stamp(workspace.settings.warehouse_url, workspace.project.config.sources)


def store_stamp(store: StateStore) -> Stamp | None:
    """The SQLite state store file's stamp; None for a database server."""
    url = store.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return database_stamp(Path(url.database).absolute(), ("-wal", "-journal"))


class Remembered:
    """A small LRU of answers by (stamp, question) (thread-safe; two misses both compute)."""

    def __init__(self, size: int = KEPT) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Hashable, ...], object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Hashable, ...]) -> tuple[bool, object]:
        with self._lock:
            if key not in self._entries:
                return False, None
            self._entries.move_to_end(key)
            return True, self._entries[key]

    def put(self, key: tuple[Hashable, ...], value: object) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


ANSWERS = Remembered()
"""The process's remembered answers."""


def remembered(
    stamps: tuple[Stamp | None, ...],
    question: tuple[Hashable, ...],
    compute: Callable[[], T],
    *,
    answers: Remembered = ANSWERS,
) -> T:
    """``compute()``, or its answer to the same ``question`` while every one of ``stamps`` (read
    before) is unchanged. Without a stamp (None among them), always ``compute()``.

    The stamps must cover every database the answer reads; ``question`` names it fully (the
    function and its arguments).
    """
    if any(stamp is None for stamp in stamps):
        return compute()
    key = (*stamps, *question)
    found, value = answers.get(key)
    if found:
        return value  # type: ignore[return-value]  # put below with compute()'s T
    value = compute()
    answers.put(key, value)
    return value
