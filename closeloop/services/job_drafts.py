"""Job drafts for the editor: the YAML of one job checked, estimated and previewed before it is
written or launched.

A draft is the text of one item of ``jobs:`` (``name: …``, ``audience: …``). It is checked by the
loader ``closeloop validate`` and the API's job writes use (:func:`job_editing.validated_copy`):
the draft's own lines are spliced into a copy of the jobs file it belongs to (at the edited job's
place, or after the last job), and the whole project is loaded from the copy. Because the draft is
spliced as written (only indented), every problem located in it maps back to the draft's own line
and column, so the editor can put the caret under the very character; problems elsewhere in the
project keep their file and line. Nothing under the project folder changes.

The power estimate and the dry run run on the project loaded from that copy, so a draft can be
estimated and previewed before it is saved. Saving writes the draft as typed (its own comments
kept) through the API's write (:mod:`job_editing`: its lock, validation of the whole project,
atomic replacement, the new version recorded), leaving the other jobs and their comments alone.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from closeloop.definitions.located_yaml import load_located_yaml
from closeloop.definitions.project import Project
from closeloop.engine import audit, lifecycle
from closeloop.errors import (
    CloseloopError,
    ConfigurationError,
    DefinitionError,
    DefinitionErrors,
    NotFoundError,
    SourceLocation,
    StateError,
    redact,
)
from closeloop.schemas.editor import (
    DraftDryRun,
    DraftPower,
    DraftProblem,
    DraftSaved,
    DraftValidation,
    EditorFields,
    JobEditor,
)
from closeloop.schemas.jobs import LaunchResult
from closeloop.services import engine_runs, job_editing, operations, power
from closeloop.services.job_editing import (
    _WRITING,
    _block_items,
    _config,
    _dump,
    _end_of_item,
    _find,
    _item,
    _item_text,
    _jobs_of,
    _validate_and_write,
    _written,
)
from closeloop.services.project import Workspace, load_definitions
from closeloop.services.server import Server
from closeloop.settings import Settings

MAX_DRAFT_CHARS = 200_000
"""A draft longer than this is refused (a job is a few hundred characters)."""

SAMPLE_SIZE = 20
"""Entering accounts a dry run lists by name."""

_ITEM_COLUMN = 5  # "  - name: …" when the jobs file is rebuilt (not in block style)

NEW_JOB = """\
name: New job
description: ""
audience: |
  signup_date within last 14 days
goal: count(event "integration_connected") >= 1
duration_days: 30
holdout: 0.2
steps:
  - send: email
    subject: "{{ account.name }}: a subject"
    template: integration_nudge
hypothesis:
  expected_effect: What the team expects the job to change, and for whom.
  primary_metric: completion_rate
