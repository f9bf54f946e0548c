"""The ``closeloop`` command line: commands parse input, call ``closeloop.services``, print."""

from __future__ import annotations

import copy
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text
from typer.main import get_command_name, get_group

from closeloop.cli import board as board_cli
from closeloop.cli import churn as churn_cli
from closeloop.cli import data as data_cli
from closeloop.cli import health as health_cli
from closeloop.cli import ingest as ingest_cli
from closeloop.cli import journey as journey_cli
from closeloop.cli import operate, outcomes_adoption, outcomes_revenue, outcomes_team, outcomes_voc
from closeloop.cli import plans as plans_cli
from closeloop.cli import serve as serve_cli
from closeloop.cli import tokens as tokens_cli
from closeloop.cli import users as users_cli
from closeloop.cli.common import (
    FormatOption,
    OutputFormat,
    ProjectOption,
    bar,
    console,
    now_or,
    parse_interval,
    parse_time,
    reports_errors,
)
from closeloop.cli.operate import (
    launch_checks,
    print_backfill,
    print_dispatch,
    print_launch_checks,
    print_ticks,
)
from closeloop.cli.outcomes import outcomes_app
from closeloop.services.choices import IMPORT_TABLES, scenario_descriptions
from closeloop.settings import load_settings

if TYPE_CHECKING:
    from closeloop.schemas.definitions import Entity

_SCENARIOS = scenario_descriptions()


