"""Commands to operate the engine: jobs and their lifecycle, run, dry-run, outbox, opt-outs."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from closeloop.cli.common import (
    FormatOption,
    OutputFormat,
    ProjectOption,
    console,
    now_or,
    parse_interval,
    parse_time,
    reports_errors,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from closeloop.schemas.jobs import TickSummary
    from closeloop.services.engine_runs import BackfillResult, DispatchResult, TickResult
    from closeloop.services.project import Workspace

jobs_app = typer.Typer(help="Jobs and their lifecycle: draft → live → paused → stopped.")
outbox_app = typer.Typer(help="Messages waiting, sent, failed: list, retry, purge.")
optout_app = typer.Typer(help="Accounts that must not be contacted (every channel honours it).")

AtOption = Annotated[str | None, typer.Option("--at", help="When (ISO, UTC); default now.")]


# -- printing what the engine did --------------------------------------------------------------


def print_ticks(out: Console, results: Sequence[TickResult], moment: datetime) -> None:
    from closeloop.services import operations

    print_tick_summaries(out, [operations.tick_summary(result) for result in results], moment)


def print_tick_summaries(out: Console, results: Sequence[TickSummary], moment: datetime) -> None:
    from closeloop.services import engine_runs

    for result in results:
        if result.status == engine_runs.JobStatus.DRAFT:
            out.print(
                f"[dim]{result.job}: draft, not launched (launch it with "
                f"`closeloop jobs launch {result.job!r}` or tick --launch)[/dim]"
            )
            continue
        state = " (already done)" if result.already_done else ""
        paused = f" [{result.status}]" if result.status != engine_runs.JobStatus.LIVE else ""
        out.print(
            f"{result.job} @ {moment:%Y-%m-%d %H:%M}{state}{paused}: {result.entered} "
            f"entered, {result.completed} completed, {result.exited} exited (v{result.version})"
            + _outbox_summary(result.outbox)
        )
        for problem in result.problems[:5]:
            out.print(f"[red]  cannot render:[/red] {problem}", highlight=False, soft_wrap=True)
        if len(result.problems) > 5:
            out.print(
                f"[red]  … and {len(result.problems) - 5} more (closeloop outbox list "
                "--status dead)[/red]"
            )


def _outbox_summary(counts: dict[str, int]) -> str:
    if not counts:
        return ""
    order = ("pending", "not_sent", "ghost", "skipped", "dead")
    parts = [f"{counts[status]} {status}" for status in order if counts.get(status)]
    return "; outbox: " + ", ".join(parts)


def print_dispatch(out: Console, result: DispatchResult) -> None:
    out.print(
        f"outbox: {len(result.sent)} sent, {result.retried} retrying, {result.dead} dead, "
        f"{result.skipped} skipped"
    )
    partial = [delivery for delivery in result.sent if delivery.detail]
    for delivery in partial[:5]:
        out.print(f"[yellow]  partly delivered:[/yellow] {delivery.detail}", highlight=False)
    if result.dead:
        out.print(
            f"[yellow]warning: {result.dead} message(s) dead-lettered; see "
            "`closeloop outbox list --status dead`, retry with `closeloop outbox retry`[/yellow]"
        )
        for error in result.errors[:5]:
            out.print(f"[yellow]  {error}[/yellow]", highlight=False, soft_wrap=True)


def print_backfill(out: Console, result: BackfillResult, total: int) -> None:
    from closeloop.services import engine_runs

    entered = sum(tick.entered for tick in result.ticks)
    completed = sum(tick.completed for tick in result.ticks)
    exited = sum(tick.exited for tick in result.ticks)
    drafts = sorted({t.job_name for t in result.ticks if t.status == engine_runs.JobStatus.DRAFT})
    out.print(
        f"{total} tick(s): {entered} entered, {completed} completed, {exited} exited"
        + _outbox_summary(result.outbox())
    )
    if drafts:
        out.print(f"[dim]drafts not launched (use --launch): {', '.join(drafts)}[/dim]")
    if result.sent:
        print_dispatch(out, result.dispatched)
    elif result.outbox().get("not_sent"):
        out.print(
            "[yellow]replay only: nothing was sent, the planned messages are recorded as "
            "not_sent and will never be dispatched; the report will show that the treated arm "
            "received nothing. Use --send to really send.[/yellow]"
        )
    problems = [problem for tick in result.ticks for problem in tick.problems]
    for problem in problems[:5]:
        out.print(f"[red]  cannot render:[/red] {problem}", highlight=False, soft_wrap=True)


def launch_checks(workspace: Workspace, names: list[str], moment: datetime) -> list[str]:
    """For jobs that have never ticked (this tick launches them): what they can detect."""
    from closeloop.services import operations

    return operations.launch_checks(workspace, names, moment)


def print_launch_checks(lines: list[str]) -> None:
    for line in lines:
        style = "yellow" if "underpowered" in line or "not estimated" in line else "dim"
        console.print(f"[{style}]launch check: {line}[/{style}]")


# -- jobs ----------------------------------------------------------------------------------------


JobArgument = Annotated[str, typer.Argument(help="Job name.")]


def _echo_json(model: BaseModel) -> None:
    from closeloop.schemas import dump_json

    typer.echo(dump_json(model))


@jobs_app.command("list")
@reports_errors
def jobs_list(
    output_format: FormatOption = OutputFormat.TABLE, project: ProjectOption = None
) -> None:
    """Every job: status, version, enrollments, last tick."""
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=False) as workspace:
        listed = operations.job_list(workspace)
    if output_format == OutputFormat.JSON:
        _echo_json(listed)
        return
    table = Table("job", "status", "version", "enrolled", "active", "last tick")
    for job in listed.jobs:
        table.add_row(
            job.name + ("" if job.in_project else " (removed)"),
            job.status,
            f"v{job.version}" if job.version else "",
            f"{job.enrolled:,}",
            f"{job.active:,}",
            f"{job.last_tick:%Y-%m-%d %H:%M}" if job.last_tick else "",
        )
    console.print(table)


@jobs_app.command("show")
@reports_errors
def jobs_show(
    job: JobArgument,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """One job: status, versions in use, deliveries per arm, outbox, and its audit log."""
    from closeloop.present.report_view import DELIVERY_STATUSES
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=False) as workspace:
        detail = operations.show_job(workspace, job)
    if output_format == OutputFormat.JSON:
        _echo_json(detail)
        return
    summary = detail.summary
    console.print(
        f"[bold]{summary.name}[/bold]: {summary.status}"
        + (f", v{summary.version}" if summary.version else "")
        + f"; {summary.enrolled:,} enrolled, {summary.active:,} active"
        + (f"; last tick {summary.last_tick:%Y-%m-%d %H:%M}" if summary.last_tick else "")
    )
    if len(detail.versions_in_use) > 1:
        used = ", ".join(f"v{version}: {count:,}" for version, count in detail.versions_in_use)
        console.print(f"[yellow]edited while running: enrollments by version {used}[/yellow]")
    if detail.deliveries:
        table = Table("arm", "units", "reached", *DELIVERY_STATUSES)
        for arm in detail.deliveries.values():
            table.add_row(
                arm.arm,
                f"{arm.units:,}",
                f"{arm.units_reached:,}",
                *(f"{arm.by_status.get(status, 0):,}" for status in DELIVERY_STATUSES),
            )
        console.print(table)
    for entry in detail.audit:
        console.print(
            f"[dim]{entry.at:%Y-%m-%d %H:%M:%S}[/dim] {entry.actor}: {entry.action} "
            f"{json.dumps(entry.detail, default=str) if entry.detail else ''}",
            highlight=False,
            soft_wrap=True,
        )


@jobs_app.command("launch")
@reports_errors
def jobs_launch(job: JobArgument, at: AtOption = None, project: ProjectOption = None) -> None:
    """Launch a draft: lock its goal and hypothesis, enroll and plan its first sends now."""
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    moment = now_or(at)
    with open_workspace(project) as workspace:
        result = operations.launch(workspace, job, moment)
    if result.tick is None:
        console.print(f"{job} is already launched")
        return
    print_tick_summaries(console, [result.tick], moment)
    print_launch_checks(result.checks)
    console.print("its messages go out with the next `closeloop dispatch` (or `run`)")


def _transition(job: str, status: str, at: str | None, project: Path | None) -> None:
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    moment = now_or(at)
    with open_workspace(project) as workspace:
        change = operations.change_status(workspace, job, status, moment)
    console.print(
        f"{job}: {change.previous} -> {status}" if change.changed else f"{job} is {status}"
    )


@jobs_app.command("pause")
@reports_errors
def jobs_pause(job: JobArgument, at: AtOption = None, project: ProjectOption = None) -> None:
    """Pause a live job: it enrolls nobody and sends nothing until resumed."""
    from closeloop.services import engine_runs

    _transition(job, engine_runs.JobStatus.PAUSED, at, project)


@jobs_app.command("resume")
@reports_errors
def jobs_resume(job: JobArgument, at: AtOption = None, project: ProjectOption = None) -> None:
    """Resume a paused job."""
    from closeloop.services import engine_runs

    _transition(job, engine_runs.JobStatus.LIVE, at, project)


@jobs_app.command("stop")
@reports_errors
def jobs_stop(job: JobArgument, at: AtOption = None, project: ProjectOption = None) -> None:
    """Stop a job for good: active enrollments exit (job_stopped), unsent messages are cancelled."""
    from closeloop.services import engine_runs

    _transition(job, engine_runs.JobStatus.STOPPED, at, project)


@jobs_app.command("remove-account")
@reports_errors
def jobs_remove_account(
    job: JobArgument,
    account: Annotated[str, typer.Argument(help="Account id.")],
    at: AtOption = None,
    project: ProjectOption = None,
) -> None:
    """Take an account out of a job (exit reason removed); its unsent messages are cancelled."""
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        removed = operations.remove_account(workspace, job, account, now_or(at)).removed
    console.print(
        f"{account}: {removed} active enrollment(s) in {job} exited (removed)"
        if removed
        else f"{account} has no active enrollment in {job}"
    )


# -- run, dry-run --------------------------------------------------------------------------------


def run(
    every: Annotated[str, typer.Option(help="Interval between cycles: 30s, 5m, 1h, 1d.")] = "15m",
    cycles: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many cycles (default: never).")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Run the engine: tick every live job and dispatch, every interval, until SIGTERM/Ctrl-C.

    One instance per project; a cycle finishes before the daemon stops.
    """
    from closeloop.services import engine_runs

    interval = parse_interval(every)
    stop = threading.Event()

    def graceful(signum: int, _frame: FrameType | None) -> None:
        console.print(f"[dim]{signal.Signals(signum).name}: stopping after this cycle[/dim]")
        stop.set()

    signal.signal(signal.SIGTERM, graceful)
    signal.signal(signal.SIGINT, graceful)

    def report(cycle: engine_runs.Cycle) -> None:
        if cycle.error is not None:
            console.print(f"[red]{cycle.at:%Y-%m-%d %H:%M:%S} cycle failed:[/red] {cycle.error}")
            return
        print_ticks(console, cycle.ticks, cycle.at)
        print_dispatch(console, cycle.dispatched)

    done = engine_runs.run_daemon(project, interval, stop, report, max_cycles=cycles)
    console.print(f"stopped after {done} cycle(s)")


