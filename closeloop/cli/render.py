"""Terminal rendering of results (rich). No logic beyond formatting lives here."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from closeloop.services.reports import (
    HOLDOUT,
    TREATMENT,
    JobReport,
    days,
    headline,
    num,
    pct,
    pp,
    pp_ci,
    pval,
)

STATUS_STYLE = {
    "positive": "green",
    "negative": "red",
    "inconclusive": "yellow",
    "insufficient_data": "yellow",
}


def print_job_report(
    console: Console, report: JobReport, truths: Mapping[str, float] | None = None
) -> None:
    style = STATUS_STYLE.get(report.status.value, "white")
    console.print(f"\n[bold]{report.job_name}[/bold] — as of {report.as_of:%Y-%m-%d %H:%M} UTC")
    console.print(f"[{style}]{headline(report)}[/{style}]")
    for warning in report.warnings:
        console.print(f"[yellow]⚠ {warning}[/yellow]")

    arms = Table(title="Arms", title_justify="left")
    for column in (
        "arm",
        "entered",
        "completed",
        "exited",
        "active",
        "completion rate (matured)",
        "median days*",
    ):
        arms.add_column(column, justify="left" if column == "arm" else "right")
    for arm_name in (TREATMENT, HOLDOUT):
        arm = report.arms[arm_name]
        arms.add_row(
            arm.arm,
            str(arm.entered),
            str(arm.completed),
            str(arm.exited),
            str(arm.active),
            pct(arm.completion_rate),
            num(arm.median_days_to_complete),
        )
    console.print(arms)
    console.print("[dim]* among completers only (conditional); see time to goal for everyone[/dim]")

    lift = report.lift
    console.print(
        f"Lift in completion: [bold]{pp(lift.estimate)}[/bold] 95% CI {pp_ci(lift.ci)}, "
        f"p = {pval(lift.p_value)} · relative {pct(report.relative_lift.estimate)}"
    )
    if truths and "all" in truths:
        truth = truths["all"]
        inside = lift.ci.lower <= truth <= lift.ci.upper
        verdict = "[green]inside the CI[/green]" if inside else "[red]outside the CI[/red]"
        console.print(f"Simulator's true effect overall: {pp(truth)} ({verdict})")
    if report.time_to_goal is not None:
        ttg = report.time_to_goal
        console.print(
            f"Restricted mean time to goal over {report.horizon_days} d: "
            f"{days(ttg.rmst_difference.estimate)} "
            f"[{days(ttg.rmst_difference.ci.lower)}, {days(ttg.rmst_difference.ci.upper)}] · "
            f"log-rank p = {pval(ttg.logrank.p_value)}"
        )
    console.print(f"Sample ratio check: p = {pval(report.srm.p_value)}")

    segments = Table(title="Lift by segment (matured enrollments)", title_justify="left")
    columns = [
        "segment",
        "holdout n",
        "treatment n",
        "holdout",
        "treatment",
        "lift",
        "95% CI",
        "BH p",
    ]
    if truths:
        columns += ["true effect", "in CI"]
    for column in columns:
        segments.add_column(column, justify="left" if column == "segment" else "right")
    for segment in report.segments:
        cells = [
            segment.segment + (" (small)" if segment.small else ""),
            str(segment.holdout.n),
            str(segment.treatment.n),
            pct(segment.holdout.mean if segment.holdout.n else None),
            pct(segment.treatment.mean if segment.treatment.n else None),
            pp(segment.lift.estimate),
            pp_ci(segment.lift.ci),
            pval(segment.adjusted_p_value),
        ]
        if truths:
            known = truths.get(segment.segment)
            covered = known is not None and segment.lift.ci.lower <= known <= segment.lift.ci.upper
            cells += [pp(known), "[green]yes[/green]" if covered else "[red]no[/red]"]
        segments.add_row(*cells)
    console.print(segments)
