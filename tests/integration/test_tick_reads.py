"""A tick of many jobs asks the warehouse once for all of them: the answers are each job's own.

`closeloop.engine.tick_reads` reads every job's eligible units and goal times in one query per
target. These tests hold it to the per-job questions on a simulated company with jobs of many
shapes (account and person targets, exclusions, stages, windowed and k-th-event goals, computed
attributes, a job that mentions another job): the same eligible units and goal times at several
times, and ticks over several weeks that record exactly the same enrollments and outbox rows as
ticks that ask job by job.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from closeloop.data import history, rollups
from closeloop.definitions.expressions import Entity
from closeloop.engine import schema
from closeloop.engine.lifecycle import remove_account
from closeloop.engine.steps import Unit
from closeloop.engine.tick import _completions, _eligible, preview_tick, run_tick, tick_reads
from closeloop.engine.tick_reads import Candidates, Running, TickReads, references_jobs
from closeloop.services import engine_runs
from closeloop.services.power import estimate_launches, launch_plan
from closeloop.services.project import Workspace, init_project, open_workspace
from closeloop.services.simulation import simulate_into, simulation_config

JOBS = """\
jobs:
  - name: Lapsing
    audience: 'count(event "login" in last 14 days) < 3 and count(event "login") >= 5'
    goal: 'count(event "login" in last 7 days) >= 3'
    duration_days: 21
    holdout: 0.2
    steps: [{send: email, subject: "Hi {{ account.name }}", template: integration_nudge}]
  - name: Connect
    audience: 'signup_date within last 30 days and count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    exclusions: ['segment = "enterprise"', 'count(event "support_ticket_created") >= 3']
    duration_days: 30
    holdout: 0.2
    steps: [{send: email, subject: "Connect {{ account.name }}", template: integration_nudge}]
  - name: Reports
    audience: >-
      count(event "report_viewed") >= 1 and last(event "report_viewed") more than 10 days ago
    goal: 'count(event "report_viewed") >= 3'
    duration_days: 30
    holdout: 0.3
    exit_when_ineligible: true
    steps: [{send: email, subject: "Reports", template: integration_nudge}]
  - name: Onboarding help
    audience: 'in stage "Onboarding" and count(event "first_project_created") = 0'
    goal: 'count(event "first_project_created") >= 1'
    duration_days: 30
    holdout: 0.2
    steps: [{send: email, subject: "Start", template: integration_nudge}]
  - name: Features
    audience: 'count(event "feature_used" in last 21 days) = 0 and count(event "login") >= 1'
    goal: 'count(event "feature_used" in last 7 days) >= 5'
    exclusions: ['entered job "Lapsing" within last 30 days']
    duration_days: 14
    holdout: 0.2
    steps: [{send: email, subject: "Features", template: integration_nudge}]
  - name: People logins
    target: person
    audience: 'count(event "login" in last 30 days) >= 2 and count(event "feature_used") = 0'
    goal: 'count(event "feature_used") >= 1'
    exclusions: ['person.role = "admin"']
    duration_days: 21
    holdout: 0.2
    exit_when_ineligible: true
    steps: [{send: email, subject: "Try it", template: integration_nudge}]
  - name: People invites
    target: person
    audience: 'first(event "login") within last 60 days'
    goal: 'count(event "teammate_invited") >= 1 and count(event "login") >= 2'
    duration_days: 30
    holdout: 0.2
    steps: [{send: email, subject: "Invite", template: integration_nudge}]
"""


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated company with the jobs above (module-wide: simulating takes seconds)."""
    folder = tmp_path_factory.mktemp("tick_reads") / "project"
    init_project(folder)
    (folder / "jobs.yaml").write_text("jobs: []\n", encoding="utf-8")
    with open_workspace(folder) as workspace:
        simulate_into(workspace, simulation_config("default", accounts=250, days=120, seed=11))
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    return folder


def _end_of_data(workspace: Workspace) -> datetime:
    newest = workspace.warehouse.table("events").timestamp.max().to_pyarrow().as_py()
    assert isinstance(newest, datetime)
    return datetime.combine(newest.date(), datetime.min.time())


