"""Load a project folder (``closeloop.yaml`` + definition files) into validated definitions.

Every problem is collected and reported at once with file:line:column, the way a compiler does:
first each file and each definition on its own, then every expression against the project's
vocabulary (attributes, cohorts, stages, jobs), then the rules that span definitions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from closeloop.channels.base import RenderContext, StepModel
from closeloop.channels.registry import action_kind
from closeloop.channels.templates import TemplateSet
from closeloop.definitions.builtins import BUILTIN_ACCOUNT_ATTRIBUTES
from closeloop.definitions.catalog import (
    TEMPLATES_DIR,
    Catalog,
    LoadedAttribute,
    LoadedCohort,
    LoadedHealthMeasure,
    LoadedHealthScore,
    LoadedHealthSegment,
    LoadedJob,
    LoadedMarker,
    LoadedObjective,
    LoadedStage,
    Project,
    content_hash,
)
from closeloop.definitions.expressions import (
    Attribute,
    AttributeType,
    Comparator,
    Comparison,
    Entity,
    EventCount,
    Expression,
    HasValue,
    Literal,
    LiteralKind,
    Membership,
    MembershipKind,
    Operand,
    PeopleCount,
    Vocabulary,
    check_expression,
    memberships,
    parse_expression,
    referenced_attributes,
    referenced_events,
)
from closeloop.definitions.loader import Found, Loader
from closeloop.definitions.located_yaml import LocatedDocument, PathKey
from closeloop.definitions.models import (
    AttributesFile,
    CohortDefinition,
    CohortsFile,
    ComputedAttribute,
    EnrollStep,
    EventFunction,
    HealthFile,
    HealthScoreDefinition,
    JobDefinition,
    JobsFile,
    ProjectConfig,
    RollupFunction,
    StageDefinition,
    StagesFile,
    WaitStep,
)
from closeloop.definitions.rules import conjuncts, find_cycle, implies, threshold
from closeloop.errors import DefinitionError, DefinitionErrors, ExpressionError

PROJECT_FILE = "closeloop.yaml"
# Each kind of definition file: its file model, item model and the expression fields of an item
# (checked even when the item does not validate). Attributes first: the others may use them.
_KINDS: dict[str, tuple[type[BaseModel], type[BaseModel], tuple[str, ...]]] = {
    "attributes": (AttributesFile, ComputedAttribute, ("people",)),
    "cohorts": (CohortsFile, CohortDefinition, ("criteria",)),
    "stages": (StagesFile, StageDefinition, ("entry", "objectives.completion", "markers.criteria")),
    "jobs": (JobsFile, JobDefinition, ("audience", "goal", "exclusions")),
}
_TIMES = (AttributeType.TIMESTAMP, AttributeType.DATE)

__all__ = [
    "PROJECT_FILE",
    "TEMPLATES_DIR",
    "Catalog",
    "LoadedAttribute",
    "LoadedCohort",
    "LoadedJob",
    "LoadedMarker",
    "LoadedObjective",
    "LoadedStage",
    "Project",
    "content_hash",
    "load_project",
]


def load_project(
    folder: Path,
    account_attributes: Mapping[str, AttributeType],
    person_attributes: Mapping[str, AttributeType],
) -> Project:
    """Load and validate the project in ``folder``; raise :class:`DefinitionErrors` with them all.

    ``account_attributes`` and ``person_attributes`` are the stored attributes expressions may use
    (the data layer knows them); computed attributes are added from the project. Warnings alone
    do not fail: they are returned on the project.
    """
    loader = Loader(folder, account_attributes, person_attributes)
    config_doc = loader.load(folder / PROJECT_FILE)
    config = loader.validate(ProjectConfig, config_doc) if config_doc else None
    if config is None or config_doc is None:
        raise DefinitionErrors(_in_file_order(loader.errors))

    found = {
        kind: loader.items(loader.files(config, config_doc, kind), kind, *spec)
        for kind, spec in _KINDS.items()
    }
    attribute_items, cohort_items = found["attributes"], found["cohorts"]
    stage_items, job_items = found["stages"], found["jobs"]
    health_items = loader.items(
        loader.files(config, config_doc, "health"),
        "health_scores",
        HealthFile,
        HealthScoreDefinition,
        ("segments.when",),  # measures may be numbers: checked once the score validates
    )

    catalog = Catalog(
        account_attributes=account_attributes,
        person_attributes=person_attributes,
        cohorts={},
        stages={},
        job_targets={found.model.name: Entity(found.model.target) for found in job_items},
    )
    attributes = _attributes(loader, attribute_items, catalog)
    # Names first (so references resolve in any order), expressions second.
    stub = Catalog(
        account_attributes=account_attributes,
        person_attributes=person_attributes,
        attributes=attributes,
        cohorts={f.model.name: _placeholder_cohort(f.model) for f in cohort_items},
        stages={f.model.name: _placeholder_stage(f.model) for f in stage_items},
        job_targets=catalog.job_targets,
    )
    vocabulary = _with_invalid_names(stub.vocabulary, loader)
    loader.check_deferred(vocabulary)
    rollups = _rollup_filters(loader, attribute_items, vocabulary)
    attributes = {
        key: LoadedAttribute(a.definition, a.type, rollups.get(key), a.content_hash, a.file)
        for key, a in attributes.items()
    }
    cohorts = _cohorts(loader, cohort_items, vocabulary)
    stages = _stages(loader, stage_items, vocabulary)
    jobs = _jobs(loader, job_items, vocabulary)
    health_scores = _health_scores(loader, health_items, vocabulary)
    _goals_on_health_inputs(loader, job_items, health_scores, attributes)
    _enroll_targets(loader, job_items)
    _signal_rules(loader, config_doc, vocabulary)
    _no_cycles(loader, cohorts, stages, attributes)

    errors = [error for error in loader.errors if error.severity == "error"]
    if errors:
        raise DefinitionErrors(_in_file_order(loader.errors))
    final = Catalog(
        account_attributes=account_attributes,
        person_attributes=person_attributes,
        attributes=attributes,
        cohorts=cohorts,
        stages=stages,
        job_targets=catalog.job_targets,
    )
    return Project(
        folder=folder,
        config=config,
        jobs=jobs,
        catalog=final,
        warnings=tuple(_in_file_order(loader.errors)),
        health_scores=health_scores,
    )


def _in_file_order(problems: list[DefinitionError]) -> list[DefinitionError]:
    """Problems by file, line and column (as a reader meets them); unlocated ones last."""

    def position(problem: DefinitionError) -> tuple[int, str, int, int]:
        where = problem.location
        if where is None:
            return (1, "", 0, 0)
        return (0, where.file or "", where.line, where.column)

    return sorted(problems, key=position)


def _with_invalid_names(vocabulary: Vocabulary, loader: Loader) -> Vocabulary:
    """The vocabulary plus the names of definitions that failed validation (already reported)."""
    invalid = loader.invalid_names
    return dataclasses.replace(
        vocabulary,
        cohorts={**invalid.get("cohorts", {}), **vocabulary.cohorts},
        stages=vocabulary.stages | set(invalid.get("stages", {})),
        jobs={**invalid.get("jobs", {}), **vocabulary.jobs},
    )


def _placeholder_cohort(definition: CohortDefinition) -> LoadedCohort:
    return LoadedCohort(definition, _TRUE, "", "")


def _placeholder_stage(definition: StageDefinition) -> LoadedStage:
    return LoadedStage(definition, _TRUE, (), (), "", "")


_TRUE: Expression = parse_expression("1 = 1")


# -- computed attributes ------------------------------------------------------------------------

_EVENT_TYPES = {
    EventFunction.COUNT: AttributeType.NUMBER,
    EventFunction.SUM: AttributeType.NUMBER,
    EventFunction.EXISTS: AttributeType.BOOLEAN,
    EventFunction.FIRST: AttributeType.TIMESTAMP,
    EventFunction.LAST: AttributeType.TIMESTAMP,
}


def _attributes(
    loader: Loader, items: list[Found], catalog: Catalog
) -> dict[tuple[Entity, str], LoadedAttribute]:
    """Type every computed attribute, dependencies first; report unknown or ill-typed inputs."""
    by_key: dict[tuple[Entity, str], Found] = {}
    for found in items:
        definition: ComputedAttribute = found.model
        entity = Entity(definition.entity)
        stored = (
            catalog.account_attributes if entity == Entity.ACCOUNT else catalog.person_attributes
        )
        if definition.name in stored:
            loader.fail(
                f"{definition.name!r} is already a stored {entity} attribute",
                found,
                ("name",),
                "pick another name for the computed attribute",
            )
            continue
        if entity == Entity.ACCOUNT and definition.name in BUILTIN_ACCOUNT_ATTRIBUTES:
            loader.warn(
                f"{definition.name!r} is also a built-in account attribute: this definition "
                "takes precedence in every expression",
                found,
                ("name",),
                "rename it to use the built-in (docs/expressions.md, Outcome attributes)",
            )
        by_key[(entity, definition.name)] = found
    types: dict[tuple[Entity, str], AttributeType] = {}
    visiting: set[tuple[Entity, str]] = set()

    def type_of(entity: Entity, name: str) -> AttributeType | None:
        stored = (
            catalog.account_attributes if entity == Entity.ACCOUNT else catalog.person_attributes
        )
        if name in stored:
            return stored[name]
        key = (entity, name)
        if key in types:
            return types[key]
        if key not in by_key and entity == Entity.ACCOUNT:
            return BUILTIN_ACCOUNT_ATTRIBUTES.get(name)
        if key not in by_key or key in visiting:
            return None  # unknown, or a cycle (reported below)
        visiting.add(key)
        found = by_key[key]
        result = compute(found.model, found)
        visiting.discard(key)
        if result is not None:
            types[key] = result
        return result

    def needs(
        found: Found, field_name: str, entity: Entity, name: str, kinds: tuple[Any, ...]
    ) -> AttributeType | None:
        kind = type_of(entity, name)
        if kind is None:
            known = sorted(
                {
                    *(
                        catalog.account_attributes
                        if entity == Entity.ACCOUNT
                        else catalog.person_attributes
                    ),
                    *(n for e, n in by_key if e == entity),
                    *(BUILTIN_ACCOUNT_ATTRIBUTES if entity == Entity.ACCOUNT else ()),
                }
            )
            loader.fail(
                f"{field_name}: unknown {entity} attribute {name!r} (or a cycle of attributes)",
                found,
                (field_name,) if field_name != "ratio" else ("ratio",),
                f"known {entity} attributes: {', '.join(known)}",
            )
            return None
        if kind not in kinds:
            loader.fail(
                f"{field_name}: {name!r} is a {kind}, expected {' or '.join(kinds)}",
                found,
                (field_name,),
            )
            return None
        return kind

    def compute(definition: ComputedAttribute, found: Found) -> AttributeType | None:
        entity = Entity(definition.entity)
        if definition.event is not None:
            assert definition.function is not None
            return _EVENT_TYPES[definition.function]
        if definition.rollup is not None:
            if definition.of is None:
                return AttributeType.NUMBER
            numeric = definition.rollup in (RollupFunction.SUM, RollupFunction.AVG)
            kinds = (AttributeType.NUMBER,) if numeric else (AttributeType.NUMBER, *_TIMES)
            return needs(found, "of", Entity.PERSON, definition.of, kinds)
        if definition.days_since is not None:
            ok = needs(found, "days_since", entity, definition.days_since, _TIMES)
            return AttributeType.NUMBER if ok else None
        assert definition.ratio is not None
        ok_top = needs(found, "ratio", entity, definition.ratio.numerator, (AttributeType.NUMBER,))
        ok_bottom = needs(
            found, "ratio", entity, definition.ratio.denominator, (AttributeType.NUMBER,)
        )
        return AttributeType.NUMBER if ok_top and ok_bottom else None

    loaded = {}
    for key, found in by_key.items():
        kind = type_of(*key)
        if kind is not None:
            loaded[key] = LoadedAttribute(
                found.model, kind, None, content_hash(found.model), found.document.file
            )
    return loaded


def _rollup_filters(
    loader: Loader, items: list[Found], vocabulary: Vocabulary
) -> dict[tuple[Entity, str], Expression]:
    filters = {}
    for found in items:
        definition: ComputedAttribute = found.model
        if definition.people is None:
            continue
        parsed = loader.parse(
            definition.people, found.document, (*found.path, "people"), vocabulary, Entity.PERSON
        )
        if parsed is not None:
            filters[(Entity(definition.entity), definition.name)] = parsed
    return filters


# -- cohorts, stages, jobs ----------------------------------------------------------------------


def _cohorts(loader: Loader, items: list[Found], vocabulary: Vocabulary) -> dict[str, LoadedCohort]:
    cohorts = {}
    for found in items:
        definition: CohortDefinition = found.model
        criteria = loader.parse(
            definition.criteria,
            found.document,
            (*found.path, "criteria"),
            vocabulary,
            Entity(definition.target),
        )
        if criteria is not None:
            cohorts[definition.name] = LoadedCohort(
                definition, criteria, content_hash(definition), found.document.file
            )
    return cohorts


def _stages(loader: Loader, items: list[Found], vocabulary: Vocabulary) -> dict[str, LoadedStage]:
    stages = {}
    for found in items:
        definition: StageDefinition = found.model
        before = len(loader.errors)
        entry = loader.parse(definition.entry, found.document, (*found.path, "entry"), vocabulary)
        objectives = []
        for index, objective in enumerate(definition.objectives):
            where = (*found.path, "objectives", index, "completion")
            parsed = loader.parse(objective.completion, found.document, where, vocabulary)
            if parsed is not None:
                objectives.append(LoadedObjective(objective, parsed))
        markers = []
        for index, marker in enumerate(definition.markers):
            where = (*found.path, "markers", index, "criteria")
            parsed = loader.parse(marker.criteria, found.document, where, vocabulary)
            if parsed is not None:
                markers.append(LoadedMarker(marker, parsed))
        if definition.entered_at is not None:
            kind = vocabulary.account.get(definition.entered_at)
            if kind not in _TIMES:
                loader.fail(
                    f"entered_at: {definition.entered_at!r} is not a date or time attribute of "
                    "accounts",
                    found,
                    ("entered_at",),
                    "e.g. entered_at: signup_date",
                )
        elif entry is not None and definition.exit.after_days is not None and not _datable(entry):
            loader.warn(
                f"stage {definition.name!r} exits after {definition.exit.after_days:g} days, but "
                "when an account entered cannot be told from its entry criteria",
                found,
                ("entry",),
                "add `entered_at: <date attribute>`, or enter on an event count "
                '(count(event "x") >= 1) or on another stage',
            )
        if not loader.has_errors_since(before) and entry is not None:
            stages[definition.name] = LoadedStage(
                definition,
                entry,
                tuple(objectives),
                tuple(markers),
                content_hash(definition),
                found.document.file,
            )
    return stages


def _signal_rules(loader: Loader, config_doc: LocatedDocument, vocabulary: Vocabulary) -> None:
    """Check the expressions written in closeloop.yaml's ``signals:`` (the defaults use
    built-in attributes only)."""
    signals = config_doc.data.get("signals") if isinstance(config_doc.data, dict) else None
    renewal = signals.get("renewal_risk") if isinstance(signals, dict) else None
    risk = renewal.get("risk") if isinstance(renewal, dict) else None
    if isinstance(risk, str) and risk.strip():
        loader.parse(risk, config_doc, ("signals", "renewal_risk", "risk"), vocabulary)


def _datable(expression: Expression) -> bool:
    """Whether the compiler can date when ``expression`` first held (see data.compiler)."""
    for part in conjuncts(expression):
        if isinstance(part, Membership) and part.kind != MembershipKind.COHORT:
            return True
        if _is_threshold(part):
            return True
    return False


def _is_threshold(node: Expression) -> bool:
    found = threshold(node)
    return found is not None and found[0].window_days is None and not found[0].filters


def _jobs(loader: Loader, items: list[Found], vocabulary: Vocabulary) -> dict[str, LoadedJob]:
    jobs = {}
    for found in items:
        definition: JobDefinition = found.model
        scope = Entity(definition.target)
        before = len(loader.errors)

        def parse(
            text: str, key: PathKey, found: Found = found, scope: Entity = scope
        ) -> Expression | None:
            return loader.parse(text, found.document, (*found.path, *key), vocabulary, scope)

        audience = parse(definition.audience, ("audience",))
        exclusions = [
            parse(text, ("exclusions", index)) for index, text in enumerate(definition.exclusions)
        ]
        goal = parse(definition.goal, ("goal",))
        if audience is not None and goal is not None and implies(audience, goal):
            loader.fail(
                "the goal is already true for everyone in the audience: every account would "
                "complete the moment it enters",
                found,
                ("goal",),
                "make the audience require that the goal is not yet reached, e.g. "
                '`count(event "x") = 0` for the goal `count(event "x") >= 1`',
            )
        _check_actions(loader, found, definition)
        if definition.hypothesis is None and not definition.observational:
            loader.warn(
                f"job {definition.name!r} has no hypothesis",
                found,
                ("name",),
                "write down the expected effect and primary metric before launch "
                "(`hypothesis:`); they lock when the job launches",
            )
        if loader.has_errors_since(before):
            continue
        assert audience is not None and goal is not None
        jobs[definition.name] = LoadedJob(
            definition=definition,
            audience=audience,
            exclusions=tuple(e for e in exclusions if e is not None),
            goal=goal,
            content_hash=content_hash(definition),
            file=found.document.file,
        )
    return jobs


def _check_actions(loader: Loader, found: Found, definition: JobDefinition) -> None:
    """Each action's own checks (its templates exist and render for a sample unit), reported at
    the step, or at the step's field the problem names."""
    templates = TemplateSet(loader.folder / TEMPLATES_DIR)
    for key, arm, index, step in _action_steps(definition):
        sample = _sample_context(loader, definition, arm, index)
        for problem in action_kind(step).check(step, templates, sample):
            loader.fail(
                problem,
                found,
                (*key, *_field_named(step, problem)),
                f"templates live in {TEMPLATES_DIR}/ and may use account, contact, contacts, "
                "job and unsubscribe_url; validation renders them for a sample account",
            )


