"""Routes: power plans, the intervention library, cohorts, stages, definitions, validation and
explain. All read (viewer role): ``POST`` is used where the input is a body (a plan's numbers, an
expression), not because anything is written.

Each route opens the project's workspace for the request only (the server holds no warehouse
connection) and returns the schema model the matching CLI command prints with ``--format json``.
Unknown jobs, cohorts, stages and definitions answer 404; invalid input 422 with the place of the
problem (``location``: line and column, the line and a caret under the column).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request

from closeloop.api.security import Viewer, served
from closeloop.schemas.definitions import (
    Cohorts,
    DefinitionHistory,
    DefinitionKind,
    DefinitionList,
    ExplainRequest,
    Matches,
    Stages,
    Validation,
)
from closeloop.schemas.library import Library, SortKey
from closeloop.schemas.planning import DEFAULT_WEEKS, PowerInputs, PowerPlan
from closeloop.services import definitions as definitions_service
from closeloop.services import library as library_service
from closeloop.services import power as power_service

router = APIRouter(prefix="/api", tags=["planning"])

AsOf = Annotated[
    datetime | None,
    Query(description="evaluate as of this time (ISO 8601; no zone means UTC); default now"),
]
Sample = Annotated[int, Query(ge=0, le=1000, description="how many matching units to show")]


def _now_or(moment: datetime | None) -> datetime:
    return moment if moment is not None else datetime.now(UTC).replace(tzinfo=None)


@router.get("/library", response_model=Library)
def library(
    request: Request,
    _principal: Viewer,
    goal: Annotated[
        str | None, Query(description="only jobs whose goal expression contains this text")
    ] = None,
    segment: Annotated[
        str | None, Query(description="only jobs measured in this segment, and only its rows")
    ] = None,
    status: Annotated[
        str | None,
        Query(description="positive, negative, inconclusive, insufficient_data (or error)"),
    ] = None,
    sort: Annotated[SortKey, Query(description="the order of the jobs")] = SortKey.EFFECT,
    offset: Annotated[int, Query(ge=0, description="skip this many matching jobs")] = 0,
    limit: Annotated[
        int | None, Query(ge=1, le=1000, description="at most this many jobs (default: all)")
    ] = None,
) -> Library:
    """Every job ever run, as ``closeloop library``: ``count`` jobs match the filters; ``jobs``
    holds those from ``offset`` on (at most ``limit``)."""
    with served(request).workspace() as workspace:
        return library_service.library(
            workspace,
            goal=goal,
            segment=segment,
            status=status,
            sort=sort,
            offset=offset,
            limit=limit,
        )


@router.post("/power", response_model=PowerPlan)
def plan_power(_principal: Viewer, inputs: Annotated[PowerInputs, Body()]) -> PowerPlan:
    """A plan from given numbers, as ``closeloop power --weekly N --baseline P``."""
    return power_service.plan_power(inputs)


@router.get("/jobs/{name}/power", response_model=PowerPlan)
def job_power(
    request: Request,
    _principal: Viewer,
    name: str,
    as_of: Annotated[
        datetime | None,
        Query(description="estimate from the data as of this time (default: the last event)"),
    ] = None,
    weekly_volume: Annotated[
        float | None, Query(description="the weekly volume, instead of estimating it")
    ] = None,
    baseline_rate: Annotated[
        float | None, Query(description="the baseline completion rate, instead of estimating it")
    ] = None,
    effect: Annotated[
        float | None,
        Query(description="the target absolute lift (default: the hypothesis' minimum_effect)"),
    ] = None,
    weeks: Annotated[
        list[float] | None, Query(description="enrollment weeks to plan for (default 2 4 8 12)")
    ] = None,
    alpha: Annotated[float, Query(description="two-sided significance")] = 0.05,
    power: Annotated[float, Query(description="the power wanted")] = 0.8,
) -> PowerPlan:
    """A job's plan, as ``closeloop power --job NAME``: what is not given is estimated from its
    enrollments or its audience; 404 for an unknown job."""
    with served(request).workspace() as workspace:
        return power_service.plan_job_power(
            workspace,
            name,
            baseline_rate=baseline_rate,
            weekly_volume=weekly_volume,
            effect=effect,
            weeks=tuple(weeks) if weeks else DEFAULT_WEEKS,
            as_of=as_of,
            alpha=alpha,
            power=power,
        )


@router.get("/cohorts", response_model=Cohorts)
def cohorts(request: Request, _principal: Viewer) -> Cohorts:
    """The project's cohorts (name, target, criteria)."""
    with served(request).workspace() as workspace:
        return definitions_service.cohorts(workspace)


@router.get("/cohorts/{name}", response_model=Matches)
def cohort(
    request: Request, _principal: Viewer, name: str, as_of: AsOf = None, sample: Sample = 10
) -> Matches:
    """How many members a cohort has as of a time, and a sample, as ``closeloop cohort``."""
    with served(request).workspace() as workspace:
        return definitions_service.cohort(workspace, name, _now_or(as_of), sample)


@router.get("/stages", response_model=Stages)
def stages(request: Request, _principal: Viewer) -> Stages:
    """The project's stages (name, objectives, markers)."""
    with served(request).workspace() as workspace:
        return definitions_service.stages(workspace)


@router.get("/definitions", response_model=DefinitionList)
def definitions(request: Request, _principal: Viewer) -> DefinitionList:
    """Every definition with its current hash and latest recorded version."""
    with served(request).workspace() as workspace:
        return definitions_service.list_definitions(workspace)


@router.get("/definitions/{name}/history", response_model=DefinitionHistory)
def definition_history(
    request: Request,
    _principal: Viewer,
    name: str,
    kind: Annotated[
        DefinitionKind | None, Query(description="only this kind (default: any)")
    ] = None,
) -> DefinitionHistory:
    """Every recorded version of a definition with diffs; 404 when none was recorded."""
    with served(request).workspace() as workspace:
        return definitions_service.definition_history(workspace, name, kind)


@router.post("/validate", response_model=Validation)
def validate(request: Request, _principal: Viewer) -> Validation:
    """Every problem of the project on disk, each in the one error shape with its severity, as
    ``closeloop validate``. A project with errors is a result (``valid`` false), not a failure."""
    return definitions_service.validate_project(served(request).settings)


@router.post("/explain", response_model=Matches)
def explain(request: Request, _principal: Viewer, body: ExplainRequest) -> Matches:
    """Check an expression, count who matches as of a time, a sample and the SQL, as
    ``closeloop explain``. An expression that does not parse, or names something the project
    lacks, answers 422 with the line, column and a caret."""
    with served(request).workspace() as workspace:
        return definitions_service.explain(
            workspace, body.expression, _now_or(body.as_of), body.target, body.sample
        )