"""


@dataclass(frozen=True)
class _Splice:
    """Where the draft sits in the copy of its jobs file, to tell problems in its own terms."""

    relative: str  # the jobs file, relative to the project
    start: int  # 0-based line of the copy where the draft's first line is
    length: int  # the draft's lines
    offset: int  # columns the draft's lines are shifted by
    replaced: int | None  # lines the edited job had in the real file (None: file rebuilt)
    lines: list[str]  # the draft's own lines


# -- the editor page ---------------------------------------------------------------------------


def editor(server: Server, name: str | None = None) -> JobEditor:
    """The editor for a new job (``name`` None: a starter draft) or for job ``name``: its own
    lines in its jobs file, comments kept. An unknown job raises NotFoundError."""
    settings = server.settings
    config = _config(settings)
    if name is None:
        relative = config.jobs[0] if config.jobs else None
        return JobEditor(
            editing=None, status=None, yaml=NEW_JOB, fields=fields_of(NEW_JOB), file=relative
        )
    found = _find(settings, config, name)
    if found is None:
        load_definitions(settings).job(name)  # NotFoundError names the known jobs
        raise CloseloopError(f"job {name!r} is not in any file of `jobs:`")
    relative, index = found
    text = _item_source(settings.project_dir / relative, index)
    status = str(lifecycle.job_status(server.store, name))
    return JobEditor(editing=name, status=status, yaml=text, fields=fields_of(text), file=relative)


def _item_source(path: Path, index: int) -> str:
    """The text of item ``index`` of ``jobs:`` as written (unindented), else its data dumped."""
    text = path.read_text(encoding="utf-8")
    located = _block_items(text, path)
    items = _jobs_of(text)
    if located is not None:
        document, count, column = located
        lines = text.splitlines()
        start = document.positions[("jobs", index)][0] - 1
        stop = document.positions[("jobs", index + 1)][0] - 1 if index + 1 < count else len(lines)
        end = _end_of_item(lines, start, stop)
        own = [line[column - 1 :] for line in lines[start:end]]
        candidate = "\n".join(own) + "\n"
        if yaml.safe_load(candidate) == items[index]:
            return candidate
    return _dump(items[index])


def fields_of(text: str) -> EditorFields:
    """The form's fields as the draft has them (empty where it has none or does not parse)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return EditorFields()
    if not isinstance(data, dict):
        return EditorFields()
    given_hypothesis, given_steps = data.get("hypothesis"), data.get("steps")
    hypothesis: dict[str, Any] = given_hypothesis if isinstance(given_hypothesis, dict) else {}
    steps: list[Any] = given_steps if isinstance(given_steps, list) else []
    email: dict[str, Any] = next(
        (s for s in steps if isinstance(s, dict) and s.get("send") == "email"), {}
    )
    return EditorFields(
        name=_text(data.get("name")),
        hypothesis=_text(hypothesis.get("expected_effect")),
        minimum_effect=_number(hypothesis.get("minimum_effect")),
        audience=_text(data.get("audience")).strip(),
        goal=_text(data.get("goal")).strip(),
        duration_days=_integer(data.get("duration_days")),
        holdout=_number(data.get("holdout")),
        email_subject=_text(email.get("subject")),
        email_template=_text(email.get("template")),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def apply_fields(text: str, fields: EditorFields) -> str:
    """The draft with the form's fields written into it (the YAML stays the one source of
    truth: fields left empty leave the draft's value alone). A draft that does not parse as a
    mapping is refused with its located problem, so nothing the person typed is lost."""
    document = _parse(text)
    data: dict[str, Any] = dict(document)
    if fields.name:
        data["name"] = fields.name
    if fields.audience:
        data["audience"] = fields.audience
    if fields.goal:
        data["goal"] = fields.goal
    if fields.duration_days is not None:
        data["duration_days"] = fields.duration_days
    if fields.holdout is not None:
        data["holdout"] = fields.holdout
    if fields.hypothesis or fields.minimum_effect is not None:
        hypothesis = dict(data["hypothesis"]) if isinstance(data.get("hypothesis"), dict) else {}
        if fields.hypothesis:
            hypothesis["expected_effect"] = fields.hypothesis
        if fields.minimum_effect is not None:
            hypothesis["minimum_effect"] = fields.minimum_effect
        data["hypothesis"] = hypothesis
    if fields.email_subject or fields.email_template:
        steps = list(data["steps"]) if isinstance(data.get("steps"), list) else []
        at = next(
            (i for i, s in enumerate(steps) if isinstance(s, dict) and s.get("send") == "email"),
            None,
        )
        step = dict(steps[at]) if at is not None else {"send": "email"}
        if fields.email_subject:
            step["subject"] = fields.email_subject
        if fields.email_template:
            step["template"] = fields.email_template
        if at is None:
            steps.append(step)
        else:
            steps[at] = step
        data["steps"] = steps
    return _dump(data)


def filled(server: Server, text: str, editing: str | None, fields: EditorFields) -> JobEditor:
    """The editor with the form's fields written into the draft (:func:`apply_fields`)."""
    new_text = apply_fields(text, fields)
    config = _config(server.settings)
    return JobEditor(
        editing=editing,
        status=str(lifecycle.job_status(server.store, editing)) if editing else None,
        yaml=new_text,
        fields=fields_of(new_text),
        file=config.jobs[0] if config.jobs else None,
    )


def _parse(text: str) -> dict[str, Any]:
    """The draft's mapping, or DefinitionErrors located in the draft."""
    problems, data, _ = _parsed(text)
    if problems:
        raise DefinitionErrors(problems)
    assert data is not None
    return data


def _parsed(text: str) -> tuple[list[DefinitionError], dict[str, Any] | None, Any]:
    """The draft parsed: its problems (located in its own lines, no file), or its mapping and
    located document."""
    if len(text) > MAX_DRAFT_CHARS:
        return [DefinitionError(f"the draft is over {MAX_DRAFT_CHARS:,} characters")], None, None
    folder = Path(tempfile.mkdtemp(prefix="closeloop-draft-"))
    try:
        path = folder / "draft.yaml"
        path.write_text(text, encoding="utf-8")
        document = load_located_yaml(path)
    except DefinitionError as problem:
        return [_unfiled(problem)], None, None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not isinstance(document.data, dict):
        return (
            [
                DefinitionError(
                    "a job is a YAML mapping: the fields of one item of `jobs:`",
                    SourceLocation(1, 1, None, document.lines[0] if document.lines else None),
                    hint="start with `name: …`, then `audience:`, `goal:`, `duration_days:`",
                )
            ],
            None,
            None,
        )
    # Places in the draft are told in its own lines, without the scratch file's name.
    return [], document.data, replace(document, file="")


def _unfiled(problem: DefinitionError) -> DefinitionError:
    location = problem.location
    where = replace(location, file=None) if location is not None else None
    return DefinitionError(problem.message, where, problem.hint, severity=problem.severity)


# -- validation ----------------------------------------------------------------------------------


def validate_draft(settings: Settings, text: str, editing: str | None = None) -> DraftValidation:
    """Check a draft with the whole project, writing nothing (module doc)."""
    with _checked(settings, text, editing) as (validation, _project):
        return validation


@contextmanager
def _checked(
    settings: Settings, text: str, editing: str | None
) -> Iterator[tuple[DraftValidation, Project | None]]:
    """The draft's validation and, when it is valid, the project loaded with it (usable until
    the block ends: its templates are read from the copy)."""
    problems, data, document = _parsed(text)
    name = data.get("name") if data is not None and isinstance(data.get("name"), str) else None
    try:
        config = _config(settings)
    except DefinitionErrors as failed:
        problems += failed.errors
        config = None
    except DefinitionError as failed:
        problems.append(failed)
        config = None
    relative = (config.jobs[0] if config.jobs else None) if config is not None else None
    if data is None or config is None:
        yield _validation(name, editing, relative, problems, None), None
        return
    try:
        _item(data, editing)
    except DefinitionError as refused:
        key = ("name",) if "name" in data else ()
        problems.append(DefinitionError(refused.message, document.location(key), refused.hint))
    found = _find(settings, config, editing if editing is not None else str(name))
    if editing is None and found is not None:
        problems.append(
            DefinitionError(
                f"a job named {name!r} already exists (in {found[0]})",
                document.location(("name",)),
                hint="give the new job another name, or edit that job",
            )
        )
    if editing is not None and found is None:
        problems.append(DefinitionError(f"job {editing!r} is not in any file of `jobs:`"))
    if editing is None and not config.jobs:
        problems.append(
            DefinitionError(
                "closeloop.yaml lists no jobs files (`jobs: []`), so a new job would not load",
                hint="list one, e.g. `jobs: [jobs.yaml]`",
            )
        )
    if problems:
        yield _validation(name, editing, relative, problems, None), None
        return
    relative, index = found if found is not None else (config.jobs[0], None)
    new_text, splice = _spliced(settings, relative, index, text)
    if _jobs_of_safely(new_text, index) != data:
        wrong = DefinitionError(
            "the draft must be one YAML mapping, without document markers (---, ...) or directives",
            SourceLocation(1, 1, None, splice.lines[0] if splice.lines else None),
        )
        yield _validation(name, editing, relative, [wrong], splice), None
        return
    try:
        with job_editing.validated_copy(settings, config, relative, new_text) as (project, copy):
            warnings = [job_editing.relocated(w, copy) for w in project.warnings]
            yield _validation(name, editing, relative, warnings, splice), project
    except DefinitionErrors as failed:
        yield _validation(name, editing, relative, failed.errors, splice), None


def _jobs_of_safely(text: str, index: int | None) -> Any:
    """The draft's item as the spliced file holds it (None when the file does not parse)."""
    try:
        items = _jobs_of(text)
    except yaml.YAMLError:
        return None
    at = len(items) - 1 if index is None else index
    return items[at] if 0 <= at < len(items) else None


def _spliced(
    settings: Settings, relative: str, index: int | None, draft: str
) -> tuple[str, _Splice]:
    """The jobs file with the draft in place of item ``index`` (None: appended), and where."""
    path = settings.project_dir / relative
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    own = draft.splitlines() or [""]
    located = _block_items(text, path)
    if located is not None:
        document, count, column = located
        lines = text.splitlines()
        if index is None:
            start = end = len(lines)
        else:
            start = document.positions[("jobs", index)][0] - 1
            stop = (
                document.positions[("jobs", index + 1)][0] - 1 if index + 1 < count else len(lines)
            )
            end = _end_of_item(lines, start, stop)
        item = _indented(own, column)
        new_text = "\n".join([*lines[:start], *item, *lines[end:]]) + "\n"
        return new_text, _Splice(relative, start, len(own), column - 1, end - start, own)
    # Not a block list (or no jobs yet): the copy is rebuilt, the draft last or in its place.
    items = _jobs_of(text) if text.strip() else []
    lines = [*_header(text), "jobs:"]
    start = 0
    for position, existing in enumerate([*items, None] if index is None else items):
        if existing is None or position == index:
            start = len(lines)
            lines += _indented(own, _ITEM_COLUMN)
        else:
            lines += _item_text(existing, _ITEM_COLUMN)
    new_text = "\n".join(lines) + "\n"
    return new_text, _Splice(relative, start, len(own), _ITEM_COLUMN - 1, None, own)


def _header(text: str) -> list[str]:
    header = []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            header.append(line)
            continue
        break
    return header


def _indented(lines: list[str], column: int) -> list[str]:
    """The draft as an item of a block list whose items start at ``column``. Comments and blank
    lines that open the draft go above its ``- `` (as comments introduce an item), so the list
    stays one an edit can splice again."""
    indent = " " * (column - 3)
    head = 0
    while head < len(lines) - 1 and (not lines[head].strip() or lines[head].lstrip()[:1] == "#"):
        head += 1
    above = [f"{indent}{line}".rstrip() for line in lines[:head]]
    first, *rest = lines[head:]
    item = [f"{indent}- {first}".rstrip(), *(f"{indent}  {line}" if line else "" for line in rest)]
    return [*above, *item]


def _validation(
    name: str | None,
    editing: str | None,
    relative: str | None,
    found: list[DefinitionError],
    splice: _Splice | None,
) -> DraftValidation:
    problems = [_problem(problem, splice) for problem in found]
    problems.sort(key=lambda p: (p.severity != "error", not p.in_draft, p.line or 0))
    return DraftValidation(
        job=name,
        editing=editing,
        file=relative,
        valid=not any(p.severity == "error" for p in problems),
        problems=problems,
    )


def _problem(problem: DefinitionError, splice: _Splice | None) -> DraftProblem:
    """A problem told in the draft's own lines when it is in the draft."""
    severity = "warning" if problem.severity == "warning" else "error"
    message, hint = redact(problem.message), redact(problem.hint)
    location = problem.location
    if location is None:
        return DraftProblem(severity=severity, message=message, hint=hint, in_draft=False)
    if not location.file:  # found in the draft's text alone
        return _located(severity, message, hint, True, location)
    if splice is not None and location.file == splice.relative:
        line = location.line - splice.start
        if 1 <= line <= splice.length:
            source = splice.lines[line - 1]
            column = min(max(location.column - splice.offset, 1), len(source) + 1)
            return _located(
                severity, message, hint, True, SourceLocation(line, column, None, source)
            )
        if splice.replaced is None:  # the copy was rebuilt: its lines are not the file's
            return DraftProblem(
                severity=severity, message=message, hint=hint, in_draft=False, file=location.file
            )
        if line > splice.length:
            moved = location.line - splice.length + splice.replaced
            location = replace(location, line=moved)
    return _located(severity, message, hint, False, location)


def _located(
    severity: str, message: str, hint: str, in_draft: bool, location: SourceLocation
) -> DraftProblem:
    source = location.source_line.rstrip("\n") if location.source_line is not None else None
    return DraftProblem(
        severity="warning" if severity == "warning" else "error",
        message=message,
        hint=hint,
        in_draft=in_draft,
        file=location.file or None,
        line=location.line,
        column=location.column,
        source_line=source,
        caret=location.caret() or None,
    )


# -- power, dry run, save, launch ---------------------------------------------------------------


def draft_power(server: Server, text: str, editing: str | None = None) -> DraftPower:
    """The power estimate of a valid draft from the project's data (as ``closeloop power
    --job``), before it is saved: weeks to reach the detectable effect, units per arm."""
    with _checked(server.settings, text, editing) as (validation, project):
        if project is None or validation.job is None:
            return DraftPower(validation=validation, problem="the draft has errors to fix first")
        with server.workspace() as workspace:
            try:
                plan = power.plan_job_power(_with(workspace, project), validation.job)
            except CloseloopError as problem:
                return DraftPower(validation=validation, problem=redact(str(problem)))
    return DraftPower(validation=validation, plan=plan)


def draft_dry_run(
    server: Server, text: str, editing: str | None = None, at: datetime | None = None
) -> DraftDryRun:
    """Who the draft would enroll at ``at`` (now when None) and the messages each would get
    (as ``closeloop dry-run``); nothing is recorded or sent."""
    with _checked(server.settings, text, editing) as (validation, project):
        if project is None or validation.job is None:
            return DraftDryRun(validation=validation, problem="the draft has errors to fix first")
        with server.workspace() as workspace:
            try:
                preview = engine_runs.dry_run(
                    _with(workspace, project), validation.job, operations.moment(at)
                )
            except CloseloopError as problem:
                return DraftDryRun(validation=validation, problem=redact(str(problem)))
    sample = list(dict.fromkeys(unit.account_id for unit in preview.entering))[:SAMPLE_SIZE]
    return DraftDryRun(validation=validation, dry_run=preview, audience_sample=sample)


def audit_write(server: Server, actor: str, route: str, subject: str, status: int) -> None:
    """Record one of the dashboard's writes in the audit log, as the API records its own
    (``web.POST /editor/save`` on the job, with the answer's status; never the body)."""
    audit.record(
        server.store,
        actor=actor,
        action=f"web.POST {route}",
        subject=subject,
        detail={"status": status},
    )


def _with(workspace: Workspace, project: Project) -> Workspace:
    return replace(workspace, project=project)


def save_draft(
    server: Server, text: str, editing: str | None = None, *, actor: str | None = None
) -> DraftSaved:
    """Write a valid draft to its jobs file, as written (its own comments and quoting kept): a
    new job after the last, an edited one in its place; the other jobs and the file's comments
    are left as they are. The write is the API's (``POST``/``PUT /api/jobs``): under the same
    lock, the whole project validated with the new file, then the file replaced atomically and
    the new definition recorded. An invalid draft writes nothing."""
    validation = validate_draft(server.settings, text, editing)
    if not validation.valid:
        return DraftSaved(validation=validation)
    name = str(_parse(text)["name"])
    settings = server.settings
    with _WRITING:
        config = _config(settings)
        found = _find(settings, config, editing if editing is not None else name)
        if editing is None and found is not None:
            raise StateError(f"a job named {name!r} already exists (in {found[0]})")
        if editing is not None and found is None:
            raise NotFoundError(f"job {editing!r} is not in any file of `jobs:`")
        if found is None and not config.jobs:
            raise ConfigurationError("closeloop.yaml lists no jobs files (`jobs: []`)")
        relative, index = found if found is not None else (config.jobs[0], None)
        new_text, _ = _spliced(settings, relative, index, text)
        _validate_and_write(settings, config, relative, new_text)
    written = _written(server, name, relative, created=editing is None, actor=actor)
    return DraftSaved(validation=validation, written=written)


def launch(server: Server, name: str, *, actor: str, at: datetime | None = None) -> LaunchResult:
    """Launch a saved draft (as ``closeloop jobs launch`` and the API): the launch checks of its
    power, then its first tick, recorded under ``actor``."""
    with server.workspace(write=True) as opened:
        workspace = operations.acting_as(opened, actor)
        return operations.launch(workspace, name, operations.moment(at))