def _enroll_targets(loader: Loader, items: list[Found]) -> None:
    """An ``enroll`` action names another job of the project."""
    names = {found.model.name for found in items}
    for found in items:
        definition: JobDefinition = found.model
        for key, _, _, step in _action_steps(definition):
            if not isinstance(step, EnrollStep):
                continue
            if step.job == definition.name:
                loader.fail(
                    "a job cannot enroll units into itself",
                    found,
                    (*key, "job"),
                    "name another job",
                )
            elif step.job not in names:
                known = ", ".join(sorted(names - {definition.name})) or "none"
                loader.fail(
                    f"enroll names job {step.job!r}, which the project does not have",
                    found,
                    (*key, "job"),
                    f"jobs: {known}",
                )


def _action_steps(definition: JobDefinition) -> Iterator[tuple[PathKey, str, int, StepModel]]:
    """Every action of a job with its YAML path, arm and step index: steps (the job's or each
    variant's), then ``on_completion`` and ``on_exit``."""
    arm = definition.arms[0]
    for index, step in enumerate(definition.steps):
        if not isinstance(step, WaitStep):
            yield ("steps", index), arm, index, step
    for number, variant in enumerate(definition.variants):
        for index, step in enumerate(variant.steps):
            if not isinstance(step, WaitStep):
                yield ("variants", number, "steps", index), variant.name, index, step
    for key in ("on_completion", "on_exit"):
        action: StepModel
        for index, action in enumerate(getattr(definition, key)):
            yield (key, index), arm, index, action


