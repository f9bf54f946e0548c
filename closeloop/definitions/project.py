"""Load a project folder (``closeloop.yaml`` + definition files) into validated definitions.

Every problem is collected and reported at once with file:line:column, the way a compiler does:
first each file and each definition on its own, then every expression against the project's
vocabulary (attributes, cohorts, stages, jobs), then the rules that span definitions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from closeloop.definitions.expressions import (
    AttributeType,
    Entity,
    Expression,
    Membership,
    MembershipKind,
    Vocabulary,
    check_expression,
    memberships,
    parse_expression,
    referenced_attributes,
)
from closeloop.definitions.located_yaml import LocatedDocument, PathKey, load_located_yaml
from closeloop.definitions.models import (
    AttributesFile,
    CohortDefinition,
    CohortsFile,
    ComputedAttribute,
    EmailStep,
    EventFunction,
    JobDefinition,
    JobsFile,
    Marker,
    Objective,
    ProjectConfig,
    RollupFunction,
    StageDefinition,
    StagesFile,
)
from closeloop.definitions.rules import conjuncts, find_cycle, implies, threshold
from closeloop.errors import DefinitionError, DefinitionErrors, ExpressionError

PROJECT_FILE = "closeloop.yaml"
M = TypeVar("M", bound=BaseModel)
TEMPLATES_DIR = "templates"
_TIMES = (AttributeType.TIMESTAMP, AttributeType.DATE)


def content_hash(model: BaseModel) -> str:
    """A stable hash of a definition's content (what versioning and enrollments record)."""
    canonical = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LoadedAttribute:
    definition: ComputedAttribute
    type: AttributeType
    people: Expression | None  # the rollup's person filter
    content_hash: str
    file: str

    @property
    def name(self) -> str:
        return self.definition.name


@dataclass(frozen=True)
class LoadedCohort:
    definition: CohortDefinition
    criteria: Expression
    content_hash: str
    file: str

    @property
    def name(self) -> str:
        return self.definition.name


@dataclass(frozen=True)
class LoadedObjective:
    definition: Objective
    completion: Expression

    @property
    def name(self) -> str:
        return self.definition.name


@dataclass(frozen=True)
class LoadedMarker:
    definition: Marker
    criteria: Expression

    @property
    def name(self) -> str:
        return self.definition.name


@dataclass(frozen=True)
class LoadedStage:
    definition: StageDefinition
    entry: Expression
    objectives: tuple[LoadedObjective, ...]
    markers: tuple[LoadedMarker, ...]
    content_hash: str
    file: str

    @property
    def name(self) -> str:
        return self.definition.name


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
class Catalog:
    """What expressions can refer to, for the compiler: attributes, cohorts, stages, job targets.

    ``account_attributes`` and ``person_attributes`` are the stored columns the data layer has;
    computed attributes come on top.
    """

    account_attributes: Mapping[str, AttributeType]
    person_attributes: Mapping[str, AttributeType]
    attributes: Mapping[tuple[Entity, str], LoadedAttribute] = field(default_factory=dict)
    cohorts: Mapping[str, LoadedCohort] = field(default_factory=dict)
    stages: Mapping[str, LoadedStage] = field(default_factory=dict)
    job_targets: Mapping[str, Entity] = field(default_factory=dict)

    @property
    def vocabulary(self) -> Vocabulary:
        account = dict(self.account_attributes)
        person = dict(self.person_attributes)
        for (entity, name), attribute in self.attributes.items():
            (account if entity == Entity.ACCOUNT else person)[name] = attribute.type
        return Vocabulary(
            account=account,
            person=person,
            cohorts={name: Entity(c.definition.target) for name, c in self.cohorts.items()},
            stages=frozenset(self.stages),
            jobs=dict(self.job_targets),
        )


