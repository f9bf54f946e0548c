"""The demo: simulate a company, run a job with a holdout through the real engine, measure it.

Everything is real except the customers: the warehouse is a DuckDB file, the state store a SQLite
file, emails go over SMTP to a server on loopback, and the simulated customers respond only to the
emails the dispatcher actually sent. The simulator knows the true effect of the email on the same
accounts (counterfactual, common random numbers), so the measurement can be checked against it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from closeloop.analysis.job_report import JobReport
from closeloop.channels.email import EMAIL, SmtpSender
from closeloop.present.html import write_job_report_html
from closeloop.schemas import job_report as schemas
from closeloop.services.project import init_project, open_workspace
from closeloop.services.reports import job_report
from closeloop.services.results import job_report_model
from closeloop.services.simulation import Lockstep, job_truths, write_ground_truth
from closeloop.services.smtp_sink import SmtpSink
from closeloop.settings import DEFAULT_STATE_FILE, DEFAULT_WAREHOUSE_FILE
from closeloop.simulate import CompanySimulator, TrueEffect, scenario

DEMO_JOB = "Integration nudge"
DURATION_DAYS = 30

DayCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class DemoResult:
    project_dir: Path
    report: JobReport
    model: schemas.JobReport  # the report as every surface renders it
    truths: dict[str, TrueEffect]
    html_path: Path
    emails_received: int
    unique_message_ids: int
    events: int
    seconds: float


def prepare_demo_project(folder: Path, *, starts_at: datetime, ends_at: datetime) -> None:
    """A fresh project folder whose embedded warehouse and state start empty."""
    init_project(folder, name="closeloop demo", force=True)
    for name in (
        DEFAULT_WAREHOUSE_FILE,
        f"{DEFAULT_WAREHOUSE_FILE}.wal",
        DEFAULT_STATE_FILE,
        f"{DEFAULT_STATE_FILE}-wal",
        f"{DEFAULT_STATE_FILE}-shm",
    ):
        (folder / name).unlink(missing_ok=True)
    template = (
        resources.files("closeloop.services") / "project_template" / "demo_jobs.yaml"
    ).read_text(encoding="utf-8")
    (folder / "jobs.yaml").write_text(
        template.format(
            duration_days=DURATION_DAYS,
            starts_at=starts_at.isoformat(),
            ends_at=ends_at.isoformat(),
        ),
        encoding="utf-8",
    )


def run_demo(
    folder: Path,
    *,
    accounts: int = 3000,
    enrollment_days: int = 120,
    seed: int = 7,
    scenario_name: str = "default",
    on_day: DayCallback | None = None,
) -> DemoResult:
    """Run the whole demo in ``folder`` and return the measured report with the simulator's truth.

    The demo always uses the embedded DuckDB and SQLite files inside ``folder`` (it ignores
    ``CLOSELOOP_WAREHOUSE_URL`` / ``CLOSELOOP_STATE_URL``), so it can never write simulated
    customers into a real warehouse.
    """
    started = time.perf_counter()
    days = enrollment_days + DURATION_DAYS + 1
    config = scenario(
        scenario_name, n_accounts=accounts, days=days, arrival_days=enrollment_days, seed=seed
    )
    start = datetime.combine(config.start, datetime.min.time())
    prepare_demo_project(folder, starts_at=start, ends_at=start + timedelta(days=enrollment_days))
    simulator = CompanySimulator(config)
    folder = folder.resolve()
    environment = {
        "CLOSELOOP_WAREHOUSE_URL": f"duckdb:///{folder / DEFAULT_WAREHOUSE_FILE}",
        "CLOSELOOP_STATE_URL": f"sqlite:///{folder / DEFAULT_STATE_FILE}",
    }
    events = 0
    with SmtpSink() as sink, open_workspace(folder, environ=environment) as workspace:
        job = workspace.project.job(DEMO_JOB)
        channel = SmtpSender(sink.host, sink.port, workspace.project.config.email_from)
        lockstep = Lockstep(workspace, simulator, [job], {EMAIL: channel})
        try:
            for index, day in enumerate(config.dates()):
                events += lockstep.day(day).events.num_rows
                if on_day is not None:
                    on_day(index + 1, days)
        finally:
            lockstep.close()
        report = job_report(workspace, DEMO_JOB)
        (job_truth,) = job_truths(workspace, simulator, [job], report.as_of)
        write_ground_truth(workspace.warehouse, [job_truth], report.as_of)
        truths = {truth.segment: truth for truth in job_truth.effects}
        (folder / "truth.json").write_text(
            json.dumps(
                {
                    "configured": simulator.ground_truth(),
                    "effect_on_completion_within_horizon": [vars(t) for t in truths.values()],
                },
                indent=2,
                default=str,
            ),
            encoding="utf-8",
        )
        model = job_report_model(report)
        html_path = write_job_report_html(
            model,
            folder / "report.html",
            {segment: truth.effect for segment, truth in truths.items()},
        )
        messages = sink.messages
    return DemoResult(
        project_dir=folder,
        report=report,
        model=model,
        truths=truths,
        html_path=html_path,
        emails_received=len(messages),
        unique_message_ids=len({m["Message-ID"] for m in messages}),
        events=events,
        seconds=time.perf_counter() - started,
    )
