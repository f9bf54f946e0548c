"""``/jobs``: every job with its status, version, launch and enrollments (``closeloop jobs
list``; its JSON twin is the API's ``GET /api/jobs``)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from closeloop.schemas.jobs import JobList
from closeloop.services import operations
from closeloop.web.pages import Badge, Link, Page, PageRequest, Table, Tone, page

_STATUS_TONE = {
    "live": Tone.good,
    "paused": Tone.warn,
    "stopped": Tone.neutral,
    "draft": Tone.info,
}


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else ""


def jobs_table(jobs: JobList) -> Table:
    return Table(
        columns=[
            "job",
            "status",
            "version",
            "launched",
            "last tick",
            "enrolled",
            "active",
            "enrolled by arm",
        ],
        rows=[
            [
                Link(job.name, f"/jobs/{quote(job.name, safe='')}"),
                Badge(job.status, _STATUS_TONE.get(job.status, Tone.neutral)),
                "" if job.version is None else job.version,
                _when(job.launched_at),
                _when(job.last_tick),
                job.enrolled,
                job.active,
                " · ".join(f"{arm} {count}" for arm, count in job.enrolled_by_arm.items()),
            ]
            for job in jobs.jobs
        ],
    )


@page("/jobs", template="jobs.html.j2", nav="Jobs", title="Jobs")
def jobs_page(request: PageRequest) -> Page:
    with request.workspace() as workspace:
        jobs = operations.job_list(workspace)
    return Page(model=jobs, tables={"jobs": jobs_table(jobs)})
