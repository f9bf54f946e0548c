"""A job's report in the terminal (rich), from the public model, one section per function.

The HTML page (:mod:`closeloop.present.html`) shows the same rows from
:mod:`closeloop.present.report_view`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from closeloop.present.format import (
    GUARD_STYLE,
    STATUS_STYLE,
    VERDICT_STYLE,
    days,
    level,
    num,
    pct,
    pp,
    pp_ci,
    pval,
)
from closeloop.present.measurement import COMPLETION_RATE, bracket, print_matched
from closeloop.present.report_view import (
    DELIVERY_STATUSES,
    TIME_TO_GOAL,
    arm_rows,
    as_of_text,
    comparison_rows,
    delivery_rows,
    headline,
    heterogeneity_rows,
    job_comparison,
    revenue_rows,
    row_checkpoints,
    segment_rows,
    verdict_view,
)
from closeloop.schemas.job_report import JobReport

Truths = Mapping[str, float] | None
"""The simulator's true effect per segment ("all": the job as a whole), when known."""


def _table(title: str, columns: list[str] | tuple[str, ...], left: int = 1) -> Table:
    """A table whose first ``left`` columns are left-aligned and the rest right-aligned."""
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index < left else "right")
    return table


def print_job_report(console: Console, report: JobReport, truths: Truths = None) -> None:
    """The report as the terminal shows it: verdict, headline, arms, lifts, segments, revenue."""
    console.print(f"\n[bold]{report.job_name}[/bold] — as of {as_of_text(report)} UTC")
    _print_verdict(console, report)
    style = STATUS_STYLE.get(report.status, "white")
    console.print(f"[{style}]{headline(report)}[/{style}]")
    for warning in report.warnings:
        console.print(f"[yellow]⚠ {warning}[/yellow]")
    if report.matched is not None:
        print_matched(console, report.matched)
    _print_arms(console, report)
    _print_deliveries(console, report)
    _print_lift(console, report)
    _print_extras(console, report, truths)
    _print_variants(console, report)
    _print_segments(console, report, truths)
    for row in heterogeneity_rows(report):
        console.print(
            f"Heterogeneity across {row['column']} ({row['arm']}, {row['scale']} scale): "
            f"Cochran's Q = {row['q']}, df = {row['df']}, p = {row['p']}"
        )
    _print_revenue(console, report)


def _print_verdict(console: Console, report: JobReport) -> None:
    decision = verdict_view(report)
    if decision is None:
        return
    colour = VERDICT_STYLE[decision["decision"]]
    console.print(f"[bold {colour}]{decision['words']}[/bold {colour}]: {decision['summary']}")
    for reason in decision["reasons"]:
        console.print(f"  · {reason}", highlight=False)
    if decision["impact"]:
        console.print(f"  Worth: {decision['impact']}", highlight=False)
    guards = " · ".join(
        f"{g['name']} [{GUARD_STYLE[g['state']]}]{g['state']}[/{GUARD_STYLE[g['state']]}]"
        for g in decision["guardrails"]
    )
    console.print(f"  Guardrails: {guards}")


def _print_arms(console: Console, report: JobReport) -> None:
    rows = arm_rows(report)
    checkpoints = row_checkpoints(rows)
    columns = ["arm", "entered", "completed", "exited", "active", "completion rate (matured)"]
    columns += [f"by day {day}" for day in checkpoints] + ["median days", "median*"]
    arms = _table("Arms", columns)
    for row in rows:
        arms.add_row(
            ("  " if row["variant"] else "") + row["arm"],
            str(row["entered"]),
            str(row["completed"]),
            str(row["exited"]),
            str(row["active"]),
            pct(row["completion_rate"]),
            *(pct(row["completion_at"].get(day)) for day in checkpoints),
            num(row["median"]),
            num(row["conditional_median"]),
        )
    console.print(arms)
    console.print(
        "[dim]by day N and median days: Kaplan–Meier over everyone; "
        "* median among completers only (conditional)[/dim]"
    )


def _print_deliveries(console: Console, report: JobReport) -> None:
    rows = delivery_rows(report)
    if not rows:
        return
    deliveries = _table("Deliveries", ("arm", "units", "reached", *DELIVERY_STATUSES))
    for row in rows:
        deliveries.add_row(
            row["arm"],
            f"{row['units']:,}",
            f"{row['units_reached']:,}",
            *(f"{count:,}" for count in row["by_status"]),
        )
    console.print(deliveries)


def _print_lift(console: Console, report: JobReport) -> None:
    """The job's completion lift: fixed horizon, always-valid, adjusted, Bayesian."""
    measurement = report.measurement
    completion = job_comparison(report, COMPLETION_RATE)
    if completion is None or completion.absolute is None:
        return
    lift, relative = completion.absolute, completion.relative
    console.print(
        f"Lift in completion: [bold]{pp(lift.estimate)}[/bold] {level(measurement.final_alpha)} "
        f"CI {pp_ci(lift.ci)}, p = {pval(lift.p_value)} · relative "
        f"{pct(relative.estimate if relative is not None else None)}"
    )
    sequential = completion.sequential
    if sequential is not None:
        console.print(
            f"Always-valid {level(measurement.running_alpha)} interval (safe to read every day): "
            f"{pp_ci(sequential.ci)}, anytime-valid p = {pval(sequential.p_value)}"
        )
    adjusted = completion.covariate_adjusted
    if adjusted is not None and adjusted.status != "insufficient_data":
        console.print(
            f"Adjusted for pre-entry covariates: {pp(adjusted.estimate)} "
            f"{pp_ci(adjusted.ci)} (variance {pct(adjusted.variance_ratio, 0)} of unadjusted)"
        )
    bayesian = completion.bayesian
    if bayesian is not None and bayesian.probability_better is not None:
        console.print(
            f"Bayesian read-out ({bayesian.prior}): P(treatment better) = "
            f"{pct(bayesian.probability_better)}, expected loss if shipped "
            f"{pp(bayesian.expected_loss_treatment)}"
        )


