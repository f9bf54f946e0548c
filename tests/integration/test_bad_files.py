"""The malformed-file corpus (``tests/data/bad``): every row is imported or quarantined with a
located reason, the counts add up, and nothing raises a traceback — on DuckDB and PostgreSQL.

``manifest.json`` holds what each file must give, written down from what each file is (see
``make_corpus.py``), not copied from a run. Project files (YAML) from the same corpus must give a
located error, quickly: an alias bomb must not hang and a recursive alias must not recurse.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.data.importer import ImportOptions, import_file
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.located_yaml import load_located_yaml
from closeloop.definitions.models import ColumnNormalization
from closeloop.definitions.project import load_project
from closeloop.errors import DataImportError, DefinitionError, DefinitionErrors
from closeloop.services.project import init_project
from support import Backends

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad"
MANIFEST: dict[str, Any] = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
IMPORTS: list[dict[str, Any]] = MANIFEST["imports"]
YAML_CASES: list[dict[str, Any]] = MANIFEST["yaml"]


def _case_id(case: dict[str, Any]) -> str:
    options = case.get("options", {})
    return case["file"] + (f"[{','.join(sorted(options))}]" if options else "")


@pytest.fixture
def warehouse(backends: Backends) -> Iterator[Warehouse]:
    with Warehouse.connect(backends.warehouse_url) as connected:
        connected.ensure_tables()
        yield connected


def _options(case: dict[str, Any]) -> ImportOptions:
    given = case.get("options", {})
    return ImportOptions(
        columns=given.get("columns", {}),
        normalize={
            name: ColumnNormalization.model_validate(rule)
            for name, rule in given.get("normalize", {}).items()
        },
        encoding=given.get("encoding"),
        now=datetime.fromisoformat(given["now"]) if "now" in given else None,
    )


def _count(warehouse: Warehouse, table: str) -> int:
    return int(warehouse.table(table).count().to_pyarrow().as_py())


def _quarantined(warehouse: Warehouse, table: str, path: Path) -> list[dict[str, Any]]:
    quarantine = warehouse.table("quarantine")
    rows = quarantine.filter(
        (quarantine.table_name == table) & (quarantine.file == str(path.resolve()))
    )
    return rows.order_by("row_number").to_pyarrow().to_pylist()


def test_the_corpus_covers_the_issue() -> None:
    files = {case["file"] for case in IMPORTS} | {case["file"] for case in YAML_CASES}
    assert len(files) >= 25
    assert all((CORPUS / name).is_file() for name in files)
    on_disk = {
        str(path.relative_to(CORPUS))
        for path in CORPUS.rglob("*")
        if path.is_file() and path.parent.name != "base"
    }
    # Every file of the folder has an entry (or is the generator, the manifest or the README).
    assert on_disk - files == {"make_corpus.py", "manifest.json", "README.md"}
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    assert [name for name in sorted(files) if f"`{name}`" not in readme] == []


@pytest.mark.parametrize("case", IMPORTS, ids=[_case_id(case) for case in IMPORTS])
def test_every_row_is_imported_or_quarantined_with_its_reason(
    warehouse: Warehouse, case: dict[str, Any]
) -> None:
    table, path = case["table"], CORPUS / case["file"]
    if table != "accounts":
        import_file(warehouse, "accounts", CORPUS / "base" / "accounts.csv")
    before = _count(warehouse, table)

    if "error" in case:
        with pytest.raises(DataImportError) as raised:
            import_file(warehouse, table, path, options=_options(case))
        message = str(raised.value)
        assert case["error"] in message
        if case.get("committed"):
            # Stopped part-way: the message says what was committed and how to repair it.
            committed = re.search(r"after committing ([\d,]+) rows.*?\(([\d,]+) imported", message)
            assert committed is not None, message
            assert _count(warehouse, table) - before == int(committed[2].replace(",", ""))
            assert "Importing the same file again repairs it" in message
        else:
            assert _count(warehouse, table) == before
            assert _quarantined(warehouse, table, path) == []
        return

    result = import_file(warehouse, table, path, options=_options(case))
    counts = (result.rows_read, result.imported, result.duplicates, result.quarantined)
    assert counts == (case["read"], case["imported"], case["duplicates"], case["quarantined"])
    assert result.rows_read == (
        result.imported + result.updated + result.duplicates + result.quarantined
    )
    assert _count(warehouse, table) - before == result.imported
    quarantined = _quarantined(warehouse, table, path)
    expected = case["quarantine"]
    assert [(row["row_number"], row["column_name"]) for row in quarantined] == [
        (item["row"], item["column"]) for item in expected
    ]
    for row, item in zip(quarantined, expected, strict=True):
        assert item["reason"] in row["reason"], row
        assert row["raw"] is not None
    assert len(result.warnings) == len(case.get("warnings", []))
    for warning in case.get("warnings", []):
        assert any(warning in given for given in result.warnings), result.warnings
    spec = warehouse.spec(table)
    for key, values in case.get("stored", {}).items():
        rows = warehouse.table(table)
        stored = rows.filter(rows[spec.key] == key).to_pyarrow()
        assert stored.num_rows == 1, key
        for column, value in values.items():
            assert stored.column(column)[0].as_py() == value


def test_reimporting_a_bad_file_adds_nothing(warehouse: Warehouse) -> None:
    path = CORPUS / "bad_timestamps.csv"
    first = import_file(warehouse, "accounts", path)
    again = import_file(warehouse, "accounts", path)
    assert (again.rows_read, again.imported, again.quarantined) == (13, 0, 11)
    assert again.duplicates == first.imported
    assert len(_quarantined(warehouse, "accounts", path)) == 11


def test_a_failed_import_says_what_was_committed(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "accounts.csv"
    lines = [f"a{n},Company {n},2024-01-01T00:00:00Z" for n in range(1, 26)]
    path.write_text("account_id,name,created_at\n" + "\n".join(lines) + "\n")
    appended: list[int] = []
    original = Warehouse.append

    def failing_append(self: Warehouse, name: str, data: Any) -> None:
        if name == "accounts":
            appended.append(1)
            if len(appended) == 3:
                raise OSError(28, "No space left on device")
        original(self, name, data)

    monkeypatch.setattr(Warehouse, "append", failing_append)
    with pytest.raises(DataImportError) as raised:
        import_file(warehouse, "accounts", path, batch_size=10)
    message = str(raised.value)
    assert "No space left on device" in message
    assert "after committing 20 rows, up to row 20 (20 imported" in message
    assert "Importing the same file again repairs it" in message
    monkeypatch.undo()
    repaired = import_file(warehouse, "accounts", path, batch_size=10)
    assert (repaired.imported, repaired.duplicates) == (5, 20)
    assert _count(warehouse, "accounts") == 25


@pytest.mark.parametrize("case", YAML_CASES, ids=[case["file"] for case in YAML_CASES])
def test_bad_project_files_are_located_errors(case: dict[str, Any]) -> None:
    with pytest.raises(DefinitionError) as raised:
        load_located_yaml(CORPUS / case["file"])
    error = raised.value
    assert case["error"] in error.message
    assert error.location is not None
    assert (error.location.line, error.location.column) == (case["line"], case["column"])


@pytest.mark.parametrize("case", YAML_CASES, ids=[case["file"] for case in YAML_CASES])
def test_validate_reports_a_bad_jobs_file_among_the_rest(
    case: dict[str, Any], tmp_path: Path
) -> None:
    init_project(tmp_path, "Acme")
    shutil.copyfile(CORPUS / case["file"], tmp_path / "jobs.yaml")
    with pytest.raises(DefinitionErrors) as raised:
        load_project(tmp_path, {}, {})
    located = [
        error
        for error in raised.value.errors
        if error.location is not None and str(error.location.file).endswith("jobs.yaml")
    ]
    assert [case["error"] in error.message for error in located] == [True]


# -- through the command line --------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "acme"
    init_project(folder, "Acme")
    monkeypatch.chdir(folder)
    for name in ("CLOSELOOP_WAREHOUSE_URL", "CLOSELOOP_STATE_URL", "CLOSELOOP_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    return folder


def _cli(*args: str) -> Any:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_the_import_command_on_bad_files(project: Path) -> None:
    latin = _cli("import", "accounts", str(CORPUS / "latin1.csv"))
    assert latin.exit_code == 0, latin.output
    assert (
        "latin1.csv:3:8: not UTF-8 (looks like latin-1); re-export as UTF-8 or pass --encoding "
        "latin-1 (2 rows quarantined for this)"
    ) in latin.output
    repaired = _cli("import", "accounts", str(CORPUS / "latin1.csv"), "--encoding", "latin-1")
    assert "5 read, 2 inserted, 0 updated, 3 unchanged, 0 quarantined" in repaired.output

    stray = _cli("import", "accounts", str(CORPUS / "stray_quote.csv"))
    assert stray.exit_code == 0, stray.output
    assert "1,000 read, 994 inserted, 2 updated, 3 unchanged, 1 quarantined" in stray.output
    assert "closeloop quarantine list --table accounts" in stray.output

    renamed = _cli("import", "events", str(CORPUS / "renamed_columns.csv"))
    assert renamed.exit_code == 1
    assert "pass --map event_id=uid --map name=event_name --map timestamp=ts" in renamed.output
    mapped = _cli(
        "import",
        "events",
        str(CORPUS / "renamed_columns.csv"),
        "--map",
        "event_id=uid",
        "--map",
        "name=event_name",
        "--map",
        "timestamp=ts",
    )
    assert "2 read, 2 inserted" in mapped.output, mapped.output

    wrong = _cli("import", "events", str(CORPUS / "renamed_columns.csv"), "--map", "nme")
    assert wrong.exit_code == 2
    assert "is not CANONICAL=SOURCE" in wrong.output


def test_closeloop_yaml_imports_map_and_normalize(project: Path) -> None:
    config = project / "closeloop.yaml"
    config.write_text(
        config.read_text()
        + "imports:\n"
        + "  events:\n"
        + "    map: {event_id: uid, name: event_name, timestamp: ts}\n"
        + "    normalize:\n"
        + "      name: {casefold: true, aliases: {integration connected: integration_connected}}\n"
    )
    assert _cli("import", "accounts", str(CORPUS / "base" / "accounts.csv")).exit_code == 0
    result = _cli("import", "events", str(CORPUS / "renamed_columns.csv"))
    assert result.exit_code == 0, result.output
    assert "2 read, 2 inserted" in result.output
    with Warehouse.connect(f"duckdb:///{project / 'warehouse.duckdb'}") as warehouse:
        names = warehouse.table("events").order_by("event_id").name.to_pyarrow().to_pylist()
    assert names == ["integration_connected", "login"]

    # A mapping naming a column the file lacks says so, with where the mapping came from.
    config.write_text(config.read_text().replace("timestamp: ts", "timestamp: time"))
    wrong = _cli("import", "events", str(CORPUS / "renamed_columns.csv"))
    assert wrong.exit_code == 1
    assert "imports.events.map in closeloop.yaml: timestamp=time" in wrong.output
    assert "the file has no column 'time'" in wrong.output


def test_validate_with_an_alias_bomb_is_a_located_error(project: Path) -> None:
    shutil.copyfile(CORPUS / "yaml" / "alias_bomb.yaml", project / "jobs.yaml")
    result = _cli("validate")
    assert result.exit_code == 1
    assert "jobs.yaml:1:14: error: this file holds more than 100,000 values" in result.output
