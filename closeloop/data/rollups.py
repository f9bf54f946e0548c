"""Per-unit event totals kept in the warehouse, so a tick reads only the events since them.

Every tick asks, for each unit, how many ``login`` events it ever had, when its first
``integration_connected`` was, when its last ``report_viewed``. Evaluated from the events table
that is a scan of all history per tick. This module keeps, per (account, person, event name), the
count, first and last time and sum of ``value`` of every event before a **sealed** moment ``D``
(the start of the newest event's day), in a small warehouse table; a question as of ``T >= D`` is
then that table combined with the raw events in ``[D, T]`` (the open day, and what arrived since).

Refreshing (:func:`refresh`, by each tick) is proportional to the new data: it counts the events
at or after the previous ``D`` and folds the days that became complete into a new totals table.
Events are appended, never rewritten; if the count of all events is not the sealed count plus the
new ones (late events dated before ``D``, or rows removed) the totals are rebuilt from scratch, so
results stay exactly those of a full evaluation. Windowed counts (``in last 14 days``), filters on
properties and questions before ``D`` (a backfill) are evaluated from the raw events as before
(``closeloop.data.compiler``).

Tables: ``closeloop_event_rollup`` (one row: the sealed moment, the events before it, and the
name of the current totals table) and ``closeloop_event_totals_<epoch seconds of D>`` (immutable:
a refresh writes a new one, points the state at it, and drops the ones before the previous, so a
reader never sees a half-written table and a tick that read the state just before a refresh still
finds its table). Two processes refreshing at once (a PostgreSQL warehouse) write the same
content; if one of them fails midway, that tick evaluates from the raw events, which gives the same
answers (:func:`refresh` returns None and says why in the log).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from closeloop.data.warehouse import Warehouse

log = logging.getLogger("closeloop.rollups")

# Below this many events a scan costs less than keeping the totals (each refresh is a few queries,
# and on 15k simulated events `simulate --run-jobs` took 50% longer with them).
ROLLUP_MIN_EVENTS = 1_000_000
STATE_TABLE = "closeloop_event_rollup"
TOTALS_PREFIX = "closeloop_event_totals_"
KEYS = ("account_id", "person_id", "name")
STATE_SCHEMA = pa.schema(
    [
        ("sealed_before", pa.timestamp("us")),
        ("sealed_events", pa.int64()),
        ("totals_table", pa.string()),
    ]
)


@dataclass(frozen=True)
class Rollup:
    """Totals of every event before ``sealed_before`` (``sealed_events`` of them)."""

    sealed_before: datetime
    sealed_events: int
    totals_table: str
    rebuilt: bool = field(default=False, compare=False)  # this refresh rebuilt it from scratch

    def covers(self, as_of: datetime) -> bool:
        """Whether a question as of ``as_of`` can use the totals (nothing after it is sealed)."""
        return as_of >= self.sealed_before

    def per_unit(
        self, warehouse: Warehouse, event: str, key: str, as_of: datetime, measure: str
    ) -> ir.Table:
        """Per unit (``key``: ``account_id`` or ``person_id``), ``measure`` of its ``event``
        events up to ``as_of``: ``count``, ``first``, ``last`` or ``sum`` (of ``value``), in
        column ``value``; units without such events have no row (as in a full evaluation)."""
        name = ibis.literal(event, type="string")
        totals = warehouse.backend.table(self.totals_table)
        totals = totals.filter(totals.name == name)
        events = warehouse.table("events")
        since = ibis.literal(self.sealed_before, type="timestamp")
        until = ibis.literal(as_of, type="timestamp")
        tail = events.filter(
            events.name == name, events.timestamp >= since, events.timestamp <= until
        )
        if key == "person_id":
            totals = totals.filter(totals.person_id.notnull())
            tail = tail.filter(tail.person_id.notnull())
        recent = tail.group_by(key).aggregate(
            events=tail.count(),
            first_at=tail.timestamp.min(),
            last_at=tail.timestamp.max(),
            value_sum=tail.value.sum(),
        )
        parts = totals.select(
            key,
            events=totals.events,
            first_at=totals.first_at,
            last_at=totals.last_at,
            value_sum=totals.value_sum,
        )
        both = parts.union(recent.select(*parts.columns), distinct=False)
        values = {
            "count": lambda: both.events.sum().cast("int64"),
            "first": lambda: both.first_at.min(),
            "last": lambda: both.last_at.max(),
            "sum": lambda: both.value_sum.sum(),
        }
        return both.group_by(key).aggregate(value=values[measure]())


def current(warehouse: Warehouse) -> Rollup | None:
    """The rollup as last refreshed, or None when there is none (or it is incomplete)."""
    tables = set(warehouse.backend.list_tables())
    if STATE_TABLE not in tables:
        return None
    rows = warehouse.backend.table(STATE_TABLE).to_pyarrow().to_pylist()
    if len(rows) != 1 or rows[0]["totals_table"] not in tables:
        return None
    row = rows[0]
    return Rollup(_naive(row["sealed_before"]), int(row["sealed_events"]), row["totals_table"])


def refresh(warehouse: Warehouse, *, min_events: int = ROLLUP_MIN_EVENTS) -> Rollup | None:
    """Bring the totals up to date with the events table.

    None (callers evaluate from the raw events) when there are fewer than ``min_events`` events
    (a scan is cheaper), when the events are read in place from another system (``sources:``,
    which closeloop does not watch for rewrites), or when the refresh failed (a concurrent one
    dropped a table it read).
    """
    if "events" in warehouse.sources:
        return None
    try:
        return _refresh(warehouse, min_events)
    except Exception as error:  # an optimisation only: never fail a tick for it
        log.warning("event totals not refreshed, evaluating from raw events: %s", error)
        return None


def _refresh(warehouse: Warehouse, min_events: int) -> Rollup | None:
    events = warehouse.table("events")
    total = int(events.count().to_pyarrow().as_py())
    if total == 0 or total < min_events:
        return None
    rollup = current(warehouse)
    if rollup is not None:
        since = ibis.literal(rollup.sealed_before, type="timestamp")
        tail = events.filter(events.timestamp >= since)
        days = (
            tail.group_by(day=tail.timestamp.truncate("D"))
            .aggregate(events=tail.count())
            .to_pyarrow()
            .to_pylist()
        )
        if rollup.sealed_events + sum(int(row["events"]) for row in days) == total:
            newest = max((_naive(row["day"]) for row in days), default=rollup.sealed_before)
            if newest <= rollup.sealed_before:
                return rollup
            sealed = rollup.sealed_events + sum(
                int(row["events"]) for row in days if _naive(row["day"]) < newest
            )
            previous = warehouse.backend.table(rollup.totals_table)
            added = _totals(events, rollup.sealed_before, newest)
            merged = previous.union(added, distinct=False)
            return _write(warehouse, _combine(merged), newest, sealed, rollup.totals_table)
    return _rebuild(warehouse, events, rollup)


def _rebuild(warehouse: Warehouse, events: ir.Table, rollup: Rollup | None) -> Rollup:
    # First refresh, or events the totals cannot account for: rebuild from all events.
    newest_event = events.timestamp.max().to_pyarrow().as_py()
    newest = datetime.combine(_naive(newest_event).date(), datetime.min.time())
    before = ibis.literal(newest, type="timestamp")
    sealed = int(events.filter(events.timestamp < before).count().to_pyarrow().as_py())
    previous_name = rollup.totals_table if rollup is not None else None
    written = _write(warehouse, _totals(events, None, newest), newest, sealed, previous_name)
    return Rollup(written.sealed_before, written.sealed_events, written.totals_table, True)


def _totals(events: ir.Table, start: datetime | None, end: datetime) -> ir.Table:
    """Per (account, person, name): the events in ``[start, end)``."""
    selected = events.filter(events.timestamp < ibis.literal(end, type="timestamp"))
    if start is not None:
        selected = selected.filter(selected.timestamp >= ibis.literal(start, type="timestamp"))
    return selected.group_by(list(KEYS)).aggregate(
        events=selected.count(),
        first_at=selected.timestamp.min(),
        last_at=selected.timestamp.max(),
        value_sum=selected.value.sum(),
    )


def _combine(parts: ir.Table) -> ir.Table:
    return parts.group_by(list(KEYS)).aggregate(
        events=parts.events.sum(),
        first_at=parts.first_at.min(),
        last_at=parts.last_at.max(),
        value_sum=parts.value_sum.sum(),
    )


def _write(
    warehouse: Warehouse, totals: ir.Table, sealed_before: datetime, sealed: int, old: str | None
) -> Rollup:
    name = f"{TOTALS_PREFIX}{int((sealed_before - datetime(1970, 1, 1)) / timedelta(seconds=1))}"
    if name == old:  # rebuilt for the same sealed day: write beside it, then swap
        name += "_r"
    backend = warehouse.backend
    backend.create_table(
        name,
        totals.cast(
            {
                "events": "int64",
                "first_at": "timestamp",
                "last_at": "timestamp",
                "value_sum": "float64",
            }
        ),
        overwrite=True,
    )
    state = pa.table(
        {"sealed_before": [sealed_before], "sealed_events": [sealed], "totals_table": [name]},
        schema=STATE_SCHEMA,
    )
    backend.create_table(STATE_TABLE, state, overwrite=True)
    for table in backend.list_tables():
        if table.startswith(TOTALS_PREFIX) and table not in (name, old):
            backend.drop_table(table, force=True)
    return Rollup(sealed_before, sealed, name)


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment
