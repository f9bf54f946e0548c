"""Refresh every job's measurement at once (the library, the board and the churn review measure
every job; ``closeloop report`` one).

The engine's enrollments are published once (incrementally), then every job is measured from one
materialized table of units (:mod:`closeloop.analysis.refresh`) and finished with what the state
store knows about it (deliveries, versions, opt-outs, verdict), exactly as
:func:`~closeloop.services.reports.job_report` finishes one report. A job without a holdout is
measured on its own (its matched comparison has units of its own).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from closeloop.analysis.job_report import JobReport
from closeloop.analysis.refresh import JobToMeasure, measure_jobs
from closeloop.analysis.revenue_value import HORIZONS as REVENUE_HORIZONS
from closeloop.definitions.models import Allocation
from closeloop.engine.lifecycle import jobs_overview
from closeloop.engine.publish import publish_enrollments
from closeloop.errors import CloseloopError
from closeloop.services.project import Workspace
from closeloop.services.reports import finish_report, job_report


def refresh_measurements(
    workspace: Workspace,
    as_of: datetime | None = None,
    *,
    names: Collection[str] | None = None,
    segment_by: Sequence[str] = ("segment",),
    publish: bool = True,
    until: datetime | None = None,
    revenue: bool = True,
) -> dict[str, JobReport | CloseloopError]:
    """The report of every launched job of the project (or those ``names``) that has ticked,
    as of ``as_of`` (default: each job's latest tick, or ``until`` if that is earlier); a job
    that cannot be measured maps to the error saying why. ``revenue=False`` leaves out the
    revenue value (a report without it must not go into the shared report cache)."""
    store, project = workspace.store, workspace.project
    if publish:
        publish_enrollments(store, workspace.warehouse)
    wanted = [
        job
        for job in jobs_overview(store)
        if job.name in project.jobs and (names is None or job.name in names)
    ]
    batch: list[JobToMeasure] = []
    records = {}
    results: dict[str, JobReport | CloseloopError] = {}
    for overview in wanted:
        moment = as_of or overview.last_tick
        if moment is None:
            continue
        if until is not None and as_of is None:
            moment = min(_naive(moment), until)
        try:
            record = store.job_record(overview.name)
            definition = project.job(overview.name).definition
            if record.holdout == 0:  # observational: matched against its own comparison units
                results[overview.name] = job_report(
                    workspace, overview.name, moment, segment_by=segment_by, publish=False
                )
                continue
        except CloseloopError as error:
            results[overview.name] = error
            continue
        records[overview.name] = record
        batch.append(
            JobToMeasure(
                name=overview.name,
                as_of=moment,
                horizon_days=definition.horizon_days,
                holdout_fraction=record.holdout,
                variants=tuple((v.name, v.weight) for v in definition.variants),
                adaptive=definition.allocation is Allocation.THOMPSON,
                plan=record.plan,
            )
        )
    measured = measure_jobs(
        workspace.warehouse,
        batch,
        segment_by=segment_by,
        revenue_horizons=REVENUE_HORIZONS if revenue else None,
    )
    for name, report in measured.items():
        if isinstance(report, CloseloopError):
            results[name] = report
            continue
        try:
            results[name] = finish_report(workspace, project.job(name), records[name], report)
        except CloseloopError as error:
            results[name] = error
    return results


def _naive(moment: datetime) -> datetime:
    """``moment`` as naive UTC (the store's convention)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
