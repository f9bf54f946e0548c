"""Definitions checked against the data: names and values the warehouse does not have.

A project can be valid and still ask for nothing that exists: ``count(event
"integration_connected")`` when the export says ``Integration Connected``, ``segment =
"enterprize"``, a cohort nobody is in. These checks run where the definitions meet a warehouse
that has data (``validate``, ``explain``) and give warnings, never errors: the data may simply
not have arrived yet. Each warning is located in the YAML, at the event name or the value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from closeloop.data.duckdb_file import tables_with_rows
from closeloop.definitions.catalog import Catalog, Project
from closeloop.definitions.expressions import (
    And,
    Attribute,
    AttributeType,
    Comparator,
    Comparison,
    Entity,
    EventCount,
    EventTime,
    Expression,
    InList,
    Literal,
    LiteralKind,
    Lower,
    Not,
    Operand,
    Or,
    People,
    PeopleCount,
    Span,
    operands,
    unwrap,
)
from closeloop.definitions.located_yaml import LocatedDocument, PathKey, load_located_yaml
from closeloop.errors import ConfigurationError, DefinitionError, SourceLocation
from closeloop.settings import Settings

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from closeloop.data.warehouse import Warehouse

LOCK_WAIT_SECONDS = 5.0
"""How long validate waits for a DuckDB file another process holds before skipping the checks."""


@dataclass(frozen=True)
class Finding:
    """A problem with one expression: what, a hint, and where in the expression's text."""

    message: str
    hint: str
    span: Span
    name: str = ""  # the quoted text to point at, when the span covers more (an event name)


@dataclass(frozen=True)
class _Site:
    """An expression of the project, about ``scope``, at ``path`` of ``document``."""

    expression: Expression
    scope: Entity
    document: LocatedDocument
    path: PathKey


# -- one expression -------------------------------------------------------------------------------


def event_findings(
    warehouse: Warehouse, expressions: Sequence[Expression]
) -> list[tuple[int, Finding]]:
    """Each event function naming an event no row of the warehouse has, with the index of its
    expression in ``expressions``. One query for all of them (two when some are missing)."""
    from closeloop.services.data import absent_values

    uses = [
        (index, operand)
        for index, expression in enumerate(expressions)
        for operand in _event_operands(expression)
    ]
    if not uses:
        return []
    missing = absent_values(warehouse.table("events"), "name", {use.event for _, use in uses})
    return [
        (
            index,
            Finding(
                _no_event(use.event, missing[use.event]),
                _event_hint(missing[use.event]),
                use.span,
                _quoted(use.event),
            ),
        )
        for index, use in uses
        if use.event in missing
    ]


def value_findings(
    warehouse: Warehouse,
    catalog: Catalog,
    expressions: Sequence[tuple[Expression, Entity]],
    *,
    people: bool = True,
) -> list[tuple[int, Finding]]:
    """Each text compared with a stored text attribute (``=``, ``!=``, ``in``) that no account
    (or person) has in that attribute, with the closest value that does occur, and the index of
    its expression (with the entity it is about) in ``expressions``. One or two queries per
    attribute; ``people=False`` skips person attributes (there are no people yet)."""
    from closeloop.services.data import absent_values

    uses = [
        (index, use)
        for index, (expression, scope) in enumerate(expressions)
        for use in _compared_values(catalog, expression, scope)
        if people or use.entity == Entity.ACCOUNT
    ]
    wanted: dict[tuple[Entity, str, bool], set[str]] = {}
    for _, use in uses:
        wanted.setdefault(use.column, set()).add(use.value)
    missing = {
        (entity, name, lowered): absent_values(
            warehouse.table("accounts" if entity == Entity.ACCOUNT else "people"),
            name,
            values,
            lowered=lowered,
        )
        for (entity, name, lowered), values in wanted.items()
    }
    findings = []
    for index, use in uses:
        absent = missing[use.column]
        if use.value not in absent:
            continue
        suggestion = absent[use.value]
        findings.append(
            (
                index,
                Finding(
                    f"no {use.entity} has {use.name} {_quoted(use.value)}"
                    + (", in any case" if use.lowered else "")
                    + (f" (did you mean {_quoted(suggestion)}?)" if suggestion else ""),
                    _value_hint(use.name, use.value, suggestion, use.lowered),
                    use.literal.span,
                ),
            )
        )
    return findings


