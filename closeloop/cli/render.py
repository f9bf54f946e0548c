"""Terminal rendering of results (rich). No logic beyond formatting lives here."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from closeloop.errors import LocatedError
from closeloop.services.definitions import (
    DefinitionSummary,
    Matches,
    StageSummary,
    Version,
    sample_columns,
)
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


# -- definitions --------------------------------------------------------------------------------

SEVERITY_STYLE = {"error": "red", "warning": "yellow"}


def problem_text(problem: LocatedError) -> Text:
    """``file:line:col: error|warning: message``, then the line with a caret, then the hint."""
    text = Text()
    if problem.location is not None:
        text.append(f"{problem.location}: ", style="bold")
    text.append(f"{problem.severity}:", style=SEVERITY_STYLE.get(problem.severity, "white"))
    text.append(f" {problem.message}")
    caret = problem.location.caret() if problem.location is not None else ""
    if caret:
        text.append(f"\n{caret}")
    if problem.hint:
        text.append(f"\n    hint: {problem.hint}", style="dim")
    return text


def problems_summary(errors: int, warnings: int) -> str:
    return (
        f"{errors + warnings} problem(s) found: {errors} error(s), {warnings} warning(s)"
        if errors + warnings
        else "no problems found"
    )


def print_matches(console: Console, title: str, matches: Matches) -> None:
    console.print(
        f"[bold]{matches.count:,}[/bold] {matches.target}(s) match {title} "
        f"as of {matches.as_of:%Y-%m-%d %H:%M} UTC"
    )
    if matches.sample:
        columns = sample_columns(matches.target)
        table = Table(title=f"Sample ({len(matches.sample)})", title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in matches.sample:
            table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        console.print(table)
    if matches.sql:
        console.print("[bold]SQL[/bold]")
        console.print(Syntax(matches.sql, "sql", word_wrap=True))


def print_stage(console: Console, summary: StageSummary) -> None:
    console.print(
        f"[bold]{summary.name}[/bold] as of {summary.as_of:%Y-%m-%d %H:%M} UTC: "
        f"{summary.in_stage:,} in the stage · {summary.entered:,} entered · "
        f"{summary.completed:,} completed · {summary.exited:,} left without completing"
    )
    for title, rows in (
        ("Objectives (completed)", summary.objectives),
        ("Markers", summary.markers),
    ):
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("name")
        table.add_column("accounts", justify="right")
        for row in rows:
            table.add_row(row.name, f"{row.count:,}")
        console.print(table)


def print_definitions(console: Console, definitions: list[DefinitionSummary]) -> None:
    table = Table(title="Definitions", title_justify="left")
    for column in ("kind", "name", "hash", "version", "recorded", "author"):
        table.add_column(column)
    for item in definitions:
        latest = item.latest
        current = latest is not None and latest.content_hash == item.content_hash
        table.add_row(
            item.kind,
            item.name,
            item.content_hash,
            (f"v{latest.version}" + ("" if current else " (differs)")) if latest else "-",
            f"{latest.created_at:%Y-%m-%d %H:%M}" if latest else "-",
            latest.author if latest else "-",
        )
    console.print(table)


def print_history(console: Console, versions: list[Version]) -> None:
    for version in versions:
        console.print(
            f"[bold]{version.kind} {version.name} v{version.version}[/bold] · "
            f"{version.created_at:%Y-%m-%d %H:%M:%S} UTC · {version.author} · "
            f"{version.content_hash}",
            highlight=False,
        )
        console.print(diff_text(version.diff), highlight=False, soft_wrap=True)


DIFF_STYLE = {"+": "green", "-": "red", "@": "cyan"}


def diff_text(diff: str) -> Text:
    """A unified diff coloured by line (no padding, so it copies and pipes cleanly)."""
    text = Text()
    for line in diff.splitlines(keepends=True):
        text.append(line, style=DIFF_STYLE.get(line[:1], ""))
    return text
