"""``closeloop health list|show|snapshot|backtest``: health scores defined in health.yaml, one
account's score explained, the daily point-in-time snapshot, and whether a score predicts churn
and contraction at all (docs/health.md)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from closeloop.cli.common import (
    ProjectOption,
    bar,
    console,
    now_or,
    parse_interval,
    parse_time,
    reports_errors,
)

SECONDS_PER_DAY = 86_400
health_app = typer.Typer(
    help="Health scores: explain one account's score, take the daily snapshot, backtest.",
    no_args_is_help=True,
)


class HealthFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


ScoreOption = Annotated[
    str | None, typer.Option("--score", help="One health score by name (default: every score).")
]
FormatOption = Annotated[HealthFormat, typer.Option("--format", help="table or json.")]


@health_app.command("list")
@reports_errors
def list_scores(
    output_format: FormatOption = HealthFormat.TABLE, project: ProjectOption = None
) -> None:
    """The project's health scores: measures, weights, polarity, ranges, bands, segments."""
    from closeloop.present.health import print_scores
    from closeloop.schemas import dump_json
    from closeloop.services import health as service
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=False) as workspace:
        result = service.scores(workspace)
    if output_format == HealthFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_scores(result, console)


@health_app.command("show")
@reports_errors
def show(
    account_id: Annotated[str, typer.Argument(help="The account's id.")],
    score: ScoreOption = None,
    at: Annotated[
        str | None, typer.Option("--at", help="As of this time (ISO, UTC; default now).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Also the score as of this time, and why it moved since."),
    ] = None,
    output_format: FormatOption = HealthFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """An account's score and band as of a time: each measure's value, scaled value, effective
    weight and points; with --since, the change of each measure's points (why the score moved)."""
    from closeloop.present.health import print_account_health
    from closeloop.schemas import dump_json
    from closeloop.services import health as service
    from closeloop.services.project import open_workspace

    moment = now_or(at)
    then = parse_time(since) if since else None
    with open_workspace(project, write=False) as workspace:
        result = service.account_health(workspace, account_id, moment, since=then, score=score)
    if output_format == HealthFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_account_health(result.scores, console)


@health_app.command("snapshot")
@reports_errors
def snapshot(
    at: Annotated[
        str | None,
        typer.Option("--at", help="Take the snapshot of this time's day (default today, UTC)."),
    ] = None,
    score: ScoreOption = None,
    output_format: FormatOption = HealthFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Write the day's point-in-time scores (as of the day's start, UTC) into the warehouse table
    closeloop_health_scores; taking a day again replaces it. The daemon takes one a day."""
    from closeloop.present.health import print_snapshot
    from closeloop.schemas import dump_json
    from closeloop.services import health as service
    from closeloop.services.project import open_workspace

    moment = parse_time(at) if at else None
    with open_workspace(project, write=False) as workspace, bar() as progress:
        task = progress.add_task("scoring", total=None)

        def advance(name: str, done: int, total: int) -> None:
            progress.update(task, description=name or "done", completed=done, total=total)

        result = service.snapshot(workspace, moment, score=score, on_progress=advance)
    if output_format == HealthFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_snapshot(result, console)


@health_app.command("backtest")
@reports_errors
def backtest(
    at: Annotated[str, typer.Option("--at", help="Score as of this time (ISO, UTC).")],
    horizon: Annotated[
        str, typer.Option("--horizon", help="Outcomes in (at, at + horizon], e.g. 90d.")
    ] = "90d",
    score: ScoreOption = None,
    output_format: FormatOption = HealthFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Scores as of --at (point in time) of the accounts paying then, against churn and
    contraction in the horizon: AUC with its 95% interval, top-decile lift and calibration by
    band and decile, overall and per segment. Warns when a score does not predict."""
    from closeloop.present.health import print_backtest
    from closeloop.schemas import dump_json
    from closeloop.services import health as service
    from closeloop.services.project import open_workspace

    moment = parse_time(at)
    horizon_days = parse_interval(horizon).total_seconds() / SECONDS_PER_DAY
    with open_workspace(project, write=False) as workspace:
        result = service.backtest(workspace, moment, horizon_days=horizon_days, score=score)
    if output_format == HealthFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_backtest(result, console)