def dry_run(
    job: JobArgument,
    at: AtOption = None,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Who would enter a job at a time and what each would receive; nothing is sent or recorded."""
    from closeloop.services import engine_runs
    from closeloop.services.project import open_workspace

    moment = now_or(at)
    with open_workspace(project, write=False) as workspace:
        result = engine_runs.dry_run(workspace, job, moment)
    if output_format == OutputFormat.JSON:
        _echo_json(result)
        return
    by_arm = ", ".join(f"{count:,} {arm}" for arm, count in result.entering_by_arm.items())
    console.print(
        f"{job} @ {moment:%Y-%m-%d %H:%M} ({result.status}): {len(result.entering):,} would "
        f"enter ({by_arm or 'none'}), {result.completing:,} complete, "
        f"{len(result.exiting):,} exit; nothing was recorded or sent"
    )
    table = Table("account", "step", "channel", "status", "due", "content")
    for message in result.messages[:50]:
        table.add_row(
            message.account_id,
            str(message.step),
            message.channel,
            message.status,
            f"{message.due_at:%Y-%m-%d %H:%M}" if message.due_at else "",
            message.problem or _gist(message.payload),
        )
    console.print(table)
    if len(result.messages) > 50:
        console.print(f"… {len(result.messages) - 50:,} more (--format json lists every one)")


def _gist(payload: dict[str, object]) -> str:
    """One line of a payload for the terminal: a subject, a Slack text, a webhook URL, …"""
    for key in ("subject", "text", "url", "attribute", "job", "folder"):
        if payload.get(key):
            value = str(payload[key])
            return value if len(value) <= 70 else value[:69] + "…"
    return "(holdout: logged, not sent)" if payload.get("ghost") else ""


# -- outbox --------------------------------------------------------------------------------------

StatusOption = Annotated[
    str | None,
    typer.Option(
        "--status", help="pending, sending, sent, dead, ghost, skipped, cancelled or not_sent."
    ),
]
JobOption = Annotated[str | None, typer.Option("--job", help="Only this job.")]


@outbox_app.command("list")
@reports_errors
def outbox_list(
    status: StatusOption = None,
    job: JobOption = None,
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=500, help="At most this many (500 at most), newest first.")
    ] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many of the newest first.")] = 0,
    output_format: FormatOption = OutputFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Messages in the outbox, newest first, with their status, attempts and last error."""
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=False) as workspace:
        listed = operations.outbox_list(
            workspace, status=status, job_name=job, account_id=account, offset=offset, limit=limit
        )
    if output_format == OutputFormat.JSON:
        _echo_json(listed)
        return
    console.print(", ".join(f"{count:,} {name}" for name, count in sorted(listed.counts.items())))
    table = Table("id", "job", "account", "arm", "step", "channel", "status", "tries", "error")
    for message in listed.messages:
        table.add_row(
            str(message.id),
            message.job_name,
            message.account_id,
            message.arm or "",
            str(message.step_index),
            message.channel,
            message.status,
            str(message.attempts),
            message.last_error or message.detail or "",
        )
    console.print(table)


