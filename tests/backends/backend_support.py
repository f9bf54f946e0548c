"""Helpers of the conformance cases: the known gaps per backend, rows in a stable order."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
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


def same(got: Any, expected: Any, path: str = "", tolerance: float = 1e-9) -> None:
    """Equal results (dataclasses, mappings, sequences); floats to a relative ``tolerance``:
    engines sum floating-point numbers in different orders."""
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        assert type(got) is type(expected), path
        for field in dataclasses.fields(expected):
            same(getattr(got, field.name), getattr(expected, field.name), f"{path}.{field.name}")
    elif isinstance(expected, Mapping):
        assert isinstance(got, Mapping) and list(got) == list(expected), path
        for key in expected:
            same(got[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert isinstance(got, list | tuple) and len(got) == len(expected), path
        for index, (left, right) in enumerate(zip(got, expected, strict=True)):
            same(left, right, f"{path}[{index}]")
    elif isinstance(expected, float) and isinstance(got, float):
        if math.isnan(expected):
            assert math.isnan(got), path
        else:
            assert math.isclose(got, expected, rel_tol=tolerance, abs_tol=1e-12), (path, got)
    else:
        assert got == expected, (path, got, expected)
