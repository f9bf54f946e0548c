"""Data use cases: import files into the canonical tables; how current the data is, and which
names and values it lacks (``validate``, ``explain``, ``measure``); the quarantine of bad rows."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from difflib import SequenceMatcher, get_close_matches
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import ibis
import ibis.expr.types as ir
import sqlglot.expressions as sge

from closeloop.data.importer import ImportOptions, ImportResult, ProgressCallback, import_file
from closeloop.data.importer import ImportProgress as ImportProgress
from closeloop.data.tables import CANONICAL_TABLES, QUARANTINE
from closeloop.data.warehouse import Warehouse
from closeloop.engine.state import utc_now
from closeloop.errors import ConfigurationError, NotFoundError
from closeloop.schemas.data import (
    ExportedFile,
    QuarantinedRow,
    QuarantineExport,
    QuarantineListing,
    QuarantinePurge,
)
from closeloop.services import file_marks
from closeloop.services.project import Workspace

IMPORT_TABLES = tuple(CANONICAL_TABLES)
"""The tables ``closeloop import`` fills, parents first."""


def import_table(
    workspace: Workspace,
    table: str,
    path: Path,
    *,
    columns: dict[str, str] | None = None,
    format: str | None = None,
    encoding: str | None = None,
    progress: ProgressCallback | None = None,
) -> ImportResult:
    """Import ``path`` into ``table`` with the project's ``imports.<table>`` rules; ``columns``
    (``--map``) adds to and overrides the mapping of closeloop.yaml."""
    imports = workspace.project.config.imports
    rules = next((rule for name, rule in imports.items() if name == table), None)
    configured = dict(rules.map) if rules is not None else {}
    given = dict(columns or {})
    origin = " / ".join(
        part
        for part, used in (("--map", given), (f"imports.{table}.map in closeloop.yaml", configured))
        if used
    )
    options = ImportOptions(
        columns={**configured, **given},
        normalize=dict(rules.normalize) if rules is not None else {},
        format=format,
        encoding=encoding,
        origin=origin or "--map",
    )
    return import_file(workspace.warehouse, table, path, progress=progress, options=options)


# -- how current the data is ------------------------------------------------------------------

STALE_AFTER = timedelta(days=7)
"""The newest event older than this, before now: the data looks stale."""
AHEAD_OF_DATA = timedelta(days=1)
"""A command's time more than this after the newest event: the data may not reach it."""
CLOCK_SKEW = timedelta(minutes=5)
"""Times this far past the wall clock still count as now (clocks of two machines differ)."""


@dataclass(frozen=True)
class Freshness:
    """How current the events are, for a command evaluated at ``at`` (warnings, never errors)."""

    at: datetime
    now: datetime
    newest_event: datetime | None
    warnings: tuple[str, ...]


def freshness(
    warehouse: Warehouse, at: datetime, *, now: datetime | None = None, option: str = "--at"
) -> Freshness:
    """Warnings about how current the events are for a command evaluated at ``at``: ``at`` in
    the future; ``at`` (in the past) more than :data:`AHEAD_OF_DATA` after the newest event; the
    newest event more than :data:`STALE_AFTER` before now; events dated after now. ``option``
    names the time in messages (``--at``, ``--as-of``). One aggregate query.

    >>> warehouse = Warehouse.connect("duckdb://")
    >>> warehouse.ensure_tables()
    >>> freshness(warehouse, datetime(2024, 6, 1), now=datetime(2024, 6, 1)).warnings[0][:33]
    'the warehouse has no events: each'
    """
    return freshness_of(newest_event(warehouse), at, now=now, option=option)


