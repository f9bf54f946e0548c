"""Report use cases: measure a job, shape it as the public model, render what was measured."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import ibis.expr.types as ir

from closeloop.analysis.job_report import (
    MATCH_ON,
    CohortAsOf,
    JobReport,
    ValueOutcome,
    build_job_report,
    delivery_warnings,
    version_warnings,
)
from closeloop.analysis.matching import eligible_comparison_units
from closeloop.analysis.verdict import job_verdict
from closeloop.data.compiler import (
    cohort_members,
    eligible_units,
    goal_reached_at,
)
from closeloop.definitions.catalog import LoadedJob
from closeloop.definitions.models import Allocation, JobDefinition
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.engine.lifecycle import audit_entries, versions_in_use
from closeloop.engine.optouts import optouts_by_arm
from closeloop.engine.outbox import deliveries_by_arm
from closeloop.engine.publish import publish_enrollments
from closeloop.engine.state import JobRecord
from closeloop.errors import CloseloopError, ConfigurationError, NotFoundError
from closeloop.schemas import job_report as schemas
from closeloop.services.data import freshness
from closeloop.services.project import Workspace
from closeloop.services.results import job_report_model

# What the surfaces (cli, api, web) need to ask for a report, so they import services only.
__all__ = [
    "HOLDOUT",
    "TREATMENT",
    "JobReport",
    "ReportedJob",
    "ValueOutcome",
    "horizon_of",
    "job_report",
    "report_job",
]


@dataclass(frozen=True)
class ReportedJob:
    """A job's report: the analysis and the public model every surface renders and dumps.

    The model's warnings are the report's, then how current the data is at ``as_of``.
    """

    report: JobReport
    model: schemas.JobReport
    data_warnings: tuple[str, ...]  # how current the data is at the report's as_of


def report_job(
    workspace: Workspace,
    job_name: str,
    as_of: datetime | None = None,
    *,
    segment_by: Sequence[str] = ("segment",),
    value_outcome: ValueOutcome | None = None,
    match_on: Sequence[str] | None = None,
    as_of_label: str = "as_of",
) -> ReportedJob:
    """Measure ``job_name`` (:func:`job_report`) and shape it as the public :class:`JobReport`.

    ``as_of_label`` names the analysis time in freshness warnings when it was given (the CLI's
    ``--as-of``); without one the report is as of the last tick.
    """
    report = _measured(workspace, job_name, as_of, segment_by, value_outcome, match_on)
    label = as_of_label if as_of is not None else "the last tick"
    fresh = freshness(workspace.warehouse, report.as_of, option=label)
    model = job_report_model(report, warnings=[*report.warnings, *fresh.warnings])
    return ReportedJob(report=report, model=model, data_warnings=fresh.warnings)


def _measured(
    workspace: Workspace,
    job_name: str,
    as_of: datetime | None,
    segment_by: Sequence[str],
    value_outcome: ValueOutcome | None,
    match_on: Sequence[str] | None,
) -> JobReport:
    """The job's report through the measurement refresh (one pass for its units), or measured
    on its own when it needs what the refresh does not compute (a value outcome, cohorts)."""
    plain = value_outcome is None and not any(name.startswith(COHORT_PREFIX) for name in segment_by)
    if plain and not match_on:
        # Imported here: the refresh finishes its reports with this module's finish_report.
        from closeloop.services.refresh import refresh_measurements

        workspace.project.job(job_name)  # an unknown job is a NotFoundError, as below
        found = refresh_measurements(workspace, as_of, names=[job_name], segment_by=segment_by)
        report = found.get(job_name)
        if isinstance(report, CloseloopError):
            raise report
        if report is not None:
            return report
    return job_report(
        workspace,
        job_name,
        as_of,
        segment_by=segment_by,
        value_outcome=value_outcome,
        match_on=match_on,
    )


def job_report(
    workspace: Workspace,
    job_name: str,
    as_of: datetime | None = None,
    *,
    segment_by: Sequence[str] = ("segment",),
    value_outcome: ValueOutcome | None = None,
    match_on: Sequence[str] | None = None,
    publish: bool = True,
) -> JobReport:
    """Measure ``job_name`` as of ``as_of`` (default: its latest tick).

    The horizon is the hypothesis' ``horizon_days`` if set, else the job's duration. A job
    without a holdout is also matched (``match_on`` attributes, default MATCH_ON) against
    accounts that were eligible but not enrolled.
    """
    job = workspace.project.job(job_name)
    record = workspace.store.job_record(job_name)
    moment = as_of or workspace.store.last_tick(job_name)
    if moment is None:
        raise NotFoundError(f"job {job_name!r} has no ticks yet; run `closeloop tick` first")
    if publish:  # callers measuring many jobs publish once and pass publish=False
        publish_enrollments(workspace.store, workspace.warehouse)
    definition = job.definition
    attributes = [name for name in segment_by if not name.startswith(COHORT_PREFIX)]
    cohorts = {
        name.removeprefix(COHORT_PREFIX): _cohort_as_of(workspace, name.removeprefix(COHORT_PREFIX))
        for name in segment_by
        if name.startswith(COHORT_PREFIX)
    }
    report = build_job_report(
        workspace.warehouse,
        job_name,
        as_of=moment,
        horizon_days=definition.horizon_days,
        holdout_fraction=record.holdout,
        variants=tuple((variant.name, variant.weight) for variant in definition.variants),
        segment_by=tuple(attributes),
        value_outcome=value_outcome,
        adaptive=definition.allocation is Allocation.THOMPSON,
        cohorts=cohorts,
        comparison_units=(
            _comparison_units(workspace, job, moment) if record.holdout == 0 else None
        ),
        match_on=tuple(match_on) if match_on else MATCH_ON,
        plan=record.plan,
    )
    return finish_report(workspace, job, record, report)


def finish_report(
    workspace: Workspace, job: LoadedJob, record: JobRecord, report: JobReport
) -> JobReport:
    """What a measured job's report gets from the state store: its deliveries per arm, the
    versions its enrollments ran under, opt-outs, the verdict, and the warnings about them."""
    job_name, moment, definition = job.name, report.as_of, job.definition
    deliveries = deliveries_by_arm(workspace.store, job_name)
    versions = versions_in_use(workspace.store, job_name)
    changes = [
        f"{entry.action.removeprefix('job.').replace('_', ' ')} in v{entry.detail['to_version']}"
        for entry in audit_entries(workspace.store, job_name)
        if entry.action in ("job.goal_changed", "job.hypothesis_changed")
        and isinstance(entry.detail, dict)
    ]
    report = replace(report, deliveries=deliveries)
    ends_at = definition.ends_at
    enrolling = record.status == "live" and (ends_at is None or _naive(ends_at) > moment)
    optouts = optouts_by_arm(workspace.store, job_name, moment)
    verdict = job_verdict(report, report.plan, optouts, enrolling=enrolling)
    return replace(
        report,
        verdict=verdict,
        versions=versions,
        warnings=[
            *version_warnings(versions, changes),
            *delivery_warnings(deliveries),
            *report.warnings,
        ],
    )


def _naive(moment: datetime) -> datetime:
    """``moment`` as naive UTC (the store's convention)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


COMPARISON_LOOKBACK_DAYS = 60
"""How far before a holdout-less job's first enrollment eligible accounts are looked for."""


def _comparison_units(workspace: Workspace, job: LoadedJob, as_of: datetime) -> ir.Table:
    """Accounts eligible for the job (audience, no exclusion) on some day but never enrolled.

    Eligibility is evaluated at every midnight from COMPARISON_LOOKBACK_DAYS before the job's
    first enrollment to ``as_of``, as the engine evaluates it at a tick; each account enters when
    it was first eligible, and its goal time comes from the job's goal expression.
    """
    if job.definition.target != "account":
        raise ConfigurationError(
            f"job {job.name!r} targets people and has no holdout; a matched comparison is only "
            "built for account jobs"
        )
    warehouse, catalog = workspace.warehouse, workspace.project.catalog
    enrolled = workspace.store.enrollments_table(job.name).column("entered_at").to_pylist()
    first = min(enrolled) if enrolled else as_of
    start = datetime.combine(
        (first - timedelta(days=COMPARISON_LOOKBACK_DAYS)).date(), datetime.min.time()
    )
    days = max((as_of - start).days, 0)
    times = [start + timedelta(days=index) for index in range(days + 1)]

    def eligible_at(moment: datetime) -> ir.Table:
        return eligible_units(job.audience, job.exclusions, warehouse, moment, catalog)

    def reached(candidates: ir.Table) -> ir.Table:
        return goal_reached_at(job.goal, warehouse, as_of, candidates, catalog)

    return eligible_comparison_units(
        warehouse, job_name=job.name, eligible_at=eligible_at, times=times, goal_reached_at=reached
    )


COHORT_PREFIX = "cohort:"
"""``--segment-by cohort:NAME`` breaks a report down by membership of a cohort at entry."""


def _cohort_as_of(workspace: Workspace, name: str) -> CohortAsOf:
    loaded = workspace.project.cohort(name)  # an unknown name is a NotFoundError here
    if loaded.definition.target != "account":
        raise ConfigurationError(
            f"cohort {name!r} is a cohort of people; a job report segments accounts"
        )

    def members(moment: datetime) -> ir.Table:
        return cohort_members(loaded, workspace.warehouse, moment, workspace.project.catalog)

    return members


def horizon_of(job: JobDefinition) -> float:
    """The days after entry a job is measured over (:attr:`JobDefinition.horizon_days`)."""
    return job.horizon_days