@dataclass(frozen=True)
class _Compared:
    """Text compared with a stored text attribute: ``entity``'s ``name`` (under ``lower``)."""

    entity: Entity
    name: str
    lowered: bool
    literal: Literal

    @property
    def value(self) -> str:
        return str(self.literal.value)

    @property
    def column(self) -> tuple[Entity, str, bool]:
        return (self.entity, self.name, self.lowered)


def _event_operands(expression: Expression) -> Iterator[EventCount | EventTime]:
    for node, _ in _predicates(expression, Entity.ACCOUNT):
        for operand in operands(node):
            if isinstance(operand, EventCount | EventTime):
                yield operand


def _compared_values(
    catalog: Catalog, expression: Expression, scope: Entity
) -> Iterator[_Compared]:
    """Each text compared with a stored text attribute in ``expression``."""
    vocabulary = catalog.vocabulary
    for node, node_scope in _predicates(expression, scope):
        pairs: list[tuple[Operand, Literal]] = []
        if isinstance(node, Comparison) and node.op in (Comparator.EQ, Comparator.NE):
            pairs = [
                (side, other)
                for side, other in ((node.left, node.right), (node.right, node.left))
                if isinstance(other, Literal)
            ]
        elif isinstance(node, InList):
            pairs = [(node.operand, value) for value in node.values]
        for side, literal in pairs:
            attribute = unwrap(side)
            if literal.kind != LiteralKind.STRING or not isinstance(attribute, Attribute):
                continue
            resolved = vocabulary.resolve(attribute, node_scope)
            if resolved is None or resolved[1] != AttributeType.STRING:
                continue
            entity = resolved[0]
            stored = (
                catalog.account_attributes
                if entity == Entity.ACCOUNT
                else catalog.person_attributes
            )
            if attribute.name in stored:
                yield _Compared(entity, attribute.name, isinstance(side, Lower), literal)


def _predicates(node: Expression, scope: Entity) -> Iterator[tuple[Expression, Entity]]:
    """Every predicate of ``node`` with the entity it is about (people conditions included)."""
    if isinstance(node, And | Or):
        for part in node.parts:
            yield from _predicates(part, scope)
    elif isinstance(node, Not):
        yield from _predicates(node.operand, scope)
    elif isinstance(node, People):
        yield from _predicates(node.condition, Entity.PERSON)
    else:
        yield node, scope
        for operand in operands(node):
            if isinstance(operand, PeopleCount) and operand.condition is not None:
                yield from _predicates(operand.condition, Entity.PERSON)


def _no_event(name: str, suggestion: str | None) -> str:
    meant = f" (did you mean {_quoted(suggestion)}?)" if suggestion is not None else ""
    return f"no event named {_quoted(name)} in the warehouse{meant}"


def _event_hint(suggestion: str | None) -> str:
    if suggestion is None:
        return "no event of that name has been imported; check the spelling"
    return (
        f"event names are compared exactly: write {_quoted(suggestion)}, or normalise the names "
        "when importing"
    )


def _value_hint(name: str, value: str, suggestion: str | None, lowered: bool) -> str:
    if suggestion is None:
        return "no stored value is close; check the spelling, or the data is not imported yet"
    if not lowered and suggestion.lower() == value.lower():
        return (
            f"values are compared exactly: write {_quoted(suggestion)}, or ignore case with "
            f"lower({name}) and lower-case text"
        )
    return f"write {_quoted(suggestion)} if that is what is meant"


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# -- the whole project ----------------------------------------------------------------------------


def project_data_problems(
    settings: Settings, project: Project, *, now: datetime | None = None
) -> tuple[DefinitionError, ...]:
    """Warnings about the project's expressions against the warehouse's data, located in the
    YAML: event names no event has, compared values no account or person has, cohorts that
    match nobody now. Nothing when the warehouse has no data yet (or does not exist)."""
    if not _may_have_data(settings.warehouse_url, project.config.sources):
        return ()
    from closeloop.data.warehouse import Warehouse  # Ibis, only once there may be data to check

    try:
        warehouse = Warehouse.connect(
            settings.warehouse_url, lock_timeout=LOCK_WAIT_SECONDS, sources=project.config.sources
        )
    except ConfigurationError as error:
        message = f"the definitions were not checked against the data: {error}"
        return (_warning(message, None, "run `closeloop validate` again once it can connect"),)
    with warehouse:
        if not all(warehouse.has_table(name) for name in ("accounts", "people", "events")):
            return ()
        try:
            # Naive UTC, as the stores keep it (engine.state.utc_now, whose module validate
            # would otherwise load with SQLAlchemy and Alembic for this one call).
            moment = now or datetime.now(UTC).replace(tzinfo=None)
            problems = _problems(warehouse, project, moment)
        except ConfigurationError:
            # A `sources:` mapping that cannot work: validate's source checks say where and why;
            # the data cannot be read through it, so there is nothing to check against.
            return ()
    return tuple(sorted(problems, key=_position))


