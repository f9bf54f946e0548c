"""Operating the engine from the command line: jobs, outbox, opt-outs, dry runs, ticks, the daemon.

Commands run in-process through Typer's runner (the installed script's code path); the daemon's
lock is tested against a second, real ``closeloop run`` process. Mail goes to an SMTP server on
loopback that refuses one address for good (550) and another for now (450), so every dispatch
count below is known: six accounts a0…a5, a3 dead-lettered, a4 retried.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from closeloop.cli.main import app
from closeloop.engine import schema
from closeloop.engine.optouts import UnsubscribeLinks
from closeloop.services.smtp_sink import SmtpSink

T0 = datetime(2024, 5, 1)
SECRET = "7c1e5a9b3d0f2468ace13579bdf02468ace1357"
URL_TEMPLATE = "https://example.com/unsubscribe?token={token}"
ACCOUNTS = [f"a{i}" for i in range(6)]
REFUSALS = {"admin@a3.test": "550 5.1.1 no such user", "admin@a4.test": "450 4.2.1 mailbox busy"}
EMAIL = """
      - send: email
        subject: "Hello {{ account.name }}"
        template: integration_nudge"""
AUDIENCE = """
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 30"""
JOBS = f"""\
jobs:
  - name: Nudge{AUDIENCE}
    observational: true
    holdout: 0
    steps:{EMAIL}
      - wait_days: 3{EMAIL}
  - name: Replay{AUDIENCE}
    holdout: 0.5
    steps:{EMAIL}
  - name: Sender{AUDIENCE}
    observational: true
    holdout: 0
    steps:{EMAIL}
"""


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink(refuse=REFUSALS) as server:
        yield server


@pytest.fixture
def runner(sink: SmtpSink) -> CliRunner:
    return CliRunner(
        env={
            "CLOSELOOP_SMTP_HOST": sink.host,
            "CLOSELOOP_SMTP_PORT": str(sink.port),
            "CLOSELOOP_WAREHOUSE_URL": None,
            "CLOSELOOP_STATE_URL": None,
            "CLOSELOOP_PROJECT": None,
            "CLOSELOOP_SECRET": SECRET,
            "CLOSELOOP_AUTHOR": "ada",
            "COLUMNS": "200",
        }
    )


def _ok(runner: CliRunner, *args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result


def _json(runner: CliRunner, *args: str) -> Any:
    return json.loads(_ok(runner, *args, "--format", "json").stdout)


@pytest.fixture
def project(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with three jobs (drafts) and six accounts, each with one contact; commands
    run from its folder."""
    folder = tmp_path / "ops"
    _ok(runner, "init", str(folder), "--name", "ops")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    created = (T0 - timedelta(days=2)).isoformat()
    (folder / "accounts.csv").write_text(
        "account_id,name,created_at\n" + "".join(f"{a},Company {a},{created}\n" for a in ACCOUNTS)
    )
    (folder / "people.csv").write_text(
        "person_id,account_id,email,name\n"
        + "".join(f"{a}-p,{a},admin@{a}.test,Admin {a}\n" for a in ACCOUNTS)
    )
    monkeypatch.chdir(folder)
    _ok(runner, "import", "accounts", "accounts.csv")
    _ok(runner, "import", "people", "people.csv")
    return folder


def _at(moment: datetime) -> tuple[str, str]:
    return ("--at", moment.isoformat())


# -- jobs ------------------------------------------------------------------------------------


