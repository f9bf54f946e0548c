"""A DuckDB warehouse file looked at without Ibis (closeloop.data.duckdb_file): which tables hold
rows, and None whenever only the warehouse can tell, so the caller falls back to it."""

from __future__ import annotations

from pathlib import Path

import duckdb

from closeloop.data.duckdb_file import duckdb_file, tables_with_rows
from closeloop.services import definitions as definitions_service
from closeloop.settings import load_settings

CONFIG = "name: checks\njobs:\n  - jobs.yaml\n"
JOBS = """\
jobs:
  - name: Integration nudge
    audience: count(event "integration_connected") = 0
    goal: count(event "integration_connected") >= 1
    duration_days: 30
    hypothesis:
      expected_effect: more integrations
"""
COHORTS = 'cohorts:\n  - name: Enterprise\n    criteria: segment = "enterprize"\n'


def _warehouse(path: Path) -> str:
    with duckdb.connect(str(path)) as connection:
        connection.execute("CREATE TABLE accounts (account_id TEXT, segment TEXT)")
        connection.execute("INSERT INTO accounts VALUES ('a1', 'enterprise')")
        connection.execute('CREATE TABLE "people" (person_id TEXT)')
        connection.execute("CREATE VIEW events AS SELECT account_id FROM accounts WHERE false")
        connection.execute("CREATE SCHEMA other")
        connection.execute("CREATE TABLE other.quarantine (row_number INTEGER)")
        connection.execute("INSERT INTO other.quarantine VALUES (1)")
    return f"duckdb:///{path}"


def test_which_tables_exist_and_hold_rows(tmp_path: Path) -> None:
    url = _warehouse(tmp_path / "warehouse.duckdb")
    found = tables_with_rows(url, ("accounts", "people", "events", "quarantine", "missing"))
    # Tables and views of the default schema, where Ibis lists them; another schema's are not.
    assert found == {"accounts": True, "people": False, "events": False}


def test_none_when_only_the_warehouse_can_tell(tmp_path: Path) -> None:
    url = _warehouse(tmp_path / "warehouse.duckdb")
    assert tables_with_rows("postgres://user@127.0.0.1/db", ("accounts",)) is None
    assert tables_with_rows("duckdb://", ("accounts",)) is None
    assert tables_with_rows(f"duckdb:///{tmp_path / 'absent.duckdb'}", ("accounts",)) is None
    (tmp_path / "text.duckdb").write_text("not a database\n")
    assert tables_with_rows(f"duckdb:///{tmp_path / 'text.duckdb'}", ("accounts",)) is None
    # Held open for writing (here by this process; a tick in another one is refused alike).
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")):
        assert tables_with_rows(url, ("accounts",)) is None
    assert tables_with_rows(url, ("accounts",)) == {"accounts": True}


def test_the_file_of_a_url() -> None:
    assert duckdb_file("duckdb:////data/w.duckdb") == "/data/w.duckdb"
    assert duckdb_file("duckdb://project/w.duckdb") == str(Path("project/w.duckdb").absolute())
    assert duckdb_file("duckdb://:memory:") is None
    assert duckdb_file("duckdb://") is None
    assert duckdb_file("postgres://user@host/db") is None


def test_validate_checks_the_data_of_a_file_another_connection_holds(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    for name, text in (("closeloop.yaml", CONFIG), ("jobs.yaml", JOBS), ("cohorts.yaml", COHORTS)):
        (folder / name).write_text(text, encoding="utf-8")
    settings = load_settings(folder, {})
    seen = definitions_service.validate_project(settings)
    assert seen.problems == [] and not (folder / "warehouse.duckdb").exists()

    from closeloop.data.warehouse import Warehouse

    with Warehouse.connect(settings.warehouse_url) as warehouse:
        warehouse.ensure_tables()  # empty tables: nothing to check, seen without Ibis
    assert definitions_service.validate_project(settings).problems == []
    with duckdb.connect(str(folder / "warehouse.duckdb")) as holder:
        holder.execute(
            "INSERT INTO accounts (account_id, name, created_at, segment) "
            "VALUES ('a1', 'Acme', TIMESTAMP '2024-05-01', 'enterprise')"
        )
        # The read-only look is refused while this connection holds the file; the checks go
        # through the warehouse (which shares this process's connection) and find the value.
        held = definitions_service.validate_project(settings)
    messages = [problem.message for problem in held.problems]
    assert any('no account has segment "enterprize"' in message for message in messages)
    assert definitions_service.validate_project(settings).problems == held.problems
