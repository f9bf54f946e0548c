"""Load a project folder (``closeloop.yaml`` + job files) into validated definitions.

Every problem is collected and reported at once with file:line:column, the way a compiler does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from closeloop.definitions.expressions import (
    AttributeType,
    Expression,
    check_expression,
    parse_expression,
)
from closeloop.definitions.located_yaml import LocatedDocument, PathKey, load_located_yaml
from closeloop.definitions.models import JobDefinition, JobsFile, ProjectConfig
from closeloop.errors import DefinitionError, DefinitionErrors, ExpressionError

PROJECT_FILE = "closeloop.yaml"
M = TypeVar("M", bound=BaseModel)
TEMPLATES_DIR = "templates"


@dataclass(frozen=True)
class LoadedJob:
    """A job definition with its parsed expressions, content hash and origin."""

    definition: JobDefinition
    audience: Expression
    exclusions: tuple[Expression, ...]
    goal: Expression
    content_hash: str
    file: str

    @property
    def name(self) -> str:
        return self.definition.name


@dataclass(frozen=True)
class Project:
    folder: Path
    config: ProjectConfig
    jobs: Mapping[str, LoadedJob]

    def job(self, name: str) -> LoadedJob:
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise DefinitionError(
                f"no job named {name!r} in this project (jobs: {known})"
            ) from None

    def template_path(self, name: str, kind: str) -> Path:
        return self.folder / TEMPLATES_DIR / f"{name}.{kind}.j2"


def content_hash(model: BaseModel) -> str:
    """A stable hash of a definition's content (what versioning and enrollments record)."""
    canonical = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_project(folder: Path, attributes: Mapping[str, AttributeType]) -> Project:
    """Load and validate the project in ``folder``; raise :class:`DefinitionErrors` with them all.

    ``attributes`` are the account attributes expressions may use (the data layer knows them).
    """
    errors: list[DefinitionError] = []
    config_doc = _load(folder / PROJECT_FILE, errors)
    config = _validate(ProjectConfig, config_doc, errors) if config_doc else None
    jobs: dict[str, LoadedJob] = {}
    if config is not None:
        for relative in config.jobs:
            path = folder / relative
            if not path.is_file():
                assert config_doc is not None
                errors.append(
                    DefinitionError(
                        f"jobs file {relative!r} does not exist",
                        config_doc.location(("jobs",)),
                        hint=f"create {path} or remove it from `jobs:`",
                    )
                )
                continue
            document = _load(path, errors)
            if document is None:
                continue
            for index, definition in _job_definitions(document, attributes, errors):
                loaded = _load_job(
                    folder, definition, document, ("jobs", index), attributes, errors
                )
                if loaded is None:
                    continue
                if loaded.name in jobs:
                    errors.append(
                        DefinitionError(
                            f"job name {loaded.name!r} is used twice",
                            document.location(("jobs", index, "name")),
                            hint=f"the first is in {jobs[loaded.name].file}; job names are unique",
                        )
                    )
                    continue
                jobs[loaded.name] = loaded
    if errors:
        raise DefinitionErrors(errors)
    assert config is not None
    return Project(folder=folder, config=config, jobs=jobs)


def _load(path: Path, errors: list[DefinitionError]) -> LocatedDocument | None:
    try:
        return load_located_yaml(path)
    except DefinitionError as error:
        errors.append(error)
        return None
    except OSError as error:
        errors.append(DefinitionError(f"cannot read {path}: {error.strerror}"))
        return None


