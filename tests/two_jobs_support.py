"""Two jobs run in lockstep with a simulated company: what the refresh and library tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from closeloop.services.project import open_workspace
from closeloop.services.simulation import simulate_into, simulation_config
from support import VARIANT_JOB, embedded_backends, project_with_jobs

INVITE_JOB = """\
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


@dataclass(frozen=True)
class Simulated:
    """A project folder and the environment (DuckDB + SQLite files) to open it with."""

    folder: Path
    environ: dict[str, str]


def simulate_two_jobs(
    folder: Path, *, accounts: int, days: int, arrival_days: int, seed: int
) -> Simulated:
    """A project in ``folder`` with the variant job "Integration nudge" and "Invite a
    teammate", run in lockstep with a simulated heterogeneous company."""
    project = project_with_jobs(folder / "project", VARIANT_JOB, INVITE_JOB)
    environ = embedded_backends(folder).environ()
    config = simulation_config(
        "heterogeneous", accounts=accounts, days=days, arrival_days=arrival_days, seed=seed
    )
    with open_workspace(project, environ=environ) as workspace:
        simulate_into(workspace, config, run_jobs=True)
    return Simulated(project, environ)
