"""A simulated project with a measured job, served by a real ``closeloop serve`` on loopback, for
the job page's HTTP tests (shared per test module: building it takes most of a minute)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

SCRIPT = Path(sys.executable).with_name("closeloop")
COMMAND_TIMEOUT = 300
JOB = "Integration nudge"  # the job closeloop init's example project defines


@dataclass(frozen=True)
class Served:
    url: str
    project: Path
    token: str  # a viewer's API token
    job: str


def closeloop(*args: str, project: Path | None = None, stdin: str | None = None) -> str:
    """Run the CLI; fail the test with its output when it fails or prints a traceback."""
    command = [str(SCRIPT), *args, *(["--project", str(project)] if project else [])]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=COMMAND_TIMEOUT,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def simulated_project(folder: Path) -> Path:
    """closeloop init + a small simulated company whose job ran with a holdout (75 days: the
    30-day horizon has matured enough units in both arms to measure a lift)."""
    closeloop("init", str(folder), "--name", "job page")
    closeloop(
        "simulate",
        "--accounts",
        "300",
        "--days",
        "75",
        "--run-jobs",
        "--seed",
        "3",
        project=folder,
    )
    return folder


def viewer_token(project: Path, name: str = "page viewer") -> str:
    created = json.loads(
        closeloop(
            "tokens",
            "create",
            "--name",
            name,
            "--role",
            "viewer",
            "--format",
            "json",
            project=project,
        )
    )
    return str(created["token"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(project: Path, token: str) -> Iterator[Served]:
    """``closeloop serve --no-scheduler`` on a free loopback port until the block ends."""
    port = _free_port()
    process = subprocess.Popen(
        [
            str(SCRIPT),
            "serve",
            "--no-scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--project",
            str(project),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"serve ended with {process.returncode}:\n{output}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer /api/health within 90 s")
            time.sleep(0.2)
        yield Served(url=url, project=project, token=token, job=JOB)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