def _print_extras(console: Console, report: JobReport, truths: Truths) -> None:
    """Churn, entry weeks, the simulator's truth, time to goal and the sample-ratio check."""
    measurement = report.measurement
    for outcome in measurement.competing[:1]:  # the job as a whole
        console.print(
            f"Churn before the goal: {pp(outcome.churn.estimate)} {pp_ci(outcome.churn.ci)} "
            f"({outcome.churn_status}); goal incidence {pp(outcome.goal.estimate)} "
            f"{pp_ci(outcome.goal.ci)}"
        )
    weeks = measurement.by_entry_week
    if weeks is not None and weeks.trend is not None:
        console.print(
            f"Lift by entry week: {len(weeks.weeks)} weeks, trend {pp(weeks.trend.estimate)} "
            f"per week {pp_ci(weeks.trend.ci)} (exploratory; negative: the effect fades)"
        )
    completion = job_comparison(report, COMPLETION_RATE)
    if truths and "all" in truths and completion is not None and completion.absolute is not None:
        truth = truths["all"]
        lower, upper = completion.absolute.ci
        inside = lower is not None and upper is not None and lower <= truth <= upper
        verdict = "[green]inside the CI[/green]" if inside else "[red]outside the CI[/red]"
        console.print(f"Simulator's true effect overall: {pp(truth)} ({verdict})")
    time_to_goal = job_comparison(report, TIME_TO_GOAL)
    if time_to_goal is not None and time_to_goal.rmst_difference is not None:
        difference = time_to_goal.rmst_difference
        logrank = time_to_goal.logrank
        console.print(
            f"Restricted mean time to goal over {report.horizon_days:g} d: "
            f"{days(difference.estimate)} {bracket(difference.ci, days)} · log-rank p = "
            f"{pval(logrank.p_value if logrank else None)}"
        )
    console.print(f"Sample ratio check: p = {pval(report.srm.p_value if report.srm else None)}")


def _print_variants(console: Console, report: JobReport) -> None:
    rows = [row for row in comparison_rows(report) if row["scope"] == "variant"]
    if not rows:
        return
    final = level(report.measurement.final_alpha)
    columns = ("comparison", "measure", "estimate", f"{final} CI", "p", "always-valid CI")
    table = _table("Variants", columns, left=2)
    for row in rows:
        table.add_row(
            row["versus"], row["metric"], row["estimate"], row["ci"], row["p"], row["always_valid"]
        )
    console.print(table)


def _segment_cells(
    row: dict[str, Any], *, several: bool, by_arm: bool, running: bool, truths: Truths
) -> list[str]:
    cells = [
        (f"{row['column']} = " if several else "")
        + row["segment"]
        + (" (small)" if row["small"] else ""),
        *([row["arm"]] if by_arm else []),
        str(row["holdout_n"]),
        str(row["treatment_n"]),
        pct(row["holdout_rate"]),
        pct(row["treatment_rate"]),
        pp(row["lift"]),
        pp_ci(row["ci"]),
        pp_ci(row["adjusted_ci"]) if row["adjusted_ci"] is not None else "marginal",
        pval(row["p_bh"]),
        *([pp_ci(row["sequential_ci"]) if row["sequential_ci"] else "—"] if running else []),
    ]
    if truths:
        if row["truth"] is None:
            cells += ["", ""]
        else:
            covered = "[green]yes[/green]" if row["covered"] else "[red]no[/red]"
            cells += [pp(row["truth"]), covered]
    return cells


def _print_segments(console: Console, report: JobReport, truths: Truths) -> None:
    rows = segment_rows(report, truths)
    by_arm = any(row["arm"] != rows[0]["arm"] for row in rows) if rows else False
    several = len({row["column"] for row in rows}) > 1
    running = any(row["sequential_ci"] is not None for row in rows)
    columns = ["segment", *(["arm"] if by_arm else []), "holdout n", "n", "holdout", "treated"]
    columns += ["lift", f"{level(report.measurement.final_alpha)} CI", "FCR CI", "BH p"]
    columns += ["always-valid CI"] if running else []
    columns += ["true effect", "in CI"] if truths else []
    segments = _table("Lift by segment (matured enrollments)", columns, left=2 if by_arm else 1)
    for row in rows:
        segments.add_row(
            *_segment_cells(row, several=several, by_arm=by_arm, running=running, truths=truths)
        )
    console.print(segments)
    console.print(
        "[dim]FCR CI: interval adjusted for the segments looked at (Benjamini–Yekutieli), "
        "the one to read with the BH-adjusted p; Holm p-values are in the JSON and HTML[/dim]"
    )


REVENUE_COLUMNS = (
    "horizon",
    "matured",
    "retention",
    "difference",
    "NRR",
    "difference",
    "MRR change / account",
    "MRR added",
)


def _print_revenue(console: Console, report: JobReport) -> None:
    revenue = revenue_rows(report)
    matured = [row for row in revenue if row["matured"]]
    if matured:
        table = _table("Revenue value (treated − holdout)", REVENUE_COLUMNS)
        for row in matured:
            table.add_row(
                f"{row['days']} d",
                str(row["matured"]),
                row["retention"],
                row["retention_difference"],
                row["nrr"],
                row["nrr_difference"],
                row["mrr_change"],
                row["added_mrr"],
            )
        console.print(table)
    for row in revenue:
        if not row["matured"]:
            console.print(
                f"[dim]Revenue at {row['days']} days: no enrollment is that old yet[/dim]"
            )
