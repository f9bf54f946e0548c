"""A measurement as rich tables and a standalone HTML page.

Its JSON is the public model :class:`closeloop.schemas.measurement.Measurement`, built in
``services.results``; the table and the page show the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import altair as alt
import jinja2
import pandas as pd
from rich.console import Console
from rich.table import Table

from closeloop import __version__
from closeloop.analysis.charts import to_svg
from closeloop.analysis.html_report import days, matched_html, num, pct, pp, pp_ci, pval
from closeloop.analysis.matching import MatchedComparison
from closeloop.analysis.measurement import (
    COMPLETION_RATE,
    POOLED,
    TIME_TO_GOAL,
    VALUE,
    ArmResult,
    Comparison,
    Measurement,
    SegmentLift,
)
from closeloop.stats import Interval, KaplanMeierResult, Status

STATUS_STYLE = {
    "positive": "green",
    "negative": "red",
    "inconclusive": "yellow",
    "insufficient_data": "yellow",
}
ARM_PALETTE = ("#9ca3af", "#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2")


def _rate(n: int, successes: int) -> float | None:
    return successes / n if n else None


# -- headline --------------------------------------------------------------------------------------


def headline(measurement: Measurement) -> str:
    """One sentence on the treated arm's completion against the control (several: pooled)."""
    control = measurement.options.control
    if not measurement.treated_arms:
        return f"Only the control arm {control!r} has units: nothing to compare."
    arm = POOLED if measurement.pooled is not None else measurement.treated_arms[0]
    comparison = measurement.comparison(arm, COMPLETION_RATE)
    if comparison is None or measurement.status is Status.INSUFFICIENT_DATA:
        reason = comparison.decisive.message if comparison is not None else ""
        return "Not enough data to call this: " + (
            reason or (measurement.warnings[0] if measurement.warnings else "see the warnings")
        )
    result = comparison.decisive
    effect = f"{pp(result.estimate)} {pp_ci(result.ci)}"
    verdict = {
        Status.POSITIVE: f"{arm} completed more often than {control}",
        Status.NEGATIVE: f"{arm} completed less often than {control}",
    }.get(measurement.status, f"inconclusive: the interval for {arm} vs {control} includes 0")
    return f"{verdict[0].upper()}{verdict[1:]}: {effect} within {_horizon(measurement)}."


def _horizon(measurement: Measurement) -> str:
    return f"{measurement.options.horizon_days:g} days"


# -- terminal --------------------------------------------------------------------------------------


def print_measurement(
    console: Console, measurement: Measurement, warnings: Sequence[str] = ()
) -> None:
    """Rich tables: arms, comparisons, sample ratio, segments."""
    options = measurement.options
    style = STATUS_STYLE.get(measurement.status.value, "white")
    console.print(
        f"\n[bold]Measurement[/bold] — horizon {_horizon(measurement)}, control {options.control!r}"
    )
    console.print(f"[{style}]{headline(measurement)}[/{style}]")
    for warning in [*warnings, *measurement.warnings]:
        console.print(f"[yellow]⚠ {warning}[/yellow]")

    arms = Table(title="Arms", title_justify="left")
    for column in _arm_columns(measurement):
        arms.add_column(column, justify="left" if column == "arm" else "right")
    for arm in measurement.arms.values():
        arms.add_row(*_arm_cells(measurement, arm))
    console.print(arms)
    console.print(
        "[dim]* among units that reached the goal (conditional); "
        "the KM median counts everyone[/dim]"
    )

    comparisons = Table(title="Comparisons (arm minus control)", title_justify="left")
    for column in ("arm vs control", "metric", "difference", "95% CI", "p", "relative", "status"):
        comparisons.add_column(column, justify="left" if column in {"arm vs control"} else "right")
    for comparison in measurement.comparisons:
        comparisons.add_row(*_comparison_cells(comparison))
    console.print(comparisons)

    if measurement.srm is None:
        console.print("Sample ratio check: not run (no --weights)")
    else:
        verdict = "[red]mismatch[/red]" if measurement.srm.mismatch else "ok"
        console.print(
            f"Sample ratio check: chi2 = {measurement.srm.chi2:.2f}, "
            f"p = {pval(measurement.srm.p_value)} ({verdict})"
        )

    if measurement.segments:
        segments = Table(title="Completion lift by segment", title_justify="left")
        for column in (
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
        ):
            segments.add_column(column, justify="left" if column == "segment" else "right")
        for segment in measurement.segments:
            segments.add_row(*_segment_cells(segment))
        console.print(segments)
    for test in measurement.heterogeneity:
        console.print(
            f"Heterogeneity across {test.column} ({test.arm}): Cochran's Q = {test.q:.2f}, "
            f"df = {test.df}, p = {pval(test.p_value)}"
        )


