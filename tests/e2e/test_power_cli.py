"""`closeloop power` and `closeloop library` end to end.

Power numbers are checked against statsmodels and hand formulas; a job's estimates against the
same quantities counted another way; the library against the job report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from statsmodels.stats.power import NormalIndPower
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.data.compiler import matching_accounts
from closeloop.definitions.expressions import parse_expression
from closeloop.services import definitions as definitions_service
from closeloop.services.project import init_project, open_workspace
from closeloop.services.simulation import simulate_into, simulation_config
from closeloop.stats import required_sample_size
from support import embedded_backends

runner = CliRunner()

JOBS = """\
jobs:
  - name: Welcome
    audience: |
      signup_date within last 7 days
        and count(event "integration_connected") = 0
    goal: count(event "integration_connected") >= 1
    duration_days: 14
    holdout: 0.3
    steps:
      - send: email
        subject: "Welcome"
        template: integration_nudge
    hypothesis:
      expected_effect: More connect within two weeks.
      minimum_effect: 0.01
      horizon_days: 14
"""


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "json" in args else result.stdout


def mde_by_statsmodels(units: float, holdout: float, baseline: float) -> float:
    n_holdout = units * holdout
    effect_size = NormalIndPower().solve_power(
        nobs1=n_holdout, ratio=(units - n_holdout) / n_holdout, alpha=0.05, power=0.8
    )
    return float(effect_size * math.sqrt(baseline * (1 - baseline)))


def test_power_table_and_json_agree_with_statsmodels() -> None:
    payload = run(
        "power", "--weekly", "400", "--baseline", "0.3", "--holdout", "0.25",
        "--effect", "0.04", "--horizon", "21", "--format", "json",
    )  # fmt: skip
    assert [plan["weeks"] for plan in payload["plans"]] == [2, 4, 8, 12]
    for plan in payload["plans"]:
        units = 400 * plan["weeks"]
        assert plan["units"] == units
        assert plan["mde_absolute"] == pytest.approx(mde_by_statsmodels(units, 0.25, 0.3), rel=1e-3)
        assert plan["mde_relative"] == pytest.approx(plan["mde_absolute"] / 0.3)
        assert plan["days_until_result"] == 7 * plan["weeks"] + 21
    duration = payload["duration"]
    units = required_sample_size(0.3, 0.04, holdout_fraction=0.25)
    assert duration["units"] == units
    assert duration["enrollment_days"] == math.ceil(7 * units / 400)
    assert duration["days_until_result"] == duration["enrollment_days"] + 21
    table = run("power", "--weekly", "400", "--baseline", "0.3", "--weeks", "6", "--effect", "0.04")
    six = mde_by_statsmodels(2400, 0.2, 0.3)
    assert f"+{six * 100:.1f} pp" in table
    assert f"{duration['units']:,} units" not in table  # another holdout: another size
    assert f"{required_sample_size(0.3, 0.04):,} units" in table


def test_power_needs_numbers_or_a_job() -> None:
    result = runner.invoke(app, ["power", "--weekly", "100"])
    assert result.exit_code == 2
    assert "--baseline" in result.output


@dataclass(frozen=True)
class Project:
    folder: Path
    environ: dict[str, str]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("power")
    folder = root / "project"
    init_project(folder, name="power")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    environ = embedded_backends(root).environ()
    config = simulation_config("default", accounts=600, days=70, arrival_days=60, seed=3)
    with open_workspace(folder, environ=environ) as workspace:
        simulate_into(workspace, config)
    yield Project(folder, environ)


def test_power_for_a_job_that_never_ran_estimates_from_the_audience(project: Project) -> None:
    payload = run("power", "--job", "Welcome", "--format", "json", "--project", str(project.folder),
                  env=project.environ)  # fmt: skip
    job = payload["job"]
    assert job["weekly_volume"]["source"] == "audience"
    assert job["baseline_rate"]["source"] == "audience"
    assert job["planned_weeks"] == {
        "value": 8.0,
        "source": "default",
        "detail": "no starts_at/ends_at: 8 weeks",
    }
    assert payload["inputs"]["holdout_fraction"] == 0.3
    assert payload["inputs"]["horizon_days"] == 14
    assert payload["inputs"]["effect"] == 0.01  # the hypothesis' minimum effect
    with open_workspace(project.folder, environ=project.environ) as workspace:
        as_of = datetime.fromisoformat(job["as_of"])
        audience_text = JOBS.split("audience: |\n")[1].split("    goal:")[0]
        # A 7-day window: an account matches at one weekly point only, so the new entrants per
        # week are the matches at each point.
        counts = [
            definitions_service.explain(
                workspace, audience_text, as_of - timedelta(weeks=k), sample=0
            ).count
            for k in range(4)
        ]
        # Baseline: accounts in the audience 14 days before T that connected by T.
        start = as_of - timedelta(days=14)
        members = set(
            matching_accounts(parse_expression(audience_text), workspace.warehouse, start)
            .to_pyarrow()["account_id"]
            .to_pylist()
        )
        events = workspace.warehouse.table("events")
        events = events.filter(
            (events.name == "integration_connected") & (events.timestamp <= as_of)
        )
        connected = set(events.account_id.to_pyarrow().to_pylist())
    assert job["weekly_volume"]["value"] == pytest.approx(sum(counts) / 4)
    assert job["baseline_rate"]["value"] == pytest.approx(len(members & connected) / len(members))
    assert payload["planned"]["weeks"] == 8
    assert payload["underpowered"] is True
    assert any(warning.startswith("underpowered") for warning in payload["warnings"])
    table = run("power", "--job", "Welcome", "--effect", "0.5", "--project", str(project.folder),
                env=project.environ)  # fmt: skip
    assert "8 (planned)" in table
    assert "underpowered" not in table


def test_power_for_a_job_that_ran_uses_its_enrollments_and_holdout(project: Project) -> None:
    with open_workspace(project.folder, environ=project.environ) as workspace:
        events = workspace.warehouse.table("events")
        last = events.timestamp.max().to_pyarrow().as_py()
    first_tick = (last - timedelta(days=40)).replace(hour=0, minute=0, second=0, microsecond=0)
    last_tick = first_tick + timedelta(days=35)
    run("backfill", "--from", first_tick.isoformat(), "--to", last_tick.isoformat(),
        "--no-send", "--launch", "--project", str(project.folder), env=project.environ)  # fmt: skip
    payload = run("power", "--job", "Welcome", "--format", "json", "--project", str(project.folder),
                  env=project.environ)  # fmt: skip
    with open_workspace(project.folder, environ=project.environ) as workspace:
        rows = workspace.store.enrollments_table("Welcome")
    first = pc.min(rows["entered_at"]).as_py()
    days = (last_tick - first).total_seconds() / 86_400
    # The launch tick enrolls the audience's backlog at once; the volume counts what came after.
    later = sum(1 for entered in rows["entered_at"].to_pylist() if entered > first)
    assert 0 < later < rows.num_rows
    job = payload["job"]
    assert job["weekly_volume"]["source"] == "enrollments"
    assert job["weekly_volume"]["value"] == pytest.approx(later / days * 7)
    holdout = [
        row
        for row in rows.to_pylist()
        if row["arm"] == "holdout" and row["entered_at"] + timedelta(days=14) <= last_tick
    ]
    completed = sum(
        row["completed_at"] is not None
        and row["completed_at"] <= row["entered_at"] + timedelta(days=14)
        for row in holdout
    )
    assert job["baseline_rate"]["source"] == "holdout"
    assert job["baseline_rate"]["value"] == pytest.approx(completed / len(holdout))


def test_library_lists_filters_and_prints_jobs(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    init_project(folder, name="library")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    environ = embedded_backends(tmp_path).environ()
    config = simulation_config("heterogeneous", accounts=400, days=45, arrival_days=35, seed=5)
    with open_workspace(folder, environ=environ) as workspace:
        simulate_into(workspace, config, run_jobs=True)
    where = ("--project", str(folder))
    payload = run("library", "--format", "json", *where, env=environ)
    assert payload["count"] == 1
    (entry,) = payload["jobs"]
    report = run("report", "Welcome", "--format", "json", *where, env=environ)
    assert entry["name"] == "Welcome"
    assert entry["enrolled"] == report["arms"]["holdout"]["entered"] + sum(
        arm["entered"] for name, arm in report["arms"].items() if name != "holdout"
    )
    assert entry["status"] == report["status"]
    assert entry["variants"] == [
        {
            "name": "treatment",
            "weight": 1.0,
            "sends": [
                {
                    "day": 0.0,
                    "subject": "Welcome",
                    "template": "integration_nudge",
                    "channel": "email",
                }
            ],
        }
    ]
    segment = run("library", "--segment", "self_serve", "--goal", "integration",
                  "--sort", "effect", "--format", "json", *where, env=environ)  # fmt: skip
    assert {row["segment"] for row in segment["jobs"][0]["segments"]} == {"self_serve"}
    assert run("library", "--goal", "teammate", "--format", "json", *where, env=environ) == {
        "count": 0,
        "jobs": [],
    }
    table = run("library", "--segment", "self_serve", *where, env=environ)
    assert "Welcome" in table and "day 0: 'Welcome'" in table
    assert "segment=self_serve" in table and "segment=enterprise" not in table
    bad = runner.invoke(app, ["library", "--sort", "size", *where], env=environ)
    assert bad.exit_code == 2