def freshness_of(
    newest: datetime | None, at: datetime, *, now: datetime | None = None, option: str = "--at"
) -> Freshness:
    """:func:`freshness` when the newest event (``newest``) is known."""
    now = now or utc_now()
    when = f"{option} {_minute(at)}"
    warnings: list[str] = []
    future = at > now + CLOCK_SKEW
    if future:
        warnings.append(
            f"{when} is in the future (now: {_minute(now)} UTC): relative windows count back "
            "from then, and what happens until then is not in the data yet"
        )
    if newest is None:
        warnings.append(
            "the warehouse has no events: each event count is 0 and no event goal is reached "
            "(import them with `closeloop import events FILE`)"
        )
        return Freshness(at, now, None, tuple(warnings))
    if newest > now + CLOCK_SKEW:
        warnings.append(
            f"events are dated up to {_minute(newest)}, after now ({_minute(now)} UTC): check "
            "the time zone of the export, or the rows dated in the future"
        )
    # A time in the past is a question about then; a time about now is answered by fresh data.
    about_now = future or at >= now - AHEAD_OF_DATA
    if not about_now and at > newest + AHEAD_OF_DATA:
        warnings.append(
            f"{when} is {_duration(at - newest)} after the newest event ({_minute(newest)}): the "
            f"data may not reach that time; import newer events or pick an earlier {option}"
        )
    elif newest < now - STALE_AFTER:
        warnings.append(
            f"the newest event is from {_minute(newest)} UTC, {_duration(now - newest)} ago: the "
            "data looks stale; import recent events"
        )
    return Freshness(at, now, newest, tuple(warnings))


def default_as_of(workspace: Workspace, now: datetime | None = None) -> datetime:
    """The time a view shows when none is asked for: now (naive UTC), but never after the newest
    event. A project whose data stops earlier (the demo, a sync that stalled) is then shown as of
    its newest data instead of as an empty present; the freshness check says how old that is."""
    current = now or utc_now()
    newest = workspace_newest_event(workspace)
    return current if newest is None or newest >= current else newest


def newest_event(warehouse: Warehouse) -> datetime | None:
    """The time of the newest event in the warehouse (None when there is none): one scan of
    the events' times, remembered while the warehouse's file is unwritten (``file_marks``),
    so the pages that show the present as of the newest event pay it once per change."""
    return file_marks.remembered(
        (file_marks.warehouse_stamp(warehouse),), ("newest_event",), lambda: _newest(warehouse)
    )


def workspace_newest_event(workspace: Workspace) -> datetime | None:
    """:func:`newest_event` of the workspace's warehouse, connecting it only to read it."""
    return file_marks.remembered(
        (file_marks.workspace_stamp(workspace),),
        ("newest_event",),
        lambda: _newest(workspace.warehouse),
    )


def _newest(warehouse: Warehouse) -> datetime | None:
    value = warehouse.table("events").timestamp.max().to_pyarrow().as_py()
    return value if isinstance(value, datetime) else None


