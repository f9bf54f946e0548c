"""Real ``closeloop`` processes for the concurrency and crash tests, and the projects they run on.

Importing ``closeloop.cli.main`` takes about four seconds of CPU on a small machine; a process
killed "at a random point" would almost always die importing, and a hundred processes would not
fit in the time the tests have. So the tests start one *fork server* (this file, run as a
script) that imports closeloop once and forks a child per command. A child is a real process,
with its own connections, that runs exactly what the installed ``closeloop`` script runs
(``closeloop.cli.main:app`` with the command's arguments) with its output in two files.

Each child waits for ``SIGUSR1`` before it starts (:meth:`EngineProcess.go`): a test forks the
two or three processes of a round, then releases them within microseconds of each other, and a
kill's delay counts from the moment the command really began. The server reaps its children and
reports each exit status; ``SIGKILL`` goes straight to a child's own pid.
:func:`run_installed_together` runs full ``python -m closeloop.cli.main`` processes instead, for
a check that the fork server changes nothing.

Below them: a project to run on (:func:`project_setup`, accounts with one person each, goal
events) and the invariant every test checks, :func:`overlapping_enrollments`.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from closeloop.data.warehouse import Warehouse
from closeloop.engine import schema
from closeloop.engine.state import StateStore
from closeloop.services.project import init_project, open_workspace

GO = signal.SIGUSR1
# Imported by the server before it forks, so no command pays for them.
PRELOADED = (
    "ibis.backends.duckdb",
    "ibis.backends.postgres",
    "psycopg",
    "sqlalchemy.dialects.postgresql.psycopg",
    "sqlalchemy.dialects.sqlite",
    "httpx",
    "smtplib",
)
SERVER_START_SECONDS = 120.0
# What a process that lost a race may say (exit 1, ``error: ...``): a stale tick, a job other
# processes kept changing, enrollments another process recorded first, a warehouse in use.
RACE_MESSAGE = re.compile(
    r"^error: .*(ticks only move forward|was changed by other processes|"
    r"another process recorded the same enrollments|is in use by another process)",
    re.MULTILINE,
)


@dataclass
class EngineProcess:
    """One forked ``closeloop`` command (waiting for :meth:`go` until it is released)."""

    server: EngineServer
    name: str
    argv: tuple[str, ...]
    pid: int
    stdout_path: Path
    stderr_path: Path
    started: float | None = None  # time.monotonic() at go()
    killed: bool = False

    def go(self) -> None:
        self.started = time.monotonic()
        os.kill(self.pid, GO)

    @property
    def seconds(self) -> float | None:
        """How long it ran from go() to its exit (None before both)."""
        ended = self.server.ended(self.pid)
        return None if ended is None or self.started is None else ended - self.started

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: the signal that ended it), or None while it runs."""
        return self.server.exit_code(self.pid)

    def wait(self, timeout: float) -> int:
        """The exit code; a process still running after ``timeout`` seconds is killed and the
        test fails with its output."""
        code = self.server.wait_exit(self.pid, timeout)
        if code is None:
            self.kill()
            self.server.wait_exit(self.pid, 10.0)
            raise AssertionError(
                f"{self.name} ({' '.join(self.argv)}) still ran after {timeout:.0f} s; "
                f"stdout:\n{self.stdout()}\nstderr:\n{self.stderr()}"
            )
        return code

    def run_for(self, seconds: float) -> bool:
        """Release the process, let it run ``seconds`` and SIGKILL it if it still runs then;
        whether it was killed."""
        self.go()
        if self.server.wait_exit(self.pid, seconds) is not None:
            return False
        return self.kill()

    def kill(self) -> bool:
        """SIGKILL the process if it still runs; whether this call killed it."""
        if self.server.exit_code(self.pid) is not None:
            return False
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        code = self.server.wait_exit(self.pid, 30.0)
        self.killed = code == -signal.SIGKILL
        return self.killed

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        return (
            f"{self.name}: closeloop {' '.join(self.argv)} -> {self.returncode}\n"
            f"stdout: {self.stdout().strip()}\nstderr: {self.stderr().strip()}"
        )


