"""Project use cases: create a project folder, open one with its warehouse and state store.

Opening a project is paid per request by a server (``closeloop serve`` keeps no warehouse
connection between requests), so what depends only on the project's files is kept per process:
the validated definitions, keyed on the stamps (inode, size, modification time) of every file
they are read from (:func:`definition_files`); and that the warehouse has its tables and the
state store its migrations, once per database file. An edited file changes its stamp, so
the next open loads it again; a file changed while it was being loaded is never kept.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from closeloop.data.attributes import account_attributes, person_attributes
from closeloop.definitions.expressions import AttributeType
from closeloop.definitions.json_schema import write_schemas
from closeloop.definitions.located_yaml import LocatedDocument, load_located_yaml
from closeloop.definitions.models import ProjectConfig, SourceMapping
from closeloop.definitions.project import Project, load_project
from closeloop.errors import ConfigurationError
from closeloop.settings import PROJECT_FILE, Settings, load_settings

if TYPE_CHECKING:
    from closeloop.data.warehouse import Warehouse
    from closeloop.engine.state import StateStore


class WarehouseConnection:
    """A workspace's warehouse, connected when first used (a read-only open whose answers are
    all remembered, like a warm dashboard page, never opens the DuckDB file), once."""

    def __init__(self, settings: Settings, sources: Mapping[str, SourceMapping]) -> None:
        self.url = settings.warehouse_url
        self.sources = dict(sources)
        self._warehouse: Warehouse | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def opened(self) -> bool:
        return self._warehouse is not None

    def get(self) -> Warehouse:
        with self._lock:
            if self._closed:
                raise RuntimeError("the workspace is closed: use its warehouse inside the block")
            if self._warehouse is None:
                from closeloop.data.warehouse import Warehouse  # Ibis once a query is asked

                warehouse = Warehouse.connect(self.url, sources=self.sources)
                try:
                    _ensure_tables(warehouse, self.url, self.sources)
                except BaseException:
                    warehouse.close()
                    raise
                self._warehouse = warehouse
            return self._warehouse

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._warehouse is not None:
                self._warehouse.close()
                self._warehouse = None


@dataclass
class Workspace:
    """An open project: its settings, validated definitions, warehouse and state store."""

    settings: Settings
    project: Project
    connection: WarehouseConnection
    store: StateStore

    @property
    def warehouse(self) -> Warehouse:
        """The warehouse, connected on first use (see :class:`WarehouseConnection`)."""
        return self.connection.get()


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


DEFINITION_KINDS = ("attributes", "cohorts", "stages", "jobs", "health")
"""The lists of closeloop.yaml naming definition files (each defaults to ``<kind>.yaml``)."""
TEMPLATES_DIR = "templates"
"""Message templates: loading a project renders each action's templates for a sample unit."""
DEFINITIONS_KEPT = 8
"""Projects whose definitions a process keeps (a server serves one)."""
RACY_SECONDS = 2.0
"""A file modified this close to a load may have changed during it (file systems stamp times
coarsely): such a load is used but not kept."""

Stamp = tuple[int, int, int] | None
Fingerprint = tuple[tuple[str, Stamp], ...]


@dataclass(frozen=True)
class _KeptDefinitions:
    fingerprint: Fingerprint
    project: Project


_DEFINITIONS: OrderedDict[tuple[str, str], _KeptDefinitions] = OrderedDict()
_LISTED: dict[str, ProjectConfig | None] = {}  # the folder's last loaded closeloop.yaml
_DEFINITIONS_LOCK = threading.Lock()


def definition_files(folder: Path, config: ProjectConfig | None) -> list[Path]:
    """Every file a project's definitions are read from: closeloop.yaml, the files its lists
    name (or each list's default file, whether or not it exists) and the templates."""
    names: list[str] = [PROJECT_FILE]
    for kind in DEFINITION_KINDS:
        listed: tuple[str, ...] | None = getattr(config, kind, None)
        names.extend(listed if listed is not None else (f"{kind}.yaml",))
    files = [folder / name for name in names]
    for root, folders, found in os.walk(folder / TEMPLATES_DIR):
        folders.sort()
        files.extend(Path(root) / name for name in sorted(found))
    return files


def _stamp(path: Path) -> Stamp:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def definitions_fingerprint(folder: Path, config: ProjectConfig | None) -> Fingerprint:
    """The stamp of each of :func:`definition_files` (None: missing): equal fingerprints, equal
    files."""
    return tuple((str(path), _stamp(path)) for path in definition_files(folder, config))


