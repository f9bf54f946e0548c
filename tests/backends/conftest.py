"""The backend conformance suite: the same cases on DuckDB (file), PostgreSQL and PySpark.

Each backend gets the conformance dataset (backend_dataset.py) once per test session, and every
case runs through closeloop's real code paths (the Warehouse, the compiler, the analysis
functions) and compares the result with a hand-computed expectation and with DuckDB's.

PostgreSQL runs when ``CLOSELOOP_TEST_POSTGRES_URL`` names a server; PySpark runs in local mode
(``local[2]``, session time zone UTC, two shuffle partitions, no UI; one session for the whole
test session) and needs Java 17. Either missing is a skip with its reason in the summary.

A case a backend cannot run yet is listed in ``GAPS`` with the reason and marked
``xfail(strict=True)`` on that backend: it fails the suite the day the gap closes, so the list
stays true.
"""

from __future__ import annotations

import gc
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from backend_dataset import load_conformance_dataset, write_conformance_project
from psycopg import sql

from closeloop.data.compiler import account_attributes, person_attributes
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity
from closeloop.definitions.project import Catalog, Project, load_project

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

POSTGRES_ENV = "CLOSELOOP_TEST_POSTGRES_URL"
SPARK_DATABASE = "closeloop_conformance"

BACKENDS = [
    "duckdb",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("pyspark", marks=[pytest.mark.spark, pytest.mark.slow]),
]

# py4j (PySpark's bridge to the JVM) leaves pooled sockets to the garbage collector; Python
# reports each as a ResourceWarning whenever the collector runs, in whichever test that is.
_PY4J_SOCKETS = (
    "ignore:unclosed <socket.socket:ResourceWarning",
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            for rule in _PY4J_SOCKETS:
                item.add_marker(pytest.mark.filterwarnings(rule))


def pytest_report_header() -> list[str]:
    postgres = os.environ.get(POSTGRES_ENV)
    return [
        "backends: duckdb (file), "
        + ("postgres" if postgres else f"postgres skipped ({POSTGRES_ENV} unset)")
        + ", pyspark local[2] (UTC)"
    ]


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """One local Spark session for the whole test session (start-up is ~10 s)."""
    pyspark_sql = pytest.importorskip("pyspark.sql", reason="PySpark is not installed")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime (PySpark needs Java 17): PySpark cases cannot run")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Spark's Python workers must be this interpreter, with closeloop's packages.
    os.environ.setdefault("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON") or _python())
    folder = tmp_path_factory.mktemp("spark")
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("closeloop-conformance")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.warehouse.dir", str(folder / "warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={folder}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()  # py4j's sockets, while their warnings are ignored


def _python() -> str:
    import sys

    return sys.executable


@contextmanager
def _new_postgres_database() -> Iterator[str]:
    """A brand-new PostgreSQL database, dropped at the end."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server to test against")
    name = f"closeloop_backends_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _duckdb(folder: Path) -> Warehouse:
    return Warehouse.connect(f"duckdb:///{folder / 'warehouse.duckdb'}")


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    """DuckDB with the dataset: the answer every backend must give."""
    with _duckdb(tmp_path_factory.mktemp("reference")) as warehouse:
        load_conformance_dataset(warehouse)
        yield warehouse


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def warehouse(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    """The backend under test, loaded with the conformance dataset through Warehouse writes.

    Each instance gets its own empty database: pytest may set a session fixture up again when
    its parameter comes back (test workers order tests their own way), and loading the dataset
    twice into one database would double it.
    """
    connected: Warehouse
    with ExitStack() as stack:
        if backend == "duckdb":
            connected = _duckdb(tmp_path_factory.mktemp("duckdb"))
        elif backend == "postgres":
            connected = Warehouse.connect(stack.enter_context(_new_postgres_database()))
        else:
            session = request.getfixturevalue("spark_session")
            database = f"{SPARK_DATABASE}_{uuid.uuid4().hex[:8]}"
            session.sql(f"CREATE DATABASE {database}")
            session.catalog.setCurrentDatabase(database)
            connected = Warehouse.for_spark(session)
        with connected:
            load_conformance_dataset(connected)
            yield connected


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    folder = write_conformance_project(tmp_path_factory.mktemp("project"))
    return load_project(folder, account_attributes(), person_attributes())


@pytest.fixture(scope="session")
def catalog(project: Project) -> Catalog:
    """The project's catalog, plus the jobs of the example enrollments."""
    jobs = {"Integration nudge": Entity.ACCOUNT, "Admin onboarding": Entity.PERSON}
    return replace(project.catalog, job_targets={**project.catalog.job_targets, **jobs})