def _field_named(step: StepModel, problem: str) -> PathKey:
    """The field of ``step`` a problem is about, so the caret lands on it: an inline template's
    label ends in its field name (``… subject:1: …``), a template file's name starts with the
    field's value (``welcome.txt.j2``, ``template 'welcome' not found``)."""
    for name, value in step:
        if name == "send" or not isinstance(value, str):
            continue
        if f" {name}:" in problem or f"{value!r}" in problem or f" {value}." in problem:
            return (name,)
    return ()


# Sample attribute values by type, for accounts and people of the sample unit.
_SAMPLE_VALUES: dict[AttributeType, Any] = {
    AttributeType.STRING: "sample",
    AttributeType.NUMBER: 1,
    AttributeType.BOOLEAN: True,
    AttributeType.DATE: date(2025, 1, 1),
    AttributeType.TIMESTAMP: datetime(2025, 1, 1, 9, 0, tzinfo=UTC),
}
_SAMPLE_ACCOUNT: dict[str, Any] = {
    "account_id": "sample-account",
    "name": "Sample Co",
    "segment": "mid-market",
    "plan": "pro",
    "owner": "Sam Owner",
    "arr": 12000.0,
    "domain": "example.com",
    "region": "emea",
    "industry": "software",
    "employees": 120,
}
_SAMPLE_CONTACT: dict[str, Any] = {
    "person_id": "sample-person",
    "email": "sam@example.com",
    "name": "Sam Sample",
    "role": "admin",
}


