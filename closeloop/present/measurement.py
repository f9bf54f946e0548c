"""A measurement (``closeloop measure``) and a matched comparison as text: headline, cells, tables.

Everything here renders the public models of :mod:`closeloop.schemas.measurement`; the terminal
and the HTML page (:mod:`closeloop.present.html`) share the cells, so they show the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from closeloop.present.format import (
    MISSING,
    STATUS_STYLE,
    days,
    num,
    ok,
    pct,
    pp,
    pp_ci,
    pval,
)
from closeloop.schemas.measurement import (
    Comparison,
    Estimate,
    Interval,
    MatchedComparison,
    Measurement,
    Segment,
)

COMPLETION_RATE = "completion_rate"
SEGMENT_COLUMNS = (
    "segment",
    "arm",
    "control n",
    "arm n",
    "control",
    "arm rate",
    "lift",
    "95% CI",
    "adjusted CI",
    "BH p",
    "Holm p",
)
COMPARISON_COLUMNS = ("arm vs control", "metric", "difference", "95% CI", "p", "relative", "status")
BALANCE_COLUMNS = ("covariate", "treated before", "control before", "SMD before", "SMD after")


# -- small pieces ----------------------------------------------------------------------------------


def amount(value: float | None) -> str:
    """A value outcome (a mean, its difference): two decimals with thousands separators."""
    return f"{value:,.2f}" if ok(value) else MISSING


def bracket(interval: Interval, shown: Callable[[float | None], str] = num) -> str:
    """``[lower, upper]``, each end shown on its own (an open end is an em dash)."""
    return f"[{shown(interval[0])}, {shown(interval[1])}]"


def horizon(measurement: Measurement) -> str:
    value = measurement.horizon_days
    return f"{value:g} days" if ok(value) else MISSING


def find_comparison(
    measurement: Measurement, arm: str, metric: str, control: str | None = None
) -> Comparison | None:
    wanted = control or measurement.control
    for comparison in measurement.comparisons:
        if (comparison.arm, comparison.control, comparison.metric) == (arm, wanted, metric):
            return comparison
    return None


def decisive(comparison: Comparison) -> Estimate:
    """The result the comparison's status is read from."""
    if comparison.decisive is not None:
        return comparison.decisive
    fallback = comparison.absolute or comparison.rmst_difference
    assert fallback is not None, comparison.metric
    return fallback


def checkpoints(measurement: Measurement) -> list[str]:
    """The days each arm's completion is shown at ("7", "14" …), in order."""
    first = next(iter(measurement.arms.values()), None)
    return sorted(first.completion_at, key=float) if first is not None else []


# -- headline --------------------------------------------------------------------------------------


def _headline_arm(measurement: Measurement) -> str:
    """The pooled arm when several treated arms were pooled, else the first treated arm."""
    treated = [name for name in measurement.arms if name != measurement.control]
    if measurement.pooled is not None:
        for comparison in measurement.comparisons:
            if comparison.metric == COMPLETION_RATE and comparison.arm not in measurement.arms:
                return comparison.arm
    return treated[0]


def headline(measurement: Measurement) -> str:
    """One sentence on the treated arm's completion against the control (several: pooled)."""
    control = measurement.control
    if not [name for name in measurement.arms if name != control]:
        return f"Only the control arm {control!r} has units: nothing to compare."
    arm = _headline_arm(measurement)
    comparison = find_comparison(measurement, arm, COMPLETION_RATE)
    if comparison is None or measurement.status == "insufficient_data":
        reason = comparison.message if comparison is not None else ""
        fallback = measurement.warnings[0] if measurement.warnings else "see the warnings"
        return "Not enough data to call this: " + (reason or fallback)
    result = decisive(comparison)
    effect = f"{pp(result.estimate)} {pp_ci(result.ci)}"
    verdict = {
        "positive": f"{arm} completed more often than {control}",
        "negative": f"{arm} completed less often than {control}",
    }.get(measurement.status, f"inconclusive: the interval for {arm} vs {control} includes 0")
    return f"{verdict[0].upper()}{verdict[1:]}: {effect} within {horizon(measurement)}."


# -- cells (the terminal and the HTML page) --------------------------------------------------------


