"""The inputs of a health score, evaluated in the warehouse as of T: one row per account.

Each measure becomes a column ``value_<i>``: a number measure its value, a true/false one 1.0 or
0.0, and null when the account has no value (an attribute not set, a comparison with a missing
value). ``variant`` is the index of the first segment variant whose condition holds (-1: the
score's default weights), ``segment`` the account's stored segment (for the backtest's groups).
"""

from __future__ import annotations

from datetime import datetime

import ibis
import ibis.expr.types as ir

from closeloop.data.compiler import Compiler
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.catalog import Catalog, LoadedHealthScore
from closeloop.definitions.expressions import Entity


def measure_values(
    score: LoadedHealthScore, warehouse: Warehouse, as_of: datetime, catalog: Catalog | None
) -> ir.Table:
    """``account_id, segment, variant, value_0 … value_<n-1>`` for the accounts that exist at
    ``as_of``, each measure as of then (point in time, like every expression)."""
    compiler = Compiler(warehouse, as_of, catalog)
    frame = compiler.frame(Entity.ACCOUNT)
    values = []
    for measure in score.measures:
        if measure.number is not None:
            values.append((True, compiler.operand(measure.number, frame)))
        else:
            assert measure.condition is not None
            values.append((False, compiler.predicate(measure.condition, frame)))
    variants = [compiler.predicate(segment.when, frame) for segment in score.segments]
    table = frame.table()
    variant: ir.Value = ibis.literal(-1, type="int64")
    for index in reversed(range(len(variants))):
        holds = variants[index](table).fill_null(False)
        variant = ibis.ifelse(holds, ibis.literal(index, type="int64"), variant)
    columns: dict[str, ir.Value] = {}
    for index, (is_number, value) in enumerate(values):
        column = value(table)
        if is_number:
            columns[f"value_{index}"] = column.cast("float64")
        else:
            # CASE WHEN NULL would read a missing value as false: keep it missing.
            truth = ibis.ifelse(column, 1.0, 0.0).cast("float64")
            columns[f"value_{index}"] = ibis.ifelse(column.isnull(), ibis.null("float64"), truth)
    segment = table.segment.cast("string") if "segment" in table.columns else ibis.null("string")
    return table.select("account_id", segment=segment, variant=variant, **columns)
