"""Definitions: validation, who matches an expression or a cohort, stage counts, versions.

``closeloop validate|explain|cohort|stage|definitions list|definitions history --format json``
print these models; the API's ``/api/validate``, ``/api/explain``, ``/api/cohorts``,
``/api/stages`` and ``/api/definitions`` return them. Times are naive UTC.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from closeloop.definitions.expressions import Entity
from closeloop.errors import LocatedError
from closeloop.schemas.base import Schema
from closeloop.schemas.errors import ErrorBody, error_body

# The unit a result is about (account or person): the vocabulary every layer shares.
__all__ = [
    "CohortInfo",
    "Cohorts",
    "DefinitionHistory",
    "DefinitionKind",
    "DefinitionList",
    "DefinitionProblem",
    "DefinitionSummary",
    "DefinitionVersion",
    "Entity",
    "ExplainRequest",
    "Matches",
    "RecordedVersion",
    "SampleValue",
    "StageCount",
    "StageInfo",
    "Stages",
    "Validation",
    "problem_of",
]

Severity = Literal["error", "warning"]


class DefinitionKind(StrEnum):
    ATTRIBUTE = "attribute"
    COHORT = "cohort"
    STAGE = "stage"
    JOB = "job"


class DefinitionProblem(ErrorBody):
    """One problem of a project, in the one error shape, with its severity."""

    severity: Severity = Field(description="errors make the project invalid; warnings do not")


def problem_of(error: LocatedError) -> DefinitionProblem:
    """The public shape of a definition problem (file, line, column and caret in ``location``)."""
    body = error_body(error)
    severity: Severity = "warning" if error.severity == "warning" else "error"
    return DefinitionProblem(
        code=body.code,
        message=body.message,
        location=body.location,
        hint=body.hint,
        severity=severity,
    )


class Validation(Schema):
    """Every problem of a project, errors and warnings, in the order the loader found them."""

    valid: bool = Field(description="no errors (warnings alone leave a project valid)")
    errors: int = Field(ge=0)
    warnings: int = Field(ge=0)
    jobs: int = Field(ge=0, description="jobs loaded (0 when the definitions do not load)")
    definitions: int = Field(ge=0, description="definitions loaded (0 when they do not load)")
    problems: list[DefinitionProblem]


SampleValue = str | int | float | bool | None


class Matches(Schema):
    """How many units match (an expression, a cohort) as of a time, and a sample of them."""

    target: Entity
    as_of: datetime
    count: int = Field(ge=0)
    sample: list[dict[str, SampleValue]] = Field(
        description="the first units by id: the id, then details a person recognises them by"
    )
    sql: str = Field(default="", description="the SQL that counts them (explain only)")
    warnings: list[str] = Field(
        default_factory=list, description="names or values the data lacks, stale data"
    )


class ExplainRequest(Schema):
    """The body of ``POST /api/explain``."""

    expression: str = Field(min_length=1, description="an expression (docs/expressions.md)")
    target: Entity = Entity.ACCOUNT
    as_of: datetime | None = Field(default=None, description="default: now")
    sample: int = Field(default=10, ge=0, le=1000, description="how many matching units to show")


class StageCount(Schema):
    name: str
    count: int = Field(ge=0)


class CohortInfo(Schema):
    name: str
    description: str
    target: Entity
    criteria: str


class Cohorts(Schema):
    count: int = Field(ge=0)
    cohorts: list[CohortInfo]


class StageInfo(Schema):
    name: str
    description: str
    objectives: list[str]
    markers: list[str]


class Stages(Schema):
    count: int = Field(ge=0)
    stages: list[StageInfo]


class RecordedVersion(Schema):
    """A version of a definition recorded in the state store."""

    kind: DefinitionKind
    name: str
    version: int = Field(ge=1)
    content_hash: str
    created_at: datetime
    author: str


class DefinitionVersion(RecordedVersion):
    """One version with its YAML and a unified diff against the version before it."""

    definition: str
    diff: str


class DefinitionSummary(Schema):
    """A definition as the project has it now, and its latest recorded version."""

    kind: DefinitionKind
    name: str
    content_hash: str
    latest: RecordedVersion | None = Field(
        description="null: never recorded; a different content_hash: changed since"
    )


class DefinitionList(Schema):
    count: int = Field(ge=0)
    definitions: list[DefinitionSummary]


class DefinitionHistory(Schema):
    """Every recorded version of the definition(s) with a name, oldest first."""

    name: str
    kind: DefinitionKind | None = Field(description="null: every kind with that name")
    versions: list[DefinitionVersion]