def _problems(warehouse: Warehouse, project: Project, now: datetime) -> list[DefinitionError]:
    if not _count(warehouse.table("accounts")):
        return []  # nothing imported yet: every name and value would be "missing"
    # Imported here: services.data loads the state store's modules, which a project without
    # data (validate right after init) does not need.
    from closeloop.services.data import newest_event

    documents: dict[str, LocatedDocument | None] = {}
    sites = list(_sites(project, documents))
    problems: list[DefinitionError] = []
    newest = newest_event(warehouse)
    if newest is not None:
        for index, finding in event_findings(warehouse, [site.expression for site in sites]):
            location = _location(sites[index], finding.span, finding.name)
            problems.append(_warning(finding.message, location, finding.hint))
        problems += _attribute_event_problems(warehouse, project, documents)
    with_people = bool(_count(warehouse.table("people")))
    expressions = [(site.expression, site.scope) for site in sites]
    for index, finding in value_findings(
        warehouse, project.catalog, expressions, people=with_people
    ):
        location = _location(sites[index], finding.span)
        problems.append(_warning(finding.message, location, finding.hint))
    problems += _empty_cohorts(warehouse, project, now, newest, documents, people=with_people)
    return problems


def _attribute_event_problems(
    warehouse: Warehouse, project: Project, documents: dict[str, LocatedDocument | None]
) -> list[DefinitionError]:
    """Computed attributes derived from an event (``event:``) that no row has."""
    from closeloop.services.data import absent_values

    uses = [
        (attribute, document, path)
        for attribute in project.attributes.values()
        if attribute.definition.event is not None
        for document, path in _item(
            documents, attribute.file, "attributes", attribute.name, attribute.definition.entity
        )
    ]
    names = {str(attribute.definition.event) for attribute, _, _ in uses}
    missing = absent_values(warehouse.table("events"), "name", names)
    problems = []
    for attribute, document, path in uses:
        event = str(attribute.definition.event)
        if event in missing:
            problems.append(
                _warning(
                    f"attribute {attribute.name!r}: {_no_event(event, missing[event])}",
                    document.location((*path, "event")),
                    _event_hint(missing[event]),
                )
            )
    return problems


def _empty_cohorts(
    warehouse: Warehouse,
    project: Project,
    now: datetime,
    newest: datetime | None,
    documents: dict[str, LocatedDocument | None],
    *,
    people: bool,
) -> list[DefinitionError]:
    """Cohorts nobody is in as of now (cohorts of people only once there are people)."""
    from closeloop.data.compiler import cohort_members
    from closeloop.services.data import STALE_AFTER

    problems = []
    for cohort in project.cohorts.values():
        if Entity(cohort.definition.target) == Entity.PERSON and not people:
            continue
        if _count(cohort_members(cohort, warehouse, now, project.catalog)):
            continue
        hint = "see what each condition matches with `closeloop explain`"
        if newest is not None and newest < now - STALE_AFTER:
            hint = (
                f"the newest event is from {newest:%Y-%m-%d}; see who it matched then: "
                f"closeloop cohort {_quoted(cohort.name)} --at {newest:%Y-%m-%d}"
            )
        for document, path in _item(documents, cohort.file, "cohorts", cohort.name):
            problems.append(
                _warning(
                    f"cohort {cohort.name!r} matches nobody now ({now:%Y-%m-%d %H:%M} UTC)",
                    document.location((*path, "criteria")),
                    hint,
                )
            )
    return problems


def _count(table: ir.Table) -> int:
    return int(table.count().to_pyarrow().as_py())


_CHECKED_TABLES = ("accounts", "people", "events")