@outbox_app.command("retry")
@reports_errors
def outbox_retry(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Message ids (default: every dead one).")
    ] = None,
    job: JobOption = None,
    at: AtOption = None,
    project: ProjectOption = None,
) -> None:
    """Put dead-lettered messages back in the queue (attempts reset); the next dispatch sends."""
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        retried = operations.outbox_retry(workspace, now_or(at), ids=ids, job_name=job)
    console.print(f"{retried.requeued} message(s) queued again")


@outbox_app.command("purge")
@reports_errors
def outbox_purge(
    status: Annotated[str, typer.Option("--status", help="sent, dead, cancelled or skipped.")],
    before: Annotated[
        str | None, typer.Option(help="Only messages created before this time (ISO).")
    ] = None,
    job: JobOption = None,
    project: ProjectOption = None,
) -> None:
    """Delete finished messages of one status (pending, ghost and not_sent rows are kept)."""
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        count = operations.outbox_purge(
            workspace, status, before=parse_time(before) if before else None, job_name=job
        )
    console.print(f"{count} {status} message(s) deleted")


# -- opt-outs ------------------------------------------------------------------------------------


@optout_app.command("add")
@reports_errors
def optout_add(
    accounts: Annotated[list[str] | None, typer.Argument(help="Account ids to opt out.")] = None,
    link: Annotated[
        str | None,
        typer.Option(help="An unsubscribe link or its token (checked: forged or expired refused)."),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept with the record).")] = None,
    at: AtOption = None,
    project: ProjectOption = None,
) -> None:
    """Opt accounts out: no channel sends to them, their enrollments exit (opted_out)."""
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    if not accounts and link is None:
        raise typer.BadParameter("give account ids or --link")
    moment = now_or(at)
    with open_workspace(project) as workspace:
        if link is not None:
            account = operations.optout_from_link(workspace, link, moment)
            console.print(f"{account} opted out (signed link)")
        if accounts:
            added = operations.optout_accounts(
                workspace, accounts, source="cli", reason=reason, at=moment
            )
            console.print(f"{added} account(s) opted out, {len(set(accounts)) - added} already")


