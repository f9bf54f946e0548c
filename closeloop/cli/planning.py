"""Terminal rendering of power plans and the intervention library (rich); formatting only."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from closeloop.services.library import LibraryEntry, headline_effect, headline_status
from closeloop.services.power import PowerPlan
from closeloop.services.reports import pval

STATUS_STYLE = {
    "positive": "green",
    "negative": "red",
    "inconclusive": "yellow",
    "insufficient_data": "yellow",
    "error": "red",
}


def _pp(value: float) -> str:
    return "—" if math.isnan(value) else f"{value * 100:+.1f} pp"


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.1%}"


def _days(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:g}"


def print_power_plan(console: Console, plan: PowerPlan) -> None:
    request = plan.request
    if plan.job is not None:
        job = plan.job
        console.print(f"[bold]{job.job_name}[/bold] (data as of {job.as_of:%Y-%m-%d %H:%M})")
        for label, estimate in (
            ("weekly volume", job.weekly_volume),
            ("baseline", job.baseline_rate),
            ("planned weeks", job.planned_weeks),
        ):
            value = _pct(estimate.value) if label == "baseline" else f"{estimate.value:,.1f}"
            console.print(f"  {label}: {value}  [dim]({estimate.source}: {estimate.detail})[/dim]")
    console.print(
        f"{request.weekly_volume:,.1f} units/week, baseline {_pct(request.baseline_rate)}, "
        f"holdout {request.holdout_fraction:.0%}, horizon {request.horizon_days:g} days, "
        f"alpha {request.alpha:g}, power {request.power:.0%}"
    )
    table = Table(title="Minimum detectable effect (completion within the horizon)")
    for column in ("weeks", "units", "holdout", "treated", "MDE abs", "MDE rel", "result after"):
        table.add_column(column, justify="right")
    rows = list(plan.plans)
    if plan.planned is not None and plan.planned.weeks not in {item.weeks for item in rows}:
        rows.append(plan.planned)
    for item in sorted(rows, key=lambda item: item.weeks):
        planned = plan.planned is not None and item.weeks == plan.planned.weeks
        table.add_row(
            f"{item.weeks:.3g}" + (" (planned)" if planned else ""),
            f"{item.units:,.0f}",
            f"{item.n_holdout:,.0f}",
            f"{item.n_treated:,.0f}",
            _pp(item.mde_absolute),
            _pct(item.mde_relative),
            f"{item.days_until_result:g} days",
        )
    console.print(table)
    if plan.duration is not None:
        duration = plan.duration
        console.print(
            f"To detect {_pp(duration.effect)}: {duration.units:,} units, "
            f"{_days(duration.enrollment_days)} days of enrollment ({duration.weeks:.1f} weeks), "
            f"result after {_days(duration.days_until_result)} days"
        )
    if plan.sequential is not None:
        cost = plan.sequential
        console.print(
            f"Looking while it runs: the report is always-valid at alpha {cost.running_alpha:g} "
            f"and final at alpha {cost.final_alpha:g}. At the planned {cost.units:,.0f} units "
            f"the always-valid interval is {cost.width_ratio:.2f}x as wide as a one-look "
            f"interval (as wide as one look at {cost.units_implied:,.0f} units); the final "
            f"look's is {cost.final_ratio:.2f}x, so the job detects {_pp(cost.mde_final)} at "
            f"maturity ({_pp(plan.planned.mde_absolute) if plan.planned else '—'} if nobody "
            "looked before)",
            highlight=False,
        )
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


def print_library(console: Console, entries: list[LibraryEntry], segment: str | None) -> None:
    if not entries:
        console.print("no job matches")
        return
    for entry in entries:
        status = headline_status(entry, segment)
        style = STATUS_STYLE.get(status, "")
        where = "" if entry.definition_source == "project" else " [dim](no longer in project)[/dim]"
        changed = f", {entry.versions} versions" if entry.versions > 1 else ""
        console.print(
            f"[bold]{entry.name}[/bold]{where}  [{style}]{status}[/{style}]  "
            f"v{entry.version}{changed}, launched {entry.launched_at:%Y-%m-%d}"
        )
        console.print(f"  goal: {entry.goal}", highlight=False, soft_wrap=True)
        console.print(
            "  audience: " + " ".join(entry.audience.split()), highlight=False, soft_wrap=True
        )
        for variant in entry.variants:
            sends = "; ".join(
                f"day {send.day:g}: {send.subject!r}"
                + ("" if send.channel == "email" else f" ({send.channel})")
                for send in variant.sends
            )
            console.print(f"  {variant.name}: {sends or 'no actions'}", highlight=False)
        console.print(
            f"  n={entry.enrolled:,} enrolled, {entry.matured:,} matured, "
            f"horizon {entry.horizon_days:g} days"
        )
        if entry.error:
            console.print(f"  [red]{entry.error}[/red]", highlight=False)
        table = Table(show_header=True, box=None, padding=(0, 2))
        for column in ("effect of", "lift", "95% CI", "p", "status"):
            table.add_column(column)
        if entry.effect is not None and segment is None:
            for effect in [entry.effect, *entry.variant_effects]:
                table.add_row(
                    effect.arm,
                    _pp(effect.estimate),
                    f"[{_pp(effect.lower)}, {_pp(effect.upper)}]",
                    pval(effect.p_value),
                    effect.status,
                )
        for row in entry.segments:
            table.add_row(
                f"{row.column}={row.segment}" + (f" ({row.arm})" if row.arm != "treatment" else ""),
                _pp(row.estimate),
                f"[{_pp(row.adjusted_lower)}, {_pp(row.adjusted_upper)}] adj.",
                ("—" if math.isnan(row.p_value_bh) else f"{pval(row.p_value_bh)} BH")
                + (" small" if row.small else ""),
                row.status,
            )
        if table.row_count:
            console.print(table)
        if segment is not None:
            console.print(f"  ranked by the {segment} lift: {_pp(headline_effect(entry, segment))}")