def _may_have_data(url: str, sources: Mapping[str, object]) -> bool:
    """False for a DuckDB file that does not exist yet (connecting would create it), an
    in-memory DuckDB, or a DuckDB file whose own tables show there is nothing to check: one of
    accounts, people and events missing, or no account (the checks below would find the same
    through Ibis, at the cost of loading it). Other warehouses, tables read in place and a file
    DuckDB cannot open read-only are asked through the warehouse."""
    parsed = urlparse(url)
    if parsed.scheme != "duckdb":
        return True
    database = parsed.netloc + parsed.path
    if not database or database == ":memory:" or not Path(database).is_file():
        return False
    if any(name in sources for name in _CHECKED_TABLES):
        return True
    found = tables_with_rows(url, _CHECKED_TABLES)
    return found is None or (len(found) == len(_CHECKED_TABLES) and found["accounts"])


# -- where each expression is -----------------------------------------------------------------


def _sites(project: Project, documents: dict[str, LocatedDocument | None]) -> Iterator[_Site]:
    for cohort in project.cohorts.values():
        for document, path in _item(documents, cohort.file, "cohorts", cohort.name):
            target = Entity(cohort.definition.target)
            yield _Site(cohort.criteria, target, document, (*path, "criteria"))
    for stage in project.stages.values():
        for document, path in _item(documents, stage.file, "stages", stage.name):
            yield _Site(stage.entry, Entity.ACCOUNT, document, (*path, "entry"))
            for index, objective in enumerate(stage.objectives):
                where = (*path, "objectives", index, "completion")
                yield _Site(objective.completion, Entity.ACCOUNT, document, where)
            for index, marker in enumerate(stage.markers):
                where = (*path, "markers", index, "criteria")
                yield _Site(marker.criteria, Entity.ACCOUNT, document, where)
    for job in project.jobs.values():
        target = Entity(job.definition.target)
        for document, path in _item(documents, job.file, "jobs", job.name):
            yield _Site(job.audience, target, document, (*path, "audience"))
            yield _Site(job.goal, target, document, (*path, "goal"))
            for index, exclusion in enumerate(job.exclusions):
                yield _Site(exclusion, target, document, (*path, "exclusions", index))
    for attribute in project.attributes.values():
        if attribute.people is None:
            continue
        entity = attribute.definition.entity
        for document, path in _item(
            documents, attribute.file, "attributes", attribute.name, entity
        ):
            yield _Site(attribute.people, Entity.PERSON, document, (*path, "people"))


def _item(
    documents: dict[str, LocatedDocument | None],
    file: str,
    kind: str,
    name: str,
    entity: str | None = None,
) -> Iterator[tuple[LocatedDocument, PathKey]]:
    """The document and path of the item of ``kind`` called ``name`` in ``file`` (an attribute
    also by its entity): nothing when the file no longer has it. ``documents`` caches files."""
    if file not in documents:
        try:
            documents[file] = load_located_yaml(Path(file))
        except (OSError, ValueError):
            documents[file] = None
    document = documents[file]
    if document is None:
        return
    items = document.data.get(kind) if isinstance(document.data, dict) else None
    for index, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict) or item.get("name") != name:
            continue
        if entity is not None and item.get("entity", "account") != str(entity):
            continue
        yield document, (kind, index)
        return


def _location(site: _Site, span: Span, name: str = "") -> SourceLocation:
    """Where ``span`` of the site's expression is in its file (as the loader parsed it: a block
    scalar's text keeps its indentation, so its columns are the file's); at ``name`` when it
    follows on the same line (the quoted event inside ``count(event "…")``)."""
    line, column, block = site.document.value_start(site.path)
    at_line = line + span.line - 1
    at_column = span.column if block or span.line > 1 else span.column + column - 1
    lines = site.document.lines
    source = lines[at_line - 1] if 0 < at_line <= len(lines) else None
    found = source.find(name, at_column - 1) if source is not None and name else -1
    if found >= 0:
        at_column = found + 1
    return SourceLocation(at_line, at_column, site.document.file, source)


def _warning(message: str, location: SourceLocation | None, hint: str) -> DefinitionError:
    return DefinitionError(message, location, hint, severity="warning")


def _position(problem: DefinitionError) -> tuple[str, int, int]:
    where = problem.location
    if where is None:
        return ("\uffff", 0, 0)
    return (where.file or "", where.line, where.column)
