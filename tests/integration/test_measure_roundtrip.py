"""`closeloop measure` round-trips a job: its enrollments and events, written to files and measured
from them, give exactly the numbers of the job's own report.

The job runs through the real engine on a simulated company; its enrollment window closes early
enough that every enrollment has had its full horizon by the last tick, so the report and a
measurement of historical files look at the same matured units.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.services.project import init_project, open_workspace
from closeloop.services.reports import job_report
from closeloop.services.results import job_report_model
from closeloop.services.simulation import simulate_into, simulation_config
from support import Backends, assert_same_json

JOBS = """\
jobs:
  - name: Integration nudge
    audience: |
      signup_date within last 14 days
        and count(event "integration_connected") = 0
    goal: count(event "integration_connected") >= 1
    duration_days: 21
    holdout: 0.25
    starts_at: {starts_at}
    ends_at: {ends_at}
    steps:
      - send: email
        subject: "Connect {{{{ account.name }}}}"
        template: integration_nudge
    hypothesis:
      expected_effect: Nudged accounts connect an integration sooner.
      primary_metric: completion_rate
      horizon_days: 21
"""


@pytest.mark.slow
@pytest.mark.parametrize("backends", ["embedded"], indirect=True)
def test_measure_on_files_written_from_a_job_equals_the_job_report(
    backends: Backends, tmp_path: Path
) -> None:
    config = simulation_config("default", accounts=1500, days=90, arrival_days=60, seed=8)
    start = datetime.combine(config.start, datetime.min.time())
    folder = tmp_path / "project"
    init_project(folder, name="roundtrip")
    (folder / "jobs.yaml").write_text(
        JOBS.format(starts_at=start.isoformat(), ends_at=(start + timedelta(days=60)).isoformat()),
        encoding="utf-8",
    )
    with open_workspace(folder, environ=backends.environ()) as workspace:
        simulate_into(workspace, config, run_jobs=True)
        report = job_report(workspace, "Integration nudge")
        enrollments = workspace.store.enrollments_table("Integration nudge").to_pylist()
        accounts = workspace.warehouse.table("accounts").select("account_id", "segment")
        segments = {r["account_id"]: r["segment"] for r in accounts.to_pyarrow().to_pylist()}
        events = workspace.warehouse.table("events")
        goals = (
            events.filter(events.name == "integration_connected")
            .select("account_id", "timestamp")
            .to_pyarrow()
            .to_pylist()
        )
    assert not report.measurement.running  # every enrollment has matured
    by_account: dict[str, list[str]] = {}
    units_file, events_file = tmp_path / "units.csv", tmp_path / "events.csv"
    with units_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["unit_id", "arm", "entered_at", "segment"])
        for row in enrollments:
            arm = "holdout" if row["arm"] == "holdout" else "treatment"
            writer.writerow(
                [
                    row["enrollment_id"],
                    arm,
                    row["entered_at"].isoformat(),
                    segments[row["account_id"]],
                ]
            )
            by_account.setdefault(row["account_id"], []).append(row["enrollment_id"])
    with events_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["unit_id", "name", "timestamp"])
        for goal in goals:
            for unit in by_account.get(goal["account_id"], []):
                writer.writerow([unit, "integration_connected", goal["timestamp"].isoformat()])

    measured = CliRunner().invoke(
        app,
        [
            *("measure", "--units", str(units_file), "--events", str(events_file)),
            *("--goal", "integration_connected", "--horizon", "21d", "--control", "holdout"),
            *(
                "--segment-by",
                "segment",
                "--weights",
                "holdout=0.25",
                "--weights",
                "treatment=0.75",
            ),
            # A job's report may be read while it runs, so it spends half of alpha on its
            # always-valid results: its fixed-horizon numbers are at alpha 0.025.
            *("--alpha", "0.025"),
            *("--format", "json"),
        ],
    )
    assert measured.exit_code == 0, measured.output
    from_files = json.loads(measured.output)
    from_report = job_report_model(report).model_dump(mode="json")["measurement"]
    assert isinstance(from_report, dict)
    # What only a job's report has: the always-valid results (and the status read from them
    # when they called the lift) and the covariates it adjusts for.
    report_only = {"sequential", "covariate_adjusted", "running", "status", "message", "decided_by"}
    for key in ("comparisons", "segments"):
        for item in (*from_files[key], *from_report[key]):
            for name in report_only & set(item):
                del item[name]
    for key in ("arms", "comparisons", "srm", "segments", "heterogeneity", "status"):
        assert_same_json(from_files[key], from_report[key], tolerance=1e-9, path=key)
    assert from_files["arms"]["treatment"]["n"] > 600
