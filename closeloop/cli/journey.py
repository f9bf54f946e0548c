"""``closeloop stage``, ``closeloop signals`` and ``closeloop jobs create-from-signal``: where
accounts stand in a stage, who needs attention, and a draft job for them (docs/stages.md)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape

from closeloop.cli.common import (
    ProjectOption,
    console,
    now_or,
    parse_interval,
    parse_time,
    reports_errors,
)
from closeloop.schemas.options import SignalKind

SECONDS_PER_DAY = 86_400


class JourneyFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def _write_csv(columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


@reports_errors
def stage(
    name: Annotated[str, typer.Argument(help="Stage name.")],
    at: Annotated[
        str | None, typer.Option("--at", help="Evaluate as of this time (ISO, UTC; default now).")
    ] = None,
    window: Annotated[
        str, typer.Option("--window", help="Counts over the last window, e.g. 30d or 12h.")
    ] = "30d",
    since: Annotated[
        str | None,
        typer.Option("--since", help="Also the stage as of this time, and what moved since."),
    ] = None,
    accounts: Annotated[
        bool, typer.Option("--accounts", help="Every account in the stage, with its class.")
    ] = False,
    output_format: Annotated[
        JourneyFormat,
        typer.Option(
            "--format", help="table, json, or csv (the accounts with --accounts, else objectives)."
        ),
    ] = JourneyFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """A stage as of a time: in it now, entered / completed / left over the window, per objective
    the completion rate and time to complete (Kaplan–Meier median and p75 from entry), the
    typical order; with --accounts each account's class (ahead, on_track, behind, stuck)."""
    from closeloop.present.journey import (
        ACCOUNT_COLUMNS,
        OBJECTIVE_COLUMNS,
        account_row,
        objective_row,
        print_stage,
    )
    from closeloop.schemas import dump_json
    from closeloop.services import journey as service
    from closeloop.services.project import open_workspace

    moment = now_or(at)
    window_days = parse_interval(window).total_seconds() / SECONDS_PER_DAY
    if window_days <= 0:
        raise typer.BadParameter("--window must be positive, e.g. 30d")
    before = parse_time(since) if since else None
    with open_workspace(project) as workspace:
        view = service.stage_view(
            workspace, name, moment, window_days=window_days, since=before, accounts=accounts
        )
    if output_format == JourneyFormat.JSON:
        typer.echo(dump_json(view))
    elif output_format == JourneyFormat.CSV:
        if view.accounts is not None:
            _write_csv(ACCOUNT_COLUMNS, (account_row(a) for a in view.accounts))
        else:
            _write_csv(OBJECTIVE_COLUMNS, (objective_row(o) for o in view.objectives))
    else:
        print_stage(console, view)


@reports_errors
def signals(
    at: Annotated[
        str | None, typer.Option("--at", help="Evaluate as of this time (ISO, UTC; default now).")
    ] = None,
    kind: Annotated[
        SignalKind | None, typer.Option("--kind", help="Only this kind of signal.")
    ] = None,
    output_format: Annotated[
        JourneyFormat,
        typer.Option("--format", help="table, json, or csv (one row per account and signal)."),
    ] = JourneyFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Accounts that need attention: slow completers per stage objective, usage drops, renewal
    risk; each signal with the rule that fired (an expression, usable as an audience) and the
    ARR at risk."""
    from closeloop.present.journey import SIGNAL_COLUMNS, print_signals, signal_rows
    from closeloop.schemas import dump_json
    from closeloop.services import journey as service
    from closeloop.services.project import open_workspace

    moment = now_or(at)
    with open_workspace(project) as workspace:
        found = service.signals(workspace, moment, kind)
    if output_format == JourneyFormat.JSON:
        typer.echo(dump_json(found))
    elif output_format == JourneyFormat.CSV:
        _write_csv(SIGNAL_COLUMNS, signal_rows(found))
    else:
        print_signals(console, found)


@reports_errors
def create_from_signal(
    signal_id: Annotated[
        str, typer.Argument(help="A signal's id, e.g. usage_drop (see closeloop signals).")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="The job's name (default: from the signal).")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="The signal as of this time (default now).")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Write a draft job whose audience is the signal's rule into the project's jobs file
    (validated first; not launched)."""
    from closeloop.services import journey as service
    from closeloop.services.server import Server

    moment = now_or(at)
    server = Server.open(project)
    try:
        written = service.create_job_from_signal(server, signal_id, moment, name=name)
    finally:
        server.close()
    definition = written.detail.definition or {}
    console.print(
        f"wrote draft job [bold]{escape(written.job)}[/bold] to {escape(written.file)} "
        f"(version {written.version}, not launched)",
        highlight=False,
    )
    for key in ("audience", "goal", "duration_days"):
        value = " ".join(str(definition.get(key, "")).split())
        console.print(f"  {key}: {escape(value)}", highlight=False)
    console.print(
        "  holdout: the project's default; no steps yet: add an email or a Slack task, then",
        highlight=False,
    )
    console.print(
        f'  closeloop dry-run "{escape(written.job)}"   # who it would enroll\n'
        f'  closeloop jobs launch "{escape(written.job)}"',
        highlight=False,
    )