def _synthetic_candidates(workspace: Workspace, at: datetime) -> dict[Entity, Candidates]:
    """Units that could be running: every third account and person, entered up to 40 days ago."""
    found: dict[Entity, Candidates] = {}
    for target, table, key in (
        (Entity.ACCOUNT, "accounts", "account_id"),
        (Entity.PERSON, "people", "person_id"),
    ):
        keys = sorted(workspace.warehouse.table(table)[key].to_pyarrow().to_pylist())[::3]
        found[target] = tuple(
            (unit, at - timedelta(days=index % 40, hours=index % 7))
            for index, unit in enumerate(keys)
        )
    return found


def test_reads_equal_each_job_asked_alone(company: Path) -> None:
    with open_workspace(company) as workspace, history.recorded_names_fixed():
        project, warehouse = workspace.project, workspace.warehouse
        jobs = [project.job(name) for name in sorted(project.jobs)]
        assert any(references_jobs(job) for job in jobs)  # the one asked alone
        end = _end_of_data(workspace)
        rollup = rollups.refresh(warehouse)
        checked = {"eligible": 0, "reached": 0}
        for at in (end - timedelta(days=45), end - timedelta(days=9, hours=5), end):
            candidates = _synthetic_candidates(workspace, at)

            def running(job: Any, candidates: dict[Entity, Candidates] = candidates) -> Running:
                target = Entity(job.definition.target)
                pairs = candidates[target]
                active = [
                    Unit(f"e{index}", unit, unit if target == Entity.PERSON else None, "treatment")
                    for index, (unit, _) in enumerate(pairs)
                ]
                entered = {f"e{index}": moment for index, (_, moment) in enumerate(pairs)}
                return Running(None, active, entered, target)

            reads = TickReads(project, jobs, warehouse, at, running, rollup)
            for job in jobs:
                alone = _eligible(project, job, warehouse, at, rollup)
                batched = reads.eligible(job)
                if references_jobs(job):
                    assert batched is None
                    continue
                assert batched == alone, job.name
                checked["eligible"] += len(alone)
                read = running(job)
                pairs, active, entered = read.candidates, read.units, read.entered
                reached = reads.reached(job, pairs)
                assert reached is not None
                # The same question alone, through the per-job path of the tick.
                alone_done = _completions(project, job, warehouse, active, entered, at, rollup)
                batched_done = _completions(
                    project, job, warehouse, active, entered, at, rollup, reads
                )
                assert batched_done == alone_done, job.name
                checked["reached"] += len(alone_done)
                # Candidates other than the ones read ahead are asked alone.
                assert reads.reached(job, pairs[1:]) is None
        # The comparison is not vacuous: units were eligible and goals were reached.
        assert checked["eligible"] > 100 and checked["reached"] > 50, checked


def _store_rows(workspace: Workspace) -> tuple[list[Any], list[Any]]:
    e, o = schema.enrollments, schema.outbox
    with workspace.store.engine.connect() as connection:
        enrollments = connection.execute(
            sa.select(
                e.c.enrollment_id,
                e.c.job_name,
                e.c.account_id,
                e.c.person_id,
                e.c.arm,
                e.c.entered_at,
                e.c.completed_at,
                e.c.exited_at,
                e.c.exit_reason,
            ).order_by(e.c.enrollment_id)
        ).all()
        outbox = connection.execute(
            sa.select(
                o.c.idempotency_key, o.c.status, o.c.channel, o.c.payload, o.c.due_at
            ).order_by(o.c.idempotency_key)
        ).all()
    messages = []
    for key, status, channel, payload, due in outbox:
        body = json.loads(payload)
        body.pop("unsubscribe_url", None)  # signed with the wall clock's time
        messages.append((key, status, channel, body, due))
    return [tuple(row) for row in enrollments], messages