def test_jobs_commands_walk_a_job_through_its_life(runner: CliRunner, project: Path) -> None:
    listed = _json(runner, "jobs", "list")
    assert listed["count"] == 3
    assert {job["name"]: job["status"] for job in listed["jobs"]} == dict.fromkeys(
        ["Nudge", "Replay", "Sender"], "draft"
    )

    launched = _ok(runner, "jobs", "launch", "Nudge", *_at(T0)).output
    assert "Nudge @ 2024-05-01 00:00: 6 entered, 0 completed, 0 exited (v1)" in launched
    assert "outbox: 12 pending" in launched
    assert "its messages go out with the next `closeloop dispatch`" in launched
    assert "Nudge is already launched" in _ok(runner, "jobs", "launch", "Nudge").output

    assert "Nudge: live -> paused" in _ok(runner, "jobs", "pause", "Nudge", *_at(T0)).output
    assert "Nudge is paused" in _ok(runner, "jobs", "pause", "Nudge").output
    assert "Nudge: paused -> live" in _ok(runner, "jobs", "resume", "Nudge").output
    removed = _ok(runner, "jobs", "remove-account", "Nudge", "a1", *_at(T0 + timedelta(hours=1)))
    assert "a1: 1 active enrollment(s) in Nudge exited (removed)" in removed.output
    again = _ok(runner, "jobs", "remove-account", "Nudge", "a1")
    assert "a1 has no active enrollment in Nudge" in again.output

    shown = _json(runner, "jobs", "show", "Nudge")
    summary = shown["summary"]
    assert (summary["status"], summary["version"], summary["enrolled"], summary["active"]) == (
        "live",
        1,
        6,
        5,
    )
    assert shown["outbox"] == {"pending": 10, "cancelled": 2}
    assert shown["deliveries"]["treatment"]["by_status"] == {"pending": 10, "cancelled": 2}
    assert shown["versions_in_use"] == [[1, 6]]
    audit = [(entry["action"], entry["actor"]) for entry in shown["audit"]]
    assert audit == [
        ("job.launched", "ada"),
        ("job.pause", "ada"),
        ("job.resume", "ada"),
        ("job.account_removed", "ada"),
    ]
    table = _ok(runner, "jobs", "show", "Nudge").output
    assert "Nudge: live, v1; 6 enrolled, 5 active" in table
    assert "ada: job.account_removed" in table

    stopped = _ok(runner, "jobs", "stop", "Nudge", *_at(T0 + timedelta(days=1)))
    assert "Nudge: live -> stopped" in stopped.output
    refused = runner.invoke(app, ["jobs", "resume", "Nudge"])
    assert refused.exit_code == 1
    assert "error: job 'Nudge' is stopped; it cannot resume" in refused.output
    draft = runner.invoke(app, ["jobs", "pause", "Replay"])
    assert draft.exit_code == 1
    assert "'Replay' has not been launched" in draft.output
    unknown = runner.invoke(app, ["jobs", "show", "Nobody"])
    assert unknown.exit_code == 1 and "no job 'Nobody'" in unknown.output
    final = {job["name"]: job for job in _json(runner, "jobs", "list")["jobs"]}
    assert (final["Nudge"]["status"], final["Nudge"]["active"]) == ("stopped", 0)


# -- tick, dispatch, outbox -----------------------------------------------------------------