@dataclass
class EngineServer:
    """``with EngineServer(folder) as server:`` runs the fork server; ``spawn(...)`` forks."""

    folder: Path
    _process: subprocess.Popen[bytes] | None = None
    _reader: threading.Thread | None = None
    _log: IO[bytes] | None = None
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _pids: list[int] = field(default_factory=list)
    _exits: dict[int, int] = field(default_factory=dict)
    _ended: dict[int, float] = field(default_factory=dict)  # time.monotonic() at each exit
    _ready: bool = False
    _closed: bool = False
    _children: list[EngineProcess] = field(default_factory=list)
    _count: int = 0

    def __enter__(self) -> EngineServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log = (self.folder / "server.log").open("wb")
        environ = {**os.environ, "COLUMNS": "200"}
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=environ,
        )
        self._reader = threading.Thread(target=self._read, name="engine-server", daemon=True)
        self._reader.start()
        try:
            with self._lock:
                self._lock.wait_for(lambda: self._ready or self._closed, SERVER_START_SECONDS)
                ready = self._ready
            if not ready:
                raise AssertionError(
                    f"the closeloop fork server did not start:\n{self._log_text()}"
                )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for child in self._children:
            child.kill()
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=30)
            if self._reader is not None:
                self._reader.join(timeout=30)
            assert self._process.stdout is not None
            self._process.stdout.close()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def spawn(
        self, argv: Sequence[str], environ: Mapping[str, str], name: str | None = None
    ) -> EngineProcess:
        """Fork ``closeloop ARGV`` with ``environ`` as its whole environment; it waits for go()."""
        assert self._process is not None and self._process.stdin is not None
        self._count += 1
        name = name or f"p{self._count:04d}"
        stdout_path = self.folder / f"{name}.out"
        stderr_path = self.folder / f"{name}.err"
        request = {
            "argv": list(argv),
            "env": dict(environ),
            "stdout": str(stdout_path),
            "stderr": str(stderr_path),
        }
        with self._lock:
            before = len(self._pids)
            self._process.stdin.write(json.dumps(request).encode() + b"\n")
            self._process.stdin.flush()
            if not self._lock.wait_for(lambda: len(self._pids) > before or self._closed, 30):
                raise AssertionError("the fork server did not answer")
            if self._closed:
                raise AssertionError(f"the fork server ended:\n{self._log_text()}")
            pid = self._pids[before]
        child = EngineProcess(self, name, tuple(argv), pid, stdout_path, stderr_path)
        self._children.append(child)
        return child

    def exit_code(self, pid: int) -> int | None:
        with self._lock:
            return self._exits.get(pid)

    def ended(self, pid: int) -> float | None:
        with self._lock:
            return self._ended.get(pid)

    def wait_exit(self, pid: int, timeout: float) -> int | None:
        with self._lock:
            self._lock.wait_for(lambda: pid in self._exits or self._closed, timeout)
            return self._exits.get(pid)

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            message = json.loads(line)
            with self._lock:
                if "ready" in message:
                    self._ready = True
                elif "pid" in message:
                    self._pids.append(message["pid"])
                elif "exit" in message:
                    self._exits[message["exit"]] = message["code"]
                    self._ended[message["exit"]] = time.monotonic()
                self._lock.notify_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def _log_text(self) -> str:
        return (self.folder / "server.log").read_text(encoding="utf-8", errors="replace")


def run_together(
    server: EngineServer,
    commands: Sequence[Sequence[str]],
    environ: Mapping[str, str],
    *,
    timeout: float = 120.0,
) -> list[EngineProcess]:
    """Fork every command, release them all at once, wait for every one of them."""
    children = [server.spawn(argv, environ) for argv in commands]
    for child in children:
        child.go()
    for child in children:
        child.wait(timeout)
    return children


def problems_in_output(child: EngineProcess | InstalledProcess) -> list[str]:
    """What is wrong with how a process ended: a traceback, or a failure without a clear message."""
    problems = []
    stderr = child.stderr()
    if "Traceback" in stderr or "Traceback" in child.stdout():
        problems.append(f"a traceback:\n{child.describe()}")
    code = child.returncode
    if code not in (0, None) and not (code == 1 and RACE_MESSAGE.search(stderr)):
        problems.append(f"exit {code} without a clear message:\n{child.describe()}")
    return problems


