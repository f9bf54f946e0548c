"""The import write path on every backend: a CSV file into a canonical table through
``closeloop.data.importer.import_file``, bad rows quarantined with their reason.

It writes ``activities``, which no other conformance case reads.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from backend_support import rows

from closeloop.data.importer import import_file
from closeloop.data.warehouse import Warehouse

CSV = """\
activity_id,account_id,kind,occurred_at,owner,notes
v1,a1,call,2024-05-27T10:00:00Z,ada,kick-off
v2,a2,qbr,2024-05-28 14:30:00+02:00,grace,
v3,a3,call,not a time,ada,bad time
v4,zz,email,2024-05-29T09:00:00Z,ada,unknown account
"""


def test_importing_a_file(warehouse: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "activities.csv"
    path.write_text(CSV, encoding="utf-8")
    result = import_file(warehouse, "activities", path)
    assert (result.rows_read, result.imported, result.quarantined) == (4, 2, 2)
    found = rows(
        warehouse.table("activities").select("activity_id", "occurred_at", "notes"), "activity_id"
    )
    assert found == [
        {"activity_id": "v1", "occurred_at": datetime(2024, 5, 27, 10), "notes": "kick-off"},
        {"activity_id": "v2", "occurred_at": datetime(2024, 5, 28, 12, 30), "notes": None},
    ]
    quarantine = warehouse.table("quarantine")
    bad = quarantine.filter(quarantine.table_name == "activities")
    assert sorted(row["row_number"] for row in rows(bad, "row_number")) == [3, 4]
