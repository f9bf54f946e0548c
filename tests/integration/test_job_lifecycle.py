"""A job's life on real stores: draft → live → paused → live → stopped, and what shapes entry.

Each test states its known answer: accounts, events and times are chosen so that who enters,
exits, is capped or excluded, and which messages go out, can be counted by hand. Messages go to a
real SMTP server on loopback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from closeloop.channels.email import EMAIL, SmtpSender
from closeloop.data.warehouse import Warehouse
from closeloop.engine import lifecycle, schema
from closeloop.engine.assignment import HOLDOUT
from closeloop.engine.state import utc_now
from closeloop.engine.steps import OutboxStatus
from closeloop.engine.tick import ExitReason, JobStatus, StaleTickError
from closeloop.errors import CloseloopError, NotFoundError, StateError
from closeloop.services import engine_runs, operations, reports
from closeloop.services.project import Workspace, init_project, open_workspace
from closeloop.services.smtp_sink import SmtpSink
from support import Backends

DAY0 = datetime(2024, 3, 1)
AUTHOR = "ada"
EMAIL_STEP = """
      - send: email
        subject: "Hello {{ account.name }}"
        template: integration_nudge"""
REMINDER = EMAIL_STEP + "\n      - wait_days: 5" + EMAIL_STEP

OpenProject = Callable[..., Workspace]


def _job(
    name: str,
    extra: str = "",
    *,
    audience: str = 'count(event "integration_connected") = 0',
    goal: str = 'count(event "integration_connected") >= 1',
    steps: str = EMAIL_STEP,
    duration: int = 30,
) -> str:
    return f"""
  - name: {name}
    audience: '{audience}'
    goal: '{goal}'
    duration_days: {duration}
    steps:{steps}
{extra}"""


def _accounts(
    warehouse: Warehouse, ids: list[str], *, plan: str = "pro", created: datetime = DAY0
) -> None:
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ids,
                "name": [f"Company {a}" for a in ids],
                "plan": [plan] * len(ids),
                "created_at": [created - timedelta(hours=6)] * len(ids),
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
                "created_at": [created - timedelta(hours=6)] * len(ids),
            },
        ),
    )


def _event(warehouse: Warehouse, account: str, at: datetime, name: str) -> None:
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"{account}-{name}-{at.isoformat()}"],
                "account_id": [account],
                "name": [name],
                "timestamp": [at],
            },
        ),
    )


@pytest.fixture
def open_project(tmp_path: Path, backends: Backends) -> Iterator[OpenProject]:
    """Write jobs.yaml (and closeloop.yaml lines), open the workspace as AUTHOR; reopening the
    same folder after an edit records the edit."""
    folder = tmp_path / "project"
    init_project(folder, name="lifecycle")
    contexts = []

    def factory(jobs: str | None = None, config: str = "") -> Workspace:
        if jobs is not None:
            (folder / "jobs.yaml").write_text("jobs:" + jobs, encoding="utf-8")
        if config:
            with (folder / "closeloop.yaml").open("a", encoding="utf-8") as file:
                file.write("\n" + config + "\n")
        context = open_workspace(folder, environ={**backends.environ(), "CLOSELOOP_AUTHOR": AUTHOR})
        contexts.append(context)
        return context.__enter__()

    yield factory
    for context in reversed(contexts):
        context.__exit__(None, None, None)


def _enrollments(workspace: Workspace, job: str | None = None) -> list[dict[str, object]]:
    return list(workspace.store.enrollments_table(job).to_pylist())


def _outbox(workspace: Workspace, job: str | None = None) -> list[dict[str, object]]:
    o = schema.outbox
    query = sa.select(o).order_by(o.c.id)
    if job is not None:
        query = query.where(o.c.job_name == job)
    with workspace.store.engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def _dispatch(workspace: Workspace, sink: SmtpSink, at: datetime) -> engine_runs.DispatchResult:
    return engine_runs.dispatch(
        workspace, at, {EMAIL: SmtpSender(sink.host, sink.port, "cs@example.com")}
    )


def _treated(rows: list[dict[str, object]]) -> set[str]:
    return {str(row["account_id"]) for row in rows if row["arm"] != HOLDOUT}


def test_draft_live_paused_resumed_stopped(open_project: OpenProject) -> None:
    # Other, a live job beside it, shows that a pause holds back one job's messages only.
    other = "    observational: true\n    holdout: 0"
    workspace = open_project(
        _job("Life", "    holdout: 0.5", audience='plan = "pro"', steps=REMINDER)
        + _job("Other", other, audience='plan = "other"')
    )
    first = [f"a{i}" for i in range(10)]
    _accounts(workspace.warehouse, first)
    _accounts(workspace.warehouse, ["o0"], plan="other")
    (other_launch,) = engine_runs.tick(workspace, DAY0, "Other", launch=True)
    assert other_launch.entered == 1

    # Draft: a tick without launch enrolls nobody and says so; lifecycle commands refuse.
    (draft,) = engine_runs.tick(workspace, DAY0, "Life")
    assert (draft.status, draft.entered, draft.version) == (JobStatus.DRAFT, 0, 0)
    assert lifecycle.job_status(workspace.store, "Life") == JobStatus.DRAFT
    assert _enrollments(workspace, "Life") == [] and _outbox(workspace, "Life") == []
    with pytest.raises(NotFoundError, match="has not been launched"):
        engine_runs.set_job_status(workspace, "Life", JobStatus.PAUSED, DAY0)

    # Live: the launch enrolls everyone; each treated unit gets an email now and a reminder.
    (live,) = engine_runs.tick(workspace, DAY0, "Life", launch=True)
    assert (live.status, live.entered) == (JobStatus.LIVE, 10)
    treated = _treated(_enrollments(workspace, "Life"))
    assert 0 < len(treated) < 10
    assert live.outbox == {
        OutboxStatus.PENDING: 2 * len(treated),
        OutboxStatus.GHOST: 20 - 2 * len(treated),
    }

    # Paused: enrolls nobody, plans nothing, sends nothing; completions are still recorded.
    assert (
        engine_runs.set_job_status(workspace, "Life", JobStatus.PAUSED, DAY0 + timedelta(hours=1))
        == JobStatus.LIVE
    )
    later = [f"b{i}" for i in range(5)]
    _accounts(workspace.warehouse, later, created=DAY0 + timedelta(days=1))
    done = sorted(treated)[0]
    _event(workspace.warehouse, done, DAY0 + timedelta(days=1, hours=2), "integration_connected")
    rows_before = len(_outbox(workspace, "Life"))
    (paused,) = engine_runs.tick(workspace, DAY0 + timedelta(days=2), "Life")
    assert (paused.status, paused.entered, paused.completed, paused.outbox) == (
        JobStatus.PAUSED,
        0,
        1,
        {},
    )
    assert len(_outbox(workspace, "Life")) == rows_before
    completed = {str(r["account_id"]): r["completed_at"] for r in _enrollments(workspace, "Life")}
    assert completed[done] == DAY0 + timedelta(days=1, hours=2)
    with SmtpSink() as sink:
        held = _dispatch(workspace, sink, DAY0 + timedelta(days=2))
        assert [(d.job_name, d.account_id) for d in held.sent] == [("Other", "o0")]
        assert [m.recipients for m in sink.received] == [("admin@o0.test",)]
        # The completed unit's reminder (due day 5) is cancelled; the entry emails still wait.
        statuses = {
            (str(r["account_id"]), int(str(r["step_index"]))): r["status"]
            for r in _outbox(workspace, "Life")
        }
        assert statuses[done, 2] == OutboxStatus.CANCELLED
        assert {statuses[a, 0] for a in treated} == {OutboxStatus.PENDING}

        # Resumed: the waiting entry emails go out, the new accounts enter.
        assert (
            engine_runs.set_job_status(workspace, "Life", JobStatus.LIVE, DAY0 + timedelta(days=3))
            == JobStatus.PAUSED
        )
        (resumed,) = engine_runs.tick(workspace, DAY0 + timedelta(days=3), "Life")
        assert (resumed.status, resumed.entered) == (JobStatus.LIVE, 5)
        treated_later = _treated(_enrollments(workspace, "Life")) - treated
        sent = _dispatch(workspace, sink, DAY0 + timedelta(days=3))
        assert sorted(d.account_id for d in sent.sent) == sorted(treated | treated_later)
        assert len(sink.received) == 1 + len(treated) + len(treated_later)

        # Stopped: active enrollments exit (job_stopped), unsent reminders are cancelled.
        pending = [r for r in _outbox(workspace, "Life") if r["status"] in ("pending", "ghost")]
        stopped_at = DAY0 + timedelta(days=4)
        assert (
            engine_runs.set_job_status(workspace, "Life", JobStatus.STOPPED, stopped_at)
            == JobStatus.LIVE
        )
        enrollments = _enrollments(workspace, "Life")
        assert {
            str(r["account_id"]) for r in enrollments if r["exit_reason"] == ExitReason.JOB_STOPPED
        } == set(first + later) - {done}
        assert all(r["exited_at"] == stopped_at for r in enrollments if r["exit_reason"])
        cancelled = {
            r["id"] for r in _outbox(workspace, "Life") if r["last_error"] == "the job was stopped"
        }
        # Every reminder but the completed unit's (pending, or a ghost due after the stop) is
        # cancelled; the holdout's entry ghosts, already due, stay: they are its timing record.
        holdout = 15 - len(treated) - len(treated_later)
        assert len(pending) == 14 + holdout
        unsent = {r["id"] for r in pending if r["status"] == "pending" or r["due_at"] > stopped_at}
        assert cancelled == unsent and len(unsent) == 14
        kept = [r for r in _outbox(workspace, "Life") if r["id"] in {p["id"] for p in pending}]
        assert sum(r["status"] == "ghost" for r in kept) == holdout

        # Further ticks and dispatches do nothing.
        _accounts(workspace.warehouse, ["c0"], created=DAY0 + timedelta(days=5))
        (after,) = engine_runs.tick(workspace, DAY0 + timedelta(days=6), "Life")
        assert (after.status, after.entered, after.exited, after.outbox) == (
            JobStatus.STOPPED,
            0,
            0,
            {},
        )
        assert _dispatch(workspace, sink, DAY0 + timedelta(days=20)).sent == []
        assert len(sink.received) == 1 + len(treated) + len(treated_later)
    assert len(_enrollments(workspace, "Life")) == 15

    # A stopped job stays stopped; re-stopping is a no-op.
    for status in (JobStatus.LIVE, JobStatus.PAUSED):
        with pytest.raises(StateError, match="'Life' is stopped; it cannot"):
            engine_runs.set_job_status(workspace, "Life", status, DAY0 + timedelta(days=7))
    assert (
        engine_runs.set_job_status(workspace, "Life", JobStatus.STOPPED, DAY0) == JobStatus.STOPPED
    )
    actions = [(e.action, e.actor) for e in lifecycle.audit_entries(workspace.store, "Life")]
    assert actions == [
        ("job.launched", AUTHOR),
        ("job.pause", AUTHOR),
        ("job.resume", AUTHOR),
        ("job.stop", AUTHOR),
    ]
    stop = lifecycle.audit_entries(workspace.store, "Life")[-1].detail
    assert stop == {
        "from": "live",
        "to": "stopped",
        "at": stopped_at.isoformat(),
        "exited": 14,
        "cancelled": len(unsent),
    }


def test_re_entry_never_and_after_days(open_project: OpenProject) -> None:
    workspace = open_project(
        _job("Never", duration=5, audience='plan = "pro"', goal='count(event "report") >= 1')
        + _job(
            "After",
            "    re_entry: {after_days: 10}",
            duration=5,
            audience='plan = "pro"',
            goal='count(event "report") >= 1',
        )
    )
    _accounts(workspace.warehouse, ["a0", "a1", "a2", "a3"])
    entered: dict[str, list[int]] = {"Never": [], "After": []}
    for day in (0, 5, 14, 15, 20, 25, 29, 30):
        for result in engine_runs.tick(workspace, DAY0 + timedelta(days=day), launch=True):
            entered[result.job_name].append(result.entered)
    # Never: once. After 10 days: every enrollment times out 5 days after entry and may enter
    # again 10 days after that, so entries at day 0, 15 and 30 (at day 25 it ended 5 days ago).
    assert entered == {"Never": [4, 0, 0, 0, 0, 0, 0, 0], "After": [4, 0, 0, 4, 0, 0, 0, 4]}
    after = _enrollments(workspace, "After")
    assert sorted({r["entered_at"] for r in after}) == [
        DAY0,
        DAY0 + timedelta(days=15),
        DAY0 + timedelta(days=30),
    ]
    ended = [r for r in after if r["exit_reason"] is not None]
    assert {(r["exit_reason"], r["exited_at"] - r["entered_at"]) for r in ended} == {
        (ExitReason.TIMEOUT, timedelta(days=5))
    }


def test_contact_cap_in_priority_order_and_its_window(open_project: OpenProject) -> None:
    workspace = open_project(
        _job("High", "    priority: 5", audience='plan = "pro"', duration=10)
        + _job("Low", "    priority: 1"),
        config="contact_policy: {max_jobs: 1, per_days: 30}",
    )
    _accounts(workspace.warehouse, ["p0", "p1", "p2", "p3"], plan="pro")
    _accounts(workspace.warehouse, ["s0", "s1", "s2"], plan="starter")

    ticks = [
        engine_runs.tick(workspace, DAY0 + timedelta(days=day), launch=True) for day in (0, 29, 30)
    ]
    # Day 0: High runs first and takes the 4 pro accounts; Low gets only the 3 others.
    # Day 29: High's enrollments (day 0) are within the last 30 days: Low may not take them.
    # Day 30: they entered exactly 30 days ago, outside the window: Low takes them.
    counts = [{result.job_name: result.entered for result in tick} for tick in ticks]
    assert counts == [{"High": 4, "Low": 3}, {"High": 0, "Low": 0}, {"High": 0, "Low": 4}]
    low = {str(r["account_id"]): r["entered_at"] for r in _enrollments(workspace, "Low")}
    assert low == {
        **dict.fromkeys(["s0", "s1", "s2"], DAY0),
        **dict.fromkeys(["p0", "p1", "p2", "p3"], DAY0 + timedelta(days=30)),
    }


def test_exclusions_keep_matching_accounts_out(open_project: OpenProject) -> None:
    extra = """    exclusions:
      - 'plan = "enterprise"'
      - 'count(event "churn_risk") >= 1'"""
    workspace = open_project(_job("Careful", extra))
    _accounts(workspace.warehouse, ["a0", "a1", "a2", "a3", "a4"])
    _accounts(workspace.warehouse, ["e0", "e1"], plan="enterprise")
    _event(workspace.warehouse, "a4", DAY0 - timedelta(hours=1), "churn_risk")
    _event(workspace.warehouse, "a3", DAY0 + timedelta(hours=12), "churn_risk")
    (first,) = engine_runs.tick(workspace, DAY0, launch=True)
    # a3's risk is after this tick: as of DAY0 it is not excluded.
    assert first.entered == 4
    assert {r["account_id"] for r in _enrollments(workspace)} == {"a0", "a1", "a2", "a3"}
    _accounts(workspace.warehouse, ["a5", "a6"], created=DAY0 + timedelta(days=1))
    _event(workspace.warehouse, "a6", DAY0 + timedelta(days=1), "churn_risk")
    (second,) = engine_runs.tick(workspace, DAY0 + timedelta(days=2))
    assert second.entered == 1
    assert "a5" in {r["account_id"] for r in _enrollments(workspace)}


def test_remove_account_exits_it_and_cancels_its_messages(open_project: OpenProject) -> None:
    workspace = open_project(
        _job("Remove", "    observational: true\n    holdout: 0", steps=REMINDER)
    )
    _accounts(workspace.warehouse, ["a0", "a1", "a2"])
    engine_runs.tick(workspace, DAY0, launch=True)
    removed_at = DAY0 + timedelta(days=1)
    assert operations.remove_account(workspace, "Remove", "a1", removed_at).removed == 1
    assert operations.remove_account(workspace, "Remove", "a1", removed_at).removed == 0
    assert operations.remove_account(workspace, "Remove", "nobody", removed_at).removed == 0
    with pytest.raises(CloseloopError, match="no job named 'No such job'"):
        operations.remove_account(workspace, "No such job", "a1", removed_at)
    by_account = {str(r["account_id"]): r for r in _enrollments(workspace)}
    assert (by_account["a1"]["exit_reason"], by_account["a1"]["exited_at"]) == (
        ExitReason.REMOVED,
        removed_at,
    )
    assert by_account["a0"]["exit_reason"] is None
    statuses = {(str(r["account_id"]), r["step_index"]): r["status"] for r in _outbox(workspace)}
    # a1's entry email (due at entry) and its reminder were both unsent: both cancelled.
    assert statuses == {
        ("a0", 0): OutboxStatus.PENDING,
        ("a0", 2): OutboxStatus.PENDING,
        ("a1", 0): OutboxStatus.CANCELLED,
        ("a1", 2): OutboxStatus.CANCELLED,
        ("a2", 0): OutboxStatus.PENDING,
        ("a2", 2): OutboxStatus.PENDING,
    }
    with SmtpSink() as sink:
        sent = _dispatch(workspace, sink, DAY0 + timedelta(days=10))
        assert sorted(message.recipients for message in sink.received) == [
            ("admin@a0.test",),
            ("admin@a0.test",),
            ("admin@a2.test",),
            ("admin@a2.test",),
        ]
    assert len(sent.sent) == 4
    # Re-entry is never (the default): the removed account does not come back.
    (later,) = engine_runs.tick(workspace, DAY0 + timedelta(days=2))
    assert later.entered == 0
    (entry,) = [
        e
        for e in lifecycle.audit_entries(workspace.store, "Remove")
        if e.action == "job.account_removed"
    ]
    assert entry.actor == AUTHOR
    assert entry.detail["account_id"] == "a1" and entry.detail["at"] == removed_at.isoformat()


def test_editing_a_launched_goal_makes_version_2_and_the_report_says_so(
    open_project: OpenProject,
) -> None:
    workspace = open_project(_job("Edited", "    holdout: 0.5"))
    _accounts(workspace.warehouse, [f"a{i}" for i in range(8)])
    engine_runs.tick(workspace, DAY0, launch=True)
    folder = workspace.settings.project_dir
    jobs = (folder / "jobs.yaml").read_text()
    (folder / "jobs.yaml").write_text(
        jobs.replace('"integration_connected") >= 1', '"integration_connected") >= 2')
    )
    before = utc_now()
    edited = open_project()
    _accounts(edited.warehouse, [f"b{i}" for i in range(4)], created=DAY0 + timedelta(days=1))
    (result,) = engine_runs.tick(edited, DAY0 + timedelta(days=2))
    after = utc_now()
    assert (result.version, result.entered) == (2, 4)

    v = schema.definition_versions
    with edited.store.engine.connect() as connection:
        versions = connection.execute(
            sa.select(v.c.version, v.c.author)
            .where(v.c.kind == "job", v.c.name == "Edited")
            .order_by(v.c.version)
        ).all()
    assert [tuple(row) for row in versions] == [(1, AUTHOR), (2, AUTHOR)]
    assert lifecycle.versions_in_use(edited.store, "Edited") == [(1, 8), (2, 4)]
    (goal,) = [
        e for e in lifecycle.audit_entries(edited.store, "Edited") if e.action == "job.goal_changed"
    ]
    assert goal.actor == AUTHOR
    assert before <= goal.at <= after
    assert goal.detail == {
        "from_version": 1,
        "to_version": 2,
        "from": 'count(event "integration_connected") >= 1',
        "to": 'count(event "integration_connected") >= 2',
    }
    report = reports.job_report(edited, "Edited", DAY0 + timedelta(days=2))
    (warning,) = [w for w in report.warnings if "edited after launch" in w]
    assert "v1 (8 enrollments), v2 (4 enrollments)" in warning
    assert "goal changed in v2" in warning


def test_replay_records_not_sent_and_a_sending_backfill_sends(open_project: OpenProject) -> None:
    workspace = open_project(_job("Replay", "    holdout: 0.5") + _job("Sent", "    holdout: 0.5"))
    _accounts(workspace.warehouse, [f"a{i}" for i in range(12)])
    replay = engine_runs.backfill(
        workspace, DAY0, DAY0 + timedelta(days=2), job_name="Replay", launch=True
    )
    arms = {str(r["account_id"]): str(r["arm"]) for r in _enrollments(workspace, "Replay")}
    treated = sorted(a for a, arm in arms.items() if arm != HOLDOUT)
    assert 0 < len(treated) < 12
    assert replay.outbox() == {
        OutboxStatus.NOT_SENT: len(treated),
        OutboxStatus.GHOST: 12 - len(treated),
    }
    assert not replay.sent and replay.dispatched.sent == []
    with SmtpSink() as sink:
        # A later dispatch never sends what a replay recorded.
        assert _dispatch(workspace, sink, DAY0 + timedelta(days=30)).sent == []
        assert sink.received == []

        report = reports.job_report(workspace, "Replay", DAY0 + timedelta(days=2))
        (warning,) = [w for w in report.warnings if "the treated units received nothing" in w]
        assert (
            f"{len(treated)} treated enrollments, 0 messages sent ({len(treated)} not_sent)"
            in warning
        )
        deliveries = {
            arm: (d.units, d.units_reached, d.by_status) for arm, d in report.deliveries.items()
        }
        assert deliveries == {
            HOLDOUT: (12 - len(treated), 0, {OutboxStatus.GHOST: 12 - len(treated)}),
            "treatment": (len(treated), 0, {OutboxStatus.NOT_SENT: len(treated)}),
        }

        sending = engine_runs.backfill(
            workspace,
            DAY0,
            DAY0 + timedelta(days=2),
            job_name="Sent",
            launch=True,
            send=True,
            channels={EMAIL: SmtpSender(sink.host, sink.port, "cs@example.com")},
        )
        sent_to = sorted(message.recipients[0] for message in sink.received)
    treated_sent = _treated(_enrollments(workspace, "Sent"))
    assert sending.sent
    assert sorted(d.account_id for d in sending.dispatched.sent) == sorted(treated_sent)
    assert sent_to == sorted(f"admin@{a}.test" for a in treated_sent)
    report = reports.job_report(workspace, "Sent", DAY0 + timedelta(days=2))
    assert not [w for w in report.warnings if "received nothing" in w]


def test_a_tick_older_than_the_latest_is_refused(open_project: OpenProject) -> None:
    workspace = open_project(_job("Forward"))
    _accounts(workspace.warehouse, ["a0", "a1"])
    engine_runs.tick(workspace, DAY0 + timedelta(days=2), launch=True)
    rows = (_enrollments(workspace), _outbox(workspace))
    with pytest.raises(StaleTickError, match="ticks only move forward"):
        engine_runs.tick(workspace, DAY0 + timedelta(days=1))
    (again,) = engine_runs.tick(workspace, DAY0 + timedelta(days=2))
    assert again.already_done
    assert (_enrollments(workspace), _outbox(workspace)) == rows