def _minute(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"


def _duration(delta: timedelta) -> str:
    if delta >= timedelta(days=2):
        return f"{delta.days} days"
    hours = max(int(delta.total_seconds() // 3600), 1)
    return f"{hours} hour{'s' if hours > 1 else ''}"


# -- names and values that are not in the data ------------------------------------------------

SUGGESTION_CANDIDATES = 2_000
"""The most frequent distinct values a suggestion is picked from (one small query)."""


def absent_values(
    table: ir.Table, column: str, wanted: Iterable[str], *, lowered: bool = False
) -> dict[str, str | None]:
    """Of the ``wanted`` values, those no row of ``table`` has in ``column``, each with the
    closest value that does occur (or None). ``lowered`` compares ``lower(column)``.

    Two queries, both in the warehouse: which wanted values occur, then (only if some do not) the
    :data:`SUGGESTION_CANDIDATES` most frequent distinct values to suggest from.
    """
    wanted = sorted(set(wanted))
    if not wanted:
        return {}
    values = table[column].cast("string")
    if lowered:
        values = values.lower()
    found = table.select(_value=values).filter(lambda t: t._value.isin(wanted)).distinct()
    present = set(found.to_pyarrow().column("_value").to_pylist())
    missing = [value for value in wanted if value not in present]
    if not missing:
        return {}
    counts = (
        table.select(_value=values)
        .filter(lambda t: t._value.notnull())
        .group_by("_value")
        .aggregate(_n=lambda t: t.count())
        .order_by(ibis.desc("_n"), "_value")
        .limit(SUGGESTION_CANDIDATES)
    )
    candidates = [str(value) for value in counts.to_pyarrow().column("_value").to_pylist()]
    return {value: closest(value, candidates) for value in missing}


def closest(value: str, candidates: Sequence[str]) -> str | None:
    """The candidate ``value`` was most likely meant as: the same but for case, spaces and
    punctuation (``integration_connected`` / ``Integration Connected``), else a close spelling.

    >>> closest("integration_connected", ["login", "Integration Connected"])
    'Integration Connected'
    >>> closest("enterprize", ["enterprise", "mid_market"])
    'enterprise'
    >>> closest("churned", ["login"]) is None
    True
    """
    by_key: dict[str, list[str]] = {}
    for candidate in candidates:
        if candidate != value:
            by_key.setdefault(_name_key(candidate), []).append(candidate)
    key = _name_key(value)
    if key not in by_key:
        close = get_close_matches(key, list(by_key), n=1, cutoff=0.75)
        if not close:
            return None
        key = close[0]
    # Of the spellings that differ only in case or punctuation, the one most like ``value``
    # (``enterprize`` -> ``enterprise`` rather than ``ENTERPRISE``); ties go to the first given.
    return max(by_key[key], key=lambda candidate: SequenceMatcher(None, value, candidate).ratio())


def _name_key(text: str) -> str:
    return re.sub(r"[\W_]+", "_", text.casefold()).strip("_")


def missing_event_warnings(events: ir.Table, names: Iterable[str], where: str) -> list[str]:
    """``no event named "x" in <where> (did you mean "X"?)`` for each of ``names`` that no row
    of ``events`` (a table with a ``name`` column) has."""
    return [
        f"no event named {json.dumps(name, ensure_ascii=False)} in {where}"
        + (
            f" (did you mean {json.dumps(suggestion, ensure_ascii=False)}?)"
            if suggestion is not None
            else ""
        )
        for name, suggestion in absent_values(events, "name", names).items()
    ]


# -- quarantine ---------------------------------------------------------------------------------


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


def quarantine_list(
    workspace: Workspace,
    table: str | None = None,
    *,
    limit: int | None = 100,
    offset: int = 0,
) -> QuarantineListing:
    """The quarantined rows (of ``table``), oldest import first, by file and row: ``limit`` of
    them from ``offset`` (``limit`` None: all of them)."""
    rows = _quarantined(workspace.warehouse, table)
    counts = rows.group_by("table_name").aggregate(n=rows.count()).to_pyarrow().to_pylist()
    by_table = {row["table_name"]: int(row["n"]) for row in sorted(counts, key=_table_order)}
    ordered = rows.order_by("quarantined_at", "table_name", "file", "row_number", "quarantine_id")
    if limit is not None or offset:
        ordered = ordered.limit(limit, offset=offset)
    shown = [_row(record) for record in ordered.to_pyarrow().to_pylist()]
    return QuarantineListing(
        table=table,
        total=sum(by_table.values()),
        by_table=by_table,
        offset=offset,
        shown=len(shown),
        rows=shown,
    )


def quarantine_export(
    workspace: Workspace,
    folder: Path,
    table: str | None = None,
    *,
    file_format: ExportFormat = ExportFormat.CSV,
    overwrite: bool = False,
) -> QuarantineExport:
    """Write the quarantined rows back to files, one per table, to be fixed and re-imported:
    ``<table>.csv`` (or ``.jsonl``) with the columns the rows were read with, and
    ``<table>.unreadable.txt`` with the lines that could not be read into columns. Identical
    rows are written once. Existing files are kept unless ``overwrite``."""
    listing = quarantine_list(workspace, table, limit=None)
    by_table: dict[str, list[QuarantinedRow]] = {}
    for row in sorted(listing.rows, key=lambda r: (r.table, r.file, r.row)):
        by_table.setdefault(row.table, []).append(row)
    planned: list[tuple[str, Path, list[dict[str, Any]] | list[str]]] = []
    for name, rows in by_table.items():
        records = _unique([row.values for row in rows if row.values is not None])
        lines = _unique([_line(row.raw) for row in rows if row.values is None])
        if records:
            planned.append((name, folder / f"{name}.{file_format}", records))
        if lines:
            planned.append((name, folder / f"{name}.unreadable.txt", lines))
    taken = [str(path) for _, path, _ in planned if path.exists()]
    if taken and not overwrite:
        raise ConfigurationError(
            f"{', '.join(taken)} already exist(s); pass --force to overwrite, or export to "
            "another folder with --to"
        )
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, path, content in planned:
        if path.suffix == ".txt":
            path.write_text("".join(f"{line}\n" for line in content), encoding="utf-8")
        elif file_format == ExportFormat.JSONL:
            path.write_text(
                "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in content),
                encoding="utf-8",
            )
        else:
            _write_csv(path, [record for record in content if isinstance(record, dict)])
        files.append(
            ExportedFile(
                table=name, path=str(path), rows=len(content), readable=path.suffix != ".txt"
            )
        )
    return QuarantineExport(folder=str(folder), files=files)


def quarantine_purge(
    workspace: Workspace,
    table: str | None = None,
    *,
    before: datetime | None = None,
    confirmed: bool = False,
) -> QuarantinePurge:
    """Delete quarantined rows (of ``table``; quarantined before ``before``). Deleting every row
    of a selection needs ``confirmed``; ``before`` alone is its own confirmation."""
    warehouse = workspace.warehouse
    selected = _quarantined(warehouse, table)
    if before is not None:
        selected = selected.filter(selected.quarantined_at < ibis.literal(before, type="timestamp"))
    count = int(selected.count().to_pyarrow().as_py())
    if count and before is None and not confirmed:
        scope = f"of {table} " if table else ""
        raise ConfigurationError(
            f"purge deletes all {count:,} quarantined row(s) {scope}for good; pass --yes to "
            "confirm, or --before DATE to delete only rows quarantined before DATE"
        )
    if count:
        condition: list[sge.Expression] = []
        if table is not None:
            condition.append(sge.column("table_name").eq(sge.Literal.string(table)))
        if before is not None:
            moment = sge.Literal.string(before.isoformat(sep=" "))
            condition.append(sge.column("quarantined_at") < sge.cast(moment, "timestamp"))
        statement = sge.delete(QUARANTINE.name, where=sge.and_(*condition) if condition else None)
        _execute(warehouse, statement.sql(dialect=warehouse.dialect))
    remaining = int(_quarantined(warehouse, table).count().to_pyarrow().as_py())
    return QuarantinePurge(table=table, before=before, purged=count, remaining=remaining)


def _quarantined(warehouse: Warehouse, table: str | None) -> ir.Table:
    if table is not None and table not in CANONICAL_TABLES:
        known = ", ".join(CANONICAL_TABLES)
        raise NotFoundError(f"--table {table!r} is not a canonical table; tables: {known}")
    rows = warehouse.table(QUARANTINE.name)
    if table is not None:
        rows = rows.filter(rows.table_name == ibis.literal(table, type="string"))
    return rows


def _table_order(row: dict[str, Any]) -> tuple[int, str]:
    names = list(CANONICAL_TABLES)
    name = str(row["table_name"])
    return (names.index(name) if name in names else len(names), name)


def _row(record: dict[str, Any]) -> QuarantinedRow:
    raw = record["raw"] or ""
    return QuarantinedRow(
        table=record["table_name"],
        file=record["file"],
        row=int(record["row_number"]),
        column=record["column_name"],
        reason=record["reason"],
        raw=raw,
        values=_values(raw),
        quarantined_at=record["quarantined_at"],
    )


def _values(raw: str) -> dict[str, Any] | None:
    """The row's values by column, when the raw row is a JSON object (read into columns)."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


T = TypeVar("T")


def _unique(items: list[T]) -> list[T]:
    seen: set[str] = set()
    kept = []
    for item in items:
        key = json.dumps(item, sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def _line(raw: str) -> str:
    """An unreadable row as a line to repair: a row of fields back as CSV, else as it was read."""
    try:
        fields = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(fields, list):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(["" if f is None else f for f in fields])
        return buffer.getvalue()
    return raw


def _write_csv(path: Path, records: list[dict[str, Any]]) -> None:
    header: dict[str, None] = {}
    for record in records:
        header.update(dict.fromkeys(record))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(header), restval="")
        writer.writeheader()
        for record in records:
            writer.writerow({key: "" if value is None else value for key, value in record.items()})


def _execute(warehouse: Warehouse, statement: str) -> None:
    cursor = warehouse.backend.raw_sql(statement)
    # PostgreSQL hands back a cursor to close; DuckDB its connection, which must stay open.
    if cursor is not getattr(warehouse.backend, "con", None) and hasattr(cursor, "close"):
        cursor.close()
