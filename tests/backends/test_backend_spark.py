"""Spark as the warehouse, beyond the shared cases: URLs and sessions, the UTC pin, writes, and
the engine-dependent functions closeloop must never rely on (hashes, sampling).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import duckdb
import pytest

import closeloop
from closeloop.data.compiler import matching_accounts
from closeloop.data.spark import parse_spark_url
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import parse_expression
from closeloop.engine import assignment
from closeloop.errors import ConfigurationError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

F = TypeVar("F", bound=Callable[..., None])


def spark_case(test: F) -> F:
    """A case that needs the Spark session (seconds each, so also ``slow``)."""
    marked: F = pytest.mark.slow(pytest.mark.spark(test))
    return marked


DATABASE = "closeloop_spark_checks"


@pytest.fixture(scope="module")
def small(spark_session: SparkSession) -> Iterator[Warehouse]:
    """A Spark warehouse (through its URL) with one account and two logins."""
    current = spark_session.catalog.currentDatabase()
    with Warehouse.connect(f"pyspark://?database={DATABASE}") as warehouse:
        warehouse.ensure_tables()
        warehouse.append(
            "accounts",
            warehouse.arrow_for(
                "accounts",
                {"account_id": ["a1"], "created_at": [datetime(2024, 1, 1)], "arr": [None]},
            ),
        )
        warehouse.append(
            "events",
            warehouse.arrow_for(
                "events",
                {
                    "event_id": ["e1", "e2"],
                    "account_id": ["a1", "a1"],
                    "name": ["login", "login"],
                    "timestamp": [datetime(2024, 5, 26, 9), datetime(2024, 5, 27, 9)],
                },
            ),
        )
        yield warehouse
    spark_session.catalog.setCurrentDatabase(current)


@pytest.mark.parametrize(
    ("url", "master", "folder", "database", "remote"),
    [
        ("pyspark://", "local[*]", None, None, None),
        ("pyspark:///data/wh?master=local[2]&database=cs", "local[2]", "/data/wh", "cs", None),
        ("sc://spark:15002/;token=t;database=a.b", "", None, "a.b", "sc://spark:15002/;token=t"),
    ],
)
def test_spark_urls(
    url: str, master: str, folder: str | None, database: str | None, remote: str | None
) -> None:
    target = parse_spark_url(url)
    assert (target.master, target.warehouse_dir, target.database, target.remote) == (
        master,
        folder,
        database,
        remote,
    )


def test_a_spark_connect_failure_is_one_line_without_the_token() -> None:
    with pytest.raises(ConfigurationError) as refused:
        Warehouse.connect("sc://127.0.0.1:1/;token=dapi-secret;database=cs")
    message = str(refused.value)
    # Without pyspark[connect] (here) the session cannot start; with it, nothing listens.
    assert "dapi-secret" not in message and "\n" not in message


def test_a_spark_url_with_an_unknown_parameter_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown parameter 'mastr'"):
        parse_spark_url("pyspark://?mastr=local[2]")


@spark_case
def test_a_url_joins_the_running_session_and_leaves_it_running(
    spark_session: SparkSession, small: Warehouse
) -> None:
    assert not small.owns_backend  # the session was there first: the test session's to stop
    small.close()
    assert spark_session.sql("SELECT 1 AS one").collect()[0]["one"] == 1
    assert spark_session.catalog.currentDatabase() == DATABASE


@spark_case
def test_the_session_time_zone_is_pinned_to_utc(
    spark_session: SparkSession, small: Warehouse
) -> None:
    # The first login is at 09:00 UTC; as of 08:00 UTC nobody has logged in yet.
    goal = parse_expression('count(event "login") >= 1')
    as_of = datetime(2024, 5, 26, 8)
    assert matching_accounts(goal, small, as_of).to_pyarrow().num_rows == 0
    spark_session.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        # Why the pin: 08:00 read in New York is 12:00 UTC, after the login.
        assert matching_accounts(goal, small, as_of).to_pyarrow().num_rows == 1
        with Warehouse.connect(f"pyspark://?database={DATABASE}") as again:
            assert spark_session.conf.get("spark.sql.session.timeZone") == "UTC"
            assert matching_accounts(goal, again, as_of).to_pyarrow().num_rows == 0
    finally:
        spark_session.conf.set("spark.sql.session.timeZone", "UTC")


@spark_case
def test_missing_numbers_stay_missing_when_written(small: Warehouse) -> None:
    """Through pandas a missing float became NaN, which Spark orders above every number."""
    accounts = small.table("accounts")
    assert accounts.filter(accounts.arr.isnull()).count().to_pyarrow().as_py() == 1
    rich = matching_accounts(parse_expression("arr >= 10000"), small, datetime(2024, 6, 1))
    assert rich.to_pyarrow().num_rows == 0


@spark_case
def test_float_literals_are_doubles_on_spark(small: Warehouse) -> None:
    """A bare 86400.0 is a DECIMAL in Spark SQL; a division by it kept 7 decimal places."""
    events = small.table("events")
    days = (events.timestamp.epoch_seconds() / 86400.0).max()
    assert "AS DOUBLE" in small.sql(events.aggregate(days=days))
    fraction = events.aggregate(third=events.count() / 3.0)  # 2 / 3.0
    assert fraction.to_pyarrow().column("third")[0].as_py() == 2 / 3


@spark_case
def test_engine_hashes_differ_so_assignment_uses_its_own(spark_session: SparkSession) -> None:
    """Holdout assignment must give a unit the same arm whatever the warehouse: engines hash
    differently, so closeloop.engine.assignment hashes in Python (SHA-256 of salt:unit)."""
    unit = "acc-1"
    spark_hash = spark_session.sql(f"SELECT hash('{unit}') AS h").collect()[0]["h"]
    duckdb_hash = duckdb.sql(f"SELECT hash('{unit}') AS h").fetchone()
    assert duckdb_hash is not None and spark_hash != duckdb_hash[0]
    digest = hashlib.sha256(f"salt:{unit}".encode()).digest()
    assert assignment.bucket("salt", unit) == int.from_bytes(digest[:8], "big") / 2**64


def test_no_engine_hash_or_sampling_in_closeloop() -> None:
    """Ibis' hash() and sample() differ by engine (Spark's sample has no seed): the layers that
    build warehouse queries call neither, so results and arms are the same on every backend."""
    found = []
    package = Path(closeloop.__file__).parent
    for path in [*(package / "data").rglob("*.py"), *(package / "analysis").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("hash", "hashbytes", "sample")
            ):
                found.append(f"{path.name}:{node.lineno} .{node.func.attr}()")
    assert found == []
    source = Path(assignment.__file__).read_text(encoding="utf-8")
    assert "hashlib.sha256" in source and "ibis" not in source and "sql" not in source.lower()


@spark_case
def test_asof_joins_are_not_used_because_spark_has_none(small: Warehouse) -> None:
    """Ibis cannot run an ASOF join on Spark; closeloop's point-in-time reads are filters and
    window functions instead (this fails the day Ibis adds it, to revisit that choice)."""
    events = small.table("events")
    accounts = small.table("accounts")
    joined = accounts.asof_join(events, accounts.created_at >= events.timestamp)
    with pytest.raises(Exception, match=r"(?i)asof|not supported|not implemented"):
        joined.to_pyarrow()
    for path in Path(closeloop.__file__).parent.rglob("*.py"):
        assert "asof_join" not in path.read_text(encoding="utf-8"), path
