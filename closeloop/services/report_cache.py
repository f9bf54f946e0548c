"""Job reports kept while nothing they depend on changes (the dashboard's job page, the library,
the board's initiatives and the churn review all measure the same jobs).

A report takes seconds (it measures in the warehouse). :func:`cached_analysis` keeps the
*analysis* of a job's report, keyed on everything that can change it: the job's definition
(content hash), its record (version, holdout, status), its last tick, the state store's high-water
marks (enrollments, outbox, opt-outs, the job's audit entries) and the warehouse's (row counts of
the tables a report reads and the newest event). A tick, an import, a delivery or an edit changes a
mark, so a cached report is never stale. The cache is per process (a server, or one command).
While a DuckDB warehouse's or a SQLite store's file is unwritten, the marks themselves are
remembered (``file_marks``): a warm page then reads no table to know its report is current.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import ibis

from closeloop.data.warehouse import Warehouse
from closeloop.engine import job_marks
from closeloop.services import file_marks
from closeloop.services.project import Workspace
from closeloop.services.reports import JobReport, job_report

DEFAULT_SEGMENT_BY = ("segment",)
"""The segment column of a job's report when none is asked for (as ``closeloop report``)."""

CACHE_SIZE = 32
"""Reports kept (per process): a job and a segment column are one entry."""


class ReportCache:
    """A small LRU of report analyses by key (thread-safe; two misses may both compute)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], JobReport] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> JobReport | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], report: JobReport) -> None:
        with self._lock:
            self._entries[key] = report
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


REPORTS = ReportCache()
"""The process's cache (one server process serves one project; the key names it anyway)."""


MARKED_TABLES = ("accounts", "attribute_history", "events", "people", "subscriptions")
"""The warehouse tables a job's report reads (audience attributes, goals, revenue value)."""


_MARKS_SQL: dict[tuple[str, str], str] = {}
"""The marks query compiled per warehouse (URL and sources): compiling it costs more than
running it."""


def _marks_expression(warehouse: Warehouse) -> ibis.Table:
    parts = []
    for name in MARKED_TABLES:
        table = warehouse.table(name)
        newest = table.timestamp.max().cast("string") if name == "events" else ibis.null("string")
        parts.append(table.aggregate(name=ibis.literal(name), rows=table.count(), newest=newest))
    return ibis.union(*parts)


def warehouse_marks(warehouse: Warehouse, url: str = "") -> tuple[Any, ...]:
    """Row counts of the tables a report reads, and the newest event, in one query. An import or
    a write-back adds rows (attribute updates go to the history), so it changes a count. The
    answer is remembered while the warehouse's file is unwritten (``file_marks``)."""
    return file_marks.remembered(
        (file_marks.warehouse_stamp(warehouse),),
        ("warehouse_marks", url),
        lambda: _read_warehouse_marks(warehouse, url),
    )


def workspace_marks(workspace: Workspace) -> tuple[Any, ...]:
    """:func:`warehouse_marks` of the workspace's warehouse, connecting it only to read them."""
    url = workspace.settings.warehouse_url
    return file_marks.remembered(
        (file_marks.workspace_stamp(workspace),),
        ("warehouse_marks", url),
        lambda: _read_warehouse_marks(workspace.warehouse, url),
    )


def _read_warehouse_marks(warehouse: Warehouse, url: str) -> tuple[Any, ...]:
    key = (url, repr(sorted(warehouse.sources.items())))
    text = _MARKS_SQL.get(key) if url else None
    if text is None:
        expression = _marks_expression(warehouse)
        if url:
            _MARKS_SQL[key] = str(ibis.to_sql(expression))
        rows = [tuple(row.values()) for row in expression.to_pyarrow().to_pylist()]
    else:
        cursor = warehouse.backend.raw_sql(text)
        try:
            rows = [tuple(row) for row in cursor.fetchall()]
        finally:
            # DuckDB answers with its connection itself (never close that); others with a cursor.
            if cursor is not getattr(warehouse.backend, "con", None):
                cursor.close()
    return tuple(sorted((str(name), int(count), newest) for name, count, newest in rows))


def report_key(
    workspace: Workspace,
    job_name: str,
    segment_by: Sequence[str],
    marks: tuple[Any, ...] | None = None,
) -> tuple[Any, ...]:
    """Everything a job's report depends on (see the module's docstring); ``marks``: the
    warehouse's, when already read."""
    loaded = workspace.project.jobs.get(job_name)
    definition = loaded.content_hash if loaded is not None else None
    settings = workspace.settings
    return (
        str(settings.project_dir),
        settings.state_url,
        settings.warehouse_url,
        job_name,
        tuple(segment_by),
        definition,
        file_marks.remembered(
            (file_marks.store_stamp(workspace.store),),
            ("state_marks", settings.state_url, job_name),
            lambda: job_marks.state_marks(workspace.store, job_name),
        ),
        marks if marks is not None else workspace_marks(workspace),
    )


def cached_analysis(
    workspace: Workspace,
    job_name: str,
    *,
    segment_by: Sequence[str] = DEFAULT_SEGMENT_BY,
    cache: ReportCache = REPORTS,
    marks: tuple[Any, ...] | None = None,
    publish: bool = True,
) -> tuple[JobReport, tuple[Any, ...], bool]:
    """The analysis of the job's report as of its last tick (what ``closeloop report NAME``
    measures), its cache key and whether it came from the cache. ``publish=False``: the caller
    has already copied the engine's enrollments into the warehouse (once for many jobs)."""
    key = report_key(workspace, job_name, segment_by, marks)
    report = cache.get(key)
    if report is not None:
        return report, key, True
    report = job_report(workspace, job_name, segment_by=segment_by, publish=publish)
    cache.put(key, report)
    return report, key, False
