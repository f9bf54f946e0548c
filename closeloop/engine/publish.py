"""Make the engine's enrollment facts available to the warehouse, for joins in analysis."""

from __future__ import annotations

from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse
from closeloop.engine.state import StateStore


def publish_enrollments(store: StateStore, warehouse: Warehouse) -> int:
    """Replace the warehouse's copy of every enrollment with the store's; return the row count."""
    table = store.enrollments_table()
    warehouse.replace(ENROLLMENTS_TABLE, table)
    return int(table.num_rows)
