"""Project use cases: create a project folder, open one with its warehouse and state store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from closeloop.data.compiler import account_attributes, person_attributes
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import AttributeType
from closeloop.definitions.json_schema import write_schemas
from closeloop.definitions.located_yaml import LocatedDocument, load_located_yaml
from closeloop.definitions.models import ProjectConfig, SourceMapping
from closeloop.definitions.project import Project, load_project
from closeloop.engine.state import StateStore, utc_now
from closeloop.engine.versions import record_definitions
from closeloop.errors import ConfigurationError
from closeloop.settings import PROJECT_FILE, Settings, load_settings


@dataclass
class Workspace:
    """An open project: its settings, validated definitions, warehouse and state store."""

    settings: Settings
    project: Project
    warehouse: Warehouse
    store: StateStore


def init_project(folder: Path, name: str | None = None, *, force: bool = False) -> list[Path]:
    """Create a project folder: config, example attributes, cohorts, stages and a job, the job's
    email template, and the JSON Schemas the files point at (for editor autocompletion)."""
    if (folder / PROJECT_FILE).exists() and not force:
        raise ConfigurationError(
            f"{folder / PROJECT_FILE} already exists; pass --force to overwrite the example files"
        )
    folder.mkdir(parents=True, exist_ok=True)
    template = resources.files("closeloop.services") / "project_template"
    written = []
    for source_name in (
        "closeloop.yaml",
        "attributes.yaml",
        "cohorts.yaml",
        "stages.yaml",
        "jobs.yaml",
        "health.yaml",
    ):
        text = (template / source_name).read_text(encoding="utf-8")
        target = folder / source_name
        target.write_text(text.replace("{name}", name or folder.resolve().name), encoding="utf-8")
        written.append(target)
    (folder / "templates").mkdir(exist_ok=True)
    for entry in (template / "templates").iterdir():
        target = folder / "templates" / entry.name
        with resources.as_file(entry) as source:
            shutil.copyfile(source, target)
        written.append(target)
    written += write_schemas(folder / "schema")
    return written


def load_definitions(settings: Settings) -> Project:
    """Load and validate the project's definitions (raises DefinitionErrors with every problem)."""
    return load_project(settings.project_dir, *stored_attributes(settings))


def configured_sources(project_dir: Path) -> tuple[LocatedDocument, dict[str, SourceMapping]]:
    """closeloop.yaml as located YAML and its ``sources:``; none when the file does not load
    (the project loader reports why)."""
    try:
        document = load_located_yaml(project_dir / PROJECT_FILE)
        return document, dict(ProjectConfig.model_validate(document.data).sources)
    except (ValueError, OSError, RecursionError):  # YAML, validation and decoding errors
        return LocatedDocument(data=None, file=str(project_dir / PROJECT_FILE), lines=[]), {}


def stored_attributes(
    settings: Settings,
) -> tuple[dict[str, AttributeType], dict[str, AttributeType]]:
    """The stored account and person attributes expressions may use: the canonical columns,
    plus the other columns of accounts and people read in place (``sources:``), which are
    looked up in the warehouse (so only a project that maps those tables connects here)."""
    accounts, people = account_attributes(), person_attributes()
    _, sources = configured_sources(settings.project_dir)
    if "accounts" not in sources and "people" not in sources:
        return accounts, people
    with Warehouse.connect(settings.warehouse_url, sources=sources) as warehouse:
        # Canonical names (and aliases such as signup_date) win over a source column's.
        return (
            {**warehouse.extra_attributes("accounts"), **accounts},
            {**warehouse.extra_attributes("people"), **people},
        )


@contextmanager
def open_workspace(
    project_dir: Path | str | None = None,
    *,
    write: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Workspace]:
    """Open the project, connect its warehouse and state store, and close both afterwards.

    ``write`` is for commands that change state (ticks, dispatches, lifecycle): the store is
    migrated and every definition that changed since the last open gets a new version, so each
    definition's history is complete even when nothing ever runs it. A read-only open
    (``write=False``: reports, lists) migrates and records nothing; it refuses a store that is not
    migrated. ``environ`` overrides the process environment for settings.
    """
    settings = load_settings(project_dir, environ)
    project = load_definitions(settings)
    store = StateStore.connect(settings.state_url)
    if not write:
        try:
            store.check_migrated()
        except BaseException:
            store.close()
            raise
    warehouse = Warehouse.connect(settings.warehouse_url, sources=project.config.sources)
    try:
        warehouse.ensure_tables()
        if write:
            store.migrate()
            record_definitions(store, project, settings.author, utc_now())
        yield Workspace(settings=settings, project=project, warehouse=warehouse, store=store)
    finally:
        store.close()
        warehouse.close()
