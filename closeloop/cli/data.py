"""Commands about the data itself: the quarantine of rows that imports set aside, and the
warnings every command prints when the data looks stale for the time asked about."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from closeloop.cli.common import ProjectOption, console, now_or, parse_time, reports_errors

quarantine_app = typer.Typer(
    help="Rows imports set aside (file, row, column, reason, the row as read): list them, export "
    "them to fix and re-import, purge them."
)


class ListFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class FileFormat(StrEnum):
    """The format of exported rows (the service's ExportFormat, named here so that the
    command's signature needs no service module)."""

    CSV = "csv"
    JSONL = "jsonl"


FormatOption = Annotated[ListFormat, typer.Option("--format", help="table, json or csv.")]
TableOption = Annotated[
    str | None,
    typer.Option(
        "--table",
        help="Only this table (accounts, people, events, …: the tables `closeloop import` takes).",
    ),
]
RAW_SHOWN = 60  # characters of the raw row in the table view (json and csv give it whole)


def print_warnings(warnings: Iterable[str]) -> None:
    """Data warnings (stale data, names the data lacks) in yellow, one line each."""
    for warning in warnings:
        console.print(
            f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True
        )


# -- quarantine ---------------------------------------------------------------------------------


@quarantine_app.command("list")
@reports_errors
def quarantine_list(
    table: TableOption = None,
    limit: Annotated[
        int, typer.Option(min=0, help="Show at most this many rows (0: all of them).")
    ] = 50,
    output_format: FormatOption = ListFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Quarantined rows: table, file, row, column, reason and the row as it was read."""
    from closeloop.schemas import dump_json
    from closeloop.services import data as data_service
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=False) as workspace:
        listing = data_service.quarantine_list(workspace, table, limit=limit or None)
    if output_format == ListFormat.JSON:
        typer.echo(dump_json(listing))
        return
    if output_format == ListFormat.CSV:
        _write_csv(
            ("table", "file", "row", "column", "reason", "raw", "quarantined_at"),
            [
                (r.table, r.file, r.row, r.column or "", r.reason, r.raw, r.quarantined_at)
                for r in listing.rows
            ],
        )
        return
    if not listing.total:
        scope = f" for {listing.table}" if listing.table else ""
        console.print(f"no quarantined rows{scope}")
        return
    counts = ", ".join(f"{name} {count:,}" for name, count in listing.by_table.items())
    console.print(f"{listing.total:,} quarantined row(s): {counts}", highlight=False)
    view = Table("table", "file", "row", "column", "reason", "raw")
    for row in listing.rows:
        raw = row.raw if len(row.raw) <= RAW_SHOWN else row.raw[: RAW_SHOWN - 1] + "…"
        view.add_row(
            row.table,
            escape(Path(row.file).name),
            f"{row.row:,}",
            escape(row.column or ""),
            escape(row.reason),
            escape(raw),
        )
    console.print(view)
    if len(listing.rows) < listing.total:
        console.print(
            f"showing {len(listing.rows):,} of {listing.total:,}; --limit 0 lists them all, "
            "--format json or csv gives full paths and whole rows"
        )
    console.print(
        "fix them: `closeloop quarantine export`, edit the files, import them again, then "
        "`closeloop quarantine purge`"
    )


@quarantine_app.command("export")
@reports_errors
def quarantine_export(
    to: Annotated[
        Path, typer.Option("--to", help="Folder to write <table>.csv (or .jsonl) files into.")
    ] = Path("quarantine"),
    table: TableOption = None,
    file_format: Annotated[
        FileFormat,
        typer.Option("--file-format", help="csv or jsonl: the format of the written rows."),
    ] = FileFormat.CSV,
    force: Annotated[bool, typer.Option(help="Overwrite files that already exist.")] = False,
    output_format: FormatOption = ListFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Write quarantined rows back to one file per table, to fix and import again.

    Rows go out with the columns they were read with, so the fixed file imports as it is; rows
    that could not even be read into columns go to <table>.unreadable.txt, to repair by hand.
    """
    from closeloop.schemas import dump_json
    from closeloop.services import data as data_service
    from closeloop.services.project import open_workspace

    # Whole seconds, rounded up: every row quarantined before the export falls before it.
    started = now_or(None).replace(microsecond=0) + timedelta(seconds=1)
    with open_workspace(project, write=False) as workspace:
        exported = data_service.quarantine_export(
            workspace,
            to,
            table,
            file_format=data_service.ExportFormat(file_format.value),
            overwrite=force,
        )
    if output_format == ListFormat.JSON:
        typer.echo(dump_json(exported))
        return
    if output_format == ListFormat.CSV:
        _write_csv(
            ("table", "path", "rows", "readable"),
            [(f.table, f.path, f.rows, f.readable) for f in exported.files],
        )
        return
    if not exported.files:
        console.print("no quarantined rows to export")
        return
    for file in exported.files:
        if file.readable:
            console.print(
                f"wrote {file.rows:,} row(s) of {file.table} to {escape(str(file.path))}; "
                f"once fixed: closeloop import {file.table} {escape(str(file.path))}",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(
                f"wrote {file.rows:,} unreadable line(s) of {file.table} to "
                f"{escape(str(file.path))}: repair them by hand",
                highlight=False,
                soft_wrap=True,
            )
    scope = f" --table {table}" if table else ""
    console.print(
        "then remove the exported rows from the quarantine: closeloop quarantine purge"
        f"{scope} --before {started:%Y-%m-%dT%H:%M:%S}",
        highlight=False,
        soft_wrap=True,
    )


@quarantine_app.command("purge")
@reports_errors
def quarantine_purge(
    table: TableOption = None,
    before: Annotated[
        str | None,
        typer.Option(help="Only rows quarantined before this time (ISO, UTC); needs no --yes."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm deleting every selected row for good.")
    ] = False,
    output_format: FormatOption = ListFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Delete quarantined rows for good (all of them, of one --table, or those --before a time)."""
    from closeloop.schemas import dump_json
    from closeloop.services import data as data_service
    from closeloop.services.project import open_workspace

    cutoff = parse_time(before) if before else None
    with open_workspace(project, write=False) as workspace:
        purged = data_service.quarantine_purge(workspace, table, before=cutoff, confirmed=yes)
    if output_format == ListFormat.JSON:
        typer.echo(dump_json(purged))
        return
    if output_format == ListFormat.CSV:
        _write_csv(
            ("table", "before", "purged", "remaining"),
            [(purged.table or "", purged.before or "", purged.purged, purged.remaining)],
        )
        return
    scope = f" of {purged.table}" if purged.table else ""
    console.print(
        f"purged {purged.purged:,} quarantined row(s){scope}; {purged.remaining:,} remain",
        highlight=False,
    )


def _write_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            [value.isoformat() if isinstance(value, datetime) else value for value in row]
        )
