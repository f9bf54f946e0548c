"""Create and replace jobs from YAML-equivalent JSON, with the same validation as ``validate``.

Where a job is written:

- a **new** job is appended to the first file of ``jobs:`` in closeloop.yaml (``jobs.yaml`` by
  default; created when missing);
- a **replaced** job stays in the file that defines it, at its place in the list.

Only that one file changes, and only the job's own lines: the other items, their comments and
the file's header are kept as written. (When the file's list is not in block style, e.g.
``jobs: []``, the file is rewritten from its data with its leading comments kept, and the other
items' comments are lost.)

Nothing is written until the whole project validates with the change: every definition file is
copied to a temporary folder, the changed file written there, and the project loaded from it with
the same loader ``closeloop validate`` uses (per-field validation, expression parsing and
type-checking, cross-object rules). Problems are reported with the file (relative to the project),
line, column and a caret, on the file as it would have been written. Only then is the real file
replaced, atomically (a temporary file renamed over it). Writes are serialised within a process.

A job that is already launched follows the versioning rules of every edit: the changed definition
is recorded as a new version and the job moves to it, and a changed goal or hypothesis is written
to the audit log (locked at launch: the report keeps measuring the launch's), exactly as when the
YAML is edited by hand and the next tick picks it up. Renaming is not an edit: a job's name is its
identity in the store, so a body whose ``name`` differs from the job's is refused.

URLs in a job shown by the API have their secrets masked; a webhook URL that carries a token should
be written as ``url: env:NAME`` so that a job read and written back keeps working.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from closeloop.definitions.catalog import TEMPLATES_DIR
from closeloop.definitions.located_yaml import MAX_DEPTH, LocatedDocument, load_located_yaml
from closeloop.definitions.models import ProjectConfig
from closeloop.definitions.project import Project, load_project
from closeloop.engine.versions import latest_versions
from closeloop.errors import (
    ConfigurationError,
    DefinitionError,
    DefinitionErrors,
    LocatedError,
    SourceLocation,
    StateError,
)
from closeloop.schemas.jobs import JobWritten
from closeloop.services.operations import acting_as, show_job
from closeloop.services.project import load_definitions, stored_attributes
from closeloop.services.server import Server
from closeloop.settings import PROJECT_FILE, Settings

_KINDS = ("attributes", "cohorts", "stages", "jobs")
_WRITING = threading.Lock()


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (audiences, goals) as block scalars, as people write them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(value: Any) -> str:
    return yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1_000_000,
    )


def create_job(server: Server, body: Mapping[str, Any], *, actor: str | None = None) -> JobWritten:
    """Add a job (``body``: the YAML-equivalent JSON of one item of ``jobs:``)."""
    item = _item(body, None)
    with _WRITING:
        settings = server.settings
        config = _config(settings)
        name = str(item["name"])
        existing = _find(settings, config, name)
        if existing is not None:
            raise StateError(
                f"a job named {name!r} already exists (in {existing[0]}); "
                f"PUT /api/jobs/{name} replaces it"
            )
        if not config.jobs:
            raise ConfigurationError(
                f"{PROJECT_FILE} lists no jobs files (`jobs: []`), so a new job would not load; "
                "list one, e.g. `jobs: [jobs.yaml]`"
            )
        relative = config.jobs[0]
        path = settings.project_dir / relative
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        new_text = _appended(text, path, item)
        _validate_and_write(settings, config, relative, new_text)
    return _written(server, name, relative, created=True, actor=actor)


def replace_job(
    server: Server, name: str, body: Mapping[str, Any], *, actor: str | None = None
) -> JobWritten:
    """Replace the definition of job ``name`` (in the file that defines it)."""
    with _WRITING:
        settings = server.settings
        config = _config(settings)
        existing = _find(settings, config, name)
        if existing is None:
            # The loaded project names the jobs it knows (NotFoundError), or says why it fails.
            load_definitions(settings).job(name)
            raise StateError(f"job {name!r} is not in any file of `jobs:` in {PROJECT_FILE}")
        item = _item(body, name)
        relative, index = existing
        path = settings.project_dir / relative
        new_text = _replaced(path.read_text(encoding="utf-8"), path, index, item)
        _validate_and_write(settings, config, relative, new_text)
    return _written(server, name, relative, created=False, actor=actor)


# -- the body -------------------------------------------------------------------------------


def _item(body: Mapping[str, Any], name: str | None) -> dict[str, Any]:
    """The job item to write: a mapping with a name (a replace may leave the name out)."""
    if not isinstance(body, Mapping):
        raise DefinitionError(
            "a job is a JSON object with the fields of one item of `jobs:`",
            hint="see docs/jobs.md, or GET /api/jobs/{name} for an example (its `definition`)",
        )
    if _depth(body) > MAX_DEPTH:
        raise DefinitionError(
            f"the job is nested more than {MAX_DEPTH} levels deep; a job needs a few levels"
        )
    item = dict(body)
    if name is not None:
        given = item.setdefault("name", name)
        if given != name:
            raise DefinitionError(
                f"the body names the job {given!r}, but this is job {name!r}; a job cannot be "
                "renamed (its name is its identity in the store)",
                hint="create a job with the new name (POST /api/jobs) and stop this one",
            )
    if not isinstance(item.get("name"), str) or not item["name"].strip():
        raise DefinitionError(
            "the job needs a `name` (text)", hint="e.g. {'name': 'Integration nudge', ...}"
        )
    return item


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (iteratively, so a hostile body cannot exhaust the stack)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        current, level = pending.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = current.values() if isinstance(current, Mapping) else current
        if isinstance(current, Mapping | list):
            pending.extend((child, level + 1) for child in children)
    return deepest


# -- where jobs live ---------------------------------------------------------------------------


def _config(settings: Settings) -> ProjectConfig:
    """closeloop.yaml's settings; when it does not load, the loader's located problems."""
    try:
        document = load_located_yaml(settings.project_dir / PROJECT_FILE)
        return ProjectConfig.model_validate(document.data)
    except (ValueError, OSError):
        load_definitions(settings)  # raises the located problems of closeloop.yaml
        raise


def _find(settings: Settings, config: ProjectConfig, name: str) -> tuple[str, int] | None:
    """The file (relative) and index in it of the job named ``name``, if any file has it."""
    for relative in config.jobs:
        path = settings.project_dir / relative
        if not path.is_file():
            continue
        try:
            data = load_located_yaml(path).data
        except DefinitionError:
            continue  # the file does not parse: validation will say where
        items = data.get("jobs") if isinstance(data, dict) else None
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and item.get("name") == name:
                return relative, index
    return None


# -- the new text of the file ------------------------------------------------------------------


def _jobs_of(text: str) -> list[Any]:
    data = yaml.safe_load(text) if text.strip() else None
    items = data.get("jobs") if isinstance(data, dict) else None
    return list(items) if isinstance(items, list) else []


def _block_items(text: str, path: Path) -> tuple[LocatedDocument, int, int] | None:
    """The located document, the item count and the column of its items, when ``jobs:`` is a
    block list (``- name: …``) the lines of one item can be spliced in and out of."""
    if not text.strip():
        return None
    directory = Path(tempfile.mkdtemp(prefix="closeloop-job-"))
    try:
        copy = directory / path.name
        copy.write_text(text, encoding="utf-8")
        document = load_located_yaml(copy)
    except DefinitionError:
        return None
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    items = document.data.get("jobs") if isinstance(document.data, dict) else None
    if not isinstance(items, list) or not items:
        return None
    columns = set()
    for index in range(len(items)):
        line, column = document.positions.get(("jobs", index), (0, 0))
        source = document.lines[line - 1] if 0 < line <= len(document.lines) else ""
        if column < 3 or source[column - 3 : column - 1] != "- ":
            return None
        columns.add(column)
    if len(columns) != 1:
        return None
    return document, len(items), columns.pop()


def _item_text(item: Mapping[str, Any], column: int) -> list[str]:
    indent = " " * (column - 3)
    return [indent + line for line in _dump([dict(item)]).splitlines()]


def _end_of_item(lines: list[str], start: int, stop: int) -> int:
    """The last line (0-based, exclusive) of the item whose lines are ``start..stop``, leaving
    out trailing blank lines and comments (they introduce what follows)."""
    end = stop
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip()[:1] == "#"):
        end -= 1
    return end


def _appended(text: str, path: Path, item: Mapping[str, Any]) -> str:
    expected = [*_jobs_of(text), dict(item)]
    located = _block_items(text, path)
    if located is not None:
        _, _, column = located
        lines = text.splitlines()
        spliced = "\n".join([*lines, *_item_text(item, column)]) + "\n"
        if _jobs_of(spliced) == expected:
            return spliced
    return _rewritten(text, expected)


def _replaced(text: str, path: Path, index: int, item: Mapping[str, Any]) -> str:
    expected = _jobs_of(text)
    expected[index] = dict(item)
    located = _block_items(text, path)
    if located is not None:
        document, count, column = located
        lines = text.splitlines()
        start = document.positions[("jobs", index)][0] - 1
        stop = document.positions[("jobs", index + 1)][0] - 1 if index + 1 < count else len(lines)
        end = _end_of_item(lines, start, stop)
        spliced = "\n".join([*lines[:start], *_item_text(item, column), *lines[end:]]) + "\n"
        if _jobs_of(spliced) == expected:
            return spliced
    return _rewritten(text, expected)


def _rewritten(text: str, items: list[Any]) -> str:
    """The file from its data, with the comment lines that head it kept."""
    header = []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            header.append(line)
            continue
        break
    body = _dump({"jobs": items})
    return "\n".join(header).rstrip("\n") + ("\n" if header else "") + body


# -- validate, then write ----------------------------------------------------------------------


def _definition_files(settings: Settings, config: ProjectConfig) -> list[str]:
    files = [PROJECT_FILE]
    for kind in _KINDS:
        listed: tuple[str, ...] | None = getattr(config, kind)
        files += list(listed) if listed is not None else [f"{kind}.yaml"]
    return [name for name in dict.fromkeys(files) if (settings.project_dir / name).is_file()]


@contextmanager
def validated_copy(
    settings: Settings, config: ProjectConfig, relative: str, new_text: str
) -> Iterator[tuple[Project, Path]]:
    """The project loaded from a temporary copy of its definitions with ``relative`` replaced by
    ``new_text``, and the copy's folder (removed on exit; a template or a job the project loaded
    may be read from it meanwhile). Raises :class:`DefinitionErrors` with every problem, errors
    and warnings, located in the project's own (relative) file names; the loaded project's
    ``warnings`` are left as found in the copy (:func:`relocated` tells them)."""
    folder = settings.project_dir
    with tempfile.TemporaryDirectory(prefix="closeloop-validate-") as scratch:
        copy = Path(scratch)
        for name in _definition_files(settings, config):
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, target)
        if (folder / TEMPLATES_DIR).is_dir():
            shutil.copytree(folder / TEMPLATES_DIR, copy / TEMPLATES_DIR)
        changed = copy / relative
        changed.parent.mkdir(parents=True, exist_ok=True)
        changed.write_text(new_text, encoding="utf-8")
        try:
            project = load_project(copy, *stored_attributes(settings))
        except DefinitionErrors as problems:
            raise DefinitionErrors(
                [relocated(problem, copy) for problem in problems.errors]
            ) from None
        yield project, copy


def _validate_and_write(
    settings: Settings, config: ProjectConfig, relative: str, new_text: str
) -> None:
    """Load the project with ``relative`` replaced by ``new_text`` in a copy; raise its problems
    (located in the project's own file names) or replace the real file atomically."""
    try:
        with validated_copy(settings, config, relative, new_text):
            pass
    except DefinitionErrors as problems:
        # Warnings ride along with the errors; the answer lists the errors that block.
        blocking = [p for p in problems.errors if p.severity == "error"] or problems.errors
        raise DefinitionErrors(blocking) from None
    target = settings.project_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(new_text)
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def relocated(problem: DefinitionError, copy: Path) -> DefinitionError:
    """A problem found in the copy, told in the project's own (relative) file names."""

    def local(text: str) -> str:
        return text.replace(f"{copy}{os.sep}", "").replace(str(copy), ".")

    location = problem.location
    moved = (
        SourceLocation(
            line=location.line,
            column=location.column,
            file=local(location.file) if location.file else None,
            source_line=location.source_line,
        )
        if location is not None
        else None
    )
    kind: type[LocatedError] = type(problem)
    result = kind(local(problem.message), moved, local(problem.hint), severity=problem.severity)
    assert isinstance(result, DefinitionError)
    return result


def _written(
    server: Server, name: str, relative: str, *, created: bool, actor: str | None
) -> JobWritten:
    """Record the new definition (a launched job moves to it) and describe the job."""
    with server.workspace(write=True) as opened:
        workspace = acting_as(opened, actor) if actor else opened
        loaded = workspace.project.job(name)
        workspace.store.sync_job(loaded, workspace.settings.author)
        version = latest_versions(workspace.store)[("job", name)].version
        detail = show_job(workspace, name)
        prefix = f"{workspace.settings.project_dir}{os.sep}"
        warnings = [warning.render().replace(prefix, "") for warning in workspace.project.warnings]
    return JobWritten(
        job=name,
        file=Path(relative).as_posix(),
        created=created,
        version=version,
        warnings=warnings,
        detail=detail,
    )
