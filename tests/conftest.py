"""Shared fixtures: real backends, each test on its own fresh database.

PostgreSQL tests run when ``CLOSELOOP_TEST_POSTGRES_URL`` names a server (``.ci/run`` sets it);
elsewhere they are skipped with that reason shown in the summary (pytest runs with ``-ra``).

Caches (Lark's analysed expression grammar) go to a temporary folder for the whole run, set in
``XDG_CACHE_HOME`` before collection so that subprocesses the tests start inherit it: the suite
never writes into the user's own cache folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from support import Backends, embedded_backends

POSTGRES_ENV = "CLOSELOOP_TEST_POSTGRES_URL"
CACHE_ENV = "XDG_CACHE_HOME"
_CACHE_KEY = pytest.StashKey[tuple[str | None, Path]]()


def pytest_configure(config: pytest.Config) -> None:
    """A private cache folder for the run (module doc), before any test module is imported.

    ``COLUMNS`` is dropped: the CLI's consoles take their width when first imported, and test
    workers (pytest-xdist) inherit ``COLUMNS=80``; tests that need a width set it themselves.
    """
    os.environ.pop("COLUMNS", None)
    folder = Path(tempfile.mkdtemp(prefix="closeloop-test-cache-"))
    config.stash[_CACHE_KEY] = (os.environ.get(CACHE_ENV), folder)
    os.environ[CACHE_ENV] = str(folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CACHE_KEY not in config.stash:
        return
    previous, folder = config.stash[_CACHE_KEY]
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous
    shutil.rmtree(folder, ignore_errors=True)


def postgres_server_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server to test against")
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a brand-new PostgreSQL database, dropped after the test."""
    server = postgres_server_url()
    name = f"closeloop_test_{uuid.uuid4().hex[:12]}"
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


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Backends:
    """Every engine test runs twice: DuckDB file + SQLite file, and PostgreSQL for both."""
    if request.param == "embedded":
        return embedded_backends(tmp_path)
    url: str = request.getfixturevalue("postgres_url")
    return Backends("postgres", url, url)
