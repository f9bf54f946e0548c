"""Report use cases: measure a job and render what was measured."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import cast

from closeloop.analysis.html_report import (
    days,
    headline,
    num,
    pct,
    pp,
    pp_ci,
    pval,
    render_job_report_html,
)
from closeloop.analysis.job_report import JobReport, build_job_report
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.engine.publish import publish_enrollments
from closeloop.errors import NotFoundError
from closeloop.services.project import Workspace

# What the surfaces (cli, api, web) need to present a report, so they import services only.
__all__ = [
    "HOLDOUT",
    "TREATMENT",
    "JobReport",
    "days",
    "headline",
    "job_report",
    "num",
    "pct",
    "pp",
    "pp_ci",
    "pval",
    "report_to_dict",
    "write_html_report",
]


def job_report(workspace: Workspace, job_name: str, as_of: datetime | None = None) -> JobReport:
    """Measure ``job_name`` as of ``as_of`` (default: its latest tick)."""
    job = workspace.project.job(job_name)
    record = workspace.store.job_record(job_name)
    moment = as_of or workspace.store.last_tick(job_name)
    if moment is None:
        raise NotFoundError(f"job {job_name!r} has no ticks yet; run `closeloop tick` first")
    publish_enrollments(workspace.store, workspace.warehouse)
    return build_job_report(
        workspace.warehouse,
        job_name,
        as_of=moment,
        horizon_days=job.definition.duration_days,
        holdout_fraction=record.holdout,
        variants=tuple(variant.name for variant in job.definition.variants),
    )


def write_html_report(
    report: JobReport, path: Path, truths: dict[str, float] | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_job_report_html(report, truths), encoding="utf-8")
    return path


def report_to_dict(report: JobReport) -> dict[str, object]:
    """A JSON-ready dict of the report (NaN becomes null; times ISO; enums their value)."""
    return cast(dict[str, object], _clean(dataclasses.asdict(report)))


def _clean(value: object) -> object:
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value