def test_tick_and_dispatch_print_their_counts_and_the_outbox_is_operable(
    runner: CliRunner, project: Path, sink: SmtpSink
) -> None:
    ticked = _ok(runner, "tick", "--job", "Nudge", "--launch", "--no-send", *_at(T0)).output
    assert "Nudge @ 2024-05-01 00:00: 6 entered, 0 completed, 0 exited (v1)" in ticked
    assert "outbox:" in ticked and "sent" not in ticked  # --no-send: nothing dispatched
    _ok(runner, "optout", "add", "a5", *_at(T0))

    dispatched = _ok(runner, "dispatch", *_at(T0)).output
    # a0, a1, a2 sent; a3 refused for good; a4 refused for now; a5 opted out.
    assert "outbox: 3 sent, 1 retrying, 1 dead, 1 skipped" in dispatched
    assert "warning: 1 message(s) dead-lettered; see `closeloop outbox list --status dead`" in (
        dispatched
    )
    assert "job 'Nudge' step 0, account 'a3', email:" in dispatched
    assert "550 5.1.1 no such user" in dispatched
    assert sorted(m.recipients for m in sink.received) == [
        ("admin@a0.test",),
        ("admin@a1.test",),
        ("admin@a2.test",),
    ]

    dead = _json(runner, "outbox", "list", "--status", "dead")
    assert dead["counts"] == {"sent": 3, "dead": 1, "pending": 7, "skipped": 1}
    (message,) = dead["messages"]
    assert (message["account_id"], message["step_index"], message["attempts"]) == ("a3", 0, 1)
    assert "550 5.1.1 no such user" in message["last_error"]
    retrying = _json(runner, "outbox", "list", "--account", "a4", "--status", "pending")
    assert [(m["step_index"], m["attempts"]) for m in retrying["messages"]] == [(2, 0), (0, 1)]
    assert "450 4.2.1 mailbox busy" in retrying["messages"][1]["last_error"]
    table = _ok(runner, "outbox", "list", "--job", "Nudge", "--limit", "3").output
    assert "1 dead, 7 pending, 3 sent, 1 skipped" in table

    requeued = _ok(runner, "outbox", "retry", *_at(T0 + timedelta(minutes=30))).output
    assert "1 message(s) queued again" in requeued
    later = _ok(runner, "dispatch", *_at(T0 + timedelta(hours=1))).output
    assert "outbox: 0 sent, 1 retrying, 1 dead, 0 skipped" in later

    assert "1 dead message(s) deleted" in _ok(runner, "outbox", "purge", "--status", "dead").output
    assert "0 sent message(s) deleted" in (
        _ok(runner, "outbox", "purge", "--status", "sent", "--before", T0.isoformat()).output
    )
    purged = _ok(
        runner,
        "outbox",
        "purge",
        "--status",
        "sent",
        "--before",
        (T0 + timedelta(days=1)).isoformat(),
    )
    assert "3 sent message(s) deleted" in purged.output
    kept = runner.invoke(app, ["outbox", "purge", "--status", "pending"])
    assert kept.exit_code == 1
    assert "only sent, dead, cancelled, skipped messages can be purged, not pending" in kept.output
    bogus = runner.invoke(app, ["outbox", "list", "--status", "bogus"])
    assert bogus.exit_code == 1 and "unknown outbox status 'bogus'" in bogus.output
    assert _json(runner, "outbox", "list")["counts"] == {"pending": 7, "skipped": 1}


def test_backfill_replays_without_sending_and_sends_with_send(
    runner: CliRunner, project: Path, sink: SmtpSink
) -> None:
    replay = _ok(
        runner,
        *("backfill", "--job", "Replay", "--launch"),
        *("--from", T0.isoformat(), "--to", (T0 + timedelta(days=2)).isoformat()),
    ).output
    assert "3 tick(s): 6 entered, 0 completed, 0 exited; outbox:" in replay
    assert "not_sent" in replay
    assert "replay only: nothing was sent" in replay
    assert sink.received == []
    assert "outbox: 0 sent, 0 retrying, 0 dead, 0 skipped" in _ok(runner, "dispatch").output

    sent = _ok(
        runner,
        *("backfill", "--job", "Sender", "--launch", "--send"),
        *("--from", T0.isoformat(), "--to", (T0 + timedelta(days=1)).isoformat()),
    ).output
    assert "2 tick(s): 6 entered, 0 completed, 0 exited; outbox: 6 pending" in sent
    # a4 is refused for now at both dispatches (days 0 and 1): two retries.
    assert "outbox: 4 sent, 2 retrying, 1 dead, 0 skipped" in sent
    assert "warning: 1 message(s) dead-lettered" in sent
    assert len(sink.received) == 4


# -- opt-outs --------------------------------------------------------------------------------