def _arm_columns(measurement: Measurement) -> list[str]:
    """The arms table's header, the same in the terminal and the HTML page."""
    columns = ["arm", "units", "completed", "completion rate", "KM at horizon"]
    columns += [f"by day {day:g}" for day in _checkpoints(measurement)]
    columns += ["median days [95% CI]", "RMST days", "median days (completers)"]
    if measurement.options.value:
        columns.append("mean value")
    return columns


def _arm_cells(measurement: Measurement, arm: ArmResult) -> list[str]:
    cells = [
        arm.arm,
        f"{arm.n:,}",
        f"{arm.completed:,}",
        pct(arm.completion_rate),
        pct(arm.km_completion_at_horizon),
        *(pct(arm.completion_at.get(day)) for day in _checkpoints(measurement)),
        f"{num(arm.median_time_to_goal)} {_days_ci(arm.curve.median_ci)}",
        num(arm.rmst),
        num(arm.conditional_median_days),
    ]
    if measurement.options.value:
        cells.append(_value(arm.mean_value))
    return cells


def _segment_cells(segment: SegmentLift) -> list[str]:
    """A segment's row, the same in the terminal and the HTML page."""
    return [
        f"{segment.column}={segment.segment}" + (" (small)" if segment.small else ""),
        segment.arm,
        f"{segment.control_stat.n:,}",
        f"{segment.arm_stat.n:,}",
        pct(_rate(segment.control_stat.n, segment.control_stat.successes)),
        pct(_rate(segment.arm_stat.n, segment.arm_stat.successes)),
        pp(segment.lift.estimate),
        pp_ci(segment.lift.ci),
        pp_ci(segment.adjusted_ci) if segment.adjusted_ci is not None else "marginal only",
        pval(segment.p_value_bh),
        pval(segment.p_value_holm),
    ]


def _checkpoints(measurement: Measurement) -> list[float]:
    first = next(iter(measurement.arms.values()), None)
    return sorted(first.completion_at) if first is not None else []


def _days_ci(interval: Interval) -> str:
    low = num(interval.lower) if math.isfinite(interval.lower) else "—"
    high = num(interval.upper) if math.isfinite(interval.upper) else "—"
    return f"[{low}, {high}]"


def _value(value: float | None) -> str:
    return f"{value:,.2f}" if value is not None and math.isfinite(value) else "—"