@optout_app.command("import")
@reports_errors
def optout_import(
    file: Annotated[Path, typer.Argument(help="A CSV file with an account_id column.")],
    at: AtOption = None,
    project: ProjectOption = None,
) -> None:
    """Opt out every account listed in a CSV file (e.g. an export from your email tool)."""
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    with open_workspace(project) as workspace:
        added = operations.optout_import(workspace, file, now_or(at))
    console.print(f"{added} account(s) opted out")


@optout_app.command("list")
@reports_errors
def optout_list(
    output_format: FormatOption = OutputFormat.TABLE, project: ProjectOption = None
) -> None:
    """Every opted-out account, when, how and by whom."""
    from closeloop.schemas.jobs import OptOutList
    from closeloop.services import operations
    from closeloop.services.project import open_workspace

    with open_workspace(project, write=False) as workspace:
        found = operations.optout_list(workspace)
    if output_format == OutputFormat.JSON:
        _echo_json(OptOutList(count=len(found), optouts=found))
        return
    table = Table("account", "since", "source", "by", "reason")
    for optout in found:
        table.add_row(
            optout.account_id,
            f"{optout.opted_out_at:%Y-%m-%d %H:%M}",
            optout.source,
            optout.actor,
            optout.reason or "",
        )
    console.print(table)