def test_optout_add_import_and_list(runner: CliRunner, project: Path, tmp_path: Path) -> None:
    added = _ok(runner, "optout", "add", "a1", "a2", "--reason", "asked by phone", *_at(T0))
    assert "2 account(s) opted out, 0 already" in added.output
    assert "0 account(s) opted out, 1 already" in _ok(runner, "optout", "add", "a1").output

    link = UnsubscribeLinks(SECRET, URL_TEMPLATE).url("a3")
    assert "a3 opted out (signed link)" in _ok(runner, "optout", "add", "--link", link).output
    forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    refused = runner.invoke(app, ["optout", "add", "--link", forged])
    assert refused.exit_code == 1
    assert "error: this unsubscribe link is not valid" in refused.output
    foreign = UnsubscribeLinks("x" + SECRET[1:], URL_TEMPLATE).url("a4")
    assert runner.invoke(app, ["optout", "add", "--link", foreign]).exit_code == 1
    nothing = runner.invoke(app, ["optout", "add"])
    assert nothing.exit_code == 2 and "give account ids or --link" in nothing.output

    csv_file = tmp_path / "export.csv"
    csv_file.write_text("account_id\na4\na5\na1\n")
    assert "2 account(s) opted out" in _ok(runner, "optout", "import", str(csv_file)).output
    bad = tmp_path / "bad.csv"
    bad.write_text("id\na0\n")
    failed = runner.invoke(app, ["optout", "import", str(bad)])
    assert failed.exit_code == 1 and "needs an account_id column" in failed.output

    listed = _json(runner, "optout", "list")
    assert listed["count"] == 5
    by_account = {
        o["account_id"]: (o["source"], o["actor"], o["reason"]) for o in listed["optouts"]
    }
    assert by_account == {
        "a1": ("cli", "ada", "asked by phone"),
        "a2": ("cli", "ada", "asked by phone"),
        "a3": ("link", "unsubscribe link", None),
        "a4": ("import", "ada", None),
        "a5": ("import", "ada", None),
    }
    table = _ok(runner, "optout", "list").output
    assert "asked by phone" in table and "unsubscribe link" in table
    # Opted-out accounts are never enrolled (a tick now sees every opt-out recorded so far).
    ticked = _ok(runner, "tick", "--job", "Sender", "--launch").output
    assert ": 1 entered, 0 completed, 0 exited (v1); outbox: 1 pending" in ticked
    assert "outbox: 1 sent, 0 retrying, 0 dead, 0 skipped" in ticked


# -- dry run -----------------------------------------------------------------------------------