@dataclass(frozen=True)
class InstalledProcess:
    """A finished ``python -m closeloop.cli.main`` process (no fork server)."""

    argv: tuple[str, ...]
    returncode: int
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        return (
            f"closeloop {' '.join(self.argv)} -> {self.returncode}\n"
            f"stdout: {self.stdout().strip()}\nstderr: {self.stderr().strip()}"
        )


def run_installed_together(
    folder: Path,
    commands: Sequence[Sequence[str]],
    environ: Mapping[str, str],
    *,
    timeout: float = 180.0,
) -> list[InstalledProcess]:
    """Start ``python -m closeloop.cli.main`` once per command at the same moment and wait for
    all. Each imports closeloop for a few seconds first, so their work overlaps only roughly."""
    folder.mkdir(parents=True, exist_ok=True)
    started: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    try:
        for index, argv in enumerate(commands):
            out, err = folder / f"installed{index}.out", folder / f"installed{index}.err"
            with out.open("wb") as stdout, err.open("wb") as stderr:
                process = subprocess.Popen(
                    [sys.executable, "-m", "closeloop.cli.main", *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    env=dict(environ),
                )
            started.append((process, out, err))
        deadline = time.monotonic() + timeout
        for process, _, _ in started:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
    finally:
        for process, _, _ in started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    return [
        InstalledProcess(tuple(argv), process.returncode, out, err)
        for argv, (process, out, err) in zip(commands, started, strict=True)
    ]


# -- projects ------------------------------------------------------------------------------------

DAY0 = datetime(2024, 3, 1)
SECRET = "closeloop-concurrency-tests-secret-0123456789"
FOREVER = datetime.max


@dataclass
class ProjectSetup:
    """A project folder, the environment its commands run with, and its store (opened here)."""

    folder: Path
    environ: dict[str, str]
    store: StateStore
    state_kind: str  # sqlite or postgres


def engine_environ(warehouse_url: str, state_url: str, smtp_port: int) -> dict[str, str]:
    """This process's environment without closeloop settings, plus the given ones."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("CLOSELOOP_")}
    return environ | {
        "CLOSELOOP_WAREHOUSE_URL": warehouse_url,
        "CLOSELOOP_STATE_URL": state_url,
        "CLOSELOOP_SMTP_HOST": "127.0.0.1",
        "CLOSELOOP_SMTP_PORT": str(smtp_port),
        "CLOSELOOP_SECRET": SECRET,
        "CLOSELOOP_AUTHOR": "tests",
        "COLUMNS": "200",
    }


@contextmanager
def project_setup(
    folder: Path,
    jobs_yaml: str,
    warehouse_url: str,
    state_url: str,
    smtp_port: int,
    *,
    accounts: int = 40,
    created_at: Sequence[datetime] | None = None,
) -> Iterator[ProjectSetup]:
    """A `closeloop init` project with ``jobs_yaml``, its warehouse seeded with ``accounts``
    accounts (one person each) and its store migrated."""
    init_project(folder, name=folder.name)
    (folder / "jobs.yaml").write_text(jobs_yaml, encoding="utf-8")
    environ = engine_environ(warehouse_url, state_url, smtp_port)
    with open_workspace(folder, environ=environ) as workspace:
        if accounts:
            arriving = created_at or [DAY0 - timedelta(hours=6)]
            add_accounts(workspace.warehouse, 0, accounts, arriving)
    store = StateStore.connect(state_url)
    try:
        kind = "sqlite" if state_url.startswith("sqlite") else "postgres"
        yield ProjectSetup(folder, environ, store, kind)
    finally:
        store.close()


def account_id(number: int) -> str:
    return f"acc-{number:05d}"


def add_accounts(
    warehouse: Warehouse, first: int, count: int, created_at: Sequence[datetime]
) -> None:
    """Accounts ``first`` .. ``first + count - 1`` with one person each; ``created_at`` cycles."""
    numbers = range(first, first + count)
    ids = [account_id(number) for number in numbers]
    created = [created_at[index % len(created_at)] for index in range(count)]
    warehouse.append(
        "accounts",
        warehouse.arrow_for(
            "accounts",
            {
                "account_id": ids,
                "name": [f"Company {number}" for number in numbers],
                "created_at": created,
                "segment": ["enterprise" if number % 2 else "self_serve" for number in numbers],
            },
        ),
    )
    warehouse.append(
        "people",
        warehouse.arrow_for(
            "people",
            {
                "person_id": [f"{account}-p0" for account in ids],
                "account_id": ids,
                "email": [f"admin@{account}.example" for account in ids],
                "name": [f"Admin {number}" for number in numbers],
                "created_at": created,
            },
        ),
    )


def add_goal_events(warehouse: Warehouse, reached: Iterable[tuple[str, datetime]]) -> None:
    """An ``integration_connected`` event for each (account, time)."""
    pairs = list(reached)
    if not pairs:
        return
    warehouse.append(
        "events",
        warehouse.arrow_for(
            "events",
            {
                "event_id": [f"{account}-connected-{at.isoformat()}" for account, at in pairs],
                "account_id": [account for account, _ in pairs],
                "person_id": [f"{account}-p0" for account, _ in pairs],
                "name": ["integration_connected"] * len(pairs),
                "timestamp": [at for _, at in pairs],
            },
        ),
    )


def active_accounts(store: StateStore, job_name: str) -> set[str]:
    e = schema.enrollments
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(e.c.account_id).where(
                e.c.job_name == job_name, e.c.completed_at.is_(None), e.c.exited_at.is_(None)
            )
        ).scalars()
        return set(rows)


def overlapping_enrollments(store: StateStore) -> list[tuple[str, str, str, str]]:
    """Pairs of enrollments of one (job, unit) whose intervals ``[entered_at, end)`` overlap,
    where ``end`` is ``coalesce(completed_at, exited_at)`` or never: (job, unit, id, id)."""
    e = schema.enrollments
    by_unit: dict[tuple[str, str], list[tuple[str, datetime, datetime]]] = defaultdict(list)
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                e.c.job_name,
                sa.func.coalesce(e.c.person_id, e.c.account_id),
                e.c.enrollment_id,
                e.c.entered_at,
                e.c.completed_at,
                e.c.exited_at,
            )
        ).all()
    for job, unit, enrollment, entered, completed, exited in rows:
        end = completed or exited or FOREVER
        by_unit[(job, unit)].append((enrollment, entered, end))
    overlaps = []
    for (job, unit), intervals in by_unit.items():
        for index, (first, start_a, end_a) in enumerate(intervals):
            for second, start_b, end_b in intervals[index + 1 :]:
                if start_a < end_b and start_b < end_a:
                    overlaps.append((job, unit, first, second))
    return overlaps


# -- the server (this file run as a script) -------------------------------------------------------


def _serve() -> None:  # pragma: no cover - runs in the fork server process
    # Everything a command needs is imported once, here; nothing is connected before a fork.
    from closeloop.cli.main import app

    for module in PRELOADED:
        importlib.import_module(module)

    signal.pthread_sigmask(signal.SIG_BLOCK, {GO})
    children: set[int] = set()
    _send({"ready": True})
    stdin = sys.stdin.buffer.fileno()
    pending = b""
    open_input = True
    while open_input or children:
        readable, _, _ = select.select([stdin] if open_input else [], [], [], 0.01)
        if readable:
            chunk = os.read(stdin, 65536)
            if not chunk:
                open_input = False
                for pid in children:  # the test is gone: so are its commands
                    os.kill(pid, signal.SIGKILL)
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                pid = _fork(json.loads(line), app)
                children.add(pid)
                _send({"pid": pid})
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                _send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(json.dumps(message).encode() + b"\n")
    sys.stdout.buffer.flush()


def _fork(request: dict[str, Any], app: Any) -> int:  # pragma: no cover - fork server only
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.environ.clear()
        os.environ.update(request["env"])
        signal.sigwait({GO})
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {GO})
        try:
            app(request["argv"], prog_name="closeloop")
            code = 0
        except SystemExit as exit_:
            code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    _serve()
