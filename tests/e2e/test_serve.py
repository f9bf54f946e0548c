"""``closeloop serve`` as a real process, and the CLI beside it on the same DuckDB file.

A project with 300 accounts, their contacts and events, and a launched job with a holdout is
served on a free loopback port with the scheduler ticking every two seconds (its emails go to an
SMTP server on loopback). While it runs, ``closeloop explain``, ``report --format json`` and
``import events`` run as separate processes, and the API keeps answering, including reads that
open the warehouse and a Segment batch. SIGTERM then stops the server with exit code 0 and no
traceback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app
from closeloop.services.smtp_sink import SmtpSink

SCRIPT = Path(sys.executable).with_name("closeloop")
T0 = datetime(2024, 5, 1)
SECRET = "4f0c2a9e7b1d3856ace02468bdf13579ace24680"
ACCOUNTS = 300
JOBS = """\
jobs:
  - name: Nudge
    audience: 'count(event "integration_connected") = 0'
    goal: 'count(event "integration_connected") >= 1'
    duration_days: 30
    holdout: 0.5
    steps:
      - send: email
        subject: "Hello {{ account.name }}"
        template: integration_nudge
"""
# The lock timeout of the warehouse is 120 s; every command must finish well within it.
COMMAND_TIMEOUT = 100


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def environ(sink: SmtpSink) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CLOSELOOP_") or key == "CLOSELOOP_TEST_POSTGRES_URL"
    }
    env.update(
        CLOSELOOP_SMTP_HOST=sink.host,
        CLOSELOOP_SMTP_PORT=str(sink.port),
        CLOSELOOP_SECRET=SECRET,
        CLOSELOOP_AUTHOR="ops",
        COLUMNS="200",
    )
    return env


def _closeloop(environ: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"closeloop {' '.join(args)}:\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


@pytest.fixture
def project(tmp_path: Path, environ: dict[str, str]) -> Path:
    """Accounts, contacts and events imported, and the job launched at T0 (set up in-process,
    through the same command code, to spare five interpreter start-ups)."""
    runner = CliRunner(env={key: environ.get(key) for key in {*os.environ, *environ}})

    def ok(*args: str) -> None:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, f"{args}: {result.output}"

    folder = tmp_path / "served"
    ok("init", str(folder), "--name", "served")
    (folder / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    created = (T0 - timedelta(days=10)).isoformat()
    ids = [f"a{i:03d}" for i in range(ACCOUNTS)]
    (folder / "accounts.csv").write_text(
        "account_id,name,created_at\n" + "".join(f"{a},Company {a},{created}\n" for a in ids)
    )
    (folder / "people.csv").write_text(
        "person_id,account_id,email,name\n"
        + "".join(f"{a}-p,{a},admin@{a}.test,Admin {a}\n" for a in ids)
    )
    (folder / "events.csv").write_text(
        "event_id,account_id,name,timestamp\n"
        + "".join(
            f"e{i},{a},login,{(T0 - timedelta(days=1 + i % 5)).isoformat()}\n"
            for i, a in enumerate(ids)
        )
    )
    for table in ("accounts", "people", "events"):
        ok("import", table, str(folder / f"{table}.csv"), "--project", str(folder))
    ok("jobs", "launch", "Nudge", "--at", T0.isoformat(), "--project", str(folder))
    return folder


def _wait_for_health(base: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve ended with {process.returncode} before answering")
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no /api/health within {timeout}s")


def test_serve_answers_while_the_cli_reads_and_imports_and_stops_on_sigterm(
    project: Path, environ: dict[str, str], sink: SmtpSink, tmp_path: Path
) -> None:
    token = json.loads(
        _closeloop(
            environ,
            "tokens",
            "create",
            "--role",
            "admin",
            "--name",
            "ops",
            "--format",
            "json",
            cwd=project,
        )
    )["token"]
    headers = {"Authorization": f"Bearer {token}"}
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with (
        log.open("w") as output,
        subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port), "--every", "2s", "--project", str(project)],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env=environ,
        ) as server,
    ):
        try:
            _wait_for_health(base, server)
            answers: list[int] = []
            stop = threading.Event()

            def keep_asking() -> None:
                # The API keeps answering while the CLI holds the warehouse (reads wait for it).
                with httpx.Client(base_url=base, headers=headers, timeout=COMMAND_TIMEOUT) as api:
                    while not stop.is_set():
                        answers.append(api.get("/api/health").status_code)
                        answers.append(api.get("/api/library").status_code)
                        time.sleep(0.1)

            asker = threading.Thread(target=keep_asking)
            asker.start()
            try:
                explained = json.loads(
                    _closeloop(
                        environ,
                        "explain",
                        'count(event "login") >= 1',
                        "--format",
                        "json",
                        "--at",
                        T0.isoformat(),
                        cwd=project,
                    )
                )
                assert explained["count"] == ACCOUNTS
                report = json.loads(
                    _closeloop(environ, "report", "Nudge", "--format", "json", cwd=project)
                )
                assert report["job_name"] == "Nudge"
                assert set(report["arms"]) == {"holdout", "treatment"}
                (project / "more.csv").write_text(
                    "event_id,account_id,name,timestamp\n"
                    + "".join(
                        f"m{i},a{i:03d},integration_connected,{T0 + timedelta(days=2):%Y-%m-%d}\n"
                        for i in range(20)
                    )
                )
                imported = _closeloop(environ, "import", "events", "more.csv", cwd=project)
                assert "20" in imported
                batch = httpx.post(
                    f"{base}/v1/batch",
                    headers=headers,
                    json={
                        "batch": [
                            {
                                "type": "track",
                                "event": "login",
                                "userId": "a001-p",
                                "messageId": "serve-test-1",
                                "timestamp": (T0 + timedelta(days=3)).isoformat() + "Z",
                                "context": {"groupId": "a001"},
                            }
                        ]
                    },
                    timeout=COMMAND_TIMEOUT,
                )
                assert batch.status_code == 200, batch.text
            finally:
                stop.set()
                asker.join()
            assert answers and set(answers) == {200}, sorted(set(answers))
            assert httpx.get(f"{base}/api/health", timeout=10).json()["project"] == "served"
            # The scheduler ran: the launched job's entry emails reached the SMTP server.
            deadline = time.monotonic() + 60
            while not sink.received and time.monotonic() < deadline:
                time.sleep(0.5)
            assert sink.received, log.read_text()
        finally:
            server.send_signal(signal.SIGTERM)
            returncode = server.wait(timeout=COMMAND_TIMEOUT)
    text = log.read_text()
    assert returncode == 0, text
    assert "Traceback" not in text and "Error" not in text.replace("0 dead", ""), text
    assert "Application shutdown complete" in text and text.rstrip().endswith("stopped")
    assert "outbox:" in text  # the scheduler's cycles are printed as `closeloop run` prints them


def test_serve_refuses_a_second_scheduler_on_the_same_store(
    project: Path, environ: dict[str, str], tmp_path: Path
) -> None:
    """One scheduler per state store: serve exits 1 with a clear message, no traceback."""
    with subprocess.Popen(
        [str(SCRIPT), "run", "--every", "1h", "--project", str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
    ) as first:
        try:
            assert first.stdout is not None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "outbox:" not in first.stdout.readline():
                pass
            second = subprocess.run(
                [str(SCRIPT), "serve", "--port", str(_free_port()), "--project", str(project)],
                capture_output=True,
                text=True,
                env=environ,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        finally:
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=COMMAND_TIMEOUT)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "another `closeloop run` is running" in second.stderr
    assert "Traceback" not in second.stdout + second.stderr


def test_api_serves_without_a_scheduler_and_bad_options_are_refused(
    project: Path, environ: dict[str, str]
) -> None:
    bad = subprocess.run(
        [str(SCRIPT), "serve", "--every", "soon", "--project", str(project)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert bad.returncode == 2 and "'soon' is not an interval" in bad.stderr
    nowhere = subprocess.run(
        [str(SCRIPT), "api", "--project", str(project.parent / "nowhere")],
        capture_output=True,
        text=True,
        env=environ,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert nowhere.returncode == 1 and "is not a closeloop project" in nowhere.stderr
    port = _free_port()
    with subprocess.Popen(
        [str(SCRIPT), "api", "--port", str(port), "--project", str(project)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
    ) as api:
        try:
            _wait_for_health(f"http://127.0.0.1:{port}", api)
        finally:
            api.send_signal(signal.SIGINT)
            output, _ = api.communicate(timeout=COMMAND_TIMEOUT)
    assert api.returncode == 0, output
    assert "outbox:" not in output  # no scheduler in `api`


def test_worker_runs_the_scheduler_alone(
    project: Path, environ: dict[str, str], sink: SmtpSink
) -> None:
    output = _closeloop(
        environ, "worker", "--every", "1s", "--cycles", "1", "--project", str(project)
    )
    assert "outbox: " in output and "stopped after 1 cycle(s)" in output
    assert sink.received  # the launched job's entry emails went out
