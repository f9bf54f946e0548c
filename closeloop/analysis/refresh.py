"""The measurement refresh: every job's report in a few warehouse passes.

A job report's queries all start from the job's units: its enrollments joined with the accounts'
attributes as of entry (the attribute history), the first churn after entry and the events of the
days before entry. Here those joins run once for every job (:func:`~closeloop.analysis.job_report.
units_for_jobs`) into a temporary table, and every job is measured from it together
(:func:`~closeloop.analysis.job_report.measure_job_units`): each of the measurement's queries
(arms, Kaplan–Meier risk tables, maturity paths, segments, adjustment moments, competing risks,
entry weeks) groups by job as well, so 20 jobs cost the same dozen queries as one, and each job's
figures are the ones its report alone gives.
"""

from __future__ import annotations

from collections.abc import Sequence

from closeloop.analysis.job_report import (
    ADJUST_FOR,
    JobReport,
    JobToMeasure,
    measure_job_units,
    units_for_jobs,
)
from closeloop.analysis.revenue_value import HORIZONS as REVENUE_HORIZONS
from closeloop.data.warehouse import Warehouse
from closeloop.errors import CloseloopError

__all__ = ["JobToMeasure", "measure_jobs", "report_attributes"]


def report_attributes(warehouse: Warehouse, segment_by: Sequence[str]) -> tuple[str, ...]:
    """The account attributes a report reads: its segments, then those it adjusts for."""
    columns = warehouse.table("accounts").columns
    adjust_for = [name for name in ADJUST_FOR if name in columns]
    return tuple(dict.fromkeys([*segment_by, *adjust_for]))


def measure_jobs(
    warehouse: Warehouse,
    jobs: Sequence[JobToMeasure],
    *,
    segment_by: Sequence[str] = ("segment",),
    revenue_horizons: Sequence[int] | None = REVENUE_HORIZONS,
) -> dict[str, JobReport | CloseloopError]:
    """Every job's report; if the jobs cannot be measured together, each on its own, so one bad
    job (or its error) never sinks the rest. ``revenue_horizons`` None: without the revenue
    value (one more query, grouped by job like the rest)."""
    if not jobs:
        return {}
    units = units_for_jobs(
        warehouse,
        {job.name: job.as_of for job in jobs},
        attributes=report_attributes(warehouse, segment_by),
    )
    cached = units.cache()  # one pass over the events for every job
    try:
        try:
            found = measure_job_units(
                warehouse, cached, jobs, segment_by=segment_by, revenue_horizons=revenue_horizons
            )
            return dict(found)
        except CloseloopError:
            if len(jobs) == 1:
                raise
        results: dict[str, JobReport | CloseloopError] = {}
        for job in jobs:
            try:
                results.update(
                    measure_job_units(
                        warehouse,
                        cached,
                        [job],
                        segment_by=segment_by,
                        revenue_horizons=revenue_horizons,
                    )
                )
            except CloseloopError as error:
                results[job.name] = error
        return results
    finally:
        cached.release()