def _state(project: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every state table (the store's own table definitions)."""
    engine = sa.create_engine(f"sqlite:///{project / 'state.sqlite'}")
    try:
        with engine.connect() as connection:
            return {
                name: sorted(map(tuple, connection.execute(sa.select(table)).all()), key=repr)
                for name, table in schema.jobs.metadata.tables.items()
            }
    finally:
        engine.dispose()


def test_dry_run_lists_who_would_enter_and_records_nothing(
    runner: CliRunner, project: Path, sink: SmtpSink
) -> None:
    _ok(runner, "migrate")
    before = _state(project)
    printed = _ok(runner, "dry-run", "Nudge", *_at(T0)).output
    assert (
        "Nudge @ 2024-05-01 00:00 (draft): 6 would enter (6 treatment), 0 complete, 0 exit; "
        "nothing was recorded or sent"
    ) in printed
    assert "Hello Company a0" in printed
    preview = _json(runner, "dry-run", "Nudge", *_at(T0))
    assert sorted(unit["account_id"] for unit in preview["entering"]) == ACCOUNTS
    assert preview["entering_by_arm"] == {"treatment": 6}
    steps = sorted((m["account_id"], m["step"], m["status"]) for m in preview["messages"])
    assert steps == sorted((a, step, "pending") for a in ACCOUNTS for step in (0, 2))
    first = next(m for m in preview["messages"] if (m["account_id"], m["step"]) == ("a0", 0))
    assert first["payload"]["subject"] == "Hello Company a0"
    assert first["payload"]["to"] == ["admin@a0.test"]
    assert first["due_at"] == T0.isoformat() + "Z"  # UTC, with its offset (RFC 3339)
    assert _state(project) == before
    assert sink.received == []

    # A live job's dry run: the launched accounts are already in, nobody new would enter.
    _ok(runner, "jobs", "launch", "Nudge", *_at(T0))
    live = _json(runner, "dry-run", "Nudge", *_at(T0 + timedelta(days=1)))
    assert (live["status"], live["entering"], live["messages"]) == ("live", [], [])


# -- migrate and passwords ---------------------------------------------------------------------


def test_migrate_and_errors_never_print_the_password(
    runner: CliRunner, project: Path, postgres_url: str
) -> None:
    scheme, _, rest = postgres_url.partition("://")
    user, _, host = rest.partition("@")
    with_password = f"{scheme}://{user.partition(':')[0]}:s3cret@{host}"
    env = {"CLOSELOOP_STATE_URL": with_password}
    migrated = runner.invoke(app, ["migrate"], env=env)
    assert migrated.exit_code == 0, migrated.output
    assert "is up to date" in migrated.output and ":***@" in migrated.output
    listed = runner.invoke(app, ["jobs", "list"], env=env)
    assert listed.exit_code == 0
    unreachable = {"CLOSELOOP_STATE_URL": "postgresql://postgres:s3cret@127.0.0.1:1/nowhere"}
    failed = runner.invoke(app, ["migrate"], env=unreachable)
    assert failed.exit_code == 1
    assert "error:" in failed.output
    for result in (migrated, listed, failed):
        assert "s3cret" not in result.output


# -- the daemon --------------------------------------------------------------------------------


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """`closeloop run` installs SIGTERM and SIGINT handlers; give pytest its own back."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def test_run_ticks_and_dispatches_every_interval(
    runner: CliRunner, project: Path, sink: SmtpSink, restore_signals: None
) -> None:
    _ok(runner, "jobs", "launch", "Nudge")  # now: its entry emails fall due at once
    started = time.monotonic()
    result = _ok(runner, "run", "--every", "3s", "--cycles", "2")
    assert time.monotonic() - started >= 3  # the daemon waited one interval between cycles
    output = result.output
    dispatches = [line for line in output.splitlines() if line.startswith("outbox:")]
    # Cycle 1 sends the entry emails (a3 dead, a4 retrying); a4's retry waits a minute (the
    # backoff), so cycle 2, seconds later, has nothing due.
    assert dispatches == [
        "outbox: 4 sent, 1 retrying, 1 dead, 0 skipped",
        "outbox: 0 sent, 0 retrying, 0 dead, 0 skipped",
    ]
    assert output.count("Nudge @ ") == 2
    assert "Replay: draft, not launched" in output
    assert output.rstrip().endswith("stopped after 2 cycle(s)")
    assert len(sink.received) == 4


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """The process's output up to the first line containing ``marker``. A thread reads lines
    (a select() on the pipe misses lines already in Python's read buffer: two lines written at
    once left the second unread until the deadline)."""
    assert process.stdout is not None
    stdout = process.stdout
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in stdout:  # ends when the process closes its output
            lines.append(line)
            if marker in line:
                found.set()
                return

    reader = threading.Thread(target=read, name="read-until", daemon=True)
    reader.start()
    reader.join(timeout)
    if found.is_set():
        return "".join(lines)
    raise AssertionError(f"no {marker!r} within {timeout}s; output so far:\n{''.join(lines)}")


def test_a_second_run_is_refused_while_the_first_holds_the_lock(
    runner: CliRunner, project: Path, sink: SmtpSink, restore_signals: None
) -> None:
    environ = {
        **os.environ,
        "CLOSELOOP_SMTP_HOST": sink.host,
        "CLOSELOOP_SMTP_PORT": str(sink.port),
        "CLOSELOOP_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
    }
    for name in ("CLOSELOOP_WAREHOUSE_URL", "CLOSELOOP_STATE_URL", "CLOSELOOP_PROJECT"):
        environ.pop(name, None)
    script = Path(sys.executable).parent / "closeloop"
    with subprocess.Popen(
        [str(script), "run", "--every", "1h", "--project", str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
    ) as first:
        try:
            output = _read_until(first, "outbox:", timeout=60)
            second = runner.invoke(app, ["run", "--every", "1m", "--cycles", "1"])
            assert second.exit_code == 1, second.output
            assert "another `closeloop run` is running on this project" in second.output
            assert f"pid {first.pid}" in second.output
            first.send_signal(signal.SIGTERM)
            rest, _ = first.communicate(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
                first.communicate()
    output += rest
    assert first.returncode == 0, output
    assert "SIGTERM: stopping after this cycle" in output
    assert output.rstrip().endswith("stopped after 1 cycle(s)")
    # The lock went with the process: a new daemon may start.
    done = _ok(runner, "run", "--every", "1m", "--cycles", "1").output
    assert "stopped after 1 cycle(s)" in done