def _sample_context(
    loader: Loader, definition: JobDefinition, arm: str, index: int
) -> RenderContext:
    """What a template sees for a typical unit: every stored attribute has a value."""
    account = {name: _SAMPLE_VALUES[kind] for name, kind in loader.account_attributes.items()}
    contact = {name: _SAMPLE_VALUES[kind] for name, kind in loader.person_attributes.items()}
    contact |= {**_SAMPLE_CONTACT, "account_id": _SAMPLE_ACCOUNT["account_id"]}
    person = Entity(definition.target) == Entity.PERSON
    return RenderContext(
        job_name=definition.name,
        step_index=index,
        enrollment_id="sample-enrollment",
        idempotency_key="sample",
        arm=arm,
        account=account | _SAMPLE_ACCOUNT,
        contacts=(contact,),
        person_id=_SAMPLE_CONTACT["person_id"] if person else None,
        unsubscribe_url="https://example.com/unsubscribe?token=sample",
        at=datetime(2025, 1, 1, 9, 0, tzinfo=UTC),
    )


def _no_cycles(
    loader: Loader,
    cohorts: Mapping[str, LoadedCohort],
    stages: Mapping[str, LoadedStage],
    attributes: Mapping[tuple[Entity, str], LoadedAttribute],
) -> None:
    """Cohorts and stages are expanded where they are used, so they must not refer in a circle."""
    graph: dict[str, set[str]] = {}
    computed = {name for _, name in attributes}

    def refs(expression: Expression) -> set[str]:
        found = {
            f"{kind} {name!r}"
            for kind, name in memberships(expression)
            if kind != MembershipKind.JOB
        }
        return found | {
            f"attribute {name!r}" for name in referenced_attributes(expression) & computed
        }

    for cohort in cohorts.values():
        graph[f"cohort {cohort.name!r}"] = refs(cohort.criteria)
    for stage in stages.values():
        found = refs(stage.entry)
        for objective in stage.objectives:
            found |= refs(objective.completion)
        graph[f"stage {stage.name!r}"] = found
    for attribute in attributes.values():
        if attribute.people is not None:
            graph[f"attribute {attribute.name!r}"] = refs(attribute.people)
    cycle = find_cycle(graph)
    if cycle is not None:
        loader.errors.append(
            DefinitionError(
                "definitions refer to each other in a circle: " + " -> ".join(cycle),
                hint="break the circle: a cohort or stage cannot depend on itself",
            )
        )