@dataclass(frozen=True)
class Project:
    folder: Path
    config: ProjectConfig
    jobs: Mapping[str, LoadedJob]
    catalog: Catalog
    warnings: tuple[DefinitionError, ...] = ()

    @property
    def cohorts(self) -> Mapping[str, LoadedCohort]:
        return self.catalog.cohorts

    @property
    def stages(self) -> Mapping[str, LoadedStage]:
        return self.catalog.stages

    @property
    def attributes(self) -> Mapping[tuple[Entity, str], LoadedAttribute]:
        return self.catalog.attributes

    def job(self, name: str) -> LoadedJob:
        return _named(self.jobs, name, "job")

    def cohort(self, name: str) -> LoadedCohort:
        return _named(self.catalog.cohorts, name, "cohort")

    def stage(self, name: str) -> LoadedStage:
        return _named(self.catalog.stages, name, "stage")

    def template_path(self, name: str, kind: str) -> Path:
        return self.folder / TEMPLATES_DIR / f"{name}.{kind}.j2"

    def definitions(self) -> Iterator[tuple[str, str, str, BaseModel]]:
        """Every definition as (kind, name, content hash, model), for versioning."""
        for attribute in self.catalog.attributes.values():
            name = f"{attribute.definition.entity}.{attribute.name}"
            yield "attribute", name, attribute.content_hash, attribute.definition
        for cohort in self.catalog.cohorts.values():
            yield "cohort", cohort.name, cohort.content_hash, cohort.definition
        for stage in self.catalog.stages.values():
            yield "stage", stage.name, stage.content_hash, stage.definition
        for job in self.jobs.values():
            yield "job", job.name, job.content_hash, job.definition


N = TypeVar("N")


def _named(items: Mapping[str, N], name: str, kind: str) -> N:
    try:
        return items[name]
    except KeyError:
        known = ", ".join(sorted(items)) or "none"
        raise DefinitionError(
            f"no {kind} named {name!r} in this project ({kind}s: {known})"
        ) from None


@dataclass
class _Found:
    """A definition that validated on its own, with where it came from."""

    model: Any
    document: LocatedDocument
    path: PathKey


