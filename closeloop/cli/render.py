"""Terminal rendering of results (rich). No logic beyond formatting lives here."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from closeloop.services.reports import (
    DELIVERY_STATUSES,
    GUARD_STYLE,
    VERDICT_STYLE,
    JobReport,
    arm_rows,
    comparison_rows,
    days,
    headline,
    heterogeneity_rows,
    level,
    num,
    pct,
    pp,
    pp_ci,
    print_matched,
    pval,
    revenue_rows,
    segment_rows,
    verdict_view,
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
    decision = verdict_view(report)
    if decision is not None:
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
    console.print(f"[{style}]{headline(report)}[/{style}]")
    for warning in report.warnings:
        console.print(f"[yellow]⚠ {warning}[/yellow]")

    if report.matched is not None:
        print_matched(console, report.matched)
    rows = arm_rows(report)
    checkpoints = sorted({t for row in rows for t in row["completion_at"]})
    arms = Table(title="Arms", title_justify="left")
    columns = ["arm", "entered", "completed", "exited", "active", "completion rate (matured)"]
    columns += [f"by day {t:g}" for t in checkpoints] + ["median days", "median*"]
    for column in columns:
        arms.add_column(column, justify="left" if column == "arm" else "right")
    for row in rows:
        arms.add_row(
            ("  " if row["variant"] else "") + row["arm"],
            str(row["entered"]),
            str(row["completed"]),
            str(row["exited"]),
            str(row["active"]),
            pct(row["completion_rate"]),
            *(pct(row["completion_at"].get(t)) for t in checkpoints),
            num(row["median"]),
            num(row["conditional_median"]),
        )
    console.print(arms)
    console.print(
        "[dim]by day N and median days: Kaplan–Meier over everyone; "
        "* median among completers only (conditional)[/dim]"
    )
    if report.deliveries:
        deliveries = Table(title="Deliveries", title_justify="left")
        for column in ("arm", "units", "reached", *DELIVERY_STATUSES):
            deliveries.add_column(column, justify="left" if column == "arm" else "right")
        for arm in report.deliveries.values():
            deliveries.add_row(
                arm.arm,
                f"{arm.units:,}",
                f"{arm.units_reached:,}",
                *(f"{arm.by_status.get(status, 0):,}" for status in DELIVERY_STATUSES),
            )
        console.print(deliveries)

    lift = report.lift
    console.print(
        f"Lift in completion: [bold]{pp(lift.estimate)}[/bold] {level(lift.alpha)} CI "
        f"{pp_ci(lift.ci)}, p = {pval(lift.p_value)} · relative "
        f"{pct(report.relative_lift.estimate)}"
    )
    if report.sequential_lift is not None:
        sequential = report.sequential_lift
        console.print(
            f"Always-valid {level(sequential.alpha)} interval (safe to read every day): "
            f"{pp_ci(sequential.ci)}, anytime-valid p = {pval(sequential.p_value)}"
        )
    adjusted = report.completion.covariate_adjusted
    if adjusted is not None and adjusted.result.status.value != "insufficient_data":
        console.print(
            f"Adjusted for pre-entry covariates: {pp(adjusted.result.estimate)} "
            f"{pp_ci(adjusted.result.ci)} (variance {adjusted.variance_ratio:.0%} of "
            "unadjusted)"
        )
    bayesian = report.completion.bayesian
    if bayesian is not None and bayesian.is_defined:
        console.print(
            f"Bayesian read-out ({bayesian.prior}): P(treatment better) = "
            f"{bayesian.probability_better:.1%}, expected loss if shipped "
            f"{pp(bayesian.expected_loss_treatment)}"
        )
    for outcome in report.measurement.competing[:1]:  # the job as a whole
        console.print(
            f"Churn before the goal: {pp(outcome.churn.estimate)} {pp_ci(outcome.churn.ci)} "
            f"({outcome.churn.status.value}); goal incidence {pp(outcome.goal.estimate)} "
            f"{pp_ci(outcome.goal.ci)}"
        )
    weeks = report.measurement.by_entry_week
    if weeks is not None and weeks.trend is not None:
        console.print(
            f"Lift by entry week: {len(weeks.weeks)} weeks, trend {pp(weeks.trend.estimate)} "
            f"per week {pp_ci(weeks.trend.ci)} (exploratory; negative: the effect fades)"
        )
    if truths and "all" in truths:
        truth = truths["all"]
        inside = lift.ci.lower <= truth <= lift.ci.upper
        verdict = "[green]inside the CI[/green]" if inside else "[red]outside the CI[/red]"
        console.print(f"Simulator's true effect overall: {pp(truth)} ({verdict})")
    ttg = report.time_to_goal
    console.print(
        f"Restricted mean time to goal over {report.horizon_days:g} d: "
        f"{days(ttg.absolute.estimate)} [{days(ttg.absolute.ci.lower)}, "
        f"{days(ttg.absolute.ci.upper)}] · log-rank p = "
        f"{pval(ttg.logrank.p_value if ttg.logrank else None)}"
    )
    console.print(f"Sample ratio check: p = {pval(report.srm.p_value)}")

    comparisons = [row for row in comparison_rows(report) if row["scope"] == "variant"]
    if comparisons:
        table = Table(title="Variants", title_justify="left")
        final = level(report.measurement.options.final_alpha)
        for column in ("comparison", "measure", "estimate", f"{final} CI", "p", "always-valid CI"):
            table.add_column(
                column, justify="left" if column in ("comparison", "measure") else "right"
            )
        for row in comparisons:
            table.add_row(
                row["versus"],
                row["metric"],
                row["estimate"],
                row["ci"],
                row["p"],
                row["always_valid"],
            )
        console.print(table)

    rows = segment_rows(report, truths)
    by_arm = any(row["arm"] != rows[0]["arm"] for row in rows) if rows else False
    several = len({row["column"] for row in rows}) > 1
    segments = Table(title="Lift by segment (matured enrollments)", title_justify="left")
    columns = ["segment", *(["arm"] if by_arm else []), "holdout n", "n", "holdout", "treated"]
    columns += ["lift", f"{level(report.measurement.options.final_alpha)} CI", "FCR CI", "BH p"]
    running = any(row["sequential_ci"] is not None for row in rows)
    if running:
        columns.append("always-valid CI")
    if truths:
        columns += ["true effect", "in CI"]
    for index, column in enumerate(columns):
        segments.add_column(column, justify="left" if index < (2 if by_arm else 1) else "right")
    for row in rows:
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
        segments.add_row(*cells)
    console.print(segments)
    console.print(
        "[dim]FCR CI: interval adjusted for the segments looked at (Benjamini–Yekutieli), "
        "the one to read with the BH-adjusted p; Holm p-values are in the JSON and HTML[/dim]"
    )
    for row in heterogeneity_rows(report):
        console.print(
            f"Heterogeneity across {row['column']} ({row['arm']}, {row['scale']} scale): "
            f"Cochran's Q = {row['q']:.2f}, "
            f"df = {row['df']}, p = {row['p']}"
        )
    revenue = revenue_rows(report)
    if revenue:
        table = Table(title="Revenue value (treated − holdout)", title_justify="left")
        for column in (
            "horizon",
            "matured",
            "retention",
            "difference",
            "NRR",
            "difference",
            "MRR change / account",
            "MRR added",
        ):
            table.add_column(column, justify="left" if column == "horizon" else "right")
        for row in revenue:
            if not row["matured"]:
                continue
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
        if any(row["matured"] for row in revenue):
            console.print(table)
        for row in revenue:
            if not row["matured"]:
                console.print(
                    f"[dim]Revenue at {row['days']} days: no enrollment is that old yet[/dim]"
                )