# -- health scores ------------------------------------------------------------------------------


def _health_scores(
    loader: Loader, items: list[Found], vocabulary: Vocabulary
) -> dict[str, LoadedHealthScore]:
    """Each score's measures typed (a number or true/false), ranges where numbers need them,
    segment conditions parsed and their weights naming the score's measures."""
    scores = {}
    for found in items:
        definition: HealthScoreDefinition = found.model
        before = len(loader.errors)
        measures = []
        for index, measure in enumerate(definition.measures):
            loaded = _health_measure(loader, found, index, vocabulary)
            if loaded is None:
                continue
            if loaded.number is not None and measure.range is None:
                loader.fail(
                    f"measure {measure.name!r} is a number and needs `range: [low, high]` "
                    "to scale it to 0..100",
                    found,
                    ("measures", index, "expression"),
                    "e.g. range: [0, 20] (low scores 0, high 100, values outside are clamped)",
                )
            elif loaded.condition is not None and measure.range is not None:
                loader.fail(
                    f"measure {measure.name!r} is true/false: `range` applies to numbers only",
                    found,
                    ("measures", index, "range"),
                    "remove `range` (true scores 100, false 0; reversed for lower_is_better)",
                )
            measures.append(loaded)
        names = [measure.name for measure in definition.measures]
        segments = []
        for index, segment in enumerate(definition.segments):
            where = (*found.path, "segments", index)
            when = loader.parse(segment.when, found.document, (*where, "when"), vocabulary)
            for name in segment.weights:
                if name not in names:
                    loader.errors.append(
                        DefinitionError(
                            f"segments.{index}.weights: {name!r} is not a measure of "
                            f"{definition.name!r}",
                            found.document.location((*where, "weights", name), key=True),
                            hint=f"measures: {', '.join(names)}",
                        )
                    )
            weights = {m.name: segment.weights.get(m.name, m.weight) for m in definition.measures}
            if not any(weights.values()):
                loader.fail(
                    "every measure has weight 0 for this segment: no score can be computed",
                    found,
                    ("segments", index, "weights"),
                    "give at least one measure a positive weight",
                )
            if when is not None:
                segments.append(LoadedHealthSegment(segment, when))
        if not loader.has_errors_since(before):
            scores[definition.name] = LoadedHealthScore(
                definition,
                tuple(measures),
                tuple(segments),
                content_hash(definition),
                found.document.file,
            )
    return scores


