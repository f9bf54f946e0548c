"""The engine on real parts: DuckDB + SQLite files or a PostgreSQL server, SMTP on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from closeloop.channels.email import EMAIL, SmtpSender
from closeloop.data.warehouse import Warehouse
from closeloop.engine import schema
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.engine.dispatcher import Dispatcher, DispatchResult, RetryPolicy
from closeloop.engine.state import utc_now
from closeloop.engine.tick import OutboxStatus
from closeloop.services.project import Workspace, init_project, open_workspace
from closeloop.services.smtp_sink import SmtpSink, free_port
from support import Backends, run_tick

JOB = "Integration nudge"
DAY0 = datetime(2024, 3, 1)


def _seed(warehouse: Warehouse, accounts: int = 40) -> None:
    ids = [f"acc-{i:03d}" for i in range(accounts)]
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ids,
                "name": [f"Company {i}" for i in range(accounts)],
                "created_at": [DAY0 - timedelta(hours=6)] * accounts,
                "segment": ["enterprise" if i % 2 else "self_serve" for i in range(accounts)],
            },
        ),
    )
    warehouse.append(
        "people",
        warehouse.arrow_for(
            "people",
            {
                "person_id": [f"p-{i:03d}" for i in range(accounts)],
                "account_id": ids,
                "email": [f"admin{i}@company{i}.example" for i in range(accounts)],
                "name": [f"Admin {i}" for i in range(accounts)],
                "created_at": [DAY0 - timedelta(hours=6)] * accounts,
            },
        ),
    )
    # One account already reached the goal before the job started: it is not in the audience.
    _event(warehouse, "acc-000", DAY0 - timedelta(hours=1), "pre")


def _event(warehouse: Warehouse, account: str, at: datetime, suffix: str) -> None:
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"evt-{account}-{suffix}"],
                "account_id": [account],
                "name": ["integration_connected"],
                "timestamp": [at],
            },
        ),
    )


@pytest.fixture
def workspace(tmp_path: Path, backends: Backends) -> Iterator[Workspace]:
    """A project on each backend pair: DuckDB + SQLite files, and PostgreSQL for both."""
    init_project(tmp_path / "project", name="test")
    with open_workspace(tmp_path / "project", environ=backends.environ()) as opened:
        _seed(opened.warehouse)
        yield opened


def _outbox(workspace: Workspace) -> list[dict[str, object]]:
    with workspace.store.engine.connect() as connection:
        rows = connection.execute(sa.select(schema.outbox).order_by(schema.outbox.c.id)).mappings()
        return [dict(row) for row in rows]


def _enrollments(workspace: Workspace) -> dict[str, dict[str, object]]:
    return {row["account_id"]: row for row in workspace.store.enrollments_table().to_pylist()}


def test_tick_enrolls_assigns_and_writes_the_outbox(workspace: Workspace) -> None:
    job = workspace.project.job(JOB)
    result = run_tick(workspace.project, job, workspace.warehouse, workspace.store, DAY0)
    assert result.entered == 39  # acc-000 had already connected an integration
    enrollments = _enrollments(workspace)
    assert "acc-000" not in enrollments
    arms = {row["arm"] for row in enrollments.values()}
    assert arms == {HOLDOUT, TREATMENT}
    outbox = _outbox(workspace)
    assert len(outbox) == 39
    by_account = {row["account_id"]: row for row in outbox}
    for account, enrollment in enrollments.items():
        row = by_account[account]
        expected = OutboxStatus.GHOST if enrollment["arm"] == HOLDOUT else OutboxStatus.PENDING
        assert row["status"] == expected
    treated = next(row for row in outbox if row["status"] == OutboxStatus.PENDING)
    payload = json.loads(str(treated["payload"]))
    assert payload["subject"].endswith(": connect your first integration")
    number = int(str(treated["account_id"])[4:])
    assert payload["to"] == [f"admin{number}@company{number}.example"]


def test_the_same_tick_twice_changes_nothing(workspace: Workspace) -> None:
    job = workspace.project.job(JOB)
    run_tick(workspace.project, job, workspace.warehouse, workspace.store, DAY0)
    before = (_enrollments(workspace), _outbox(workspace))
    again = run_tick(workspace.project, job, workspace.warehouse, workspace.store, DAY0)
    assert again.already_done
    assert (_enrollments(workspace), _outbox(workspace)) == before
    # A later tick does not enroll the same accounts again (re-entry: never).
    later = run_tick(
        workspace.project, job, workspace.warehouse, workspace.store, DAY0 + timedelta(days=1)
    )
    assert later.entered == 0


def test_completion_uses_event_time_and_timeouts_exit_at_the_deadline(workspace: Workspace) -> None:
    job = workspace.project.job(JOB)
    run_tick(workspace.project, job, workspace.warehouse, workspace.store, DAY0)
    connected_at = DAY0 + timedelta(days=2, hours=5)
    _event(workspace.warehouse, "acc-001", connected_at, "goal")
    _event(workspace.warehouse, "acc-002", DAY0 + timedelta(days=35), "late")  # after its deadline
    result = run_tick(
        workspace.project, job, workspace.warehouse, workspace.store, DAY0 + timedelta(days=3)
    )
    assert result.completed == 1
    assert _enrollments(workspace)["acc-001"]["completed_at"] == connected_at

    final = run_tick(
        workspace.project, job, workspace.warehouse, workspace.store, DAY0 + timedelta(days=40)
    )
    enrollments = _enrollments(workspace)
    assert final.exited == 38
    late = enrollments["acc-002"]
    assert late["completed_at"] is None
    assert late["exit_reason"] == "timeout"
    assert late["exited_at"] == DAY0 + timedelta(days=30)


def test_dispatch_sends_over_smtp_with_the_idempotency_key(workspace: Workspace) -> None:
    job = workspace.project.job(JOB)
    run_tick(workspace.project, job, workspace.warehouse, workspace.store, DAY0)
    with SmtpSink() as sink:
        dispatcher = Dispatcher(
            workspace.store, {EMAIL: SmtpSender(sink.host, sink.port, "cs@example.com")}
        )
        result = dispatcher.dispatch(DAY0)
        dispatcher.close()
        messages = sink.messages
    pending = [row for row in _outbox(workspace) if row["status"] == OutboxStatus.SENT]
    assert len(result.sent) == len(pending) == len(messages) > 0
    keys = {f"<{row['idempotency_key']}@closeloop>" for row in pending}
    assert {message["Message-ID"] for message in messages} == keys
    sample = messages[0]
    assert sample["List-Unsubscribe"].startswith("<https://example.com/unsubscribe?token=test-acc-")
    assert sample.is_multipart()  # plain text and HTML
    # Nothing is sent twice.
    assert Dispatcher(workspace.store, {}).dispatch(DAY0 + timedelta(days=1)).sent == []


def test_failed_sends_back_off_and_dead_letter(workspace: Workspace) -> None:
    job = workspace.project.job(JOB)
    run_tick(workspace.project, job, workspace.warehouse, workspace.store, DAY0)
    closed_port = free_port()  # nothing listens there
    channel = SmtpSender("127.0.0.1", closed_port, "cs@example.com", timeout=2)
    policy = RetryPolicy(max_attempts=3, base_delay=timedelta(minutes=1))
    dispatcher = Dispatcher(workspace.store, {EMAIL: channel}, policy=policy)
    first = dispatcher.dispatch(DAY0)
    assert first.retried > 0 and first.sent == []
    # Not due again until the backoff has passed.
    assert dispatcher.dispatch(DAY0 + timedelta(seconds=30)).retried == 0
    dispatcher.dispatch(DAY0 + timedelta(minutes=1))
    third = dispatcher.dispatch(DAY0 + timedelta(minutes=10))
    assert third.dead == first.retried
    dead = [row for row in _outbox(workspace) if row["status"] == OutboxStatus.DEAD]
    assert len(dead) == first.retried
    assert all("cannot reach the SMTP server" in str(row["last_error"]) for row in dead)


def test_a_crash_after_claiming_resends_with_the_same_key(workspace: Workspace) -> None:
    job = workspace.project.job(JOB)
    run_tick(workspace.project, job, workspace.warehouse, workspace.store, DAY0)
    lease = timedelta(minutes=10)
    with SmtpSink() as sink:
        channel = SmtpSender(sink.host, sink.port, "cs@example.com")
        crashed = Dispatcher(workspace.store, {EMAIL: channel}, lease=lease, batch_size=5)
        # the process "dies" here: claimed, never marked sent
        claimed = crashed._claim(DAY0, DispatchResult())
        keys = {claim.message.idempotency_key for claim in claimed}
        # The lease runs on the wall clock: a dispatcher whose simulated `now` is far later (a
        # backfill) still leaves the claimed rows alone while the lease runs.
        survivor = Dispatcher(workspace.store, {EMAIL: channel}, lease=lease)
        before_lease = survivor.dispatch(DAY0 + timedelta(days=30))
        assert keys.isdisjoint(d.idempotency_key for d in before_lease.sent)
        later = Dispatcher(
            workspace.store,
            {EMAIL: channel},
            lease=lease,
            wall_clock=lambda: utc_now() + lease + timedelta(minutes=1),
        )
        after_lease = later.dispatch(DAY0 + timedelta(days=30))
        survivor.close()
        assert {d.idempotency_key for d in after_lease.sent} == keys
        received = [m["Message-ID"] for m in sink.messages]
    assert len(received) == len(set(received))  # each key went out exactly once here
    assert all(
        row["status"] == OutboxStatus.SENT
        for row in _outbox(workspace)
        if row["status"] != OutboxStatus.GHOST
    )
