"""``closeloop ingest flush``: write the buffered Segment messages to the warehouse now.

``closeloop serve`` flushes every second by itself; this command is for a worker beside API
processes started with ``CLOSELOOP_INGEST_FLUSH_INTERVAL=0``, for scripts and for tests.
"""

from __future__ import annotations

import typer

from closeloop.cli.common import FormatOption, OutputFormat, ProjectOption, console, reports_errors

ingest_app = typer.Typer(
    help="Segment-compatible ingestion (docs/ingestion.md): flush the buffer.",
    no_args_is_help=True,
)


@ingest_app.command("flush")
@reports_errors
def flush(project: ProjectOption = None, output_format: FormatOption = OutputFormat.TABLE) -> None:
    """Write every buffered message to the warehouse: events, accounts and people, and the
    messages that cannot be written to the quarantine table."""
    from closeloop.schemas import dump_json
    from closeloop.services.ingest import flush_project

    result = flush_project(project)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(result))
        return
    console.print(
        f"flushed {result.messages:,} message(s): {result.events_stored:,} events stored, "
        f"{result.duplicates:,} duplicates, {result.profiles_applied:,} identify/group applied "
        f"({result.accounts_inserted:,} accounts inserted, {result.accounts_updated:,} updated; "
        f"{result.people_inserted:,} people inserted, {result.people_updated:,} updated), "
        + (
            f"[yellow]{result.quarantined:,} quarantined[/yellow]"
            if result.quarantined
            else "0 quarantined"
        )
        + f"; {result.remaining:,} still buffered",
        highlight=False,
    )
    if result.quarantined:
        console.print("see `closeloop quarantine list` for each message's reason")