class _Loader:
    def __init__(
        self,
        folder: Path,
        account_attributes: Mapping[str, AttributeType],
        person_attributes: Mapping[str, AttributeType],
    ) -> None:
        self.folder = folder
        self.account_attributes = account_attributes
        self.person_attributes = person_attributes
        self.errors: list[DefinitionError] = []

    # -- files ------------------------------------------------------------------------------

    def files(
        self, config: ProjectConfig, config_doc: LocatedDocument, kind: str
    ) -> list[LocatedDocument]:
        listed: tuple[str, ...] | None = getattr(config, kind)
        names = listed if listed is not None else (f"{kind}.yaml",)
        documents = []
        for relative in names:
            path = self.folder / relative
            if not path.is_file():
                if listed is not None:
                    self.errors.append(
                        DefinitionError(
                            f"{kind} file {relative!r} does not exist",
                            config_doc.location((kind,)),
                            hint=f"create {path} or remove it from `{kind}:`",
                        )
                    )
                continue
            document = self.load(path)
            if document is not None:
                documents.append(document)
        return documents

    def load(self, path: Path) -> LocatedDocument | None:
        try:
            return load_located_yaml(path)
        except DefinitionError as error:
            self.errors.append(error)
            return None
        except OSError as error:
            self.errors.append(DefinitionError(f"cannot read {path}: {error.strerror}"))
            return None

    def items(
        self,
        documents: list[LocatedDocument],
        key: str,
        file_model: type[BaseModel],
        model: type[M],
        expression_fields: tuple[str, ...],
    ) -> list[_Found]:
        """Validate each item of ``key`` on its own, so one bad item does not hide the others.

        An item whose fields do not validate still has its expressions parsed: every syntax
        problem of the file is reported at once.
        """
        found: list[_Found] = []
        names: dict[str, str] = {}
        for document in documents:
            data = document.data
            items = data.get(key) if isinstance(data, dict) else None
            if not isinstance(items, list):
                self.validate(file_model, document)
                continue
            self.validate(file_model, document, data={**data, key: []})
            for index, item in enumerate(items):
                path: PathKey = (key, index)
                definition = self.validate(model, document, prefix=path, data=item)
                if definition is None:
                    if isinstance(item, dict):
                        self.parse_only(item, document, path, expression_fields)
                    continue
                name = str(definition.name)  # type: ignore[attr-defined]
                if name in names:
                    self.errors.append(
                        DefinitionError(
                            f"{key[:-1]} name {name!r} is used twice",
                            document.location((*path, "name")),
                            hint=f"the first is in {names[name]}; names are unique",
                        )
                    )
                    continue
                names[name] = document.file
                found.append(_Found(definition, document, path))
        return found

    def parse_only(
        self, item: dict[str, Any], document: LocatedDocument, path: PathKey, keys: tuple[str, ...]
    ) -> None:
        for key in keys:
            value = item.get(key)
            texts = value if isinstance(value, list) else [value]
            for number, text in enumerate(texts):
                if isinstance(text, str):
                    where = (*path, key, number) if isinstance(value, list) else (*path, key)
                    self.parse(text, document, where, None)

    def validate(
        self,
        model: type[M],
        document: LocatedDocument,
        *,
        prefix: PathKey = (),
        data: Any = None,
    ) -> M | None:
        try:
            return model.model_validate(document.data if data is None else data)
        except ValidationError as validation:
            for problem in validation.errors():
                path: PathKey = prefix + tuple(
                    part
                    for part in problem["loc"]
                    if isinstance(part, str | int) and part not in _UNION_TAGS
                )
                is_unknown_key = problem["type"] == "extra_forbidden"
                where = ".".join(str(part) for part in path) or "(top level)"
                message = problem["msg"].removeprefix("Value error, ")
                hint = ""
                if is_unknown_key:
                    allowed = _allowed_fields(model, path[len(prefix) :])
                    message = f"unknown field {path[-1]!r}" if path else message
                    hint = f"allowed here: {', '.join(allowed)}" if allowed else ""
                self.errors.append(
                    DefinitionError(
                        f"{where}: {message}",
                        document.location(path, key=is_unknown_key),
                        hint=hint,
                    )
                )
            return None

    # -- expressions ------------------------------------------------------------------------

    def parse(
        self,
        text: str,
        document: LocatedDocument,
        where: PathKey,
        vocabulary: Vocabulary | None,
        scope: Entity = Entity.ACCOUNT,
    ) -> Expression | None:
        """Parse (and, given a vocabulary, type-check) the expression at ``where``."""
        line, column, block = document.value_start(where)
        if block:
            # Block scalars lose their indentation; restore it so columns match the file.
            text = "\n".join(" " * (column - 1) + part for part in text.splitlines())
            column = 1
        try:
            expression = parse_expression(text, file=document.file, line=line, column=column)
            if vocabulary is not None:
                check_expression(
                    expression,
                    vocabulary,
                    text=text,
                    file=document.file,
                    line=line,
                    column=column,
                    scope=scope,
                )
        except ExpressionError as error:
            self.errors.append(error)
            return None
        return expression

    def has_errors_since(self, before: int) -> bool:
        """Whether an error (not a warning) was reported after the first ``before`` problems."""
        return any(error.severity == "error" for error in self.errors[before:])

    def fail(self, message: str, found: _Found, key: PathKey = (), hint: str = "") -> None:
        self.errors.append(
            DefinitionError(message, found.document.location((*found.path, *key)), hint=hint)
        )

    def warn(self, message: str, found: _Found, key: PathKey = (), hint: str = "") -> None:
        self.errors.append(
            DefinitionError(
                message,
                found.document.location((*found.path, *key)),
                hint=hint,
                severity="warning",
            )
        )


_UNION_TAGS = {"EmailStep", "WaitStep", "ReEntryPolicy", "email", "literal['never']"}


