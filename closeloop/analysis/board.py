"""What the board report counts itself: enrollments that entered in a period.

Everything else in the report is another command's result; this one count has no command of its
own. It reads the warehouse's copy of the enrollments (``publish_enrollments`` refreshes it).
"""

from __future__ import annotations

from datetime import datetime

from closeloop.data.warehouse import ENROLLMENTS_TABLE, Warehouse


def enrollments_entered(warehouse: Warehouse, start: datetime, end: datetime) -> int:
    """Enrollments (any job, any arm) whose ``entered_at`` is in ``[start, end)``."""
    if not warehouse.has_table(ENROLLMENTS_TABLE):
        return 0
    table = warehouse.table(ENROLLMENTS_TABLE)
    chosen = table.filter((table.entered_at >= start) & (table.entered_at < end))
    return int(chosen.count().execute())
