"""N* fixed at launch: the tick that launches a job stores its power plan, and reports use it.

Sixty days of sign-ups (three a day, every third connecting an integration two days in) give the
power service an audience to estimate weekly volume and the baseline from. ``Planned`` can be
planned; ``Unplanned`` has a goal nobody ever reached, so its baseline leaves nothing to detect
and its launch stores no plan. Runs on DuckDB + SQLite and, when available, PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from closeloop.analysis.job_report import FALLBACK_TUNING
from closeloop.analysis.verdict import Decision
from closeloop.data.warehouse import Warehouse
from closeloop.engine.state import LaunchPlan
from closeloop.errors import NotFoundError
from closeloop.services import engine_runs, operations, reports
from closeloop.services.power import estimate_launches, launch_check, launch_plan, plan_job_power
from closeloop.services.project import Workspace, init_project, open_workspace
from closeloop.services.results import job_report_model
from support import Backends

DAY0 = datetime(2024, 6, 3)
HISTORY_DAYS = 60
PER_DAY = 3
MINIMUM_EFFECT = 0.05
NO_PLAN_WARNING = "no power plan was stored when this job launched"


def _job(name: str, goal_event: str) -> str:
    return f"""
  - name: {name}
    audience: |
      signup_date within last 7 days
        and count(event "integration_connected") = 0
    goal: count(event "{goal_event}") >= 1
    duration_days: 14
    holdout: 0.3
    steps:
      - send: email
        subject: "Connect {{{{ account.name }}}}"
        template: integration_nudge
    hypothesis:
      expected_effect: More accounts connect an integration within two weeks.
      minimum_effect: {MINIMUM_EFFECT}