class _Closeloop(typer.Typer):
    """The root app. Run as a program (``closeloop jobs list``), it builds the click command of
    the one command or group that its first argument names: building every command (each one's
    signature and type hints) costs about as much as importing the CLI, and a command needs only
    its own. No argument, an option first (``--help``) or a name it does not know builds them all.
    Tests building the app with ``typer.main.get_command`` get every command, as before."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        given = kwargs.get("args", args[0] if args else None)
        words = sys.argv[1:] if given is None else list(given)
        only = self._only(words[0]) if words else None
        if only is None:
            return super().__call__(*args, **kwargs)
        # get_group, not get_command: a Typer with one command would become that command.
        # Typer's own call adds an exception hook that, with pretty exceptions off (as here),
        # hands every exception to Python's; calling the group directly does the same.
        return get_group(only)(*args, **kwargs)

    def _only(self, name: str) -> _Closeloop | None:
        """This app holding only the command or group called ``name`` (None: no such name)."""
        commands = [
            command
            for command in self.registered_commands
            if command.callback is not None
            and (command.name or get_command_name(command.callback.__name__)) == name
        ]
        groups = [group for group in self.registered_groups if group.name == name]
        if len(commands) + len(groups) != 1:
            return None
        only = copy.copy(self)
        only.registered_commands = commands
        only.registered_groups = groups
        return only


app = _Closeloop(
    name="closeloop",
    help=(
        "Prove whether customer-success interventions work: "
        "jobs with randomized holdouts, measured honestly."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
definitions_app = typer.Typer(
    help="Versions of the project's definitions (attributes, cohorts, stages, jobs).",
    no_args_is_help=True,
)
app.add_typer(definitions_app, name="definitions")
app.add_typer(operate.jobs_app, name="jobs", no_args_is_help=True)
app.add_typer(operate.outbox_app, name="outbox", no_args_is_help=True)
app.add_typer(operate.optout_app, name="optout", no_args_is_help=True)
app.add_typer(data_cli.quarantine_app, name="quarantine", no_args_is_help=True)
app.command("run")(reports_errors(operate.run))
app.command("dry-run")(reports_errors(operate.dry_run))
app.add_typer(tokens_cli.tokens_app, name="tokens")
app.add_typer(users_cli.users_app, name="users")
app.add_typer(plans_cli.plans_app, name="plans")
app.add_typer(ingest_cli.ingest_app, name="ingest")
outcomes_app.command("adoption")(outcomes_adoption.adoption)
outcomes_app.command("team")(outcomes_team.team)
outcomes_app.command("revenue")(outcomes_revenue.revenue)
outcomes_app.command("voc")(outcomes_voc.voc)
outcomes_app.command("divergence")(outcomes_voc.divergence)
app.add_typer(outcomes_app, name="outcomes")
app.add_typer(churn_cli.churn_app, name="churn", no_args_is_help=True)
app.command("board")(board_cli.board)
app.command("serve")(serve_cli.serve)
app.command("stage")(journey_cli.stage)
app.command("signals")(journey_cli.signals)
operate.jobs_app.command("create-from-signal")(journey_cli.create_from_signal)
app.command("api")(serve_cli.api)
app.command("worker")(serve_cli.worker)
app.add_typer(health_cli.health_app, name="health")


@app.command()
@reports_errors
def init(
    folder: Annotated[Path, typer.Argument(help="Folder to create the project in.")] = Path(),
    name: Annotated[
        str | None, typer.Option(help="Project name (default: the folder's name).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Overwrite an existing closeloop.yaml and example files.")
    ] = False,
) -> None:
    """Create a project: closeloop.yaml, example attributes, cohorts, stages and a job."""
    from closeloop.services.project import init_project, open_workspace

    for path in init_project(folder, name, force=force):
        console.print(f"created {path}")
    with open_workspace(folder, write=True) as workspace:  # the state store, ready to read
        console.print(f"state store at {workspace.store.url}")
    console.print(
        "next: `closeloop import accounts FILE`, `closeloop dry-run JOB`, "
        "then `closeloop jobs launch JOB`"
    )


@app.command()
@reports_errors
def validate(
    output_format: FormatOption = OutputFormat.TABLE, project: ProjectOption = None
) -> None:
    """Check every definition of the project; print every problem with file:line:column.

    Exits 1 when there is an error; warnings alone exit 0 (with --format json too).
    """
    from closeloop.present.definitions import print_validation
    from closeloop.schemas import dump_json
    from closeloop.services import definitions as definitions_service

    result = definitions_service.validate_project(load_settings(project))
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(result))
    else:
        print_validation(console, result)
    if not result.valid:
        raise typer.Exit(1)


@app.command()
@reports_errors
def schema(
    output: Annotated[
        Path, typer.Option(help="Folder to write the *.schema.json files into.")
    ] = Path("schema"),
) -> None:
    """Write the JSON Schema of every YAML file kind (for editor autocompletion)."""
    from closeloop.services import definitions as definitions_service

    for path in definitions_service.export_schemas(output):
        console.print(f"wrote {path}")


def _target(value: str) -> Entity:
    from closeloop.schemas.definitions import Entity

    try:
        return Entity(value)
    except ValueError:
        raise typer.BadParameter("--target is account or person") from None


@app.command()
@reports_errors
def explain(
    expression: Annotated[str, typer.Argument(help="An expression (docs/expressions.md).")],
    at: Annotated[
        str | None, typer.Option(help="Evaluate as of this time (ISO, UTC); default now.")
    ] = None,
    target: Annotated[str, typer.Option(help="account or person.")] = "account",
    sample: Annotated[int, typer.Option(min=0, help="How many matching ids to show.")] = 10,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Check an expression, count who matches as of a time, show a sample and the SQL."""
    from closeloop.present.definitions import print_matches
    from closeloop.schemas import dump_json
    from closeloop.services import definitions as definitions_service
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        matches = definitions_service.explain(
            workspace, expression, now_or(at), _target(target), sample
        )
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(matches))
    else:
        print_matches(console, "the expression", matches)


@app.command()
@reports_errors
def cohort(
    name: Annotated[str, typer.Argument(help="Cohort name.")],
    at: Annotated[str, typer.Option(help="Evaluate as of this time (ISO, UTC).")],
    sample: Annotated[int, typer.Option(min=0, help="How many member ids to show.")] = 10,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """How many members a cohort has as of a time, and a sample of them."""
    from closeloop.present.definitions import print_matches
    from closeloop.schemas import dump_json
    from closeloop.services import definitions as definitions_service
    from closeloop.services.project import open_workspace

    moment = parse_time(at)
    with open_workspace(project) as workspace:
        matches = definitions_service.cohort(workspace, name, moment, sample)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(matches))
    else:
        print_matches(console, f"cohort {name!r}", matches)


