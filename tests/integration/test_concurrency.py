"""Ticks racing each other in real processes: no unit is ever enrolled twice at once.

Every round forks two or three ``closeloop tick`` processes (see ``engine_processes``) and releases
them together, at equal or different ``--at`` times, while the data changes between rounds (new
accounts enter the audience, enrolled ones reach the goal, enrollments time out and re-enter).
The warehouse is PostgreSQL in both cases, so the processes overlap for real; the state store is
a SQLite file or the same PostgreSQL database. After every round no (job, unit) has two
enrollments whose intervals overlap, and every process either succeeded or lost its race with a
clear message (a stale tick, a job changed by another process), never with a traceback.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from engine_processes import (
    DAY0,
    EngineProcess,
    EngineServer,
    ProjectSetup,
    active_accounts,
    add_accounts,
    add_goal_events,
    engine_environ,
    overlapping_enrollments,
    problems_in_output,
    project_setup,
    run_installed_together,
    run_together,
)

from closeloop.data.warehouse import Warehouse
from closeloop.engine import schema
from closeloop.engine.state import launch_salt
from closeloop.engine.tick import StaleTickError
from closeloop.services import engine_runs
from closeloop.services.project import init_project, open_workspace
from closeloop.services.smtp_sink import SmtpSink

# 10 rounds in CI (about 25 processes per state store); CLOSELOOP_RACE_ROUNDS=100 for a soak.
ROUNDS = int(os.environ.get("CLOSELOOP_RACE_ROUNDS", "10"))
NUDGE, WELCOME = "Nudge", "Welcome"
JOBS = f"""\
jobs:
  - name: {NUDGE}
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 1
    re_entry: {{after_days: 0.25}}
    holdout: 0.2
    steps:
      - send: email
        subject: "{{{{ account.name }}}}: connect your first integration"
        template: integration_nudge
  - name: {WELCOME}
    audience: 'signup_date within last 2 days'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 3
    holdout: 0.5
    steps:
      - send: email
        subject: "Welcome, {{{{ account.name }}}}"
        template: integration_nudge