"""


def _seed(warehouse: Warehouse) -> None:
    created = [
        DAY0 - timedelta(days=HISTORY_DAYS) + timedelta(hours=24 * index / PER_DAY)
        for index in range(HISTORY_DAYS * PER_DAY)
    ]
    ids = [f"acc-{index:03d}" for index in range(len(created))]
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ids,
                "name": [f"Company {index}" for index in range(len(ids))],
                "created_at": created,
                "segment": ["smb" if index % 2 else "enterprise" for index in range(len(ids))],
            },
        ),
    )
    warehouse.append(
        "people",
        warehouse.arrow_for(
            "people",
            {
                "person_id": [f"{a}-p" for a in ids],
                "account_id": ids,
                "email": [f"admin@{a}.test" for a in ids],
                "name": [f"Admin {a}" for a in ids],
                "created_at": created,
            },
        ),
    )
    connected = [
        (account, at + timedelta(days=2))
        for index, (account, at) in enumerate(zip(ids, created, strict=True))
        if index % 3 == 0 and at + timedelta(days=2) < DAY0
    ]
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"ev-{account}" for account, _ in connected],
                "account_id": [account for account, _ in connected],
                "person_id": [f"{account}-p" for account, _ in connected],
                "name": ["integration_connected"] * len(connected),
                "timestamp": [at for _, at in connected],
            },
        ),
    )


@pytest.fixture
def workspace(tmp_path: Path, backends: Backends) -> Iterator[Workspace]:
    folder = tmp_path / "project"
    init_project(folder, name="plans")
    jobs = (
        _job("Planned", "integration_connected")
        + _job("Unplanned", "report_viewed")
        + _job("Nobody", "integration_connected").replace(
            "signup_date within last 7 days", 'segment = "none of them"'
        )
    )
    (folder / "jobs.yaml").write_text("jobs:" + jobs, encoding="utf-8")
    with open_workspace(folder, environ=backends.environ()) as opened:
        _seed(opened.warehouse)
        yield opened


def test_the_launch_stores_the_plan_and_the_report_is_tuned_by_it(workspace: Workspace) -> None:
    # What the power service plans at DAY0 before anything ran is what the launch must store.
    expected = launch_plan(workspace, "Planned", DAY0)
    assert expected is not None
    power = plan_job_power(workspace, "Planned", as_of=DAY0)
    assert power.job is not None and power.planned is not None
    assert power.job.weekly_volume.source == "audience"
    assert power.job.baseline_rate.source == "audience"
    assert expected.units == power.planned.units > 0
    baseline = expected.baseline
    assert baseline is not None and 0 < baseline < 1
    assert baseline == power.job.baseline_rate.value
    assert expected.relative_effect == pytest.approx(MINIMUM_EFFECT / baseline)

    (launched,) = engine_runs.tick(workspace, DAY0, "Planned", launch=True)
    assert launched.entered > 0
    record = workspace.store.job_record("Planned")
    assert isinstance(record.plan, LaunchPlan)
    assert record.plan == expected

    # A later tick sees enrollments (the volume estimate would now come from them) but the plan
    # stays the one fixed at launch.
    (later,) = engine_runs.tick(workspace, DAY0 + timedelta(days=1), "Planned")
    assert later.version == launched.version
    assert workspace.store.job_record("Planned").plan == expected

    report = reports.job_report(workspace, "Planned")
    plan = record.plan
    assert report.plan == plan
    options = report.measurement.options
    assert options.sequential_tuning == plan.units
    assert (options.planned_baseline, options.planned_effect) == (
        plan.baseline,
        plan.relative_effect,
    )
    assert not any(NO_PLAN_WARNING in warning for warning in report.warnings)
    verdict = report.verdict
    assert verdict is not None
    assert verdict.sample.planned_units == plan.units
    # Two days in, with a 14-day horizon nothing has matured: not called, keep running.
    assert verdict.sample.matured_units == 0 and verdict.sample.running
    assert verdict.decision is Decision.KEEP_RUNNING
    payload = job_report_model(report).model_dump(mode="json")
    assert payload["plan"] == {
        "units": plan.units,
        "baseline": plan.baseline,
        "relative_effect": plan.relative_effect,
    }


def test_a_launch_without_a_plan_stores_none_and_the_report_says_so(workspace: Workspace) -> None:
    # Nobody ever viewed a report: a 0% baseline leaves nothing to detect.
    with pytest.raises(NotFoundError, match="leaves nothing to detect"):
        plan_job_power(workspace, "Unplanned", as_of=DAY0)
    assert launch_plan(workspace, "Unplanned", DAY0) is None

    (launched,) = engine_runs.tick(workspace, DAY0, "Unplanned", launch=True)
    assert launched.entered > 0
    assert workspace.store.job_record("Unplanned").plan is None

    report = reports.job_report(workspace, "Unplanned")
    assert report.plan is None
    assert report.measurement.options.sequential_tuning == FALLBACK_TUNING
    (warning,) = [w for w in report.warnings if NO_PLAN_WARNING in w]
    assert f"tuned for {FALLBACK_TUNING:,} units" in warning
    assert report.verdict is not None
    assert report.verdict.sample.planned_units is None
    assert job_report_model(report).plan is None


@pytest.mark.parametrize("batch", [1, 3])
def test_launch_estimates_equal_each_jobs_own(workspace: Workspace, batch: int) -> None:
    # Each job estimated on its own (nothing cached yet), then by the launch: one query per job,
    # or all three jobs in one query.
    names = ["Planned", "Unplanned", "Nobody"]
    alone = {name: _plan_or_error(workspace, name) for name in names}
    checks = [line for name in names for line in launch_check(workspace, name, DAY0)]
    plans = {name: launch_plan(workspace, name, DAY0) for name in names}
    assert isinstance(alone["Nobody"], str) and "nobody was in the audience" in alone["Nobody"]
    assert isinstance(alone["Unplanned"], str) and "nothing to detect" in alone["Unplanned"]

    estimate_launches(workspace, names, DAY0, batch=batch)
    assert {name: _plan_or_error(workspace, name) for name in names} == alone
    assert operations.launch_checks(workspace, names, DAY0) == checks
    assert {name: launch_plan(workspace, name, DAY0) for name in names} == plans


def _plan_or_error(workspace: Workspace, name: str) -> dict[str, object] | str:
    try:
        return plan_job_power(workspace, name, as_of=DAY0).model_dump(mode="json")
    except NotFoundError as error:
        return str(error)