@definitions_app.command("list")
@reports_errors
def definitions_list(
    output_format: FormatOption = OutputFormat.TABLE, project: ProjectOption = None
) -> None:
    """Every definition: kind, name, current hash and latest recorded version."""
    from closeloop.present.definitions import print_definitions
    from closeloop.schemas import dump_json
    from closeloop.services import definitions as definitions_service
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        found = definitions_service.list_definitions(workspace)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(found))
    else:
        print_definitions(console, found)


@definitions_app.command("history")
@reports_errors
def definitions_history(
    name: Annotated[str, typer.Argument(help="Definition name (an attribute's bare name works).")],
    kind: Annotated[
        str | None, typer.Option(help="attribute, cohort, stage or job (default: any).")
    ] = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Every recorded version of a definition: number, time, author, hash, and the diff."""
    from closeloop.present.definitions import print_history
    from closeloop.schemas import dump_json
    from closeloop.services import definitions as definitions_service
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        found = definitions_service.definition_history(workspace, name, kind)
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(found))
    else:
        print_history(console, found)


@app.command()
@reports_errors
def migrate(project: ProjectOption = None) -> None:
    """Create or upgrade the state store's tables."""
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=True) as workspace:
        console.print(f"state store at {workspace.store.url} is up to date")


class ImportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"


