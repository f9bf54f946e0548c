"""What a process keeps between opens of a project (services.project): the definitions while
their files keep their stamps, and the checks of the warehouse's tables and the store's
migrations once per database file. Nothing kept may outlive a change."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from closeloop.definitions.project import Project
from closeloop.errors import DefinitionErrors, StateError
from closeloop.services import project as service
from closeloop.settings import load_settings


def _settle(folder: Path) -> None:
    """Date every file of the project back a minute, as files not edited while being loaded."""
    past = time.time() - 60
    for root, _, files in os.walk(folder):
        for name in files:
            os.utime(Path(root) / name, (past, past))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    service.init_project(project, "cache")
    _settle(project)
    return project


def _load(folder: Path) -> Project:
    return service.cached_definitions(load_settings(folder, {}))


def test_definitions_are_kept_until_a_file_changes(folder: Path) -> None:
    first = _load(folder)
    assert _load(folder) is first

    jobs = folder / "jobs.yaml"
    jobs.write_text(
        jobs.read_text(encoding="utf-8").replace("Integration nudge", "Integration push"),
        encoding="utf-8",
    )
    edited = _load(folder)
    assert edited is not first
    assert "Integration push" in edited.jobs and "Integration nudge" not in edited.jobs
    # Just edited: used, but not kept (the file may still be changing within its time stamp).
    assert _load(folder) is not edited
    _settle(folder)
    settled = _load(folder)
    assert _load(folder) is settled


def test_a_new_default_file_a_listed_file_and_a_template_are_seen(folder: Path) -> None:
    first = _load(folder)
    assert first.cohorts

    (folder / "cohorts.yaml").unlink()
    without = _load(folder)
    assert not without.cohorts

    (folder / "more_jobs.yaml").write_text(
        "jobs:\n"
        "  - name: Second\n"
        '    audience: plan = "pro"\n'
        '    goal: count(event "login") >= 1\n'
        "    duration_days: 7\n"
        "    hypothesis: {expected_effect: more logins}\n",
        encoding="utf-8",
    )
    config = folder / "closeloop.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "  - jobs.yaml\n", "  - jobs.yaml\n  - more_jobs.yaml\n"
        ),
        encoding="utf-8",
    )
    _settle(folder)
    listed = _load(folder)
    assert set(listed.jobs) == {"Integration nudge", "Second"}
    # Loaded once more (the new list's files were not stamped before that load), then kept.
    kept = _load(folder)
    assert set(kept.jobs) == set(listed.jobs) and _load(folder) is kept

    # A template the job's email renders: breaking it is a definition error at once.
    template = next((folder / "templates").iterdir())
    template.write_text("{{ account.no_such_attribute.deeper }}", encoding="utf-8")
    _settle(folder)
    with pytest.raises(DefinitionErrors):
        _load(folder)


def test_table_and_migration_checks_follow_the_database_file(folder: Path) -> None:
    with service.open_workspace(folder):  # migrates the store, creates the tables
        pass
    with service.open_workspace(folder, write=False) as workspace:
        assert "events" in workspace.warehouse.backend.list_tables()

    # A new, empty state store in place of the old one is refused again, with its reason.
    state = folder / "state.sqlite"
    for leftover in folder.glob("state.sqlite*"):
        leftover.unlink()
    state.touch()
    with pytest.raises(StateError, match="migrate"), service.open_workspace(folder, write=False):
        pass

    # A new warehouse file gets its tables again.
    for leftover in folder.glob("warehouse.duckdb*"):
        leftover.unlink()
    with service.open_workspace(folder) as workspace:
        assert "events" in workspace.warehouse.backend.list_tables()


def test_a_read_only_open_connects_the_warehouse_when_first_used(folder: Path) -> None:
    with service.open_workspace(folder):  # a writing open connects at once
        pass
    with service.open_workspace(folder, write=False) as workspace:
        assert not workspace.connection.opened
        assert workspace.warehouse.table("events").count().execute() == 0
        assert workspace.connection.opened
    assert not workspace.connection.opened
    with pytest.raises(RuntimeError, match="closed"):
        _ = workspace.warehouse
