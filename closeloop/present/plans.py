"""Terminal rendering (Rich) of success plans, checks and the goals-achieved rate; formatting
only."""

from __future__ import annotations

from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from closeloop.present.format import MISSING, count, pct
from closeloop.schemas.plans import GoalsAchieved, Objective, Plan, PlanCheck, PlanList

STATUS_STYLE = {"met": "green", "missed": "red", "dropped": "dim", "open": ""}


def _status(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/{style}]" if style else status


def _when(moment: datetime | None) -> str:
    return MISSING if moment is None else f"{moment:%Y-%m-%d}"


def _value(value: float | None) -> str:
    return MISSING if value is None else f"{value:g}"


def _target(objective: Objective) -> str:
    text = f"{objective.target:g} by {objective.target_date}"
    if objective.renegotiations:
        text += (
            f"\n[dim](was {objective.original_target:g} by {objective.original_target_date})[/dim]"
        )
    return text


def _milestones(objective: Objective) -> str:
    """The milestones reached, with the day each was first reached."""
    reached = [
        f"{milestone.threshold:.0%} {milestone.reached_at:%Y-%m-%d}"
        for milestone in objective.milestones
        if milestone.reached_at is not None
    ]
    return "\n".join(reached) or MISSING


def print_plan_list(console: Console, listing: PlanList) -> None:
    table = Table(title=f"Success plans, statuses as of {listing.as_of:%Y-%m-%d %H:%M}")
    for header in (
        "id",
        "account",
        "title",
        "owner",
        "version",
        "open",
        "met",
        "missed",
        "dropped",
        "next date",
    ):
        table.add_column(header, justify="right" if header in ("id", "version") else "left")
    for plan in listing.plans:
        table.add_row(
            str(plan.id),
            escape(plan.account_id),
            escape(plan.title),
            escape(plan.owner or MISSING),
            str(plan.version),
            count(plan.open),
            count(plan.met),
            count(plan.missed),
            count(plan.dropped),
            str(plan.next_target_date or MISSING),
        )
    console.print(table)
    if not listing.plans:
        console.print("[dim]no plans; create one with `closeloop plans create ACCOUNT`[/dim]")


def print_plan(console: Console, plan: Plan) -> None:
    latest = "" if plan.version == plan.latest_version else f" of {plan.latest_version}"
    console.print(
        f"[bold]Plan {plan.id}: {escape(plan.title)}[/bold]  account {escape(plan.account_id)}, "
        f"owner {escape(plan.owner or MISSING)}, version {plan.version}{latest} "
        f"[dim](statuses as of {plan.as_of:%Y-%m-%d %H:%M})[/dim]"
    )
    table = Table()
    for header in (
        "id",
        "objective",
        "owner",
        "baseline",
        "target",
        "latest",
        "progress",
        "milestones",
        "status",
    ):
        table.add_column(
            header, justify="left" if header in ("objective", "milestones") else "right"
        )
    for objective in plan.objectives:
        table.add_row(
            str(objective.id),
            escape(objective.title),
            escape(objective.owner or MISSING),
            _value(objective.baseline),
            _target(objective),
            _value(objective.latest_value),
            pct(objective.progress, 0),
            _milestones(objective),
            _status(objective.status),
        )
    console.print(table)
    for objective in plan.objectives:
        console.print(f"[dim]objective {objective.id} measure: {escape(objective.measure)}[/dim]")
    for objective in plan.objectives:
        for renegotiation in objective.renegotiations:
            console.print(
                f"objective {objective.id} renegotiated {renegotiation.recorded_at:%Y-%m-%d}: "
                f"{renegotiation.old_target:g} by {renegotiation.old_target_date} -> "
                f"{renegotiation.new_target:g} by {renegotiation.new_target_date}, "
                f"agreed by {escape(renegotiation.agreed_by)} "
                f"(recorded by {escape(renegotiation.recorded_by)}): "
                f"{escape(renegotiation.reason)}"
            )
    history = ", ".join(
        f"v{v.version} {v.at:%Y-%m-%d} {escape(v.actor)}: {escape(v.change)}"
        for v in plan.versions[-5:]
    )
    console.print(f"[dim]versions: {history}[/dim]")


def print_check(console: Console, result: PlanCheck) -> None:
    console.print(
        f"Checked {count(result.evaluated)} open measured objectives as of "
        f"{result.at:%Y-%m-%d %H:%M}: {count(result.recorded)} values recorded, "
        f"{count(len(result.failures))} failed"
    )
    for value in result.values:
        console.print(
            f"  plan {value.plan_id} objective {value.objective_id} "
            f"({escape(value.account_id)}): {_value(value.value)}"
        )
    for failure in result.failures:
        console.print(
            f"  [red]plan {failure.plan_id} objective {failure.objective_id} "
            f"({escape(failure.account_id)}):[/red] {escape(failure.reason)}"
        )


def print_achieved(console: Console, result: GoalsAchieved) -> None:
    table = Table(
        title=f"Goals achieved as of {result.at:%Y-%m-%d %H:%M}, per {result.by} "
        f"({result.confidence:.0%} Wilson interval)"
    )
    for header in (result.by, "decided", "met", "missed", "rate", "interval"):
        table.add_column(header, justify="left" if header == result.by else "right")
    for row in [*result.groups, result.overall]:
        interval = (
            MISSING
            if row.lower is None or row.upper is None
            else f"{pct(row.lower, 0)} to {pct(row.upper, 0)}"
        )
        table.add_row(
            escape(row.group),
            count(row.decided),
            count(row.met),
            count(row.missed),
            pct(row.rate, 0),
            interval,
        )
    console.print(table)
    console.print(
        f"[dim]decided: met by {result.at:%Y-%m-%d}, or the agreed date has passed "
        f"(dropped objectives do not count); {count(result.overall.decided)} in all[/dim]"
    )
