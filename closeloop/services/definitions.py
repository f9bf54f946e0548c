"""Definition use cases: validate a project, explain an expression, look at a cohort or a stage.

Counts are aggregated inside the warehouse (one small row comes back); only the sample of ids
is fetched, so these work the same on a million accounts as on five.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from closeloop.definitions.expressions import Entity, check_expression, parse_expression
from closeloop.definitions.json_schema import write_schemas
from closeloop.errors import ConfigurationError, DefinitionError, DefinitionErrors
from closeloop.schemas.definitions import (
    CohortInfo,
    Cohorts,
    DefinitionHistory,
    DefinitionKind,
    DefinitionList,
    DefinitionSummary,
    DefinitionVersion,
    Matches,
    RecordedVersion,
    SampleValue,
    StageInfo,
    Stages,
    Validation,
    problem_of,
)

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from closeloop.data.warehouse import Warehouse
    from closeloop.engine.versions import Latest
from closeloop.services.data_checks import event_findings, project_data_problems, value_findings
from closeloop.services.project import Workspace, configured_sources, load_definitions
from closeloop.settings import Settings

# What a sample row shows next to the id, so a person recognises the unit.
ACCOUNT_DETAILS = ("name", "segment", "plan")
PERSON_DETAILS = ("email", "role")


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as naive UTC, the warehouse's and the store's convention (a time with a zone,
    as the API and JSON carry them, is converted; a naive one is taken as UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def validate_project(settings: Settings) -> Validation:
    """Load the project and return every problem (never raises for definition problems)."""
    try:
        project = load_definitions(settings)
    except DefinitionErrors as problems:
        return _validation(tuple(problems.errors) + source_problems(settings))
    return _validation(
        tuple(project.warnings)
        + source_problems(settings)
        + project_data_problems(settings, project),
        jobs=len(project.jobs),
        definitions=len(list(project.definitions())),
    )


def _validation(
    problems: Sequence[DefinitionError], jobs: int = 0, definitions: int = 0
) -> Validation:
    errors = sum(problem.severity != "warning" for problem in problems)
    return Validation(
        valid=errors == 0,
        errors=errors,
        warnings=len(problems) - errors,
        jobs=jobs,
        definitions=definitions,
        problems=[problem_of(problem) for problem in problems],
    )


def source_problems(settings: Settings) -> tuple[DefinitionError, ...]:
    """Every problem of closeloop.yaml's ``sources:`` against the warehouse, located in
    closeloop.yaml: each mapped table and column exists and has a usable type, text that must
    be a time parses; repeated ids and rows missing a required value are warnings. A project
    without ``sources:`` connects to nothing."""
    document, sources = configured_sources(settings.project_dir)
    if not sources:
        return ()
    from closeloop.data.warehouse import Warehouse  # Ibis, only for a project with sources

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
    from closeloop.data.compiler import matching_units
    from closeloop.services.data import freshness

    as_of = naive_utc(as_of)
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
    return matches.model_copy(update={"warnings": list(dict.fromkeys(warnings))})


def cohort(workspace: Workspace, name: str, as_of: datetime, sample: int = 10) -> Matches:
    """The members of cohort ``name`` as of ``as_of``: how many, a sample, and warnings about
    stale data. An unknown name raises :class:`~closeloop.errors.NotFoundError`."""
    from closeloop.data.compiler import cohort_members
    from closeloop.services.data import freshness

    as_of = naive_utc(as_of)
    loaded = workspace.project.cohort(name)
    members = cohort_members(loaded, workspace.warehouse, as_of, workspace.project.catalog)
    matches = _matches(
        workspace.warehouse, members, Entity(loaded.definition.target), as_of, sample, ""
    )
    fresh = freshness(workspace.warehouse, as_of)
    return matches.model_copy(update={"warnings": list(fresh.warnings)})


def cohorts(workspace: Workspace) -> Cohorts:
    """The project's cohorts, in the order they are defined."""
    found = [
        CohortInfo(
            name=loaded.name,
            description=loaded.definition.description,
            target=Entity(loaded.definition.target),
            criteria=str(loaded.definition.criteria),
        )
        for loaded in workspace.project.cohorts.values()
    ]
    return Cohorts(count=len(found), cohorts=found)


def stages(workspace: Workspace) -> Stages:
    """The project's stages, in the order they are defined."""
    found = [
        StageInfo(
            name=loaded.name,
            description=loaded.definition.description,
            objectives=[objective.name for objective in loaded.objectives],
            markers=[marker.name for marker in loaded.markers],
        )
        for loaded in workspace.project.stages.values()
    ]
    return Stages(count=len(found), stages=found)


def definition_history(
    workspace: Workspace, name: str, kind: DefinitionKind | str | None = None
) -> DefinitionHistory:
    """Every recorded version of a definition, with diffs (``closeloop definitions history``).

    An unknown name (or kind) raises :class:`~closeloop.errors.NotFoundError`.
    """
    from closeloop.engine.versions import history

    chosen = _kind(kind)
    versions = history(workspace.store, name, chosen.value if chosen is not None else None)
    return DefinitionHistory(
        name=name,
        kind=chosen,
        versions=[
            DefinitionVersion(
                kind=DefinitionKind(version.kind),
                name=version.name,
                version=version.version,
                content_hash=version.content_hash,
                created_at=version.created_at,
                author=version.author,
                definition=version.definition,
                diff=version.diff,
            )
            for version in versions
        ],
    )


def _kind(kind: DefinitionKind | str | None) -> DefinitionKind | None:
    if kind is None:
        return None
    try:
        return DefinitionKind(kind)
    except ValueError:
        known = ", ".join(item.value for item in DefinitionKind)
        raise ConfigurationError(f"unknown definition kind {kind!r}; kinds: {known}") from None


def list_definitions(workspace: Workspace) -> DefinitionList:
    """Every definition of the project with its current hash and latest recorded version."""
    from closeloop.engine.versions import latest_versions

    recorded = latest_versions(workspace.store)
    found = [
        DefinitionSummary(
            kind=DefinitionKind(kind),
            name=name,
            content_hash=content_hash,
            latest=_recorded(recorded.get((kind, name))),
        )
        for kind, name, content_hash, _ in workspace.project.definitions()
    ]
    return DefinitionList(count=len(found), definitions=found)


def _recorded(latest: Latest | None) -> RecordedVersion | None:
    if latest is None:
        return None
    return RecordedVersion(
        kind=DefinitionKind(latest.kind),
        name=latest.name,
        version=latest.version,
        content_hash=latest.content_hash,
        created_at=latest.created_at,
        author=latest.author,
    )


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
    rows = _sample(warehouse, units, target, sample, as_of)
    return Matches(target=target, as_of=as_of, count=count, sample=rows, sql=sql)


def _sample(
    warehouse: Warehouse, units: ir.Table, target: Entity, size: int, as_of: datetime
) -> list[dict[str, SampleValue]]:
    from closeloop.data.history import as_of as attributes_as_of

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
    return [{name: _scalar(value) for name, value in row.items()} for row in rows]


def _scalar(value: Any) -> SampleValue:
    """A detail as JSON carries it: text, number, boolean or null (times in ISO format)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def sample_columns(target: Entity) -> Sequence[str]:
    """The columns of a sample row for ``target`` (the id first)."""
    if target == Entity.PERSON:
        return ("person_id", *PERSON_DETAILS)
    return ("account_id", *ACCOUNT_DETAILS)