@app.command("import")
@reports_errors
def import_(
    table: Annotated[str, typer.Argument(help=f"Canonical table: {', '.join(IMPORT_TABLES)}.")],
    file: Annotated[
        Path,
        typer.Argument(
            help="A CSV, JSON Lines or Parquet file (CSV and JSON Lines may be gzip-compressed).",
            exists=False,
        ),
    ],
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            metavar="CANONICAL=SOURCE",
            help="Read a canonical column from the file's column SOURCE, e.g. "
            "--map name=event_name (repeatable; adds to imports.<table>.map in closeloop.yaml).",
        ),
    ] = None,
    format_: Annotated[
        ImportFormat | None,
        typer.Option(
            "--format",
            help="csv, jsonl or parquet (default: from the extension, else the content).",
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="Text encoding of a CSV or JSON Lines file, e.g. latin-1, cp1252, utf-16 "
            "(default UTF-8; a byte-order mark is honoured)."
        ),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Import a file; bad rows go to the quarantine table, re-imports add no duplicates
    (accounts and people: changed rows are updated, each change kept in attribute history).

    Columns are matched by name, or by --map / imports.<table>.map in closeloop.yaml; other
    columns are kept in properties. Values are normalised by imports.<table>.normalize
    (docs/import.md).
    """
    from closeloop.services.data import ImportProgress, import_table
    from closeloop.services.project import open_workspace

    columns = dict(_column_mapping(item) for item in map_ or [])
    with (
        open_workspace(project) as workspace,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            _RateColumn("rows", "rows"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task(f"importing {file.name}", total=1.0, rows=0)

        def on_progress(update: ImportProgress) -> None:
            progress.update(task, rows=update.rows, completed=update.fraction or 0.0)

        result = import_table(
            workspace,
            table,
            file,
            columns=columns,
            format=format_.value if format_ is not None else None,
            encoding=encoding,
            progress=on_progress,
        )
    console.print(
        f"{result.table}: {result.rows_read:,} read, [green]{result.imported:,} inserted[/green], "
        f"{result.updated:,} updated, {result.unchanged:,} unchanged, "
        + (
            f"[yellow]{result.quarantined:,} quarantined[/yellow]"
            if result.quarantined
            else "0 quarantined"
        )
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    if result.quarantined:
        console.print(
            f"see `closeloop quarantine list --table {result.table}` for each bad row's file, "
            "row, column and reason"
        )


def _column_mapping(item: str) -> tuple[str, str]:
    canonical, equals, source = item.partition("=")
    if not equals or not canonical.strip() or not source.strip():
        raise typer.BadParameter(
            f"{item!r} is not CANONICAL=SOURCE (e.g. --map name=event_name)", param_hint="--map"
        )
    return canonical.strip(), source.strip()


@app.command()
@reports_errors
def tick(
    at: Annotated[str | None, typer.Option(help="Tick time (ISO, UTC); default now.")] = None,
    job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
    send: Annotated[bool, typer.Option(help="Dispatch the outbox after the tick.")] = True,
    launch: Annotated[
        bool, typer.Option(help="Launch draft jobs at this tick (same as `jobs launch`).")
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Run one tick of every live job: completions, timeouts, new enrollments, then send."""
    from closeloop.services import data as data_service
    from closeloop.services import engine_runs
    from closeloop.services.project import open_workspace

    moment = now_or(at)
    with open_workspace(project) as workspace:
        names = [job] if job else list(workspace.project.jobs)
        # A job's first tick is its launch: estimate, before it enrolls anyone, what it can detect.
        launch_lines = launch_checks(workspace, names, moment) if launch else []
        results = engine_runs.tick(workspace, moment, job, launch=launch)
        print_ticks(console, results, moment)
        print_launch_checks(launch_lines)
        data_cli.print_warnings(data_service.freshness(workspace.warehouse, moment).warnings)
        if send:
            print_dispatch(console, engine_runs.dispatch(workspace, moment))


@app.command()
@reports_errors
def backfill(
    start: Annotated[str, typer.Option("--from", help="First tick (ISO, UTC).")],
    end: Annotated[str, typer.Option("--to", help="Last tick (ISO, UTC).")],
    every: Annotated[str, typer.Option(help="Interval between ticks: 1d, 6h, 30m.")] = "1d",
    job: Annotated[str | None, typer.Option(help="Only this job.")] = None,
    send: Annotated[
        bool,
        typer.Option(
            "--send/--no-send",
            help="Really send what falls due, after each tick (default: replay only; planned "
            "messages are recorded as not_sent and never dispatched later).",
        ),
    ] = False,
    launch: Annotated[bool, typer.Option(help="Launch draft jobs at the first tick.")] = False,
    project: ProjectOption = None,
) -> None:
    """Replay ticks over a past period in simulated time (nothing is emailed without --send)."""
    from closeloop.services import engine_runs
    from closeloop.services.project import open_workspace

    first, last, step = parse_time(start), parse_time(end), parse_interval(every)
    total = len(list(engine_runs.tick_times(first, last, step)))
    with open_workspace(project) as workspace, bar(_RateColumn("rows", "rows")) as progress:
        names = [job] if job else list(workspace.project.jobs)
        launch_lines = launch_checks(workspace, names, first) if launch else []
        task = progress.add_task("ticking", total=total, rows=0)
        written = 0

        def on_tick(moment: object, ticked: list[Any], sent: object) -> None:
            # Rows the ticks wrote: enrollments, completions, exits and outbox rows.
            nonlocal written
            written += sum(
                r.entered + r.completed + r.exited + sum(r.outbox.values()) for r in ticked
            )
            progress.update(task, advance=1, rows=written)

        result = engine_runs.backfill(
            workspace,
            first,
            last,
            step,
            job_name=job,
            send=send,
            launch=launch,
            on_tick=on_tick,
        )
    print_backfill(console, result, total)
    print_launch_checks(launch_lines)


@app.command()
@reports_errors
def dispatch(
    at: Annotated[
        str | None, typer.Option(help="Send what is due at this time (default now).")
    ] = None,
    deliver_to: Annotated[
        Path | None,
        typer.Option(
            help="Rehearse: write every due message to JSON files in this folder; nothing is sent "
            "and the outbox is left unchanged."
        ),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Send every due message in the outbox (retries with backoff, dead-letters after 5 tries)."""
    from closeloop.services import engine_runs
    from closeloop.services.project import open_workspace

    moment = now_or(at)
    if deliver_to is not None:
        with open_workspace(project, write=False) as workspace:
            rehearsed = engine_runs.rehearse_dispatch(workspace, moment, deliver_to)
        console.print(
            f"rehearsal: wrote {len(rehearsed.sent)} message(s) to {deliver_to}, "
            f"{rehearsed.dead} could not be written, {rehearsed.skipped} skipped (opted out); "
            "nothing was sent and the outbox is unchanged"
        )
        for error in rehearsed.errors[:5]:
            console.print(f"[yellow]  {error}[/yellow]", highlight=False, soft_wrap=True)
        return
    with open_workspace(project) as workspace:
        print_dispatch(console, engine_runs.dispatch(workspace, moment))


@app.command()
@reports_errors
def report(
    job: Annotated[
        str | None, typer.Argument(help="Job name (none: list the jobs to report on).")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Measure as of this time (default: last tick).")
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="Also write an HTML report with charts here.")
    ] = None,
    pdf: Annotated[
        Path | None, typer.Option(help="Also write the report as a PDF here (WeasyPrint).")
    ] = None,
    segment_by: Annotated[
        list[str] | None,
        typer.Option(
            help="An account attribute, or cohort:NAME (membership at entry), to break the "
            "lift down by (repeatable; default: segment)."
        ),
    ] = None,
    value_event: Annotated[
        str | None,
        typer.Option(
            help="Also measure this event's value summed over the horizon after entry "
            "(e.g. expansion_mrr)."
        ),
    ] = None,
    match_on: Annotated[
        list[str] | None,
        typer.Option(
            help="Jobs without a holdout: account attributes (or tenure_days) to match enrolled "
            "accounts to eligible ones on (repeatable; default: segment, plan, tenure_days)."
        ),
    ] = None,
    covariate_days: Annotated[
        int,
        typer.Option(
            min=0,
            help="CUPED: adjust the value by the same event's value over this many days before "
            "entry (0: no adjustment).",
        ),
    ] = 0,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Measure a job: per arm and variant, lift vs holdout with CI, time to goal, segments.

    Without a job: the jobs there are to report on (status, launch, enrollments).
    """
    from closeloop.present.html import job_report_pdf, write_job_report_html
    from closeloop.present.job_report import print_job_report
    from closeloop.schemas import dump_json
    from closeloop.services import reports
    from closeloop.services.project import open_workspace

    if job is None:
        _list_jobs_to_report(output_format, project)
        return
    outcome = reports.ValueOutcome(value_event, covariate_days) if value_event else None
    with open_workspace(project, write=False) as workspace:
        reported = reports.report_job(
            workspace,
            job,
            parse_time(as_of) if as_of else None,
            segment_by=tuple(segment_by or ("segment",)),
            value_outcome=outcome,
            match_on=match_on,
            as_of_label="--as-of",
        )
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(reported.model))
    else:
        print_job_report(console, reported.model)  # its warnings include the data's freshness
    if html is not None:
        write_job_report_html(reported.model, html)
        console.print(f"HTML report: {html}")
    if pdf is not None:
        pdf.parent.mkdir(parents=True, exist_ok=True)
        pdf.write_bytes(job_report_pdf(reported.model))
        console.print(f"PDF report: {pdf}")


def _list_jobs_to_report(output_format: OutputFormat, project: Path | None) -> None:
    from closeloop.schemas import dump_json
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=False) as workspace:
        listed = operations.job_list(workspace)
    jobs = listed.jobs
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(listed))
        return
    if not jobs:
        console.print("no jobs: define one in jobs.yaml (docs/jobs.md)")
        return
    table = Table("job", "status", "launched", "enrolled", "active", "last tick")
    for summary in jobs:
        table.add_row(
            summary.name + ("" if summary.in_project else " (removed)"),
            summary.status,
            f"{summary.launched_at:%Y-%m-%d %H:%M}" if summary.launched_at else "",
            f"{summary.enrolled:,}",
            f"{summary.active:,}",
            f"{summary.last_tick:%Y-%m-%d %H:%M}" if summary.last_tick else "",
        )
    console.print(table)
    console.print("report on one: closeloop report JOB", highlight=False)


class MeasureFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    HTML = "html"


@app.command()
@reports_errors
def measure(
    units: Annotated[
        Path, typer.Option(help="Units file (.csv, .parquet, .jsonl): unit_id, arm, entered_at.")
    ],
    events: Annotated[
        Path, typer.Option(help="Events file: unit_id, name, timestamp and optionally value.")
    ],
    goal: Annotated[str, typer.Option(help="The event whose first occurrence is the goal.")],
    control: Annotated[str, typer.Option(help="The control arm (e.g. holdout).")],
    horizon: Annotated[str, typer.Option(help="How long after entry counts: 14d, 14, 36h, 2w.")],
    value_event: Annotated[
        str | None,
        typer.Option(help="Also compare the sum of this event's value within the horizon."),
    ] = None,
    covariate: Annotated[
        str | None,
        typer.Option(help="A pre-entry numeric units column for CUPED on the value."),
    ] = None,
    segment_by: Annotated[
        list[str] | None,
        typer.Option(help="A pre-entry units column to break the lift down by (repeatable)."),
    ] = None,
    match_on: Annotated[
        list[str] | None,
        typer.Option(
            help="No randomization: match each arm to the control on this pre-entry units column "
            "(coarsened exact matching, repeatable) and report the effect on the treated."
        ),
    ] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option(help="ARM=W, the planned split for the sample-ratio check (repeatable)."),
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(
            min=0.0001, max=0.5, help="Two-sided significance of every interval and test."
        ),
    ] = 0.05,
    output_format: Annotated[
        MeasureFormat, typer.Option("--format", help="table, json or html.")
    ] = MeasureFormat.TABLE,
    output: Annotated[
        Path | None, typer.Option(help="Write the output to this file instead of stdout.")
    ] = None,
) -> None:
    """Measure an intervention run elsewhere from a units file and an events file.

    Same numbers as `closeloop report`; the JSON format is described in docs/measure-format.md.
    """
    from closeloop.present.html import measurement_html
    from closeloop.present.measurement import print_measurement
    from closeloop.schemas import dump_json
    from closeloop.services import measure as measure_service

    result = measure_service.measure_files(
        measure_service.MeasureRequest(
            units=units,
            events=events,
            goal=goal,
            horizon_days=measure_service.parse_horizon(horizon),
            control=control,
            value_event=value_event,
            covariate=covariate,
            segment_by=tuple(segment_by or ()),
            weights=measure_service.parse_weights(weights or []),
            match_on=tuple(match_on or ()),
            alpha=alpha,
        )
    )
    model = result.model
    if output_format == MeasureFormat.JSON:
        text = dump_json(model) + "\n"
    elif output_format == MeasureFormat.HTML:
        text = measurement_html(model)
    elif output is None:
        print_measurement(console, model)
        return
    else:
        with output.open("w", encoding="utf-8") as handle:
            print_measurement(Console(file=handle, width=132), model)
        console.print(f"wrote {output}")
        return
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")


