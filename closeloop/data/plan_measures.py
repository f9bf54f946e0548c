"""Success-plan measures evaluated in the warehouse, as of a time, one value per account.

A measure is a number (an attribute, ``count(event …)``, ``count(people …)``) or a condition
(1 when it holds, else 0). Only one row per account comes back to Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import ibis

from closeloop.data.compiler import Compiler
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, Expression, Operand
from closeloop.definitions.project import Catalog

Measure = Expression | Operand


def measure_values(
    warehouse: Warehouse,
    measure: Measure,
    account_ids: Sequence[str],
    at: datetime,
    *,
    is_condition: bool,
    catalog: Catalog | None = None,
) -> dict[str, float | None]:
    """The measure for each of these accounts as of ``at`` (None: no value, or no such account
    as of ``at``)."""
    if not account_ids:
        return {}
    compiler = Compiler(warehouse, at, catalog)
    frame = compiler.frame(Entity.ACCOUNT)
    if is_condition:
        holds = compiler.predicate(measure, frame)  # type: ignore[arg-type]

        def value(table: ibis.Table) -> ibis.Value:
            # Cast the result: PostgreSQL reads a bare 1.0 as numeric, not double precision.
            return ibis.ifelse(holds(table).fill_null(False), 1, 0).cast("float64")

    else:
        operand = compiler.operand(measure, frame)  # type: ignore[arg-type]

        def value(table: ibis.Table) -> ibis.Value:
            return operand(table).cast("float64")

    table = frame.table()
    wanted = table.filter(table.account_id.isin(list(account_ids)))
    rows = wanted.select("account_id", value=value(wanted)).to_pyarrow().to_pylist()
    found = {str(row["account_id"]): row["value"] for row in rows}
    return {account_id: found.get(account_id) for account_id in account_ids}


def account_column(
    warehouse: Warehouse,
    column: str,
    account_ids: Sequence[str],
    at: datetime,
    catalog: Catalog | None = None,
) -> dict[str, str | None]:
    """A stored account attribute (e.g. ``segment``) as of ``at`` for these accounts, as text."""
    if not account_ids:
        return {}
    accounts = Compiler(warehouse, at, catalog).accounts()
    if column not in accounts.columns:
        return {account_id: None for account_id in account_ids}
    rows = (
        accounts.filter(accounts.account_id.isin(list(account_ids)))
        .select("account_id", value=accounts[column].cast("string"))
        .to_pyarrow()
        .to_pylist()
    )
    found = {str(row["account_id"]): row["value"] for row in rows}
    return {account_id: found.get(account_id) for account_id in account_ids}


def existing_accounts(warehouse: Warehouse, account_ids: Sequence[str]) -> set[str]:
    """Which of these accounts the warehouse has (at any time)."""
    if not account_ids:
        return set()
    accounts = warehouse.table("accounts")
    rows = (
        accounts.filter(accounts.account_id.isin(list(account_ids)))
        .select("account_id")
        .distinct()
        .to_pyarrow()
        .to_pylist()
    )
    return {str(row["account_id"]) for row in rows}