def _comparison_cells(comparison: Comparison) -> list[str]:
    decisive = comparison.decisive
    status = decisive.status.value
    styled = f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"
    pair = f"{comparison.arm} vs {comparison.control}"
    relative = pct(comparison.relative.estimate) if comparison.relative is not None else "—"
    if comparison.metric == TIME_TO_GOAL:
        result = comparison.absolute
        logrank = (
            f"log-rank {pval(comparison.logrank.p_value)}" if comparison.logrank is not None else ""
        )
        return [
            pair,
            "time to goal (RMST)",
            days(result.estimate),
            _days_ci(result.ci),
            pval(result.p_value) + (f" · {logrank}" if logrank else ""),
            "—",
            styled,
        ]
    if comparison.metric == VALUE:
        label = "value (CUPED)" if comparison.cuped else "value"
        ci = decisive.ci
        return [
            pair,
            label,
            _value(decisive.estimate),
            f"[{_value(ci.lower)}, {_value(ci.upper)}]",
            pval(decisive.p_value),
            relative,
            styled,
        ]
    label = "completion (always-valid)" if comparison.sequential is not None else "completion"
    return [
        pair,
        label,
        pp(decisive.estimate),
        pp_ci(decisive.ci),
        pval(decisive.p_value),
        relative,
        styled,
    ]


