"""Loaded definitions: each validated definition with its parsed expressions, and the catalog
of what expressions may refer to (attributes, cohorts, stages, jobs)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from closeloop.definitions.builtins import BUILTIN_ACCOUNT_ATTRIBUTES
from closeloop.definitions.expressions import (
    AttributeType,
    Comparator,
    Comparison,
    Entity,
    Expression,
    Literal,
    LiteralKind,
    Operand,
    Vocabulary,
    referenced_attributes,
    referenced_events,
)
from closeloop.definitions.models import (
    CohortDefinition,
    ComputedAttribute,
    HealthMeasure,
    HealthScoreDefinition,
    HealthSegment,
    JobDefinition,
    Marker,
    Objective,
    ProjectConfig,
    StageDefinition,
)
from closeloop.errors import DefinitionError, NotFoundError

TEMPLATES_DIR = "templates"


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
class LoadedHealthMeasure:
    """A health-score measure with its parsed expression: either ``number``, an operand such as
    ``count(event "login" in last 30 days)``, or ``condition``, a true/false expression."""

    definition: HealthMeasure
    number: Operand | None
    condition: Expression | None

    @property
    def name(self) -> str:
        return self.definition.name

    def inputs(self) -> tuple[set[str], set[str]]:
        """The attributes and events the measure reads."""
        tree = self.condition
        if tree is None:
            assert self.number is not None
            tree = Comparison(self.number, Comparator.GE, Literal(0.0, LiteralKind.NUMBER))
        return referenced_attributes(tree), referenced_events(tree)


@dataclass(frozen=True)
class LoadedHealthSegment:
    definition: HealthSegment
    when: Expression


@dataclass(frozen=True)
class LoadedHealthScore:
    """A health score with its measures and segment variants parsed."""

    definition: HealthScoreDefinition
    measures: tuple[LoadedHealthMeasure, ...]
    segments: tuple[LoadedHealthSegment, ...]
    content_hash: str
    file: str

    @property
    def name(self) -> str:
        return self.definition.name


@dataclass(frozen=True)
class Catalog:
    """What expressions can refer to, for the compiler: attributes, cohorts, stages, job targets.

    ``account_attributes`` and ``person_attributes`` are the stored columns the data layer has;
    computed attributes come on top, and the built-in outcome attributes of accounts
    (``closeloop.definitions.builtins``) under both.
    """

    account_attributes: Mapping[str, AttributeType]
    person_attributes: Mapping[str, AttributeType]
    attributes: Mapping[tuple[Entity, str], LoadedAttribute] = field(default_factory=dict)
    cohorts: Mapping[str, LoadedCohort] = field(default_factory=dict)
    stages: Mapping[str, LoadedStage] = field(default_factory=dict)
    job_targets: Mapping[str, Entity] = field(default_factory=dict)

    @property
    def vocabulary(self) -> Vocabulary:
        # Stored columns, then computed attributes, take precedence over a built-in's name.
        account = {**BUILTIN_ACCOUNT_ATTRIBUTES, **self.account_attributes}
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
    health_scores: Mapping[str, LoadedHealthScore] = field(default_factory=dict)

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

    def health_score(self, name: str) -> LoadedHealthScore:
        return _named(self.health_scores, name, "health score")

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
        raise NotFoundError(
            f"no {kind} named {name!r} in this project ({kind}s: {known})"
        ) from None
