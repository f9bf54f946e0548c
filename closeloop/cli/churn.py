"""``closeloop churn review``: the post-mortem of every churn in a window, grouped by reason
(docs/churn-review.md)."""

from __future__ import annotations

import csv
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from closeloop.cli.common import ProjectOption, console, parse_time, reports_errors
from closeloop.present.format import count, money, num, pp
from closeloop.schemas.options import DEFAULT_LOOKBACK_DAYS

if TYPE_CHECKING:
    from closeloop.schemas.churn_review import ChurnedAccount, ChurnReview, ReasonGroup

churn_app = typer.Typer(help="Learning from failure: why accounts churned and what was tried.")


class ReviewFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


@churn_app.command("review")
@reports_errors
def review(
    start: Annotated[str, typer.Option("--start", help="Window start (inclusive, ISO).")],
    end: Annotated[str, typer.Option("--end", help="Window end (exclusive, ISO).")],
    lookback: Annotated[
        int, typer.Option("--lookback", help="Days of health history shown before each churn.")
    ] = DEFAULT_LOOKBACK_DAYS,
    output_format: Annotated[
        ReviewFormat, typer.Option("--format", help="table, json, or csv (one row per churn).")
    ] = ReviewFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """Every account that churned in [start, end): its reason and controllability, the stage it
    stalled in, its health on the way out, the jobs it was in with their measured effects and its
    success plans, grouped by reason."""
    from closeloop.schemas import dump_json
    from closeloop.services import churn_review as service
    from closeloop.services.project import open_workspace

    window_start, window_end = parse_time(start), parse_time(end)
    with open_workspace(project) as workspace:
        result = service.churn_review(workspace, window_start, window_end, lookback_days=lookback)
    if output_format == ReviewFormat.JSON:
        typer.echo(dump_json(result))
    elif output_format == ReviewFormat.CSV:
        write_csv(result)
    else:
        print_review(result)


CSV_FIELDS = (
    "churn_id",
    "account_id",
    "name",
    "owner",
    "segment",
    "churned_at",
    "reason",
    "controllable",
    "mrr_lost",
    "stalled_stage",
    "days_in_stage",
    "objectives_missing",
    "health_score",
    "health_first",
    "health_last",
    "health_change",
    "jobs",
    "plans",
    "plan_objectives_met",
    "plan_objectives_due",
)


def csv_row(account: ChurnedAccount) -> dict[str, Any]:
    """One churn as a flat row (lists joined with ``; ``)."""
    stalled = account.stalled_stage
    objectives = [o for plan in account.plans for o in plan.objectives]
    health = account.first_score_health()
    return {
        "churn_id": account.churn_id,
        "account_id": account.account_id,
        "name": account.name,
        "owner": account.owner,
        "segment": account.segment,
        "churned_at": account.churned_at.isoformat(),
        "reason": account.reason,
        "controllable": account.controllable,
        "mrr_lost": account.mrr_lost,
        "stalled_stage": stalled.stage if stalled else None,
        "days_in_stage": stalled.days_in_stage if stalled else None,
        "objectives_missing": "; ".join(stalled.objectives_missing) if stalled else None,
        "health_score": health[0].score_name if health else None,
        "health_first": health[0].score if health else None,
        "health_last": health[-1].score if health else None,
        "health_change": account.health_change,
        "jobs": "; ".join(f"{job.job} ({job.arm})" for job in account.jobs),
        "plans": len(account.plans),
        "plan_objectives_met": sum(1 for o in objectives if o.status == "met"),
        "plan_objectives_due": sum(1 for o in objectives if o.status in ("met", "missed")),
    }


def write_csv(result: ChurnReview) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for group in result.groups:
        writer.writerows(csv_row(account) for account in group.accounts)


def _flag(value: bool | None) -> str:
    return "—" if value is None else ("controllable" if value else "not controllable")


def _health(account: ChurnedAccount) -> str:
    points = account.first_score_health()
    if not points:
        return "—"
    first, last = points[0], points[-1]
    if len(points) == 1:
        return f"{num(last.score, 0)} {last.band}"
    return f"{num(first.score, 0)} → {num(last.score, 0)} {last.band}"


def _jobs(account: ChurnedAccount) -> str:
    if not account.jobs:
        return "none"
    parts = []
    for job in account.jobs:
        reached = "reached goal" if job.reached_goal_at is not None else "no goal"
        effect = ""
        if job.effect is not None:
            effect = f", job lift {pp(job.effect.estimate)} ({job.job_status})"
        parts.append(f"{job.job} [{job.arm}, {reached}{effect}]")
    return "; ".join(parts)


def _plans(account: ChurnedAccount) -> str:
    objectives = [o for plan in account.plans for o in plan.objectives]
    if not account.plans:
        return "none"
    met = sum(1 for o in objectives if o.status == "met")
    due = sum(1 for o in objectives if o.status in ("met", "missed"))
    return f"{count(met)}/{count(due)} due objectives met"


def _print_group(group: ReasonGroup) -> None:
    stalls = ", ".join(f"{escape(s.stage)} {count(s.accounts)}" for s in group.stalled) or "none"
    reason = escape(group.reason)
    table = Table(
        title=f"{reason} ({_flag(group.controllable)}): {count(group.churns)} churns, "
        f"{money(group.mrr_lost, signed=False)} MRR lost; stalled in: {stalls}; "
        f"{count(group.never_in_a_job)} never in a job, {count(group.treated)} treated, "
        f"{count(group.with_plan)} with a plan",
        title_justify="left",
    )
    for header in (
        "account",
        "owner",
        "churned",
        "MRR lost",
        "stalled in",
        "health",
        "jobs",
        "plans",
    ):
        table.add_column(header, justify="right" if header == "MRR lost" else "left")
    for account in group.accounts:
        stalled = account.stalled_stage
        where = "—"
        if stalled is not None:
            if stalled.objectives_missing:
                progress = "missing " + ", ".join(stalled.objectives_missing)
            elif stalled.objectives_done:
                progress = "every objective done, after the stage's time"
            else:
                progress = "no objectives"
            where = f"{stalled.stage}, day {num(stalled.days_in_stage, 0)}, {progress}"
        table.add_row(
            *(
                escape(text)
                for text in (
                    account.name or account.account_id,
                    account.owner or "—",
                    f"{account.churned_at:%Y-%m-%d}",
                    money(account.mrr_lost, signed=False),
                    where,
                    _health(account),
                    _jobs(account),
                    _plans(account),
                )
            )
        )
    console.print(table)


def print_review(result: ChurnReview) -> None:
    window = f"{result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}"
    console.print(
        f"[bold]Churn review {window}[/bold]: {count(result.churns)} churns, "
        f"{money(result.mrr_lost, signed=False)} MRR lost, "
        f"{count(result.controllable_churns)} controllable"
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for group in result.groups:
        _print_group(group)
    if result.churns:
        console.print(
            f"[dim]Stages as of the window's end, times after each churn ignored; health: "
            f"snapshots over the {result.lookback_days} days before the churn; job lift: the "
            "job's measured effect on everyone it enrolled, not on this account.[/dim]"
        )
