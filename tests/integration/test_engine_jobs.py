"""Every job field, honoured by the engine on real parts (DuckDB + SQLite, and PostgreSQL)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from closeloop.channels.email import EMAIL, SmtpSender
from closeloop.data.warehouse import Warehouse
from closeloop.engine import schema
from closeloop.engine import tick as tick_module
from closeloop.engine.assignment import HOLDOUT
from closeloop.engine.dispatcher import Dispatcher
from closeloop.engine.steps import COMPLETION_STEP, OutboxStatus
from closeloop.services import engine_runs, reports
from closeloop.services.project import Workspace, init_project, open_workspace
from closeloop.services.smtp_sink import SmtpSink
from support import Backends, run_tick

DAY0 = datetime(2024, 3, 1)
EMAIL_STEP = """
      - send: email
        subject: "{{ account.name }}: connect your first integration"
        template: integration_nudge"""

OpenProject = Callable[..., Workspace]


def _seed(warehouse: Warehouse, accounts: int, people_per_account: int = 1) -> None:
    ids = [f"acc-{i:04d}" for i in range(accounts)]
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ids,
                "name": [f"Company {i}" for i in range(accounts)],
                "created_at": [DAY0 - timedelta(hours=6)] * accounts,
            },
        ),
    )
    people = [(a, f"{a}-p{k}") for a in ids for k in range(people_per_account)]
    warehouse.append(
        "people",
        warehouse.arrow_for(
            "people",
            {
                "person_id": [p for _, p in people],
                "account_id": [a for a, _ in people],
                "email": [f"{p}@example.com" for _, p in people],
                "name": [p for _, p in people],
                "created_at": [DAY0 - timedelta(hours=6)] * len(people),
            },
        ),
    )


def _event(
    warehouse: Warehouse, account: str, at: datetime, name: str = "integration_connected"
) -> None:
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"{account}-{name}-{at.isoformat()}"],
                "account_id": [account],
                "person_id": [f"{account}-p0"],
                "name": [name],
                "timestamp": [at],
            },
        ),
    )


@pytest.fixture
def open_project(tmp_path: Path, backends: Backends) -> Iterator[OpenProject]:
    """Write jobs.yaml (and extra closeloop.yaml lines), seed accounts, open the workspace."""
    opened: list[Workspace] = []
    contexts = []

    def factory(jobs_yaml: str, accounts: int = 40, config: str = "", people: int = 1) -> Workspace:
        folder = tmp_path / "project"
        init_project(folder, name="test")
        (folder / "jobs.yaml").write_text(jobs_yaml, encoding="utf-8")
        if config:
            with (folder / "closeloop.yaml").open("a", encoding="utf-8") as file:
                file.write("\n" + config + "\n")
        context = open_workspace(folder, environ=backends.environ())
        workspace = context.__enter__()
        contexts.append(context)
        _seed(workspace.warehouse, accounts, people)
        opened.append(workspace)
        return workspace

    yield factory
    for context in contexts:
        context.__exit__(None, None, None)


def _job(name: str, extra: str, steps: str = EMAIL_STEP, audience: str | None = None) -> str:
    audience = audience or 'count(event "integration_connected") = 0'
    return f"""
  - name: {name}
    audience: '{audience}'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 30
    steps:{steps}
{extra}"""


def _tick(workspace: Workspace, name: str, at: datetime) -> None:
    run_tick(
        workspace.project, workspace.project.job(name), workspace.warehouse, workspace.store, at
    )


def _outbox(workspace: Workspace) -> list[dict[str, object]]:
    with workspace.store.engine.connect() as connection:
        rows = connection.execute(sa.select(schema.outbox).order_by(schema.outbox.c.id)).mappings()
        return [dict(row) for row in rows]


def _enrollments(workspace: Workspace) -> list[dict[str, object]]:
    return list(workspace.store.enrollments_table().to_pylist())


def test_variants_split_the_treated_share_by_weight(open_project: OpenProject) -> None:
    jobs = "jobs:" + _job(
        "Split",
        """    variants:
      - name: short
        weight: 1
        steps:"""
        + EMAIL_STEP.replace("\n      ", "\n          ")
        + """
      - name: long
        weight: 3
        steps:"""
        + EMAIL_STEP.replace("\n      ", "\n          "),
        steps=" []",
    )
    workspace = open_project(jobs, accounts=2000)
    _tick(workspace, "Split", DAY0)
    arms = Counter(str(row["arm"]) for row in _enrollments(workspace))
    n = sum(arms.values())
    assert n == 2000
    for arm, expected in ((HOLDOUT, 0.2), ("short", 0.2), ("long", 0.6)):
        standard_error = (expected * (1 - expected) / n) ** 0.5
        assert abs(arms[arm] / n - expected) < 4 * standard_error, arms
    # Each arm has its own sequence; the holdout's rows are ghosts.
    statuses = Counter(str(row["status"]) for row in _outbox(workspace))
    assert statuses[OutboxStatus.GHOST] == arms[HOLDOUT]
    assert statuses[OutboxStatus.PENDING] == arms["short"] + arms["long"]
    # The report measures the job as a whole: the variants pooled against the holdout.
    report = reports.job_report(workspace, "Split", DAY0 + timedelta(days=1))
    assert report.arms[reports.TREATMENT].entered == arms["short"] + arms["long"]
    assert report.arms[HOLDOUT].entered == arms[HOLDOUT]
    assert not report.srm.mismatch
    # Each variant is measured against the holdout and against the other one.
    assert report.variant_measurement is not None
    assert set(report.variants) == {"short", "long"}
    assert report.variants["short"].entered == arms["short"]
    pairs = {(c.arm, c.control) for c in report.variant_measurement.comparisons}
    assert {("short", HOLDOUT), ("long", HOLDOUT)} <= pairs
    assert ("short", "long") in pairs or ("long", "short") in pairs


REMINDER = (
    EMAIL_STEP
    + """
      - wait_days: 3"""
    + EMAIL_STEP
)


def test_a_reminder_is_cancelled_when_the_goal_is_reached_before_it_falls_due(
    open_project: OpenProject,
) -> None:
    workspace = open_project("jobs:" + _job("Remind", "", steps=REMINDER))
    _tick(workspace, "Remind", DAY0)
    rows = _outbox(workspace)
    reminders = [row for row in rows if row["step_index"] == 2]
    assert {row["next_attempt_at"] for row in reminders} == {DAY0 + timedelta(days=3)}
    arms = {row["account_id"]: row["arm"] for row in _enrollments(workspace)}
    treated = sorted(a for a, arm in arms.items() if arm != HOLDOUT)
    held = sorted(a for a, arm in arms.items() if arm == HOLDOUT)
    done = [treated[0], held[0]]
    for account in done:
        _event(workspace.warehouse, account, DAY0 + timedelta(days=1))
    _tick(workspace, "Remind", DAY0 + timedelta(days=2))
    by_account = {row["account_id"]: row for row in _outbox(workspace) if row["step_index"] == 2}
    assert by_account[treated[0]]["status"] == OutboxStatus.CANCELLED
    assert by_account[held[0]]["status"] == OutboxStatus.CANCELLED  # ghosts timed identically
    with SmtpSink() as sink:
        dispatcher = Dispatcher(
            workspace.store, {EMAIL: SmtpSender(sink.host, sink.port, "cs@example.com")}
        )
        dispatcher.dispatch(DAY0 + timedelta(days=2))
        assert len(sink.messages) == len(treated)  # entry emails only: no reminder due yet
        sent = dispatcher.dispatch(DAY0 + timedelta(days=3))
        dispatcher.close()
    assert {d.account_id for d in sent.sent} == set(treated[1:])


def test_the_dispatcher_never_sends_a_reminder_due_after_the_enrollment_ended(
    open_project: OpenProject,
) -> None:
    workspace = open_project("jobs:" + _job("Remind", "", steps=REMINDER))
    _tick(workspace, "Remind", DAY0)
    # The enrollment ended (as another process recorded) but no tick cancelled its reminder.
    with workspace.store.engine.begin() as connection:
        connection.execute(
            schema.enrollments.update().values(
                exited_at=DAY0 + timedelta(days=1), exit_reason="removed"
            )
        )
    with SmtpSink() as sink:
        dispatcher = Dispatcher(
            workspace.store, {EMAIL: SmtpSender(sink.host, sink.port, "cs@example.com")}
        )
        result = dispatcher.dispatch(DAY0 + timedelta(days=3))
        dispatcher.close()
    assert all(d.idempotency_key for d in result.sent)
    reminders = [row for row in _outbox(workspace) if row["step_index"] == 2]
    pending = [row for row in reminders if row["status"] == OutboxStatus.CANCELLED]
    treated = [row for row in reminders if row["status"] != OutboxStatus.GHOST]
    assert len(pending) == len(treated) > 0
    assert all(d.sent_at for d in result.sent)
    assert len(result.sent) == len(treated)  # only the entry emails, due before the end


def test_on_completion_is_written_once_and_sent_once(open_project: OpenProject) -> None:
    extra = "    on_completion:" + EMAIL_STEP + "\n    on_exit:" + EMAIL_STEP
    workspace = open_project("jobs:" + _job("Thanks", extra), accounts=10)
    _tick(workspace, "Thanks", DAY0)
    arms = {row["account_id"]: row["arm"] for row in _enrollments(workspace)}
    treated = next(a for a, arm in sorted(arms.items()) if arm != HOLDOUT)
    _event(workspace.warehouse, treated, DAY0 + timedelta(hours=12))
    later = DAY0 + timedelta(days=1)
    _tick(workspace, "Thanks", later)
    _tick(workspace, "Thanks", later)  # re-running the tick changes nothing
    _tick(workspace, "Thanks", later + timedelta(days=1))
    completion_rows = [r for r in _outbox(workspace) if r["step_index"] == COMPLETION_STEP]
    assert [r["account_id"] for r in completion_rows] == [treated]
    with SmtpSink() as sink:
        dispatcher = Dispatcher(
            workspace.store, {EMAIL: SmtpSender(sink.host, sink.port, "cs@example.com")}
        )
        dispatcher.dispatch(later)
        dispatcher.dispatch(later + timedelta(days=1))
        dispatcher.close()
        to_treated = [m for m in sink.messages if treated in m["To"]]
    assert len(to_treated) == 2  # the entry email and the completion email, once each
    # Timeouts trigger on_exit for both arms (ghosts in the holdout).
    _tick(workspace, "Thanks", DAY0 + timedelta(days=31))
    exit_rows = [r for r in _outbox(workspace) if r["step_index"] >= 2000]
    assert len(exit_rows) == len(arms) - 1
    assert {r["status"] for r in exit_rows} == {OutboxStatus.PENDING, OutboxStatus.GHOST}


def test_re_entry_after_n_days_and_not_before(open_project: OpenProject) -> None:
    jobs = "jobs:" + _job("Again", "    re_entry: {after_days: 10}").replace(
        "duration_days: 30", "duration_days: 5"
    )
    workspace = open_project(jobs, accounts=5)
    _tick(workspace, "Again", DAY0)
    _tick(workspace, "Again", DAY0 + timedelta(days=1))  # active: no second enrollment
    assert len(_enrollments(workspace)) == 5
    _tick(workspace, "Again", DAY0 + timedelta(days=5))  # timeouts at day 5
    _tick(workspace, "Again", DAY0 + timedelta(days=14))  # 9 days after: not yet
    assert len(_enrollments(workspace)) == 5
    _tick(workspace, "Again", DAY0 + timedelta(days=15))  # 10 days after
    rows = _enrollments(workspace)
    assert len(rows) == 10
    assert len({row["enrollment_id"] for row in rows}) == 10


def test_exit_when_ineligible_has_its_own_reason(open_project: OpenProject) -> None:
    jobs = "jobs:" + _job("Leave", "    exit_when_ineligible: true").replace(
        "'count(event \"integration_connected\") >= 1'", "'count(event \"report_created\") >= 1'"
    )
    workspace = open_project(jobs, accounts=4)
    _tick(workspace, "Leave", DAY0)
    _event(workspace.warehouse, "acc-0001", DAY0 + timedelta(hours=3))
    _tick(workspace, "Leave", DAY0 + timedelta(days=1))
    reasons = {row["account_id"]: row["exit_reason"] for row in _enrollments(workspace)}
    assert reasons == {
        "acc-0000": None,
        "acc-0001": "no_longer_eligible",
        "acc-0002": None,
        "acc-0003": None,
    }


def test_person_target_enrolls_people_and_writes_to_that_person_only(
    open_project: OpenProject,
) -> None:
    jobs = "jobs:" + _job("People", "    target: person\n    holdout: 0.05")
    workspace = open_project(jobs, accounts=5, people=2)
    _tick(workspace, "People", DAY0)
    rows = _enrollments(workspace)
    assert len(rows) == 10
    assert {row["person_id"] for row in rows} == {
        f"acc-{i:04d}-p{k}" for i in range(5) for k in range(2)
    }
    treated = [row for row in _outbox(workspace) if row["status"] != OutboxStatus.GHOST]
    assert treated
    for row in treated:
        person = next(r["person_id"] for r in rows if r["enrollment_id"] == row["enrollment_id"])
        assert json.loads(str(row["payload"]))["to"] == [f"{person}@example.com"]


def test_contact_policy_caps_jobs_per_account_in_priority_order(
    open_project: OpenProject,
) -> None:
    jobs = "jobs:" + _job("Low", "    priority: 1") + _job("High", "    priority: 5")
    workspace = open_project(
        jobs, accounts=20, config="contact_policy: {max_jobs: 1, per_days: 30}"
    )
    engine_runs.tick(workspace, DAY0, launch=True)
    by_job = Counter(str(row["job_name"]) for row in _enrollments(workspace))
    assert by_job == {"High": 20}  # holdout included: the cap is about assignment


def test_two_jobs_ticking_at_once_never_exceed_the_contact_cap(
    open_project: OpenProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Job Low decides who enters; before it records, job High (another process) enrolls every
    account. Low's recording then fails the shared contact revision and decides again: the
    accounts are capped, and nobody is in two jobs. The interleaving is placed exactly."""
    jobs = "jobs:" + _job("Low", "") + _job("High", "")
    workspace = open_project(
        jobs, accounts=20, config="contact_policy: {max_jobs: 1, per_days: 30}"
    )
    decide = tick_module._decide
    interleaved: list[int] = []

    def decide_while_high_ticks(*args: object, **kwargs: object) -> object:
        decisions = decide(*args, **kwargs)  # type: ignore[arg-type]
        if args[1] is workspace.project.job("Low") and not interleaved:
            interleaved.append(len(decisions.entering))
            _tick(workspace, "High", DAY0)  # the other process records first
        return decisions

    monkeypatch.setattr(tick_module, "_decide", decide_while_high_ticks)
    _tick(workspace, "Low", DAY0)
    assert interleaved == [20]  # Low had decided to enroll everyone
    by_job = Counter(str(row["job_name"]) for row in _enrollments(workspace))
    assert by_job == {"High": 20}


def test_job_membership_sees_this_ticks_enrollments(open_project: OpenProject) -> None:
    second = _job(
        "Second",
        "",
        audience='count(event "integration_connected") = 0 and not entered job "First"',
    )
    jobs = "jobs:" + _job("First", "    priority: 9") + second
    workspace = open_project(jobs, accounts=10)
    engine_runs.tick(workspace, DAY0, launch=True)
    by_job = Counter(str(row["job_name"]) for row in _enrollments(workspace))
    assert by_job == {"First": 10}