def _tick_rows(folder: Path, times: list[datetime], batched: bool) -> tuple[list[Any], list[Any]]:
    """Tick every job at ``times``, through one TickReads per tick or job by job alone."""
    with open_workspace(folder) as workspace:
        for index, at in enumerate(times):
            if batched:
                engine_runs.tick(workspace, at, launch=index == 0)
                continue
            links = engine_runs.unsubscribe_links(workspace)
            with history.recorded_names_fixed():
                if index == 0:
                    estimate_launches(workspace, list(workspace.project.jobs), at)
                rollup = rollups.refresh(workspace.warehouse)
                for name in engine_runs._job_names(workspace, None):
                    run_tick(
                        workspace.project,
                        workspace.project.job(name),
                        workspace.warehouse,
                        workspace.store,
                        at,
                        workspace.settings.author,
                        launch=index == 0,
                        unsubscribe_url=links.url,
                        launch_plan=partial(launch_plan, workspace, name, at),
                        rollup=rollup,
                    )
        return _store_rows(workspace)


@pytest.mark.slow  # about 1.5 minutes: 9 ticks of 7 jobs, twice
def test_ticks_record_what_job_by_job_ticks_record(company: Path, tmp_path: Path) -> None:
    with open_workspace(company) as workspace:
        end = _end_of_data(workspace)
    times = [end - timedelta(days=40) + timedelta(days=5 * step) for step in range(9)]
    recorded = {}
    for batched in (False, True):
        folder = tmp_path / ("batched" if batched else "alone")
        shutil.copytree(company, folder)
        recorded[batched] = _tick_rows(folder, times, batched)
    enrollments, messages = recorded[True]
    assert enrollments == recorded[False][0]
    assert messages == recorded[False][1]
    # Every kind of decision happened: entries, completions and exits of several reasons.
    reasons = {row[8] for row in enrollments if row[7] is not None}
    assert len(enrollments) > 200 and any(row[6] is not None for row in enrollments)
    assert {"timeout", "no_longer_eligible"} <= reasons, reasons
    assert any(row[3] is not None for row in enrollments)  # person targets enrolled


def test_enrollments_changed_after_the_read_ahead_are_read_again(
    company: Path, tmp_path: Path
) -> None:
    """A job whose enrollments change between the read-ahead and its decision (here an account
    removed by hand; another process's tick bumps the revision the same way) decides from its
    enrollments read afresh: it records what a tick that read after the change records."""
    with open_workspace(company) as workspace:
        end = _end_of_data(workspace)
    launch_at, at = end - timedelta(days=20), end - timedelta(days=10)
    recorded = {}
    for stale in (False, True):
        folder = tmp_path / ("stale" if stale else "fresh")
        shutil.copytree(company, folder)
        with open_workspace(folder) as workspace:
            engine_runs.tick(workspace, launch_at, launch=True)
            store, project = workspace.store, workspace.project
            job = project.job("Lapsing")
            # An account that reaches the goal by ``at``: read stale, it would complete.
            completing = preview_tick(project, job, workspace.warehouse, store, at).completing
            assert completing
            e = schema.enrollments
            with store.engine.connect() as connection:
                account = connection.execute(
                    sa.select(e.c.account_id).where(e.c.enrollment_id == min(completing))
                ).scalar_one()
            with history.recorded_names_fixed():
                rollup = rollups.refresh(workspace.warehouse)
                reads = tick_reads(project, [job], workspace.warehouse, store, at, rollup)
                revision = store.job_record(job.name).revision
                if stale:  # read ahead before the change
                    read = reads.running_at(job, revision)
                    assert read is not None and account in {u.account_id for u in read.units}
                remove_account(store, job.name, account, "test", launch_at + timedelta(days=1))
                now = store.job_record(job.name).revision
                assert now > revision
                if stale:
                    assert reads.running_at(job, now) is None
                result = run_tick(
                    project, job, workspace.warehouse, store, at, rollup=rollup, reads=reads
                )
            assert result.completed + result.exited > 0  # the tick decided something
            recorded[stale] = _store_rows(workspace)
    assert recorded[True] == recorded[False]
    removed = [row for row in recorded[True][0] if row[8] == "removed"]
    assert len(removed) == 1