@app.command()
@reports_errors
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="Where to put the demo project.")] = Path(
        "closeloop-demo"
    ),
    accounts: Annotated[int, typer.Option(min=100, help="Simulated accounts.")] = 3000,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 7,
    scenario: Annotated[
        str,
        typer.Option(
            help="Simulator scenario: "
            + ", ".join(_SCENARIOS)
            + " (see closeloop simulate --help)."
        ),
    ] = "default",
) -> None:
    """Simulate a company, run a job with a holdout through the engine, measure, check the truth."""
    from closeloop.present.job_report import print_job_report
    from closeloop.services import demo as demo_service

    console.print(
        f"Simulating {accounts:,} accounts (scenario {scenario!r}, seed {seed}); "
        "emails go over SMTP "
        "to a server on 127.0.0.1; embedded DuckDB + SQLite in "
        f"{folder}/"
    )
    with bar() as progress:
        task = progress.add_task("simulated days", total=None)

        def on_day(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = demo_service.run_demo(
            folder, accounts=accounts, seed=seed, scenario_name=scenario, on_day=on_day
        )
    truths = {segment: truth.effect for segment, truth in result.truths.items()}
    print_job_report(console, result.model, truths)
    console.print(
        f"{result.events:,} events simulated; "
        f"{result.emails_received:,} emails received by the SMTP "
        f"server ({result.unique_message_ids:,} distinct Message-IDs) in {result.seconds:.0f} s"
    )
    console.print(f"HTML report with the survival chart: [bold]{result.html_path}[/bold]")
    console.print(f"True effects written next to the data: {result.project_dir / 'truth.json'}")
    folder = result.project_dir
    console.print(
        "The dashboard: [bold]closeloop users add me --role admin --project "
        f"{folder}[/bold], then [bold]closeloop serve --project {folder}[/bold] and open "
        "http://127.0.0.1:8000/",
        highlight=False,
    )


@app.command(
    epilog="Scenarios: "
    + "  ".join(f"{name}: {description}" for name, description in _SCENARIOS.items())
)
@reports_errors
def simulate(
    project: ProjectOption = None,
    scenario: Annotated[
        str, typer.Option(help=f"Simulator scenario: {', '.join(_SCENARIOS)}.")
    ] = "default",
    accounts: Annotated[
        int | None, typer.Option(help="Simulated accounts (default: the scenario's).")
    ] = None,
    days: Annotated[
        int | None, typer.Option(help="Days to simulate (default: the scenario's).")
    ] = None,
    arrival_days: Annotated[
        int | None,
        typer.Option(
            help="Accounts sign up over the first N days (default: the scenario's, at most --days)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Simulation seed (default: the scenario's).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Append even when the warehouse already has accounts "
            "(simulated rows then mix with what is there)."
        ),
    ] = False,
    run_jobs: Annotated[
        bool,
        typer.Option(
            help="Run the project's jobs in lockstep: tick each day, deliver to the simulated "
            "customers (never through the project's real channels) and write each job's true "
            "effect to the closeloop_ground_truth table."
        ),
    ] = False,
) -> None:
    """Simulate a B2B SaaS company into the project's warehouse, with its ground truth.

    Every canonical table is filled day by day; the simulator's configured truth (segments, true
    email effects) is written to simulation.json in the project folder. A warehouse that already
    has accounts is refused unless --force is given.
    """
    from closeloop.services import simulation as simulation_service
    from closeloop.services.project import open_workspace

    config = simulation_service.simulation_config(
        scenario, accounts=accounts, days=days, arrival_days=arrival_days, seed=seed
    )
    console.print(
        f"Simulating {config.n_accounts:,} accounts over {config.days:,} days "
        f"(scenario {config.name!r}, seed {config.seed}, sign-ups over {config.arrival_days} days)"
    )
    with (
        open_workspace(project) as workspace,
        bar(_RateColumn("rows", "rows"), _RateColumn("events", "events")) as progress,
    ):
        task = progress.add_task("simulated days", total=config.days, rows=0, events=0)

        def on_progress(update: simulation_service.SimulationProgress) -> None:
            progress.update(
                task, completed=update.days_done, rows=update.rows, events=update.events
            )

        result = simulation_service.simulate_into(
            workspace, config, append=force, run_jobs=run_jobs, on_progress=on_progress
        )
        truths = result.job_truths
    width = max(len(name) for name in result.rows)
    for name, rows in result.rows.items():
        console.print(f"{name:<{width}}  {rows:>12,} rows")
    console.print(
        f"{result.events:,} events in {result.seconds:.1f} s "
        f"({result.events_per_second:,.0f} events/s)"
    )
    for truth in truths:
        console.print(
            f"{truth.job_name}: {truth.units:,} matured enrollments; true effect on completion "
            f"within {truth.horizon_days:g} days:"
        )
        for effect in truth.effects:
            console.print(
                f"  {effect.variant:<12} {effect.segment:<12} n={effect.n:>6,}  "
                f"{effect.completion_if_control:6.1%} -> {effect.completion_if_treated:6.1%}  "
                f"({effect.effect * 100:+.1f} pp)"
            )
    console.print(f"ground truth: {result.truth_path}")


@app.command()
@reports_errors
def power(
    weekly: Annotated[
        float | None, typer.Option(min=0, help="Expected units entering per week.")
    ] = None,
    baseline: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Baseline completion rate within the horizon (0..1)."),
    ] = None,
    holdout: Annotated[float, typer.Option(min=0, max=1, help="Holdout fraction.")] = 0.2,
    weeks: Annotated[
        list[float] | None,
        typer.Option(min=0, help="Enrollment weeks to plan for (repeatable; default 2 4 8 12)."),
    ] = None,
    effect: Annotated[
        float | None,
        typer.Option(help="Target absolute lift (0.05 = 5 pp): how long to enroll to detect it."),
    ] = None,
    horizon: Annotated[float, typer.Option(min=0, help="Days after entry measured.")] = 30,
    alpha: Annotated[float, typer.Option(min=0, max=1, help="Two-sided significance.")] = 0.05,
    power_: Annotated[float, typer.Option("--power", min=0, max=1, help="Power.")] = 0.8,
    job: Annotated[
        str | None,
        typer.Option(help="Estimate volume and baseline from this job's data (see docs/jobs.md)."),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="With --job: estimate as of this time (default: last event).")
    ] = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Minimum detectable effect per enrollment duration, and the duration for a target effect."""
    from closeloop.present.planning import print_power_plan
    from closeloop.schemas import dump_json
    from closeloop.schemas.planning import DEFAULT_WEEKS, PowerInputs
    from closeloop.services import power as power_service
    from closeloop.services.project import open_workspace

    planned_weeks = tuple(weeks or DEFAULT_WEEKS)
    if job is not None:
        with open_workspace(project, write=False) as workspace:
            plan = power_service.plan_job_power(
                workspace,
                job,
                baseline_rate=baseline,
                weekly_volume=weekly,
                effect=effect,
                weeks=planned_weeks,
                as_of=parse_time(as_of) if as_of else None,
                alpha=alpha,
                power=power_,
            )
    elif weekly is None or baseline is None:
        raise typer.BadParameter("give --weekly and --baseline, or --job")
    else:
        plan = power_service.plan_power(
            PowerInputs(
                weekly_volume=weekly,
                baseline_rate=baseline,
                holdout_fraction=holdout,
                horizon_days=horizon,
                weeks=list(planned_weeks),
                effect=effect,
                alpha=alpha,
                power=power_,
            )
        )
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(plan))
    else:
        print_power_plan(console, plan)


@app.command()
@reports_errors
def library(
    goal: Annotated[
        str | None, typer.Option(help="Only jobs whose goal expression contains this text.")
    ] = None,
    segment: Annotated[
        str | None, typer.Option(help="Only jobs measured in this segment, and only its rows.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(help="positive, negative, inconclusive, insufficient_data (or error)."),
    ] = None,
    sort: Annotated[str, typer.Option(help="effect, n, started or name.")] = "effect",
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Every job ever run: goal, audience, variants and timing, n, effect overall and by segment."""
    from closeloop.present.planning import print_library
    from closeloop.schemas import dump_json
    from closeloop.schemas.library import SortKey
    from closeloop.services import library as library_service
    from closeloop.services.project import open_workspace

    try:
        sort_key = SortKey(sort)
    except ValueError:
        raise typer.BadParameter("--sort is effect, n, started or name") from None
    with open_workspace(project, write=False) as workspace:
        found = library_service.library(
            workspace, goal=goal, segment=segment, status=status, sort=sort_key
        )
    if output_format == OutputFormat.JSON:
        typer.echo(dump_json(found))
    else:
        print_library(console, found, segment)


class _RateColumn(TextColumn):
    """A count kept in the task's field ``name`` and its rate over the elapsed time:
    "12,345 rows, 6,789 rows/s"."""

    def __init__(self, name: str, unit: str) -> None:
        super().__init__("")
        self.name, self.unit = name, unit

    def render(self, task: Task) -> Text:
        count = int(task.fields.get(self.name, 0))
        elapsed = task.elapsed or 0.0
        rate = count / elapsed if elapsed > 0 else 0.0
        return Text(f"{count:,} {self.unit}, {rate:,.0f} {self.unit}/s")


if __name__ == "__main__":
    app()