"""
TICK_LINE = re.compile(
    r"^(?P<job>\w+) @ (?P<at>\d{4}-\d\d-\d\d \d\d:\d\d)(?P<done> \(already done\))?"
)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str, sink: SmtpSink
) -> Iterator[ProjectSetup]:
    """A project on a PostgreSQL warehouse with a SQLite or PostgreSQL state store."""
    state = f"sqlite:///{tmp_path / 'state.sqlite'}" if request.param == "sqlite" else postgres_url
    with project_setup(tmp_path / "project", JOBS, postgres_url, state, sink.port) as opened:
        yield opened


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")


def _work_done(children: list[EngineProcess]) -> Counter[tuple[str, str]]:
    """(job, at) -> how many processes printed that they did the tick (not "already done")."""
    done: Counter[tuple[str, str]] = Counter()
    for child in children:
        if child.returncode != 0:
            continue
        for line in child.stdout().splitlines():
            match = TICK_LINE.match(line)
            if match and not match["done"]:
                done[(match["job"], match["at"])] += 1
    return done


def _check_round(setup: ProjectSetup, children: list[EngineProcess], label: str) -> None:
    problems = [problem for child in children for problem in problems_in_output(child)]
    assert not problems, f"{label}:\n" + "\n".join(problems)
    overlaps = overlapping_enrollments(setup.store)
    assert not overlaps, f"{label}: overlapping enrollments {overlaps}"
    twice = [key for key, count in _work_done(children).items() if count > 1]
    assert not twice, f"{label}: two processes did the same tick {twice}"


@pytest.mark.slow
@pytest.mark.postgres
def test_racing_ticks_never_enroll_a_unit_twice(setup: ProjectSetup, sink: SmtpSink) -> None:
    """``ROUNDS`` rounds of two or three ticks released together (see the module docstring)."""
    generator = random.Random(20240301)
    outcomes: Counter[str] = Counter()
    processes = 0
    moment = DAY0
    next_account = 40
    with EngineServer(setup.folder / "processes") as server:
        for round_number in range(ROUNDS):
            # Two or three processes, at equal or nearby times, some launching, some sending.
            count = generator.choice((2, 3))
            offsets = [generator.choice((0, 0, 1, 2)) for _ in range(count)]
            commands = []
            for offset in offsets:
                argv = ["tick", "--at", _at(moment + timedelta(hours=offset))]
                if round_number == 0 or generator.random() < 0.2:
                    argv.append("--launch")
                if generator.random() < 0.5:
                    argv.append("--no-send")
                commands.append([*argv, "--project", str(setup.folder)])
            children = run_together(server, commands, setup.environ, timeout=120)
            processes += len(children)
            _check_round(setup, children, f"round {round_number} {offsets}")
            for child in children:
                outcomes += _outcomes(child)
            # The data moves on: new accounts arrive, some enrolled accounts reach the goal.
            latest = moment + timedelta(hours=max(offsets))
            with open_workspace(setup.folder, environ=setup.environ) as workspace:
                added = generator.randint(2, 6)
                arriving = [latest + timedelta(minutes=5)]
                add_accounts(workspace.warehouse, next_account, added, arriving)
                next_account += added
                active = sorted(active_accounts(setup.store, NUDGE))
                finishing = generator.sample(active, k=len(active) // 5)
                reached = latest + timedelta(minutes=10)
                add_goal_events(workspace.warehouse, [(account, reached) for account in finishing])
            moment += timedelta(hours=6)
    sent = Counter(message["Message-ID"] for message in sink.messages)
    assert sent and max(sent.values()) == 1, "a message went out twice without any crash"
    with setup.store.engine.connect() as connection:
        enrollments = connection.execute(sa.select(sa.func.count()).select_from(schema.enrollments))
        total = enrollments.scalar_one()
    print(
        f"\n[concurrency/{setup.state_kind}] {ROUNDS} rounds, {processes} processes; job ticks: "
        f"{dict(outcomes)}; {total} enrollments, {len(sent)} emails, 0 overlaps"
    )
    assert outcomes["did work"] >= ROUNDS  # every round moved on
    # Rounds with two processes at one time: for each job one of them finds the tick done.
    assert outcomes["already done"] > 0


def _outcomes(child: EngineProcess) -> Counter[str]:
    """What one process did: per job, a tick done or found done; or how it lost its race."""
    if child.returncode != 0:
        stderr = child.stderr()
        lost = "stale tick" if "ticks only move forward" in stderr else "changed by another process"
        return Counter([lost])
    lines = [TICK_LINE.match(line) for line in child.stdout().splitlines()]
    return Counter("already done" if match["done"] else "did work" for match in lines if match)


@pytest.mark.postgres
def test_the_same_tick_twice_at_once_is_done_once(setup: ProjectSetup) -> None:
    """Pairs of processes at one ``--at``: one does the work, the other finds it done."""
    with EngineServer(setup.folder / "processes") as server:
        for repeat in range(4):
            at = _at(DAY0 + timedelta(days=repeat))
            commands = [
                ["tick", "--at", at, "--launch", "--no-send", "--project", str(setup.folder)]
            ] * 2
            children = run_together(server, commands, setup.environ)
            _check_round(setup, children, f"same tick {at}")
            for job in (NUDGE, WELCOME):
                key = (job, at.replace("T", " "))
                assert _work_done(children)[key] == 1 or any(
                    child.returncode != 0 for child in children
                ), [child.describe() for child in children]


@pytest.mark.postgres
@pytest.mark.parametrize("setup", ["postgres"], indirect=True)
def test_installed_commands_race_the_same_way(setup: ProjectSetup) -> None:
    """The same tick twice from two full ``python -m closeloop.cli.main`` processes, without the
    fork server: one does the tick, the other finds it done (or loses with a clear message)."""
    command = ["tick", "--at", _at(DAY0), "--launch", "--no-send", "--project", str(setup.folder)]
    finished = run_installed_together(setup.folder / "installed", [command] * 2, setup.environ)
    problems = [problem for child in finished for problem in problems_in_output(child)]
    assert not problems, "\n".join(problems)
    assert overlapping_enrollments(setup.store) == []
    for job in (NUDGE, WELCOME):
        done = [
            match["done"]
            for child in finished
            if child.returncode == 0
            for match in map(TICK_LINE.match, child.stdout().splitlines())
            if match and match["job"] == job
        ]
        assert done.count(None) == 1 or any(child.returncode for child in finished), done


@pytest.mark.postgres
def test_racing_launches_launch_once(setup: ProjectSetup) -> None:
    """``jobs launch`` and first ticks racing at launch: one launch, one salt, one first tick."""
    folder = str(setup.folder)
    with EngineServer(setup.folder / "processes") as server:
        for job, times in ((NUDGE, (0, 0, 1)), (WELCOME, (1, 0))):
            commands = [
                ["jobs", "launch", job, "--at", _at(DAY0 + timedelta(hours=hours)), "-p", folder]
                for hours in times
            ]
            commands.append(["tick", "--at", _at(DAY0), "--job", job, "--launch", "--no-send"])
            commands[-1] += ["--project", folder]
            children = run_together(server, commands, setup.environ)
            _check_round(setup, children, f"launching {job}")
            with setup.store.engine.connect() as connection:
                j, t = schema.jobs, schema.ticks
                launched = connection.execute(sa.select(j).where(j.c.name == job)).mappings().all()
                first_tick = connection.execute(
                    sa.select(sa.func.min(t.c.at)).where(t.c.job_name == job)
                ).scalar()
                launches = connection.execute(
                    sa.select(sa.func.count())
                    .select_from(schema.audit_log)
                    .where(schema.audit_log.c.action == "job.launched")
                    .where(schema.audit_log.c.subject == job)
                ).scalar_one()
            assert len(launched) == 1 and launches == 1
            assert launched[0]["salt"] == launch_salt(job, launched[0]["launched_at"])
            # A launch and its first tick are one transaction: nothing ticks before the launch.
            assert first_tick == launched[0]["launched_at"]


def test_the_first_tick_is_the_launch_when_launches_interleave(tmp_path: Path) -> None:
    """Two launches at different times: A (``jobs launch --at T+1h``) and B (``tick --at T
    --launch``). A launch is written in its first tick's transaction, so whichever records first
    is the launch, and nothing may enroll before the job launched: after A, B's earlier tick is
    refused as stale; B first, and A's tick is the job's second."""
    for order in ("A first", "B first"):
        folder = tmp_path / order.replace(" ", "_")
        warehouse = f"duckdb:///{folder.with_suffix('.duckdb')}"
        state = f"sqlite:///{folder.with_suffix('.sqlite')}"
        with (
            project_setup(folder, JOBS, warehouse, state, 1) as setup,
            open_workspace(folder, environ=setup.environ) as workspace,
        ):
            store = workspace.store
            later = DAY0 + timedelta(hours=1)
            if order == "A first":
                engine_runs.tick(workspace, later, NUDGE, launch=True)
                with pytest.raises(StaleTickError):
                    engine_runs.tick(workspace, DAY0, NUDGE, launch=True)
                expected_launch = later
            else:
                engine_runs.tick(workspace, DAY0, NUDGE, launch=True)
                (second,) = engine_runs.tick(workspace, later, NUDGE, launch=True)
                assert not second.already_done
                expected_launch = DAY0
            entries = [row["entered_at"] for row in store.enrollments_table(NUDGE).to_pylist()]
            launched_at = store.job_record(NUDGE).launched_at
        assert launched_at == expected_launch
        assert entries and min(entries) >= launched_at, (
            f"{order}: units enrolled at {min(entries)}, before the job's launch at {launched_at}"
        )


@pytest.mark.postgres
@pytest.mark.parametrize("new", ["warehouse", "state store"])
def test_first_commands_on_a_new_postgres_database_all_succeed(
    tmp_path: Path, postgres_url: str, new: str
) -> None:
    """The first commands of a deployment (two cron entries, a server starting) may start at the
    same moment on a brand-new PostgreSQL warehouse, or a brand-new PostgreSQL state store:
    whichever process creates the tables, every one ticks or finds the tick done; none fails
    because another was creating the same table at the same time.

    ``warehouse``: a new PostgreSQL warehouse, a SQLite state store (whose migrations serialise).
    ``state store``: a new PostgreSQL state store on a warehouse whose tables already exist.
    """
    with EngineServer(tmp_path / "processes") as server:
        for attempt in range(3):
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute("DROP SCHEMA public CASCADE")
                admin.execute("CREATE SCHEMA public")
            folder = tmp_path / f"project{attempt}"
            init_project(folder, name=folder.name)
            (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
            if new == "warehouse":
                state = f"sqlite:///{tmp_path / f'state{attempt}.sqlite'}"
            else:
                state = postgres_url
                with Warehouse.connect(postgres_url) as warehouse:
                    warehouse.ensure_tables()
            command = ["tick", "--at", _at(DAY0), "--launch", "--no-send", "--project", str(folder)]
            children = run_together(server, [command] * 3, engine_environ(postgres_url, state, 1))
            problems = [problem for child in children for problem in problems_in_output(child)]
            assert not problems, "\n".join(problems)