def _health_measure(
    loader: Loader, found: Found, index: int, vocabulary: Vocabulary
) -> LoadedHealthMeasure | None:
    """A measure's expression as a true/false condition, else as a number operand.

    The language's expressions are conditions; a number (``count(event "x")``, ``arr``) is an
    operand, parsed as the left side of a comparison appended after the text, so positions in
    the text stay where they are.
    """
    definition = found.model.measures[index]
    where = (*found.path, "measures", index, "expression")
    document = found.document
    line, column, block = document.value_start(where)
    text = definition.expression
    if block:
        text = "\n".join(" " * (column - 1) + part for part in text.splitlines())
        column = 1
    place: dict[str, Any] = {"file": document.file, "line": line, "column": column}
    try:
        condition = parse_expression(text, **place)
    except ExpressionError as not_a_condition:
        try:
            parsed = parse_expression(f"{text} = 0", **place)
        except ExpressionError:
            loader.errors.append(not_a_condition)
            return None
        if not isinstance(parsed, Comparison):
            loader.errors.append(not_a_condition)
            return None
        return _health_operand(loader, found, index, vocabulary, parsed.left, text, place)
    try:
        check_expression(condition, vocabulary, text=text, **place)
    except ExpressionError as error:
        loader.errors.append(error)
        return None
    return LoadedHealthMeasure(definition, None, condition)