def arm_columns(measurement: Measurement) -> list[str]:
    """The arms table's header."""
    columns = ["arm", "units", "completed", "completion rate", "KM at horizon"]
    columns += [f"by day {day}" for day in checkpoints(measurement)]
    columns += ["median days [95% CI]", "RMST days", "median days (completers)"]
    if _has_value(measurement):
        columns.append("mean value")
    return columns


def _has_value(measurement: Measurement) -> bool:
    return any(comparison.metric == "value" for comparison in measurement.comparisons) or any(
        arm.mean_value is not None for arm in measurement.arms.values()
    )


def arm_rows(measurement: Measurement) -> list[list[str]]:
    rows = []
    value = _has_value(measurement)
    for name, arm in measurement.arms.items():
        cells = [
            name,
            f"{arm.n:,}",
            f"{arm.completed:,}",
            pct(arm.completion_rate),
            pct(arm.km_completion_at_horizon),
            *(pct(arm.completion_at.get(day)) for day in checkpoints(measurement)),
            f"{num(arm.median_time_to_goal)} {bracket(arm.median_time_to_goal_ci)}",
            num(arm.rmst),
            num(arm.conditional_median_days),
        ]
        if value:
            cells.append(amount(arm.mean_value))
        rows.append(cells)
    return rows


def segment_cells(segment: Segment) -> list[str]:
    return [
        f"{segment.column}={segment.segment}" + (" (small)" if segment.small else ""),
        segment.arm,
        f"{segment.n_control:,}",
        f"{segment.n_arm:,}",
        pct(segment.rate_control),
        pct(segment.rate_arm),
        pp(segment.lift.estimate),
        pp_ci(segment.lift.ci),
        pp_ci(segment.adjusted_ci) if segment.adjusted_ci is not None else "marginal only",
        pval(segment.p_value_bh),
        pval(segment.p_value_holm),
    ]


def comparison_cells(comparison: Comparison) -> list[str]:
    """A comparison's row; the last cell is its status (plain; the terminal colours it)."""
    pair = f"{comparison.arm} vs {comparison.control}"
    relative = pct(comparison.relative.estimate) if comparison.relative is not None else MISSING
    result = decisive(comparison)
    if comparison.metric == "time_to_goal":
        rmst = comparison.rmst_difference or result
        logrank = (
            f" · log-rank {pval(comparison.logrank.p_value)}"
            if comparison.logrank is not None
            else ""
        )
        cells = [
            "time to goal (RMST)",
            days(rmst.estimate),
            bracket(rmst.ci),
            pval(rmst.p_value) + logrank,
            MISSING,
        ]
    elif comparison.metric == "value":
        cells = [
            "value (CUPED)" if comparison.cuped else "value",
            amount(result.estimate),
            bracket(result.ci, amount),
            pval(result.p_value),
            relative,
        ]
    else:
        always_valid = comparison.sequential is not None
        cells = [
            "completion (always-valid)" if always_valid else "completion",
            pp(result.estimate),
            pp_ci(result.ci),
            pval(result.p_value),
            relative,
        ]
    return [pair, *cells, comparison.status]


def srm_text(measurement: Measurement) -> str | None:
    """The sample-ratio check in words; None when it was not run."""
    srm = measurement.srm
    if srm is None:
        return None
    return f"chi2 = {num(srm.chi2, 2)}, p = {pval(srm.p_value)}"


def heterogeneity_lines(measurement: Measurement) -> list[str]:
    return [
        f"Heterogeneity across {test.column} ({test.arm}): Cochran's Q = {num(test.q, 2)}, "
        f"df = {test.df}, p = {pval(test.p_value)}"
        for test in measurement.heterogeneity
    ]


def _significant(value: float | None) -> str:
    return f"{value:.3g}" if ok(value) else MISSING


def _smd(value: float | None) -> str:
    return f"{value:+.2f}" if ok(value) else MISSING