def _job_definitions(
    document: LocatedDocument,
    attributes: Mapping[str, AttributeType],
    errors: list[DefinitionError],
) -> list[tuple[int, JobDefinition]]:
    """Validate each job on its own, so one bad job does not hide the problems of the others.

    A job whose fields do not validate still has its expressions checked: every problem of the
    file is reported at once.
    """
    data = document.data
    items = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(items, list):
        _validate(JobsFile, document, errors)
        return []
    _validate(JobsFile, document, errors, data={**data, "jobs": []})
    definitions = []
    for index, item in enumerate(items):
        path: PathKey = ("jobs", index)
        definition = _validate(JobDefinition, document, errors, prefix=path, data=item)
        if definition is not None:
            definitions.append((index, definition))
        elif isinstance(item, dict):
            for key in ("audience", "goal"):
                if isinstance(item.get(key), str):
                    _parse(item[key], document, (*path, key), attributes, errors)
            exclusions = item.get("exclusions")
            for number, text in enumerate(exclusions if isinstance(exclusions, list) else []):
                if isinstance(text, str):
                    _parse(text, document, (*path, "exclusions", number), attributes, errors)
    return definitions


def _validate(
    model: type[M],
    document: LocatedDocument,
    errors: list[DefinitionError],
    *,
    prefix: PathKey = (),
    data: Any = None,
) -> M | None:
    try:
        return model.model_validate(document.data if data is None else data)
    except ValidationError as validation:
        for problem in validation.errors():
            path: PathKey = prefix + tuple(
                part for part in problem["loc"] if isinstance(part, str | int) and part != "email"
            )
            is_unknown_key = problem["type"] == "extra_forbidden"
            where = ".".join(str(part) for part in path) or "(top level)"
            message = problem["msg"].removeprefix("Value error, ")
            hint = ""
            if is_unknown_key:
                allowed = _allowed_fields(model, path)
                message = f"unknown field {path[-1]!r}" if path else message
                hint = f"allowed here: {', '.join(allowed)}" if allowed else ""
            errors.append(
                DefinitionError(
                    f"{where}: {message}",
                    document.location(path, key=is_unknown_key),
                    hint=hint,
                )
            )
        return None


def _allowed_fields(model: type[BaseModel], path: PathKey) -> list[str]:
    current: Any = model
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [
            a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not candidates:
            return []
        current = candidates[0]
    return sorted(current.model_fields) if hasattr(current, "model_fields") else []


def _load_job(
    folder: Path,
    definition: JobDefinition,
    document: LocatedDocument,
    path: PathKey,
    attributes: Mapping[str, AttributeType],
    errors: list[DefinitionError],
) -> LoadedJob | None:
    before = len(errors)

    def parse(text: str, where: PathKey) -> Expression | None:
        return _parse(text, document, where, attributes, errors)

    audience = parse(definition.audience, (*path, "audience"))
    exclusions = tuple(
        parse(text, (*path, "exclusions", index))
        for index, text in enumerate(definition.exclusions)
    )
    goal = parse(definition.goal, (*path, "goal"))
    for index, step in enumerate(definition.steps):
        template = folder / TEMPLATES_DIR / f"{step.template}.txt.j2"
        if not template.is_file():
            errors.append(
                DefinitionError(
                    f"email template {step.template!r} not found (looked for {template})",
                    document.location((*path, "steps", index, "template")),
                    hint=f"create {TEMPLATES_DIR}/{step.template}.txt.j2 in the project folder",
                )
            )
    if len(errors) > before or audience is None or goal is None:
        return None
    return LoadedJob(
        definition=definition,
        audience=audience,
        exclusions=tuple(e for e in exclusions if e is not None),
        goal=goal,
        content_hash=content_hash(definition),
        file=document.file,
    )


def _parse(
    text: str,
    document: LocatedDocument,
    where: PathKey,
    attributes: Mapping[str, AttributeType],
    errors: list[DefinitionError],
) -> Expression | None:
    """Parse and type-check the expression at ``where``; record a located error if it fails."""
    line, column, block = document.value_start(where)
    if block:
        # Block scalars lose their indentation; restore it so columns match the file.
        text = "\n".join(" " * (column - 1) + part for part in text.splitlines())
        column = 1
    try:
        expression = parse_expression(text, file=document.file, line=line, column=column)
        check_expression(
            expression, attributes, text=text, file=document.file, line=line, column=column
        )
    except ExpressionError as error:
        errors.append(error)
        return None
    return expression
