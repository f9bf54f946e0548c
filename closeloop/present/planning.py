"""Terminal rendering (Rich) of power plans and the intervention library; formatting only."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from closeloop.present.format import MISSING, STATUS_STYLE, ok, pct, pp, pval
from closeloop.schemas.library import POOLED_ARM, Library
from closeloop.schemas.planning import PowerPlan


def _status_style(status: str) -> str:
    # A job the library cannot measure is an error: red, like a negative result.
    return STATUS_STYLE.get(status, "red" if status == "error" else "")


def _days(value: float | None) -> str:
    """Days until something happens; null means it never does."""
    return f"{value:g}" if ok(value) else "never"


def _number(value: float | None, spec: str) -> str:
    return format(value, spec) if ok(value) else MISSING


def print_power_plan(console: Console, plan: PowerPlan) -> None:
    inputs = plan.inputs
    if plan.job is not None:
        job = plan.job
        console.print(
            f"[bold]{escape(job.job_name)}[/bold] (data as of {job.as_of:%Y-%m-%d %H:%M})"
        )
        for label, estimate in (
            ("weekly volume", job.weekly_volume),
            ("baseline", job.baseline_rate),
            ("planned weeks", job.planned_weeks),
        ):
            value = pct(estimate.value) if label == "baseline" else f"{estimate.value:,.1f}"
            console.print(
                f"  {label}: {value}  [dim]({estimate.source}: {escape(estimate.detail)})[/dim]"
            )
    console.print(
        f"{inputs.weekly_volume:,.1f} units/week, baseline {pct(inputs.baseline_rate)}, "
        f"holdout {inputs.holdout_fraction:.0%}, horizon {inputs.horizon_days:g} days, "
        f"alpha {inputs.alpha:g}, power {inputs.power:.0%}"
    )
    table = Table(title="Minimum detectable effect (completion within the horizon)")
    for column in ("weeks", "units", "holdout", "treated", "MDE abs", "MDE rel", "result after"):
        table.add_column(column, justify="right")
    rows = list(plan.plans)
    planned_weeks = plan.planned.weeks if plan.planned is not None else None
    if plan.planned is not None and planned_weeks not in {item.weeks for item in rows}:
        rows.append(plan.planned)
    for item in sorted(rows, key=lambda item: item.weeks or 0.0):
        planned = planned_weeks is not None and item.weeks == planned_weeks
        table.add_row(
            _number(item.weeks, ".3g") + (" (planned)" if planned else ""),
            _number(item.units, ",.0f"),
            _number(item.n_holdout, ",.0f"),
            _number(item.n_treated, ",.0f"),
            pp(item.mde_absolute),
            pct(item.mde_relative),
            f"{_days(item.days_until_result)} days",
        )
    console.print(table)
    if plan.duration is not None:
        duration = plan.duration
        console.print(
            f"To detect {pp(duration.effect)}: {duration.units:,} units, "
            f"{_days(duration.enrollment_days)} days of enrollment "
            f"({_number(duration.weeks, '.1f')} weeks), "
            f"result after {_days(duration.days_until_result)} days"
        )
    if plan.sequential is not None:
        cost = plan.sequential
        console.print(
            f"Looking while it runs: the report is always-valid at alpha "
            f"{_number(cost.running_alpha, 'g')} and final at alpha "
            f"{_number(cost.final_alpha, 'g')}. At the planned {_number(cost.units, ',.0f')} "
            f"units the always-valid interval is {_number(cost.width_ratio, '.2f')}x as wide as "
            f"a one-look interval (as wide as one look at {_number(cost.units_implied, ',.0f')} "
            f"units); the final look's is {_number(cost.final_ratio, '.2f')}x, so the job "
            f"detects {pp(cost.mde_final)} at maturity "
            f"({pp(plan.planned.mde_absolute) if plan.planned else MISSING} if nobody "
            "looked before)",
            highlight=False,
        )
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


def print_library(console: Console, library: Library, segment: str | None) -> None:
    if not library.jobs:
        console.print("no job matches")
        return
    for entry in library.jobs:
        status = entry.headline_status(segment)
        style = _status_style(status)
        status_markup = f"[{style}]{status}[/{style}]" if style else status
        where = "" if entry.definition_source == "project" else " [dim](no longer in project)[/dim]"
        changed = f", {entry.versions} versions" if entry.versions > 1 else ""
        console.print(
            f"[bold]{escape(entry.name)}[/bold]{where}  {status_markup}  "
            f"v{entry.version}{changed}, launched {entry.launched_at:%Y-%m-%d}"
        )
        console.print(f"  goal: {entry.goal}", highlight=False, soft_wrap=True, markup=False)
        console.print(
            "  audience: " + " ".join(entry.audience.split()),
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        for variant in entry.variants:
            sends = "; ".join(
                f"day {send.day:g}: {send.subject!r}"
                + ("" if send.channel == "email" else f" ({send.channel})")
                for send in variant.sends
            )
            console.print(
                f"  {variant.name}: {sends or 'no actions'}", highlight=False, markup=False
            )
        console.print(
            f"  n={entry.enrolled:,} enrolled, {entry.matured:,} matured, "
            f"horizon {_number(entry.horizon_days, 'g')} days"
        )
        if entry.error:
            console.print(f"  [red]{escape(entry.error)}[/red]", highlight=False)
        table = Table(show_header=True, box=None, padding=(0, 2))
        for column in ("effect of", "lift", "95% CI", "p", "status"):
            table.add_column(column)
        if entry.effect is not None and segment is None:
            for effect in [entry.effect, *entry.variant_effects]:
                table.add_row(
                    escape(effect.arm),
                    pp(effect.estimate),
                    f"[{pp(effect.lower)}, {pp(effect.upper)}]",
                    pval(effect.p_value),
                    effect.status,
                )
        for row in entry.segments:
            table.add_row(
                escape(f"{row.column}={row.segment}")
                + (f" ({escape(row.arm)})" if row.arm != POOLED_ARM else ""),
                pp(row.estimate),
                escape(f"[{pp(row.adjusted_lower)}, {pp(row.adjusted_upper)}]") + " adj.",
                (MISSING if not ok(row.p_value_bh) else f"{pval(row.p_value_bh)} BH")
                + (" small" if row.small else ""),
                row.status,
            )
        if table.row_count:
            console.print(table)
        if segment is not None:
            console.print(
                f"  ranked by the {escape(segment)} lift: {pp(entry.headline_effect(segment))}"
            )
