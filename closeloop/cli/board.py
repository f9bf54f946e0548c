"""``closeloop board``: the board report for a period, in the terminal, as JSON, HTML or PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from closeloop.cli.common import (
    FormatOption,
    OutputFormat,
    ProjectOption,
    bar,
    console,
    reports_errors,
)
from closeloop.cli.outcomes_revenue import parse_day
from closeloop.errors import ConfigurationError


@reports_errors
def board(
    start: Annotated[
        str | None,
        typer.Option("--start", help="Period start (inclusive, YYYY-MM-DD), with --end."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", help="Period end (exclusive, YYYY-MM-DD).")
    ] = None,
    value_event: Annotated[
        str | None,
        typer.Option(
            "--value-event",
            help="Event marking first value (default: board_report.value_event).",
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the report as a standalone page.")
    ] = None,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Also write the report as PDF.")] = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """The board report: outcomes (NRR, GRR, churn, expansion by source, with trend), leading
    indicators (adoption, time to value, NPS/CSAT, risk), every job's verdict, lift and revenue
    value, then activity. Default period: the last full month before the data ends."""
    from closeloop.present.board import board_html, board_pdf, print_board
    from closeloop.schemas import dump_json
    from closeloop.services import board as service
    from closeloop.services.project import open_workspace

    if (start is None) != (end is None):
        raise ConfigurationError("--start and --end go together (or give neither)")
    with open_workspace(project, write=False) as workspace:
        if start is not None and end is not None:
            begin, finish = parse_day(start, "--start"), parse_day(end, "--end")
        else:
            begin, finish = service.default_period(workspace)
        service.check_period(begin, finish)
        if output_format == OutputFormat.JSON:  # stdout carries the JSON alone
            report = service.board_report(workspace, begin, finish, value_event=value_event)
        else:
            with bar() as progress:
                task = progress.add_task("board report", total=len(service.PARTS))

                def step(name: str) -> None:
                    progress.update(
                        task,
                        description=f"board report: {name}",
                        completed=service.PARTS.index(name),
                    )

                report = service.board_report(
                    workspace, begin, finish, value_event=value_event, progress=step
                )
    written = []
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(board_html(report), encoding="utf-8")
        written.append(html)
    if pdf is not None:
        pdf.parent.mkdir(parents=True, exist_ok=True)
        pdf.write_bytes(board_pdf(report))
        written.append(pdf)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(report))
        return
    print_board(report, console)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