def matched_view(matched: MatchedComparison) -> dict[str, Any]:
    """A matched comparison as text, for the terminal and the HTML pages."""
    counts = matched.counts
    return {
        "arm": matched.arm,
        "control": matched.control,
        "estimand": matched.estimand,
        "covariates": ", ".join(c.name for c in matched.covariates),
        "effect": f"{pp(matched.completion.estimate)} {pp_ci(matched.completion.ci)}",
        "naive": f"{pp(matched.naive_completion.estimate)} {pp_ci(matched.naive_completion.ci)}",
        "counts": f"{counts.treated_matched:,} treated matched ({counts.treated_pruned:,} pruned), "
        f"{counts.control_matched:,} comparison units ({counts.control_pruned:,} pruned)",
        "warnings": list(matched.warnings),
        "balance": [
            [
                row.covariate + (f" = {row.level}" if row.level is not None else ""),
                _significant(row.treated_before),
                _significant(row.control_before),
                _smd(row.smd_before),
                _smd(row.smd_after),
            ]
            for row in matched.balance
        ],
    }


# -- terminal --------------------------------------------------------------------------------------


def _table(title: str, columns: list[str] | tuple[str, ...], left: int = 1) -> Table:
    """A table whose first ``left`` columns are left-aligned and the rest right-aligned."""
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index < left else "right")
    return table


def print_measurement(console: Console, measurement: Measurement) -> None:
    """Rich tables: arms, comparisons, sample ratio, segments; warnings first."""
    style = STATUS_STYLE.get(measurement.status, "white")
    console.print(
        f"\n[bold]Measurement[/bold] — horizon {horizon(measurement)}, "
        f"control {measurement.control!r}"
    )
    console.print(f"[{style}]{headline(measurement)}[/{style}]")
    for warning in measurement.warnings:
        console.print(f"[yellow]⚠ {warning}[/yellow]")
    arms = _table("Arms", arm_columns(measurement))
    for row in arm_rows(measurement):
        arms.add_row(*row)
    console.print(arms)
    console.print(
        "[dim]* among units that reached the goal (conditional); "
        "the KM median counts everyone[/dim]"
    )
    comparisons = _table("Comparisons (arm minus control)", COMPARISON_COLUMNS)
    for comparison in measurement.comparisons:
        *cells, status = comparison_cells(comparison)
        comparisons.add_row(*cells, f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]")
    console.print(comparisons)
    srm = srm_text(measurement)
    if srm is None:
        console.print("Sample ratio check: not run (no --weights)")
    else:
        mismatch = measurement.srm is not None and measurement.srm.mismatch
        console.print(f"Sample ratio check: {srm} ({'[red]mismatch[/red]' if mismatch else 'ok'})")
    if measurement.segments:
        segments = _table("Completion lift by segment", SEGMENT_COLUMNS)
        for segment in measurement.segments:
            segments.add_row(*segment_cells(segment))
        console.print(segments)
    for line in heterogeneity_lines(measurement):
        console.print(line)
    for matched in measurement.matched or []:
        print_matched(console, matched)


def print_matched(console: Console, matched: MatchedComparison) -> None:
    """The matched estimate, its naive contrast, pruned counts and the balance table."""
    counts = matched.counts
    style = STATUS_STYLE.get(matched.status, "white")
    effect = matched.completion
    naive = matched.naive_completion
    console.print(
        f"\n[bold]Matched comparison[/bold] {matched.arm} vs {matched.control} — "
        f"{matched.estimand}, coarsened exact matching on "
        f"{', '.join(c.name for c in matched.covariates)}"
    )
    console.print(
        f"[{style}]Completion: {pp(effect.estimate)} {pp_ci(effect.ci)}, "
        f"p = {pval(effect.p_value)}[/{style}] (naive, unmatched: {pp(naive.estimate)} "
        f"{pp_ci(naive.ci)})"
    )
    if matched.value is not None:
        console.print(
            f"Value: {amount(matched.value.estimate)} {bracket(matched.value.ci, amount)}"
        )
    console.print(
        f"Matched {counts.treated_matched:,} treated (pruned {counts.treated_pruned:,}) and "
        f"{counts.control_matched:,} comparison units (pruned {counts.control_pruned:,}) in "
        f"{counts.matched_strata:,} of {counts.strata:,} strata"
    )
    for warning in matched.warnings:
        console.print(f"[yellow]⚠ {warning}[/yellow]")
    table = _table("Balance (standardized mean differences)", BALANCE_COLUMNS)
    for cells in matched_view(matched)["balance"]:
        table.add_row(*cells)
    console.print(table)
