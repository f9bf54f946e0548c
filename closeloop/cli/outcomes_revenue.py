"""``closeloop outcomes revenue``: MRR movements, NRR, GRR, churn rates, ARPA, CLV and expansion by
source for [start, end), per month or quarter and by an account attribute (docs/metrics.md,
"Revenue"). Every policy switch is an option with its default."""

from __future__ import annotations

import csv
import sys
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from closeloop.cli.common import ProjectOption, console, parse_time, reports_errors
from closeloop.present.format import count, money, pct
from closeloop.schemas.options import (
    DEFAULT_GROSS_MARGIN,
    DEFAULT_MATCH_DAYS,
    ChurnAt,
    ChurnDenominator,
    FreeDowngrade,
    NewAndChurned,
    PausedPolicy,
    ReactivationGap,
    RevenueMethod,
    RevenuePeriod,
)

if TYPE_CHECKING:
    from closeloop.schemas.revenue_outcomes import RevenueOutcomes, RevenueRow


class RevenueFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def parse_day(text: str, option: str) -> date:
    """An ISO date (a date-time at midnight is accepted); anything else names its option."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        moment = parse_time(text)
    except typer.BadParameter:
        moment = None
    if moment is None or moment.time() != moment.min.time():
        raise typer.BadParameter(
            f"{text!r} is not a date like 2024-03-01 (windows are whole days)", param_hint=option
        )
    return moment.date()


@reports_errors
def revenue(
    start: Annotated[str, typer.Option("--start", help="Window start (inclusive, YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Window end (exclusive, YYYY-MM-DD).")],
    method: Annotated[
        RevenueMethod,
        typer.Option(help="endpoint: MRR before vs at the end; event: every change counts."),
    ] = RevenueMethod.endpoint,
    by: Annotated[
        str | None,
        typer.Option("--by", help="Group by an account attribute as of --start (or cohort)."),
    ] = None,
    period: Annotated[
        RevenuePeriod | None, typer.Option("--period", help="Also per month or quarter.")
    ] = None,
    churn_at: Annotated[
        ChurnAt, typer.Option(help="Lose MRR at the paid period's end or at cancellation.")
    ] = ChurnAt.period_end,
    reactivation_gap: Annotated[
        ReactivationGap,
        typer.Option(help="A return after any gap, or only after a full month at zero."),
    ] = ReactivationGap.any,
    new_and_churned: Annotated[
        NewAndChurned, typer.Option(help="Accounts joining and leaving in one period.")
    ] = NewAndChurned.exclude,
    free_downgrade: Annotated[
        FreeDowngrade, typer.Option(help="Paid to free (mrr 0 rows): churn or contraction.")
    ] = FreeDowngrade.churn,
    paused: Annotated[
        PausedPolicy, typer.Option(help="Paused rows: zero MRR, or their accounts excluded.")
    ] = PausedPolicy.zero,
    churn_denominator: Annotated[
        ChurnDenominator,
        typer.Option(help="Customer churn over starting customers, or plus new ones."),
    ] = ChurnDenominator.start,
    gross_margin: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Gross margin for CLV (0..1).")
    ] = DEFAULT_GROSS_MARGIN,
    match_days: Annotated[
        int,
        typer.Option(
            min=0, max=3650, help="Expansion explained by an opportunity won up to N days before."
        ),
    ] = DEFAULT_MATCH_DAYS,
    output_format: Annotated[
        RevenueFormat,
        typer.Option("--format", help="table, json, or csv (the rows, else the total)."),
    ] = RevenueFormat.TABLE,
    project: ProjectOption = None,
) -> None:
    """MRR movements (new, expansion, contraction, churn, reactivation), NRR, GRR, customer and
    MRR churn rates, ARPA, CLV and expansion by opportunity source for [start, end)."""
    from closeloop.schemas import dump_json
    from closeloop.schemas.revenue_outcomes import RevenuePolicy
    from closeloop.services import outcomes_revenue as service
    from closeloop.services.project import open_workspace

    window_start, window_end = parse_day(start, "--start"), parse_day(end, "--end")
    policy = RevenuePolicy(
        method=method,
        churn_at=churn_at,
        reactivation_gap=reactivation_gap,
        new_and_churned=new_and_churned,
        free_downgrade=free_downgrade,
        paused=paused,
        churn_denominator=churn_denominator,
        gross_margin=gross_margin,
        match_days=match_days,
    )
    with open_workspace(project, write=False) as workspace:
        result = service.revenue(
            workspace, window_start, window_end, period=period, by=by, policy=policy
        )
    if output_format == RevenueFormat.JSON:
        typer.echo(dump_json(result))
    elif output_format == RevenueFormat.CSV:
        write_csv(result)
    else:
        print_revenue(result)


def flat_row(row: RevenueRow) -> dict[str, Any]:
    """A row as flat columns: expansion by source becomes ``expansion_<source>_mrr``."""
    values: dict[str, Any] = row.model_dump(mode="json", exclude={"expansion_by_source"})
    for item in row.expansion_by_source:
        values[f"expansion_{item.source}_mrr"] = item.expansion_mrr
    return values


def write_csv(result: RevenueOutcomes) -> None:
    rows = [flat_row(row) for row in (result.rows or [result.total])]
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _label(row: RevenueRow, periods: bool) -> str:
    parts = (row.period_start.isoformat() if periods else "", row.group or "")
    return " ".join(part for part in parts if part)


def print_revenue(result: RevenueOutcomes) -> None:
    policy = result.policy
    console.print(
        f"[bold]Revenue[/bold] {result.start.isoformat()} → {result.end.isoformat()} "
        f"(end exclusive), method {policy.method.value}; MRR before → at the end, movements, "
        "NRR, GRR, customer churn and customers at the end",
        highlight=False,
    )
    rows = [("all", result.total)]
    rows += [(_label(row, result.period is not None), row) for row in result.rows]
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("", no_wrap=True)
    for header in ("start", "new", "exp.", "contr.", "churn", "react.", "end", "NRR", "GRR"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("churn %", justify="right", no_wrap=True)
    table.add_column("cust.", justify="right", no_wrap=True)
    for name, row in rows:
        table.add_row(
            name,
            money(row.starting_mrr, signed=False),
            money(row.new_mrr),
            money(row.expansion_mrr),
            money(-row.contraction_mrr),
            money(-row.churned_mrr),
            money(row.reactivation_mrr),
            money(row.ending_mrr, signed=False),
            pct(row.nrr),
            pct(row.grr),
            pct(row.customer_churn_rate),
            count(row.ending_accounts),
        )
    console.print(table)
    total = result.total
    console.print(
        f"Gross MRR churn {pct(total.gross_mrr_churn_rate)} · net MRR churn "
        f"{pct(total.net_mrr_churn_rate)} · ARPA {money(total.arpa, signed=False)} · CLV "
        f"{money(total.clv, signed=False)} (gross margin {pct(policy.gross_margin, 0)})",
        highlight=False,
    )
    sources = ", ".join(
        f"{item.source} {money(item.expansion_mrr, signed=False)} ({item.movements})"
        for item in total.expansion_by_source
    )
    console.print(f"Expansion by source ({policy.match_days} days): {sources}", highlight=False)
    console.print(
        f"[dim]Switches: churn at {policy.churn_at.value}, reactivation gap "
        f"{policy.reactivation_gap.value}, new-and-churned {policy.new_and_churned.value}, "
        f"paid-to-free {policy.free_downgrade.value}, paused {policy.paused.value}, churn "
        f"denominator {policy.churn_denominator.value} (docs/metrics.md, Revenue)[/dim]",
        highlight=False,
    )