def _health_operand(
    loader: Loader,
    found: Found,
    index: int,
    vocabulary: Vocabulary,
    operand: Operand,
    text: str,
    place: dict[str, Any],
) -> LoadedHealthMeasure | None:
    """A measure that is a single operand: a number, or a true/false attribute."""
    definition = found.model.measures[index]
    kind: AttributeType | None = None
    if isinstance(operand, EventCount | PeopleCount):
        kind = AttributeType.NUMBER
        probe: Expression = Comparison(operand, Comparator.GE, Literal(0.0, LiteralKind.NUMBER))
    elif isinstance(operand, Attribute):
        resolved = vocabulary.resolve(operand, Entity.ACCOUNT)
        kind = resolved[1] if resolved is not None else None
        probe = HasValue(operand, present=True)
    else:
        probe = Comparison(operand, Comparator.EQ, operand)
    try:
        check_expression(probe, vocabulary, text=text, **place)
    except ExpressionError as error:
        loader.errors.append(error)
        return None
    if kind == AttributeType.NUMBER:
        return LoadedHealthMeasure(definition, operand, None)
    if kind == AttributeType.BOOLEAN:
        truth = Literal(True, LiteralKind.BOOLEAN)
        return LoadedHealthMeasure(definition, None, Comparison(operand, Comparator.EQ, truth))
    described = f"a {kind}" if kind is not None else "neither a number nor true/false"
    loader.fail(
        f"measures.{index}.expression: {definition.expression.strip()!r} is {described}; a "
        "measure is a number or a true/false condition",
        found,
        ("measures", index, "expression"),
        'e.g. count(event "login" in last 30 days), days_since_last_login, or nps >= 9',
    )
    return None


