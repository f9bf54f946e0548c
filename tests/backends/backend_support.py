"""Helpers of the conformance cases: the known gaps per backend, rows in a stable order."""

from __future__ import annotations

from typing import Any

import pytest

# (case, backend) -> why the backend gives another answer; the case is xfail(strict) there.
GAPS: dict[tuple[str, str], str] = {
    ("property_type_mismatch", "pyspark"): (
        "Spark reads a JSON property with get_json_object, as text whatever its JSON type: a "
        'number 1 equals the string "1"; DuckDB and PostgreSQL compare typed values (no match)'
    ),
}


def mark_gap(request: pytest.FixtureRequest, case: str, backend: str) -> None:
    """Mark this test xfail(strict) when ``case`` is a known gap of ``backend``."""
    reason = GAPS.get((case, backend))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{backend}: {reason}"))


def rows(table: Any, *order: str) -> list[dict[str, Any]]:
    """An Ibis table's rows as dicts, sorted by ``order`` (no backend promises an order)."""
    found: list[dict[str, Any]] = table.to_pyarrow().to_pylist()
    return sorted(found, key=lambda row: tuple(str(row[name]) for name in order))
