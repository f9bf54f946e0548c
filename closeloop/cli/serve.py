"""``closeloop serve``, ``api`` and ``worker``: the long-running processes.

``serve`` runs the REST API (uvicorn) and, in a background thread of the same process, the
scheduler that ``closeloop run`` runs (tick every live job and dispatch, every ``--every``). It is
the one process an embedded project needs. ``api`` runs the API alone and ``worker`` the scheduler
alone, for deployments on PostgreSQL where they scale and restart separately.

How this lives with DuckDB, which admits one writing process per file:

- The server holds **no** warehouse connection between requests: each request opens the
  workspace and closes it when done (``services.server.Server.workspace``); the scheduler opens it
  for one cycle and closes it. So ``closeloop explain``, ``report`` and ``import`` run while
  ``serve`` runs; each waits for the file (up to the warehouse's lock timeout, 120 s) only while a
  request or a cycle holds it, as two CLI commands wait for each other.
- Segment ingestion is buffered in the state store and written to the warehouse in batches by
  the server's flusher (``CLOSELOOP_INGEST_FLUSH_INTERVAL``), which opens the warehouse only when
  messages are waiting.
- The state store (SQLite in WAL mode, or PostgreSQL) admits many processes; the server keeps one
  engine for tokens and the audit log.
- One scheduler per state store: ``serve`` and ``worker`` take the runner lock that ``closeloop
  run`` takes; a second one is refused, and ``serve`` then stops with exit code 1.

Stopping: SIGTERM or SIGINT makes uvicorn finish the requests in flight and close; the scheduler
finishes its cycle (never interrupted half-way: a cycle's writes are transactions, and a re-run is
a no-op) and the process exits with code 0.

The API and the dashboard are loaded by uvicorn from ``closeloop.asgi:create_app`` (a factory,
given the project folder through ``CLOSELOOP_PROJECT``): the command line never imports the API
or web package, as the layering rule says for surfaces.
"""

from __future__ import annotations

import copy
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from closeloop.cli.common import ProjectOption, console, errors, parse_interval, reports_errors
from closeloop.cli.operate import print_dispatch, print_ticks, run
from closeloop.errors import CloseloopError, redact

if TYPE_CHECKING:
    import uvicorn

    from closeloop.services import engine_runs

APP_FACTORY = "closeloop.asgi:create_app"  # the API and the dashboard

HostOption = Annotated[
    str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")
]
PortOption = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]
EveryOption = Annotated[
    str, typer.Option(help="Scheduler: interval between cycles (30s, 5m, 1h, 1d).")
]


def _checked_project(project: Path | None) -> tuple[Path, list[str]]:
    """The project folder (checked, its store migrated before anything listens) and the secret
    values its logs must mask."""
    from closeloop.services import tokens as token_service
    from closeloop.services.server import secret_values

    with token_service.project_store(project) as (settings, _store):
        return settings.project_dir, secret_values(settings)


def log_config(secrets: list[str]) -> dict[str, Any]:
    """uvicorn's logging, every handler behind a :class:`SecretsFilter`, and closeloop's own
    loggers (the API's unexpected errors, the audit) on the same handler."""
    import uvicorn

    from closeloop.services.server import SecretsFilter

    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["filters"] = {"secrets": {"()": SecretsFilter, "secrets": secrets}}
    for handler in config["handlers"].values():
        handler["filters"] = ["secrets"]
    config["loggers"]["closeloop"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config


def _uvicorn(project_dir: Path, secrets: list[str], host: str, port: int) -> uvicorn.Server:
    import uvicorn

    os.environ["CLOSELOOP_PROJECT"] = str(project_dir)
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        log_config=log_config(secrets),
    )
    return uvicorn.Server(config)


def _report_cycle(cycle: engine_runs.Cycle) -> None:
    if cycle.error is not None:
        console.print(
            f"[red]{cycle.at:%Y-%m-%d %H:%M:%S} cycle failed:[/red] {cycle.error}",
            highlight=False,
        )
        return
    print_ticks(console, cycle.ticks, cycle.at)
    print_dispatch(console, cycle.dispatched)


class Scheduler(threading.Thread):
    """``closeloop run`` in a thread: cycles until ``stop`` is set; a failure to start (another
    daemon holds the runner lock) is kept in ``failure`` and stops ``on_failure``'s target."""

    def __init__(self, project_dir: Path, every: str, server: uvicorn.Server) -> None:
        super().__init__(name="closeloop-scheduler", daemon=True)
        self.project_dir = project_dir
        self.interval = parse_interval(every)
        self.server = server
        self.stop = threading.Event()
        self.failure: str | None = None

    def run(self) -> None:
        from closeloop.services import engine_runs

        try:
            engine_runs.run_daemon(self.project_dir, self.interval, self.stop, _report_cycle)
        except CloseloopError as error:
            self.failure = redact(str(error))
            self.server.should_exit = True  # serve without its scheduler would mislead


def _serve(project: Path | None, host: str, port: int, every: str | None) -> None:
    project_dir, secrets = _checked_project(project)
    server = _uvicorn(project_dir, secrets, host, port)
    scheduler = Scheduler(project_dir, every, server) if every is not None else None

    # uvicorn installs its own SIGINT/SIGTERM handlers while it runs and re-raises the signal
    # once shut down; these handlers receive that re-raise, so the process ends with code 0.
    def graceful(signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True
        if scheduler is not None:
            scheduler.stop.set()

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)
    if scheduler is not None:
        scheduler.start()
    try:
        server.run()
    finally:
        if scheduler is not None:
            scheduler.stop.set()
            scheduler.join()
    if scheduler is not None and scheduler.failure is not None:
        errors.print(f"[red]error:[/red] {scheduler.failure}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    if not server.started:
        raise typer.Exit(1)  # uvicorn said why (e.g. the port is in use)
    console.print("stopped", highlight=False)


@reports_errors
def serve(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    scheduler: Annotated[
        bool,
        typer.Option(
            "--scheduler/--no-scheduler",
            help="Also tick and dispatch every --every, as `closeloop run` does.",
        ),
    ] = True,
    every: EveryOption = "15m",
    project: ProjectOption = None,
) -> None:
    """Serve the REST API and run the scheduler in one process, until SIGTERM/Ctrl-C.

    The warehouse is opened per request and per cycle, so `closeloop report`, `explain` and
    `import` keep working while it runs. Authenticate with `closeloop tokens create`.
    """
    parse_interval(every)  # refuse a bad interval before anything listens
    _serve(project, host, port, every if scheduler else None)


@reports_errors
def api(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    project: ProjectOption = None,
) -> None:
    """Serve the REST API only (run `closeloop worker` for the scheduler), until SIGTERM/Ctrl-C."""
    _serve(project, host, port, None)


@reports_errors
def worker(
    every: EveryOption = "15m",
    cycles: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many cycles (default: never).")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Run the scheduler only (the same as `closeloop run`), for a separate API process."""
    run(every=every, cycles=cycles, project=project)