def _allowed_fields(model: type[BaseModel], path: PathKey) -> list[str]:
    current: Any = model
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        field_info = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field_info is None:
            return []
        annotation = field_info.annotation
        args = [*getattr(annotation, "__args__", ())]
        for arg in list(args):
            args.extend(getattr(arg, "__args__", ()))
        candidates = [
            a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not candidates:
            return []
        current = candidates[0]
    return sorted(current.model_fields) if hasattr(current, "model_fields") else []


def load_project(
    folder: Path,
    account_attributes: Mapping[str, AttributeType],
    person_attributes: Mapping[str, AttributeType] | None = None,
) -> Project:
    """Load and validate the project in ``folder``; raise :class:`DefinitionErrors` with them all.

    ``account_attributes`` and ``person_attributes`` are the stored attributes expressions may use
    (the data layer knows them); computed attributes are added from the project. Warnings alone
    do not fail: they are returned on the project.
    """
    loader = _Loader(folder, account_attributes, person_attributes or {})
    config_doc = loader.load(folder / PROJECT_FILE)
    config = loader.validate(ProjectConfig, config_doc) if config_doc else None
    if config is None or config_doc is None:
        raise DefinitionErrors(loader.errors)

    attribute_items = loader.items(
        loader.files(config, config_doc, "attributes"),
        "attributes",
        AttributesFile,
        ComputedAttribute,
        ("people",),
    )
    cohort_items = loader.items(
        loader.files(config, config_doc, "cohorts"),
        "cohorts",
        CohortsFile,
        CohortDefinition,
        ("criteria",),
    )
    stage_items = loader.items(
        loader.files(config, config_doc, "stages"),
        "stages",
        StagesFile,
        StageDefinition,
        ("entry",),
    )
    job_items = loader.items(
        loader.files(config, config_doc, "jobs"),
        "jobs",
        JobsFile,
        JobDefinition,
        ("audience", "goal", "exclusions"),
    )

    catalog = Catalog(
        account_attributes=account_attributes,
        person_attributes=person_attributes or {},
        cohorts={},
        stages={},
        job_targets={found.model.name: Entity(found.model.target) for found in job_items},
    )
    attributes = _attributes(loader, attribute_items, catalog)
    # Names first (so references resolve in any order), expressions second.
    stub = Catalog(
        account_attributes=account_attributes,
        person_attributes=person_attributes or {},
        attributes=attributes,
        cohorts={f.model.name: _placeholder_cohort(f.model) for f in cohort_items},
        stages={f.model.name: _placeholder_stage(f.model) for f in stage_items},
        job_targets=catalog.job_targets,
    )
    vocabulary = stub.vocabulary
    rollups = _rollup_filters(loader, attribute_items, vocabulary)
    attributes = {
        key: LoadedAttribute(a.definition, a.type, rollups.get(key), a.content_hash, a.file)
        for key, a in attributes.items()
    }
    cohorts = _cohorts(loader, cohort_items, vocabulary)
    stages = _stages(loader, stage_items, vocabulary)
    jobs = _jobs(loader, job_items, vocabulary)
    _no_cycles(loader, cohorts, stages, attributes)

    errors = [error for error in loader.errors if error.severity == "error"]
    if errors:
        raise DefinitionErrors(loader.errors)
    final = Catalog(
        account_attributes=account_attributes,
        person_attributes=person_attributes or {},
        attributes=attributes,
        cohorts=cohorts,
        stages=stages,
        job_targets=catalog.job_targets,
    )
    return Project(
        folder=folder, config=config, jobs=jobs, catalog=final, warnings=tuple(loader.errors)
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
    loader: _Loader, items: list[_Found], catalog: Catalog
) -> dict[tuple[Entity, str], LoadedAttribute]:
    """Type every computed attribute, dependencies first; report unknown or ill-typed inputs."""
    by_key: dict[tuple[Entity, str], _Found] = {}
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
        found: _Found, field_name: str, entity: Entity, name: str, kinds: tuple[Any, ...]
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

    def compute(definition: ComputedAttribute, found: _Found) -> AttributeType | None:
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
    loader: _Loader, items: list[_Found], vocabulary: Vocabulary
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


def _cohorts(
    loader: _Loader, items: list[_Found], vocabulary: Vocabulary
) -> dict[str, LoadedCohort]:
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


def _stages(loader: _Loader, items: list[_Found], vocabulary: Vocabulary) -> dict[str, LoadedStage]:
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


def _jobs(loader: _Loader, items: list[_Found], vocabulary: Vocabulary) -> dict[str, LoadedJob]:
    jobs = {}
    for found in items:
        definition: JobDefinition = found.model
        scope = Entity(definition.target)
        before = len(loader.errors)

        def parse(
            text: str, key: PathKey, found: _Found = found, scope: Entity = scope
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
        for key, step in _email_steps(definition):
            template = loader.folder / TEMPLATES_DIR / f"{step.template}.txt.j2"
            if not template.is_file():
                loader.fail(
                    f"email template {step.template!r} not found (looked for {template})",
                    found,
                    (*key, "template"),
                    f"create {TEMPLATES_DIR}/{step.template}.txt.j2 in the project folder",
                )
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


def _email_steps(definition: JobDefinition) -> Iterator[tuple[PathKey, EmailStep]]:
    for index, step in enumerate(definition.steps):
        if isinstance(step, EmailStep):
            yield ("steps", index), step
    for number, variant in enumerate(definition.variants):
        for index, step in enumerate(variant.steps):
            if isinstance(step, EmailStep):
                yield ("variants", number, "steps", index), step
    for key in ("on_completion", "on_exit"):
        for index, action in enumerate(getattr(definition, key)):
            yield (key, index), action


def _no_cycles(
    loader: _Loader,
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