def cached_definitions(settings: Settings) -> Project:
    """:func:`load_definitions`, kept while the project's files keep their stamps (and, for a
    project reading accounts or people in place, the warehouse's columns their types)."""
    folder = settings.project_dir
    stored = stored_attributes(settings)
    key = (str(folder), repr([sorted(kind.items()) for kind in stored]))
    with _DEFINITIONS_LOCK:
        kept = _DEFINITIONS.get(key)
        # The lists of the folder's latest load (a kept project's may predate an edit).
        listed = _LISTED.get(str(folder), kept.project.config if kept is not None else None)
    before = definitions_fingerprint(folder, listed)
    if kept is not None and kept.fingerprint == before:
        with _DEFINITIONS_LOCK:
            if key in _DEFINITIONS:
                _DEFINITIONS.move_to_end(key)
        return kept.project
    started = time.time_ns()
    project = load_project(folder, *stored)
    after = definitions_fingerprint(folder, project.config)
    racy = started - int(RACY_SECONDS * 1e9)
    settled = after == before and all(stamp is None or stamp[2] < racy for _, stamp in after)
    with _DEFINITIONS_LOCK:
        _LISTED[str(folder)] = project.config
        if settled:
            _DEFINITIONS[key] = _KeptDefinitions(after, project)
            _DEFINITIONS.move_to_end(key)
            while len(_DEFINITIONS) > DEFINITIONS_KEPT:
                _DEFINITIONS.popitem(last=False)
    return project


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
    from closeloop.data.warehouse import Warehouse

    with Warehouse.connect(settings.warehouse_url, sources=sources) as warehouse:
        # Canonical names (and aliases such as signup_date) win over a source column's.
        return (
            {**warehouse.extra_attributes("accounts"), **accounts},
            {**warehouse.extra_attributes("people"), **people},
        )


_CHECKED: set[tuple[str, ...]] = set()  # stores found migrated, warehouses given their tables
_CHECKED_LOCK = threading.Lock()


def _database_identity(kind: str, file: str | None) -> tuple[str, ...] | None:
    """What names a database file for :data:`_CHECKED`: its device, inode and status-change
    time (a file replaced or rewritten is checked again). None (always check): a database
    server, whose tables another process may drop, or an in-memory database."""
    if not file or file == ":memory:":
        return None
    try:
        status = Path(file).stat()
    except OSError:
        return None
    return (kind, str(status.st_dev), str(status.st_ino), str(status.st_ctime_ns))


def _duckdb_file(url: str) -> str | None:
    parts = urlsplit(url)
    return parts.path if parts.scheme == "duckdb" else None


def _checked(identity: tuple[str, ...] | None) -> bool:
    with _CHECKED_LOCK:
        return identity is not None and identity in _CHECKED


def _mark_checked(identity: tuple[str, ...] | None) -> None:
    if identity is not None:
        with _CHECKED_LOCK:
            _CHECKED.add(identity)


def _ensure_tables(warehouse: Warehouse, url: str, sources: Mapping[str, SourceMapping]) -> None:
    """The warehouse's tables, created once per process and DuckDB file (each time elsewhere)."""
    identity = _database_identity("warehouse", _duckdb_file(url))
    if identity is not None:
        identity = (*identity, repr(sorted(sources.items())))
    if not _checked(identity):
        warehouse.ensure_tables()
        _mark_checked(identity)


@contextmanager
def open_workspace(
    project_dir: Path | str | None = None,
    *,
    write: bool = True,
    environ: Mapping[str, str] | None = None,
    settings: Settings | None = None,
) -> Iterator[Workspace]:
    """Open the project, connect its warehouse and state store, and close both afterwards.

    ``write`` is for commands that change state (ticks, dispatches, lifecycle): the store is
    migrated and every definition that changed since the last open gets a new version, so each
    definition's history is complete even when nothing ever runs it. A read-only open
    (``write=False``: reports, lists) migrates and records nothing; it refuses a store that is not
    migrated. ``environ`` overrides the process environment for settings; ``settings``, already
    loaded (a server's), replaces both.

    The definitions come from :func:`cached_definitions`; a read-only open checks the store's
    migrations, and any open the warehouse's tables, once per process and database file. A
    read-only open connects the warehouse when it is first used (``workspace.warehouse``).
    """
    from closeloop.engine.state import StateStore, utc_now
    from closeloop.engine.versions import record_definitions

    settings = settings or load_settings(project_dir, environ)
    project = cached_definitions(settings)
    store = StateStore.connect(settings.state_url)
    store_identity = _database_identity(
        "store", store.engine.url.database if store.engine.dialect.name == "sqlite" else None
    )
    if not write and not _checked(store_identity):
        try:
            store.check_migrated()
        except BaseException:
            store.close()
            raise
        _mark_checked(store_identity)
    connection = WarehouseConnection(settings, project.config.sources)
    try:
        if write:
            connection.get()  # commands that write fail here when the warehouse is unusable
            store.migrate()
            record_definitions(store, project, settings.author, utc_now())
        yield Workspace(settings=settings, project=project, connection=connection, store=store)
    finally:
        store.close()
        connection.close()