def _goals_on_health_inputs(
    loader: Loader,
    job_items: list[Found],
    scores: Mapping[str, LoadedHealthScore],
    attributes: Mapping[tuple[Entity, str], LoadedAttribute],
) -> None:
    """Warn on a job whose goal is an input of a health score: moving the input moves the score
    by construction, which says nothing about the customer's outcome."""
    if not scores:
        return
    events_of = {
        name: attribute.definition.event
        for (_, name), attribute in attributes.items()
        if attribute.definition.event is not None
    }

    def reads(names: set[str], events: set[str]) -> set[str]:
        expanded = {f"attribute {name}" for name in names}
        expanded |= {f"event {event}" for event in events}
        return expanded | {f"event {events_of[name]}" for name in names if name in events_of}

    inputs: dict[str, set[str]] = {}
    for score in scores.values():
        for measure in score.measures:
            inputs[score.name] = inputs.get(score.name, set()) | reads(*measure.inputs())
    for found in job_items:
        definition: JobDefinition = found.model
        try:
            goal = parse_expression(definition.goal)
        except ExpressionError:
            continue  # reported with the job
        goal_reads = reads(referenced_attributes(goal), referenced_events(goal))
        for name, used in inputs.items():
            shared = sorted(goal_reads & used)
            if shared:
                loader.warn(
                    f"improving an input of health score {name!r} is not an outcome: the goal "
                    f"of job {definition.name!r} reads {', '.join(shared)}, which the score uses",
                    found,
                    ("goal",),
                    "aim the job at an outcome (renewal, expansion, a stage completed) and "
                    "watch the score move, rather than at the score's inputs",
                )