# -- HTML ------------------------------------------------------------------------------------------

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_PAGE = _ENV.from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>closeloop measurement</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 960px; color: #111827; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #e5e7eb; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.status { font-weight: 600; }
.positive { color: #15803d; } .negative { color: #b91c1c; }
.inconclusive, .insufficient_data { color: #a16207; }
.warning { color: #a16207; }
footer { color: #6b7280; font-size: 0.85rem; margin-top: 2rem; }
</style>
</head>
<body>
<h1>Measurement</h1>
<p>Horizon {{ horizon }}, control arm <code>{{ control }}</code>.</p>
<p class="status {{ status }}">{{ headline }}</p>
{% for warning in warnings %}<p class="warning">⚠ {{ warning }}</p>
{% endfor %}
<h2>Arms</h2>
<table>
<tr>{% for column in arm_columns %}<th>{{ column }}</th>{% endfor %}</tr>
{% for row in arms %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</table>
<h2>Time to goal</h2>
<figure>{{ curves_svg | safe }}</figure>
<h2>Comparisons (arm minus control)</h2>
<table>
<tr><th>arm vs control</th><th>metric</th><th>difference</th><th>95% CI</th><th>p</th>
<th>relative</th><th>status</th></tr>
{% for row in comparisons %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</table>
<p>Sample ratio check: {{ srm }}</p>
{% if segments %}
<h2>Completion lift by segment</h2>
<table>
<tr><th>segment</th><th>arm</th><th>control n</th><th>arm n</th><th>control</th><th>arm rate</th>
<th>lift</th><th>95% CI</th><th>adjusted CI</th><th>BH p</th><th>Holm p</th></tr>
{% for row in segments %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% for line in heterogeneity %}<p>{{ line }}</p>
{% endfor %}
{% endif %}
{% for m in matched %}
<h2>Matched comparison: {{ m.arm }} vs {{ m.control }} (observational)</h2>
<p><strong>{{ m.estimand }}</strong>, coarsened exact matching on {{ m.covariates }}.
Completion {{ m.effect }} · naive, unmatched {{ m.naive }} · {{ m.counts }}</p>
{% for warning in m.warnings %}<p class="warn">{{ warning }}</p>{% endfor %}
<table>
<tr><th>covariate</th><th>treated before</th><th>control before</th>
<th>SMD before</th><th>SMD after</th></tr>
{% for row in m.balance %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% endfor %}
<footer>closeloop {{ version }} · the same numbers as <code>--format json</code></footer>
</body>
</html>
"""
)


def measurement_to_html(
    measurement: Measurement,
    warnings: Sequence[str] = (),
    matched: Sequence[MatchedComparison] = (),
) -> str:
    """A standalone page (inline SVG chart, no scripts) with the tables of the terminal output."""
    options = measurement.options
    arms = [_arm_cells(measurement, arm) for arm in measurement.arms.values()]
    comparisons = [
        [_plain(cell) for cell in _comparison_cells(comparison)]
        for comparison in measurement.comparisons
    ]
    srm = measurement.srm
    segments = [_segment_cells(segment) for segment in measurement.segments]
    curves = {name: arm.curve for name, arm in measurement.arms.items()}
    return _PAGE.render(
        horizon=_horizon(measurement),
        control=options.control,
        status=measurement.status.value,
        headline=headline(measurement),
        warnings=[*warnings, *measurement.warnings],
        value=options.value,
        arms=arms,
        arm_columns=_arm_columns(measurement),
        curves_svg=to_svg(completion_chart(curves, options.horizon_days)),
        comparisons=comparisons,
        srm=(
            "not run (no --weights)"
            if srm is None
            else f"chi2 = {srm.chi2:.2f}, p = {pval(srm.p_value)}"
            + (" — mismatch" if srm.mismatch else "")
        ),
        segments=segments,
        heterogeneity=[
            f"Heterogeneity across {t.column} ({t.arm}): Cochran's Q = {t.q:.2f}, df = {t.df}, "
            f"p = {pval(t.p_value)}"
            for t in measurement.heterogeneity
        ],
        matched=[matched_html(m) for m in matched],
        version=__version__,
    )


def _plain(cell: str) -> str:
    """A table cell without its rich markup (``[green]positive[/]`` → ``positive``)."""
    if cell.startswith("[") and "]" in cell and cell.endswith("[/]"):
        return cell[cell.index("]") + 1 : -3]
    return cell


def completion_chart(curves: Mapping[str, KaplanMeierResult], horizon_days: float) -> alt.Chart:
    """Share of each arm that reached the goal by day t (1 − Kaplan–Meier), any arm names."""
    frames = []
    for arm, curve in curves.items():
        times = [0.0, *[t for t in curve.times if t <= horizon_days], horizon_days]
        shares = [0.0, *[1.0 - s for s in curve.survival[: len(times) - 2]]]
        shares.append(shares[-1])
        frames.append(pd.DataFrame({"day": times, "completed": shares, "arm": arm}))
    data = pd.concat(frames, ignore_index=True)
    names = list(curves)
    color = alt.Color(
        "arm:N",
        scale=alt.Scale(
            domain=names, range=[ARM_PALETTE[i % len(ARM_PALETTE)] for i in range(len(names))]
        ),
        title="arm",
    )
    chart: alt.Chart = (
        alt.Chart(data)
        .mark_line(interpolate="step-after", strokeWidth=2)
        .encode(
            x=alt.X("day:Q", title="days since entry"),
            y=alt.Y("completed:Q", title="reached the goal", axis=alt.Axis(format="%")),
            color=color,
        )
        .properties(width=560, height=300, title="Time to goal (1 − Kaplan–Meier)")
    )
    return chart


# -- matched comparisons (no randomization) --------------------------------------------------------


def print_matched(console: Console, matched: MatchedComparison) -> None:
    """The matched estimate, its naive contrast, pruned counts and the balance table."""
    counts = matched.counts
    style = STATUS_STYLE.get(matched.status.value, "white")
    effect = matched.completion
    naive = matched.naive_completion
    console.print(
        f"\n[bold]Matched comparison[/bold] {matched.treated} vs {matched.comparison} — "
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
            f"Value: {_value(matched.value.estimate)} "
            f"[{_value(matched.value.ci.lower)}, {_value(matched.value.ci.upper)}]"
        )
    console.print(
        f"Matched {counts.treated_matched:,} treated (pruned {counts.treated_pruned:,}) and "
        f"{counts.control_matched:,} comparison units (pruned {counts.control_pruned:,}) in "
        f"{counts.matched_strata:,} of {counts.strata:,} strata"
    )
    for warning in matched.warnings:
        console.print(f"[yellow]⚠ {warning}[/yellow]")
    table = Table(title="Balance (standardized mean differences)", title_justify="left")
    for column in ("covariate", "treated before", "control before", "SMD before", "SMD after"):
        table.add_column(column, justify="left" if column == "covariate" else "right")
    for cells in matched_html(matched)["balance"]:
        table.add_row(*cells)
    console.print(table)
