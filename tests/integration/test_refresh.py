"""The measurement refresh gives every job exactly the report measuring it alone gives."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from closeloop.analysis.job_report import JobReport
from closeloop.services.project import open_workspace
from closeloop.services.refresh import refresh_measurements
from closeloop.services.reports import job_report
from closeloop.services.results import job_report_model
from closeloop.services.simulation import simulate_into, simulation_config
from support import VARIANT_JOB, embedded_backends, project_with_jobs

INVITE = """\
  - name: Invite a teammate
    audience: |
      signup_date within last 10 days
        and count(event "teammate_invited") = 0
    goal: count(event "teammate_invited") >= 1
    duration_days: 10
    holdout: 0.3
    steps:
      - wait_days: 2
      - send: email
        subject: "Work together"
        template: integration_nudge
"""


def test_every_jobs_report_from_the_refresh_equals_its_own_report(tmp_path: Path) -> None:
    project = project_with_jobs(tmp_path / "project", VARIANT_JOB, INVITE)
    environ = embedded_backends(tmp_path).environ()
    config = simulation_config("heterogeneous", accounts=300, days=50, arrival_days=30, seed=5)
    with open_workspace(project, environ=environ) as workspace:
        simulate_into(workspace, config, run_jobs=True)
        refreshed = refresh_measurements(workspace)
        assert sorted(refreshed) == ["Integration nudge", "Invite a teammate"]
        for name, report in refreshed.items():
            assert isinstance(report, JobReport), report
            alone = job_report(workspace, name)
            assert report.measurement.arms["holdout"].n > 20
            assert (
                _differences(
                    job_report_model(report).model_dump(mode="json"),
                    job_report_model(alone).model_dump(mode="json"),
                )
                == []
            )


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two dumped reports differ; floats may differ in the last bits (sums in the
    warehouse are added in whatever order its threads finish)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for key in sorted(set(a) | set(b))
            for d in _differences(a.get(key), b.get(key), f"{path}/{key}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-12):
        return []
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
