"""Definition use cases: validate a project, explain an expression, look at a cohort or a stage.

Counts are aggregated inside the warehouse (one small row comes back); only the sample of ids
is fetched, so these work the same on a million accounts as on five.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import ibis.expr.types as ir

from closeloop.data.compiler import cohort_members, matching_units, stage_status
from closeloop.data.history import as_of as attributes_as_of
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, check_expression, parse_expression
from closeloop.definitions.json_schema import write_schemas
from closeloop.engine.versions import Latest, Version, history, latest_versions
from closeloop.errors import ConfigurationError, DefinitionError, DefinitionErrors
from closeloop.services.data import freshness
from closeloop.services.data_checks import event_findings, project_data_problems, value_findings
from closeloop.services.project import Workspace, configured_sources, load_definitions
from closeloop.settings import Settings

# What a sample row shows next to the id, so a person recognises the unit.
ACCOUNT_DETAILS = ("name", "segment", "plan")
PERSON_DETAILS = ("email", "role")


@dataclass(frozen=True)
class Validation:
    """Every problem of a project, errors and warnings, in the order the loader found them."""

    problems: tuple[DefinitionError, ...]
    jobs: int = 0
    definitions: int = 0

    @property
    def errors(self) -> int:
        return sum(problem.severity == "error" for problem in self.problems)

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors


@dataclass(frozen=True)
class Matches:
    """How many units match as of a time, and a sample of them (ids plus recognisable details)."""

    target: Entity
    as_of: datetime
    count: int
    sample: list[dict[str, Any]]
    sql: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StageCount:
    name: str
    count: int


@dataclass(frozen=True)
class StageSummary:
    """Where accounts stand in a stage as of a time."""

    name: str
    as_of: datetime
    in_stage: int
    entered: int
    completed: int
    exited: int
    objectives: list[StageCount] = field(default_factory=list)
    markers: list[StageCount] = field(default_factory=list)


@dataclass(frozen=True)
class DefinitionSummary:
    """A definition as the project has it now, and its latest recorded version."""

    kind: str
    name: str
    content_hash: str
    latest: Latest | None


def validate_project(settings: Settings) -> Validation:
    """Load the project and return every problem (never raises for definition problems)."""
    try:
        project = load_definitions(settings)
    except DefinitionErrors as problems:
        return Validation(tuple(problems.errors) + source_problems(settings))
    return Validation(
        tuple(project.warnings)
        + source_problems(settings)
        + project_data_problems(settings, project),
        jobs=len(project.jobs),
        definitions=len(list(project.definitions())),
    )


def source_problems(settings: Settings) -> tuple[DefinitionError, ...]:
    """Every problem of closeloop.yaml's ``sources:`` against the warehouse, located in
    closeloop.yaml: each mapped table and column exists and has a usable type, text that must
    be a time parses; repeated ids and rows missing a required value are warnings. A project
    without ``sources:`` connects to nothing."""
    document, sources = configured_sources(settings.project_dir)
    if not sources:
        return ()
    try:
        warehouse = Warehouse.connect(settings.warehouse_url, sources=sources)
    except ConfigurationError as error:
        return (
            DefinitionError(
                f"sources: cannot check the tables read in place: {error}",
                document.location(("sources",), key=True),
            ),
        )
    with warehouse:
        found = warehouse.check_sources()
    problems = [
        DefinitionError(
            f"{'.'.join(('sources', table, *problem.path))}: {problem.message}",
            document.location(("sources", table, *problem.path), key=problem.at_key),
            hint=problem.hint,
            severity=problem.severity,
        )
        for table, problem in found
    ]
    return tuple(sorted(problems, key=_position))


def _position(problem: DefinitionError) -> tuple[int, int]:
    where = problem.location
    return (where.line, where.column) if where is not None else (0, 0)


def explain(
    workspace: Workspace,
    text: str,
    as_of: datetime,
    target: Entity = Entity.ACCOUNT,
    sample: int = 10,
) -> Matches:
    """Parse and check ``text`` against the project's vocabulary, then count and sample matches.

    Raises :class:`~closeloop.errors.ExpressionError` (with a caret position) when the text does
    not parse or names something the project does not have. Warns (``Matches.warnings``) about
    event names and compared values the data does not have, with the closest that it does, and
    about data that looks stale for ``as_of``.
    """
    expression = parse_expression(text)
    catalog = workspace.project.catalog
    check_expression(expression, catalog.vocabulary, text=text, scope=target)
    warehouse = workspace.warehouse
    units = matching_units(expression, warehouse, as_of, catalog, target)
    matches = _matches(warehouse, units, target, as_of, sample, warehouse.sql(units))
    fresh = freshness(warehouse, as_of)
    findings = value_findings(warehouse, catalog, [(expression, target)])
    if fresh.newest_event is not None:  # without events every name is missing: say that instead
        findings = event_findings(warehouse, [expression]) + findings
    warnings = [finding.message for _, finding in findings] + list(fresh.warnings)
    return replace(matches, warnings=list(dict.fromkeys(warnings)))


def cohort(workspace: Workspace, name: str, as_of: datetime, sample: int = 10) -> Matches:
    """The members of cohort ``name`` as of ``as_of``: how many, and a sample."""
    loaded = workspace.project.cohort(name)
    members = cohort_members(loaded, workspace.warehouse, as_of, workspace.project.catalog)
    return _matches(
        workspace.warehouse, members, Entity(loaded.definition.target), as_of, sample, ""
    )


def stage(workspace: Workspace, name: str, as_of: datetime) -> StageSummary:
    """Counts of accounts in stage ``name`` as of ``as_of``: in it, entered, completed, exited
    without completing, per objective how many completed it, and per marker how many in the
    stage meet it."""
    loaded = workspace.project.stage(name)
    status = stage_status(loaded, workspace.warehouse, as_of, workspace.project.catalog)
    in_stage = status.in_stage.ifelse(1, 0)
    metrics: dict[str, ir.Scalar] = {
        "in_stage": in_stage.sum(),
        "entered": status.entered_at.count(),
        "completed": status.completed_at.count(),
        "exited": status.exited_incomplete.ifelse(1, 0).sum(),
    }
    for index in range(len(loaded.objectives)):
        metrics[f"objective_{index}"] = status[f"objective_{index}"].count()
    for index in range(len(loaded.markers)):
        # A marker describes how accounts in the stage behave now, so only they are counted.
        meets = (status.in_stage & status[f"marker_{index}"].fill_null(False)).ifelse(1, 0)
        metrics[f"marker_{index}"] = meets.sum()
    row = _one_row(status.aggregate(**metrics))
    return StageSummary(
        name=loaded.name,
        as_of=as_of,
        in_stage=row["in_stage"],
        entered=row["entered"],
        completed=row["completed"],
        exited=row["exited"],
        objectives=[
            StageCount(objective.name, row[f"objective_{index}"])
            for index, objective in enumerate(loaded.objectives)
        ],
        markers=[
            StageCount(marker.name, row[f"marker_{index}"])
            for index, marker in enumerate(loaded.markers)
        ],
    )


def definition_history(workspace: Workspace, name: str, kind: str | None = None) -> list[Version]:
    """Every recorded version of a definition, with diffs (``closeloop definitions history``)."""
    return history(workspace.store, name, kind)


def list_definitions(workspace: Workspace) -> list[DefinitionSummary]:
    """Every definition of the project with its current hash and latest recorded version."""
    recorded = latest_versions(workspace.store)
    return [
        DefinitionSummary(kind, name, content_hash, recorded.get((kind, name)))
        for kind, name, content_hash, _ in workspace.project.definitions()
    ]


def export_schemas(folder: Path) -> list[Path]:
    """Write the JSON Schema of every YAML file kind into ``folder``."""
    return write_schemas(folder)


def _matches(
    warehouse: Warehouse,
    units: ir.Table,
    target: Entity,
    as_of: datetime,
    sample: int,
    sql: str,
) -> Matches:
    count = int(units.count().execute())
    return Matches(target, as_of, count, _sample(warehouse, units, target, sample, as_of), sql)


def _sample(
    warehouse: Warehouse, units: ir.Table, target: Entity, size: int, as_of: datetime
) -> list[dict[str, Any]]:
    if size <= 0:
        return []
    key, *details = sample_columns(target)
    source = warehouse.table("people" if target == Entity.PERSON else "accounts")
    # The details as they were at T, the values the expression was evaluated on.
    source = attributes_as_of(warehouse, str(target), source, as_of, key=key)
    # Details are looked up for the sampled ids only; a unit missing there still shows its id.
    picked = units.select(key).distinct().order_by(key).limit(size)
    joined = picked.left_join(source.select(key, *details), picked[key] == source[key])
    columns = [picked[key], *(joined[name] for name in details)]
    rows = joined.select(*columns).order_by(key).to_pyarrow().to_pylist()
    return [dict(row) for row in rows]


def _one_row(table: ir.Table) -> dict[str, int]:
    values = table.to_pyarrow().to_pylist()[0]
    return {name: int(value or 0) for name, value in values.items()}


def sample_columns(target: Entity) -> Sequence[str]:
    """The columns of a sample row for ``target`` (the id first)."""
    if target == Entity.PERSON:
        return ("person_id", *PERSON_DETAILS)
    return ("account_id", *ACCOUNT_DETAILS)


__all__ = [
    "DefinitionSummary",
    "Entity",
    "Latest",
    "Matches",
    "StageCount",
    "StageSummary",
    "Validation",
    "Version",
    "cohort",
    "definition_history",
    "explain",
    "export_schemas",
    "list_definitions",
    "sample_columns",
    "source_problems",
    "stage",
    "validate_project",
]
