"""The SQL closeloop generates, snapshotted per dialect: DuckDB, PostgreSQL, Spark, Snowflake and
BigQuery (``tests/backends/snapshots/<dialect>/<case>.sql``).

Snowflake and BigQuery are tested by their compiled SQL only (no server runs here); DuckDB,
PostgreSQL and Spark also run the same queries in the other conformance tests. The Spark SQL is
compiled on a Spark warehouse, because the compiler words JSON lookups differently there.

A change to the compiler that changes the SQL fails here: read the diff, then rewrite the
snapshots with ``CLOSELOOP_UPDATE_SNAPSHOTS=1 pytest tests/backends/test_backend_sql_snapshots.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import ibis
import ibis.expr.types as ir
import pytest
from backend_dataset import CONFORMANCE_JOB

from closeloop.analysis.job_report import job_units
from closeloop.data.compiler import goal_reached_at, matching_units, stage_status
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import parse_expression
from closeloop.definitions.project import Catalog, Project

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = "CLOSELOOP_UPDATE_SNAPSHOTS"
AS_OF = datetime(2024, 6, 1)
DIALECTS = ["duckdb", "postgres", "snowflake", "bigquery"]

AUDIENCE = (
    'signup_date within last 14 days and count(event "integration_connected") = 0 '
    'and segment in ("self_serve", "mid_market") and not in cohort "Active" '
    'and count(event "invoice_paid" where method = "card") >= 1'
)
GOAL = 'count(event "integration_connected") >= 1 or count(event "login") >= 3'
COMPUTED = "admins >= 1 and card_revenue > 100 and days_since_signup < 30"

Case = Callable[[Warehouse, Project, Catalog], ir.Table]


def _audience(warehouse: Warehouse, project: Project, catalog: Catalog) -> ir.Table:
    return matching_units(parse_expression(AUDIENCE), warehouse, AS_OF, catalog)


def _goal(warehouse: Warehouse, project: Project, catalog: Catalog) -> ir.Table:
    enrollments = warehouse.table("closeloop_enrollments")
    candidates = enrollments.filter(enrollments.job_name == CONFORMANCE_JOB).select(
        "account_id", "entered_at"
    )
    return goal_reached_at(parse_expression(GOAL), warehouse, AS_OF, candidates, catalog)


def _stage(warehouse: Warehouse, project: Project, catalog: Catalog) -> ir.Table:
    return stage_status(project.stage("Onboarding"), warehouse, AS_OF, catalog)


def _computed_attribute(warehouse: Warehouse, project: Project, catalog: Catalog) -> ir.Table:
    return matching_units(parse_expression(COMPUTED), warehouse, AS_OF, catalog)


def _job_outcomes(warehouse: Warehouse, project: Project, catalog: Catalog) -> ir.Table:
    return job_units(warehouse, CONFORMANCE_JOB, as_of=AS_OF)


CASES: dict[str, Case] = {
    "audience": _audience,
    "goal": _goal,
    "stage": _stage,
    "computed_attribute": _computed_attribute,
    "job_outcomes": _job_outcomes,
}


def _check(dialect: str, case: str, sql: str) -> None:
    path = SNAPSHOTS / dialect / f"{case}.sql"
    text = sql.strip() + "\n"
    if os.environ.get(UPDATE) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"no snapshot {path}; write it with {UPDATE}=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"the {dialect} SQL of {case} changed; if that is intended, rewrite the snapshots "
        f"with {UPDATE}=1 and commit them"
    )


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dialect", DIALECTS)
def test_generated_sql(
    reference: Warehouse, project: Project, catalog: Catalog, dialect: str, case: str
) -> None:
    expression = CASES[case](reference, project, catalog)
    _check(dialect, case, ibis.to_sql(expression, dialect=dialect))


@pytest.fixture(scope="module")
def spark_warehouse(spark_session: SparkSession) -> Iterator[Warehouse]:
    """Empty canonical tables in a Spark schema of their own (only their schemas matter)."""
    spark_session.sql("CREATE DATABASE IF NOT EXISTS closeloop_snapshots")
    current = spark_session.catalog.currentDatabase()
    spark_session.catalog.setCurrentDatabase("closeloop_snapshots")
    try:
        warehouse = Warehouse.for_spark(spark_session)
        warehouse.ensure_tables()
        yield warehouse
    finally:
        spark_session.catalog.setCurrentDatabase(current)


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_generated_spark_sql(
    spark_warehouse: Warehouse, project: Project, catalog: Catalog, case: str
) -> None:
    expression = CASES[case](spark_warehouse, project, catalog)
    sql = spark_warehouse.sql(expression)  # what closeloop's Spark backend runs
    assert "closeloop_snapshots" not in sql
    _check("pyspark", case, sql)
